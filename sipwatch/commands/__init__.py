"""Subcommands beyond `probe`, `config` and `demo`: one module each, wired in `cli._COMMANDS`.

Each module has `configure(subparsers)` (argparse only, imports nothing heavy) and
`run(args) -> int` (the exit code).
"""
