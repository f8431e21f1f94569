"""The contract every family keeps, as public checks a family's own tests call.

    from trainables.testing import check_family

    def test_my_family_keeps_the_contract(tmp_path):
        check_family("mypkg.models:MyVAE", tmp_path)

``check_family`` runs each check below on a tiny view (96 dSprites images, a few optimiser steps,
the family's own ``Trainer.tiny_config`` on top): defaults validate and unknown keys fail; each
expansion is a valid trial; a short fit reports finite losses at explicit steps, writes its pictures
and a saved model that reloads to exactly the scored codes, and ``study score`` on its codes gives the
logged scores, and reports what the family declares (``Trainer.outputs``, ``check_outputs``); a
fit killed after its first checkpoint resumes to the same numbers as one never
stopped; the loss falls over 60 steps. The built-in families run the same checks (tests/).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .core.config import DatasetConfig
from .core.context import LocalContext
from .core.family import Family, get_family
from .core.trainer import Trainer
from .metrics import METRICS, SAMPLED
from .metrics.scoring import load_arrays, score_arrays

TINY_VIEW = DatasetConfig(
    subset={"scale": [0, 5], "orientation": 0, "posX": "0:32:8", "posY": "0:32:8"}
)  # 3 shapes x 2 scales x 4 x 4 positions = 96 images
PNG = b"\x89PNG\r\n\x1a\n"
TINY = dict(
    steps=4, report_every=2, batch_size=8, lr=1e-3, metric_train_points=120,
    metric_test_points=60, pictures=False, umap_points=60,
)  # fmt: skip
_STEPS = ("steps", "report_every")
UPSTREAM_FAMILY = "multitask"  # what a probe family's checks train first, to sit on


def inputs_dir(family: Family) -> Path:
    """Where a family's ``tiny_inputs`` (e.g. an encoder file) are written, once per machine."""
    safe = "".join(c if c.isalnum() else "_" for c in family.key)
    return Path(tempfile.gettempdir()) / "disentangle-study-tiny" / safe


class TrialKilled(Exception):
    """What ``KilledAfter`` raises: the trial process died."""


class KilledAfter(LocalContext):
    """Dies right after its n-th checkpoint, as a trial process killed between reports."""

    Killed = TrialKilled

    def __init__(self, directory: str | Path, n: int):
        super().__init__(directory)
        self.n = n

    def report(self, metrics, *, step, state=None):
        super().report(metrics, step=step, state=state)
        if state is not None and len(self.reports) == self.n:
            raise TrialKilled


def as_family(family: str | type[Trainer] | Family) -> Family:
    if isinstance(family, Family):
        return family
    if isinstance(family, str):
        return get_family(family)
    return Family(f"{family.__module__}:{family.__qualname__}", family)


def tiny_config(family: str | type[Trainer] | Family, upstream: str | Path | None = None,
                **overrides: Any) -> Any:  # fmt: skip
    """The family's Config for a few steps on ``TINY_VIEW`` (``upstream``: a probe's model)."""
    family = as_family(family)
    trainer = family.trainer
    # A family that does not train has no steps to count.
    tiny = TINY if trainer.trains else {k: v for k, v in TINY.items() if k not in _STEPS}
    params = {**tiny, **trainer.tiny_config, **trainer.tiny_inputs(inputs_dir(family))}
    if family.trainer.is_probe and upstream is not None:
        params["upstream"] = str(upstream)
    return family.Config(**{**params, **overrides})


def tiny_data(
    family: str | type[Trainer] | Family, directory: str | Path
) -> tuple[dict, Path | None]:
    """``TINY_VIEW`` prepared for the family, and for a probe the saved tiny upstream it sits on
    (trained here under ``directory``)."""
    family = as_family(family)
    upstream = None
    if family.trainer.is_probe:
        producer = get_family(UPSTREAM_FAMILY)
        cfg = tiny_config(producer)
        data = producer.prepare_data(TINY_VIEW, [cfg])
        producer.fit(cfg, data, LocalContext(Path(directory) / "upstream"))
        upstream = Path(directory) / "upstream" / "artifacts"
    data = family.prepare_data(TINY_VIEW, [tiny_config(family, upstream)])
    return data, upstream


