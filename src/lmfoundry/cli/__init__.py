"""The `lmf` command line: one module per command group, each with `register(subparsers)`.

Modules here parse arguments, call library functions and print; they hold no logic of their own
and import nothing heavy at module level (so `lmf --help` answers instantly).
"""
