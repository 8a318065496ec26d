"""`python -m glassgpt ...` (and `torchrun -m glassgpt ...`): the same as the `glassgpt` command."""

import sys

from glassgpt.cli import main

if __name__ == "__main__":
    sys.exit(main())