def values(result: dict[str, float]) -> dict[str, float]:
    """A fit's numbers without its timings (which differ between two equal runs)."""
    return {k: v for k, v in result.items() if not k.startswith("metric_seconds_")}


def check_config(family: str | type[Trainer] | Family) -> None:
    """Defaults validate; unknown keys and unknown metric options are refused; each expansion of
    the defaults is a valid, deterministic trial."""
    family = as_family(family)
    inputs = family.trainer.tiny_inputs(inputs_dir(family))  # files the family cannot do without
    cfg = family.Config(**inputs)
    assert cfg.seed == 0 and cfg.metrics, "the defaults must validate, with metrics"
    for bad in ({"not_a_key": 1}, {"metrics": ["mig"], "metric_options": {"mig": {"bins": 3}}}):
        try:
            family.Config(**inputs, **bad)
        except ValueError:
            continue
        raise AssertionError(f"{family.key}: Config accepted {bad}")
    params = {k: v for k, v in cfg.model_dump().items() if k != "task_index"}
    extras = family.expand(params)
    assert extras and extras == family.expand(params), "expand must be deterministic"
    for extra in extras:
        assert isinstance(extra, dict), extra
        family.Config(**{**params, **extra})


def check_fit(family: str | type[Trainer] | Family, data: dict, directory: str | Path,
              upstream: Path | None = None) -> dict[str, float]:  # fmt: skip
    """A short fit: explicit report steps, finite losses and scores, pictures, a saved model that
    reloads (weights only) to exactly the scored codes, and re-scoring its codes file gives the
    logged scores. Returns the final result."""
    family = as_family(family)
    cfg = tiny_config(family, upstream, pictures=True)
    ctx = LocalContext(directory)
    final = family.fit(cfg, data, ctx)
    if family.trainer.trains:
        assert ctx.steps == [2, 4, 4], f"report steps {ctx.steps}, expected [2, 4, 4]"
        assert all(math.isfinite(r["train/loss"]) for r in ctx.reports[:2]), "non-finite loss"
    else:
        assert ctx.steps == [0], f"a family that does not train reports once, not {ctx.steps}"
    for key in ("mig", "dci_disentanglement", "dci_completeness"):
        assert math.isfinite(final[key]), key
    art = Path(directory) / "artifacts"
    pictures = ["umap.png", "dci_importance.png", "mig_mutual_information.png"]
    if family.trainer.decode is not Trainer.decode:  # a decoder: it shows what it reconstructs
        pictures += ["reconstructions.png", "traversals.png", "traversals_std.png"]
    for picture in pictures:
        assert (art / picture).read_bytes()[:8] == PNG, picture
    importance = np.load(art / "dci_importance.npy")
    assert importance.shape[1] == len(data["factor_names"]), importance.shape
    model = family.load_encoder(art)
    saved = np.load(art / "codes.npz")
    n = cfg.metric_train_points + cfg.metric_test_points
    sample = np.random.default_rng(cfg.seed).integers(0, len(data["factors"]), n)
    codes = model.encode(data["images"][sample])
    assert np.array_equal(codes, np.concatenate([saved["codes"], saved["codes_test"]])), (
        "the reloaded model does not give the scored codes"
    )
    assert np.array_equal(saved["factors"], data["factors"][sample[: cfg.metric_train_points]])
    assert not any(p.requires_grad for p in model.trainer.modules.parameters())
    rescored = score_arrays(load_arrays(art / "codes.npz"), n_jobs=1)
    for key in ("mig", "dci_disentanglement", "dci_completeness", "dci_informativeness"):
        assert rescored[key] == final[key], f"re-scored {key} {rescored[key]} != {final[key]}"
    if family.trainer.stochastic:
        assert math.isfinite(final["mig_sampled"]) and (art / "codes_sampled.npz").exists()
    else:
        assert "mig_sampled" not in final
    check_outputs(family, final, ctx.reports, art)
    return final


