"""The `tla` console script: the command line when the full install is there, one clear line when not.

The base install is the robot-side client only (`pip install "tla[client]"`); the command line needs the
`full` extra (simulator, training, evaluation, server).
"""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from tla.cli import main as cli_main
    except ModuleNotFoundError as e:  # a client-only install: typer, torch, numba ... are not there
        print(f"error: the tla command needs the full install ({e.name} is missing): "
              'pip install "tla[full]" torch==2.13.0 (this environment has the client only)', file=sys.stderr)
        raise SystemExit(2) from None
    cli_main()
