"""The single `tla` command line: one sub-command per job."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="TLA: tactile peg-in-hole, from simulator to policy.")

# --- sub-command registration (one line per job; each module exposes a typer app or a command) ---
from tla.sim.cli import app as sim_app  # noqa: E402

app.add_typer(sim_app, name="sim", help="Tactile peg-in-hole simulator: preview, benchmark, episodes.")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
