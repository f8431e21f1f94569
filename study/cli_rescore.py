"""``study rescore``: new or changed metrics from each finished trial's saved codes, written into
the same MLflow runs (``study.rescore``), as Ray tasks over the cluster."""

from __future__ import annotations

from typing import Annotated

import typer

from trainables.errors import UserError

from .cli_app import app, console, fail


@app.command()
def rescore(
    name: Annotated[str, typer.Argument(help="Study name (its MLflow experiment)")],
    metrics: Annotated[str, typer.Option(help="Comma-separated metric names, e.g. mig,sap")],
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI")] = None,
    address: Annotated[str | None, typer.Option(help="Ray cluster address (default local)")] = None,
    num_cpus: Annotated[int | None, typer.Option(help="CPUs of a local Ray")] = None,
    mode: Annotated[
        str | None, typer.Option(help="reference or fast (default: each run's own)")
    ] = None,
) -> None:
    """Compute metrics from each finished trial's saved codes (codes.npz) and write them into the
    same MLflow runs (status and end time unchanged); a value already there is not written again."""
    from analysis.stores import resolve_tracking_uri

    from . import rescore as rescoring

    say = lambda text: console.print(text, markup=False, highlight=False, soft_wrap=True)  # noqa: E731
    uri = resolve_tracking_uri(tracking_uri)
    try:
        names = rescoring.parse_metrics(metrics)
        plan = rescoring.plan(uri, name, names, mode)
    except UserError as err:
        fail(str(err))
    say(
        f"rescore {name}: {', '.join(names)} on {len(plan.targets)} runs "
        f"(mode {mode or 'of each run'})"
    )
    summary = rescoring.run(plan, address, num_cpus, say)
    say(
        f"done: {summary.done} runs rescored, {summary.written} values written, "
        f"{summary.unchanged} unchanged, {len(summary.failed)} failed, "
        f"{len(plan.skipped)} skipped"
    )
    for line in plan.skipped:
        say(f"skipped {line}")
    for line in summary.failed:
        say(f"failed {line}")
    if summary.failed or not summary.done:
        raise typer.Exit(1)
