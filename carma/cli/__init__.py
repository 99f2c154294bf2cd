"""`carma`: the command line, a thin skin over the Python API (`carma.open` and `Memory`).

commands  one function per command, mirroring the API one to one
context   what every command shares: --home, --json, errors, progress bars
render    how results read as text (--json prints them as they are)
"""

from carma.cli.commands import cli, main

__all__ = ["cli", "main"]
