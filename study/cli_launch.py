"""``study run | resume | status | sync``: launching studies and following them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from analysis.stores import resolve_tracking_uri
from trainables.errors import UserError

from . import causes
from .cli_app import MAX_TRIALS, STORAGE_HELP, app, console, errors, fail
from .errors import SpecError


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="Study YAML, e.g. configs/quickstart.yaml")],
    name: Annotated[str | None, typer.Option(help="Study name (default: the YAML's name)")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI")] = None,
    storage: Annotated[str, typer.Option(help=STORAGE_HELP)] = "ray_results",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (default local)")] = None,
    num_cpus: Annotated[int | None, typer.Option(help="CPUs of a local Ray")] = None,
    resume: Annotated[bool, typer.Option(help="Resume the latest launch of this study")] = False,
    extend: Annotated[
        bool,
        typer.Option(
            "--extend",
            help="Add search.num_samples new points to this study's earlier launches "
            "(Optuna starts from what they measured)",
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help=f"Allow over {MAX_TRIALS} trials")] = False,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a key: fixed.epochs=2")
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", help="Ray Tune's own trial tables instead of one line a change"),
    ] = False,
) -> None:
    """Run a study: validate the YAML, then one Ray Tune trial per grid point (or per sampled
    point and seed), tracked in MLflow."""
    from .spec import load_spec

    overrides = list(set_ or [])
    if name:
        overrides.append(f"name={name}")
    try:
        spec = load_spec(config, overrides, max_trials=None if yes else MAX_TRIALS)
    except UserError as err:
        fail(str(err))
    if spec.resolved_source is not None:
        fail(f"{config}: resolved_source: written by study run from source; remove it")
    _launch(spec, tracking_uri, storage, address, num_cpus, resume, yes, extend, verbose)


@app.command()
def resume(
    study: Annotated[str, typer.Argument(help="Study name: continue its latest launch")],
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI")] = None,
    storage: Annotated[str, typer.Option(help=STORAGE_HELP)] = "ray_results",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (default local)")] = None,
    num_cpus: Annotated[int | None, typer.Option(help="CPUs of a local Ray")] = None,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", help="Ray Tune's own trial tables instead of one line a change"),
    ] = False,
) -> None:
    """Continue a study's latest launch with the config it was launched with (same parent run)."""
    from .records import latest_experiment, read_launch
    from .spec import parse_spec
    from .storage import storage_path

    try:
        previous = latest_experiment(storage_path(storage), study)
        if previous is None:
            raise SpecError(f"resume: no launch of study {study!r} under {storage}")
        record = read_launch(previous)
        spec = parse_spec(record["spec"], f"{previous.name}/study_launch.json")
    except UserError as err:
        fail(str(err))
    _launch(spec, tracking_uri, storage, address, num_cpus, True, True, verbose=verbose)


def _launch(
    spec, tracking_uri, storage, address, num_cpus, resume: bool, yes: bool, extend: bool = False,
    verbose: bool = False,
) -> None:  # fmt: skip

    from analysis.stores import shown_uri as shown

    from . import tracking
    from .launch import run_study

    if num_cpus is not None and num_cpus < 1:
        fail(f"--num-cpus must be at least 1, got {num_cpus}")
    uri = resolve_tracking_uri(tracking_uri)
    if spec.source is not None and spec.resolved_source is None:
        from .sources import resolve

        try:
            tracking.check_reachable(uri)
            spec = resolve(spec, uri)  # the upstream runs: an axis of the grid
        except (UserError, tracking.TrackingUnreachable) as err:
            fail(str(err))
    if spec.n_trials > MAX_TRIALS and not yes:
        fail(f"the sweep has {spec.n_trials} trials (over {MAX_TRIALS}); pass --yes if meant")
    console.print(
        f"study [bold]{spec.name}[/]: family {spec.family}, {spec.n_trials} trials, "
        f"tracking {escape(shown(uri))}"
        + (" (resuming its latest launch)" if resume else "")
        + (" (extending its earlier launches)" if extend else ""),
        soft_wrap=True,
    )
    try:
        result = run_study(
            spec,
            config_text=spec_yaml(spec),
            tracking_uri=uri,
            storage=storage,
            address=address,
            num_cpus=num_cpus,
            resume=resume,
            extend=extend,
            verbose=2 if verbose else 0,  # else one progress line a change (study.progress)
            say=lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True),
        )
    except (UserError, tracking.TrackingUnreachable) as err:
        fail(str(err))
    ended = causes.summary(result.causes)
    if result.interrupted:
        signalled = result.interrupted != causes.ENDED_EARLY
        what = (
            f"interrupted ({result.interrupted})" if signalled else "error: the launch ended early"
        )
        errors.print(
            f"{what}{f' ({result.ray_error})' if result.ray_error else ''}: {result.n_finished} of "
            f"{result.n_trials} trials finished{f' ({ended})' if ended else ''}, the rest and the "
            f"launch marked KILLED in MLflow; continue with: "
            f"study resume {spec.name} --storage {storage} --tracking-uri {shown(uri)}",
            markup=False, highlight=False, soft_wrap=True,
        )  # fmt: skip
        raise typer.Exit(130 if signalled else 1)
    if result.tracking_pending:
        errors.print(
            f"error: the tracking server could not be reached at the end; when it is back, "
            f"run: study sync {spec.name} --storage {storage} --tracking-uri {shown(uri)}",
            markup=False, highlight=False, soft_wrap=True,
        )  # fmt: skip
        raise typer.Exit(1)
    failed = result.n_errors + result.n_diverged + result.n_misconfigured
    stopped = f"{result.n_stopped} stopped early by ASHA, " if result.n_stopped else ""
    misconfigured = (
        f"{result.n_misconfigured} without search.metric in their final report, "
        if result.n_misconfigured else ""
    )  # fmt: skip
    why = " (the runs' end_reason and end_cause tags say why)" if failed or ended else ""
    console.print(
        f"{'done' if not failed else 'finished with failures'}: {result.n_trials} trials, "
        f"{stopped}{result.n_errors} errors, {misconfigured}{result.n_diverged} diverged "
        f"(non-finite loss){f'; not finished: {ended}' if ended else ''}{why}",
        markup=False, highlight=False, soft_wrap=True,
    )  # fmt: skip
    console.print(
        f"MLflow: {shown(uri)} (parent run {result.parent_run_id}); "
        f"Ray: {result.experiment_path}",
        markup=False, highlight=False, soft_wrap=True,
    )  # fmt: skip
    if failed:
        raise typer.Exit(1)


