"""The ``study`` command: run | resume | status | sync | evaluate | best | report | reproduce | score |
show-data | list. Bad input (a ``UserError``) exits 2 with one line on stderr; anything else is a
bug and keeps its traceback."""

from __future__ import annotations

import sys

from . import cli_evaluate, cli_launch, cli_results  # noqa: F401 (each registers its commands)
from .cli_app import app, errors


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        errors.print("interrupted; continue a study with `study resume NAME`")
        sys.exit(130)


if __name__ == "__main__":
    main()
