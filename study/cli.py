"""The ``study`` command: run | resume | status | sync | evaluate | best | report | reproduce | score |
rescore | show-data | list. Bad input (a ``UserError``) exits 2 with one line on stderr; anything
else is a bug and keeps its traceback."""

from __future__ import annotations

import sys

# Each registers its commands.
from . import cli_evaluate, cli_launch, cli_rescore, cli_results  # noqa: F401
from .cli_app import app, errors


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        errors.print("interrupted; continue a study with `study resume NAME`")
        sys.exit(130)


if __name__ == "__main__":
    main()
