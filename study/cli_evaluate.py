"""``study evaluate``: score an encoder trained elsewhere under another study's protocol.

The protocol is what makes two studies' numbers comparable: the data view (dataset, subset, split,
data axes), the metrics with their options, points and mode, and the seeds (which draw the metric
points). ``evaluate`` takes those from a study YAML (``--like``) and leaves out what only trains
(epochs, learning rate, the family's own hyperparameters), then runs ``family: external``: one
trial run per seed and view in its own MLflow experiment, reported beside the trained families and
usable as a probe's ``source``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from trainables.errors import UserError

from .cli_app import MAX_TRIALS, STORAGE_HELP, app, fail
from .errors import SpecError

# The TrainConfig settings that define how a representation is scored (the rest trains it).
PROTOCOL_KEYS = (
    "seed", "device", "metrics", "metric_options", "metric_train_points", "metric_test_points",
    "metric_mode", "pictures", "umap_points",
)  # fmt: skip


def protocol_spec(like: dict[str, Any], encoder: dict[str, Any], name: str | None) -> dict:
    """The raw spec of an external-encoder study under the protocol of the study ``like``."""
    if not isinstance(like.get("name"), str):
        raise SpecError("--like: the study config has no name")
    fixed = {k: v for k, v in (like.get("fixed") or {}).items() if k in PROTOCOL_KEYS}
    sweep = {
        k: v
        for k, v in (like.get("sweep") or {}).items()
        if k == "seed" or str(k).startswith("dataset.")
    }
    spec = {
        "name": name or f"{like['name']}_external",
        "family": "external",
        "description": f"an external encoder under the protocol of {like['name']}",
        "fixed": {**fixed, **encoder},
        "sweep": sweep,
    }
    for key in ("dataset", "metrics", "resources"):
        if key in like:
            spec[key] = like[key]
    return spec


@app.command()
def evaluate(
    like: Annotated[
        Path, typer.Option(help="Study YAML whose data view, metrics and seeds to use")
    ],
    encoder: Annotated[
        Path | None, typer.Option(help="TorchScript file, or a state dict with --encoder-class")
    ] = None,
    encoder_class: Annotated[
        str | None, typer.Option(help="package.module:Class of the state dict's encoder")
    ] = None,
    encoder_kwargs: Annotated[
        str | None, typer.Option(help='JSON keyword arguments of the class, e.g. {"width": 10}')
    ] = None,
    output: Annotated[
        str, typer.Option(help="What the encoder returns: mean, mean_logvar or mean_std")
    ] = "mean",
    codes: Annotated[
        Path | None, typer.Option(help=".npz of codes, one row per image of the dataset")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Study name (default: LIKE's + _external)")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI")] = None,
    storage: Annotated[str, typer.Option(help=STORAGE_HELP)] = "ray_results",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (default local)")] = None,
    num_cpus: Annotated[int | None, typer.Option(help="CPUs of a local Ray")] = None,
    resume: Annotated[bool, typer.Option(help="Resume the latest launch of this study")] = False,
) -> None:
    """Score an encoder trained elsewhere (TorchScript, state dict + class, or a file of codes)
    with the data view, metrics and seeds of the study --like, as trial runs in MLflow."""
    from .cli_launch import _launch
    from .spec import load_spec, parse_spec

    given: dict[str, Any] = {"output": output}
    if encoder is not None:
        given["encoder"] = str(encoder)
    if codes is not None:
        given["codes"] = str(codes)
    if encoder_class is not None:
        given["encoder_class"] = encoder_class
    try:
        if encoder_kwargs is not None:
            try:
                given["encoder_kwargs"] = json.loads(encoder_kwargs)
            except json.JSONDecodeError as err:
                raise SpecError(f"--encoder-kwargs: not JSON ({err.msg})") from None
        # The protocol study, validated (with its defaults filled in) and read once.
        raw = json.loads(load_spec(like, max_trials=None).model_dump_json())
        spec = parse_spec(protocol_spec(raw, given, name), f"evaluate --like {like}",
                          max_trials=MAX_TRIALS)  # fmt: skip
    except UserError as err:
        fail(str(err))
    _launch(spec, tracking_uri, storage, address, num_cpus, resume, yes=False)