def check_outputs(
    family: str | type[Trainer] | Family,
    final: dict[str, float],
    reports: Sequence[dict[str, float]] = (),
    artifacts: Path | None = None,
) -> None:
    """The family declares what it reports (``Trainer.outputs``): every final value that is not a
    registered metric's output, progress or a metric timing matches a declaration, every
    declaration matches a value reported (a ``curve``: in ``reports``), the declarations fit in a
    run's tag, and each declared picture was drawn (when ``artifacts`` is given)."""
    family = as_family(family)
    declared = family.declared
    registered = {o for spec in METRICS.values() for o in spec.outputs}
    own = [k.removesuffix(SAMPLED) for k in final if k not in ("epoch", "step")]
    own = [k for k in own if k not in registered and not k.startswith("metric_seconds_")]
    undeclared = [k for k in own if declared.find(k) is None]
    assert not undeclared, f"{family.key} reports {undeclared}: declare them (Trainer.outputs)"
    progress = {k for report in reports for k in report}
    for output in declared.outputs:
        if not any(output.matches(k) for k in (progress if output.curve else final)):
            raise AssertionError(f"{family.key} declares {output.name!r} but never reports it")
    declared.to_tag()  # too long for a run's tag: ValueError
    for picture in declared.pictures if artifacts is not None else ():
        assert (Path(artifacts) / picture).read_bytes()[:8] == PNG, f"declared {picture} not drawn"


def check_resume(family: str | type[Trainer] | Family, data: dict, directory: str | Path,
                 upstream: Path | None = None) -> None:  # fmt: skip
    """Killed after its first checkpoint and resumed, a fit reports only what comes after it, once,
    and ends with exactly the numbers of a fit never stopped."""
    family = as_family(family)
    cfg = tiny_config(family, upstream)
    straight = LocalContext(Path(directory) / "straight")
    expected = family.fit(cfg, data, straight)
    if not family.trainer.trains:  # no checkpoint to resume from: a rerun gives the same numbers
        again = family.fit(cfg, data, LocalContext(Path(directory) / "again"))
        assert values(again) == values(expected), "a second run gives other numbers"
        return
    try:
        family.fit(cfg, data, KilledAfter(Path(directory) / "resumed", 1))
        raise AssertionError("the killed fit did not stop")
    except TrialKilled:
        pass
    resumed = LocalContext(Path(directory) / "resumed")
    final = family.fit(cfg, data, resumed)
    assert resumed.steps == [4, 4], f"resumed report steps {resumed.steps}, expected [4, 4]"
    assert resumed.reports[0] == straight.reports[1], "different losses at step 4 after resume"
    assert values(final) == values(expected), "resumed final numbers differ"


def check_learns(family: str | type[Trainer] | Family, data: dict, directory: str | Path,
                 upstream: Path | None = None) -> None:  # fmt: skip
    """The training loss falls over 60 steps (a family that does not train is refused here)."""
    family = as_family(family)
    if not family.trainer.trains:
        raise ValueError(f"{family.key} declares trains = False: it has no loss to fall")
    cfg = tiny_config(family, upstream, steps=60, report_every=20, metrics=["mig"],
                      metric_train_points=50)  # fmt: skip
    ctx = LocalContext(directory)
    family.fit(cfg, data, ctx)
    first, last = ctx.reports[0]["train/loss"], ctx.reports[2]["train/loss"]
    assert last < first, f"train/loss did not fall: {first} -> {last}"


def check_family(family: str | type[Trainer] | Family, directory: str | Path) -> None:
    """Every check above, in one call, under ``directory`` (a test's ``tmp_path``)."""
    family = as_family(family)
    torch.set_num_threads(1)
    check_config(family)
    data, upstream = tiny_data(family, directory)
    check_fit(family, data, Path(directory) / "fit", upstream)
    check_resume(family, data, Path(directory) / "resume", upstream)
    if family.trainer.trains:
        check_learns(family, data, Path(directory) / "learns", upstream)
