"""`python -m glassgpt ...` (and `torchrun -m glassgpt ...`): the same as the `glassgpt` command."""

import sys

from glassgpt.entry import run

if __name__ == "__main__":
    sys.exit(run())
