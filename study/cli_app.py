"""What every ``study`` command shares: the Typer app, the consoles, and how a user error ends (one
line on stderr, exit 2)."""

from __future__ import annotations

import os

import typer
from rich.console import Console

# MLflow draws a progress bar per artifact download: noise in a command that prints its own output
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

HELP = """The ``study`` command: run | resume | status | sync | evaluate | best | report | reproduce |
score | rescore | show-data | list. Bad input exits 2 with one line on stderr; anything else is a bug
and keeps its traceback."""

app = typer.Typer(add_completion=False, no_args_is_help=True, help=HELP)
console = Console()
errors = Console(stderr=True)


def fail(message: str) -> None:
    errors.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(2)


STORAGE_HELP = (
    "Ray results, checkpoints and trial journals: a folder (NFS on a cluster) or a URI "
    "(s3://, gs://, file://) every node can write"
)
MAX_TRIALS = 10_000  # a bigger sweep is more likely a typo than a plan: it needs --yes