@app.command()
def status(
    study: Annotated[str, typer.Argument(help="Study name")],
    storage: Annotated[str, typer.Option(help=STORAGE_HELP)] = "ray_results",
    metric: Annotated[str | None, typer.Option(help="Best by this metric (default: first)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Trials done / running / pending / failed, best so far, elapsed and time left (any shell)."""
    from .status import study_status, to_json

    try:
        state = study_status(storage, study, metric)
    except UserError as err:
        fail(str(err))
    if as_json:
        print(to_json(state))
        return
    counts = ", ".join(f"{n} {k.lower()}" for k, n in state.counts.items() if n)
    console.print(
        f"study [bold]{study}[/] ({state.launch}, {state.launch_status}): "
        f"{state.n_trials} trials: {counts}"
    )
    if state.causes:
        console.print(f"not finished: {escape(causes.summary(state.causes))}")
    minutes = state.elapsed_s / 60
    left = f", about {state.remaining_s / 60:.0f} min left" if state.remaining_s else ""
    console.print(f"elapsed {minutes:.1f} min{left}")
    if state.best is not None:
        label = escape(state.best.label())
        console.print(f"best {state.metric}: {state.best.metric:.4f} ({label})")
    if state.extends:
        counts = ", ".join(f"{n} {k.lower()}" for k, n in state.extended_counts.items())
        console.print(
            f"extends {len(state.extends)} earlier launch(es): "
            f"{sum(state.extended_counts.values())} trials: {counts or 'none'}"
        )
        best = state.best_overall
        if best is not None:
            label = escape(best.label())
            console.print(
                f"best {state.metric} of the whole study: {best.metric:.4f} ({label}; {best.launch})"
            )
    table = Table()
    for column in ("trial", "status", "step", state.metric):
        table.add_column(column)
    for t in state.trials:
        value = "" if t.metric is None else f"{t.metric:.4f}"
        table.add_row(escape(t.label()), t.status, str(t.step or ""), value)
    console.print(table)


@app.command()
def sync(
    study: Annotated[str, typer.Argument(help="Study name")],
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI")] = None,
    storage: Annotated[str, typer.Option(help=STORAGE_HELP)] = "ray_results",
) -> None:
    """Send MLflow what trials journaled but could not send (a tracking outage); idempotent."""
    from . import tracking
    from .records import sync_study

    uri = resolve_tracking_uri(tracking_uri)
    try:
        results = sync_study(study, uri, storage)
    except (UserError, tracking.TrackingUnreachable) as err:
        fail(str(err))
    incomplete = 0
    for r in results:
        incomplete += r.trials_failing + (not r.launch_closed)
        console.print(
            f"{r.launch}: {r.trials} trials, {r.records_sent} records sent"
            + (f", {r.trials_failing} trials still unsent" if r.trials_failing else "")
            + ("" if r.launch_closed else ", launch not ended")
        )
    if incomplete:
        errors.print("error: tracking is still incomplete; run `study sync` again")
        raise typer.Exit(1)


def spec_yaml(spec) -> str:
    """The effective config (after --set), as the parent run logs it."""
    import yaml

    return yaml.safe_dump(json.loads(spec.model_dump_json()), sort_keys=False)
