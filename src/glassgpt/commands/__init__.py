"""CLI subcommands: each module here registers one subcommand (or group) on the parser.

These are the only places, with `glassgpt.cli`, that read command-line arguments; the library
modules take plain typed arguments.
"""
