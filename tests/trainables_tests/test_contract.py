"""What every registered family must do, parametrised over ``FAMILIES``: a new family gets these
tests for free (defaults, a short fit, exact resume, saved model, pictures, re-scoring)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainables import FAMILIES, DatasetConfig, LocalContext, get_family
from trainables.metrics.scoring import load_arrays, score_arrays

TINY_VIEW = DatasetConfig(
    subset={"scale": [0, 5], "orientation": 0, "posX": "0:32:8", "posY": "0:32:8"}
)  # 3 x 2 x 4 x 4 = 96 images
PNG = b"\x89PNG\r\n\x1a\n"


LATENT = 4
PROBES = {name for name, family in FAMILIES.items() if "upstream" in family.Config.model_fields}


def _config(name: str, **overrides):
    params = dict(
        steps=4, report_every=2, batch_size=8, lr=1e-3, metric_train_points=120,
        metric_test_points=60, pictures=False, umap_points=60,
    )  # fmt: skip
    if name in ("multitask", "task_probe"):
        params["n_tasks"] = 3
    if name == "multitask":
        params["latent_dim"] = LATENT
    elif name in PROBES:
        params["upstream"] = str(_UPSTREAM["dir"])  # probes sit on a trained multitask encoder
    else:
        params["latent_dim"] = LATENT
    if name == "factor_vae":
        params["discriminator_hidden"] = (32, 32)  # the 6 x 1000 default is tested in losses
    return get_family(name).Config(**{**params, **overrides})


_UPSTREAM: dict[str, object] = {}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    data = get_family("multitask").prepare_data(TINY_VIEW, [_config("multitask")])
    upstream = tmp_path_factory.mktemp("upstream")
    get_family("multitask").fit(_config("multitask"), data, LocalContext(upstream))
    _UPSTREAM["dir"] = upstream / "artifacts"
    return data


def _values(result: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in result.items() if not k.startswith("metric_seconds_")}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_defaults_validate_and_unknown_keys_fail(name):  # no data: probes default to ground truth
    family = FAMILIES[name]
    cfg = family.Config()
    assert cfg.seed == 0 and cfg.metrics
    with pytest.raises(ValueError):
        family.Config(not_a_key=1)
    with pytest.raises(ValueError, match="metric_options"):
        family.Config(metrics=["mig"], metric_options={"mig": {"bins": 3}})


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_expansions_are_valid_trials_of_the_family(name):
    # What a grid combination stands for (Trainer.expand): each entry, added to the defaults'
    # params, must be a valid config, and expanding is deterministic.
    family = FAMILIES[name]
    params = {k: v for k, v in family.Config().model_dump().items() if k != "task_index"}
    extras = family.expand(params)
    assert extras and extras == family.expand(params)
    for extra in extras:
        assert isinstance(extra, dict)
        family.Config(**{**params, **extra})


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_short_fit_reports_finite_losses_saves_model_and_pictures(name, data, tmp_path):
    cfg = _config(name, pictures=True)
    ctx = LocalContext(tmp_path)
    final = get_family(name).fit(cfg, data, ctx)
    # Two reports at steps 2 and 4 (explicit step), then the final result at the last step.
    assert ctx.steps == [2, 4, 4]
    assert all(math.isfinite(r["train/loss"]) for r in ctx.reports[:2])
    for key in ("mig", "dci_disentanglement", "dci_completeness"):
        assert math.isfinite(final[key]), key
    art = tmp_path / "artifacts"
    pictures = ["umap.png", "dci_importance.png", "mig_mutual_information.png"]
    if get_family(name).trainer.decode is not FAMILIES["multitask"].trainer.decode:
        pictures += ["reconstructions.png", "traversals.png", "traversals_std.png"]
    for picture in pictures:
        assert (art / picture).read_bytes()[:8] == PNG, picture
    importance = np.load(art / "dci_importance.npy")
    assert importance.shape == (LATENT, len(data["factor_names"]))
    # The saved model loads with weights_only and gives exactly the codes the trial scored.
    model = get_family(name).load_encoder(art)
    saved = np.load(art / "codes.npz")
    sample = np.random.default_rng(cfg.seed).integers(0, len(data["factors"]), 180)
    codes = model.encode(data["images"][sample])
    assert np.array_equal(codes, np.concatenate([saved["codes"], saved["codes_test"]]))
    assert np.array_equal(saved["factors"], data["factors"][sample[:120]])
    assert not any(p.requires_grad for p in model.trainer.modules.parameters())
    # `study score` on the artifact reproduces the logged scores.
    rescored = score_arrays(load_arrays(art / "codes.npz"), n_jobs=1)
    for key in ("mig", "dci_disentanglement", "dci_completeness", "dci_informativeness"):
        assert rescored[key] == final[key], key
    if get_family(name).trainer.stochastic:
        assert math.isfinite(final["mig_sampled"])
        assert (art / "codes_sampled.npz").exists()
    else:
        assert "mig_sampled" not in final


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_killed_and_resumed_fit_equals_uninterrupted(name, data, tmp_path, killed_after):
    family = get_family(name)
    cfg = _config(name)
    straight = LocalContext(tmp_path / "straight")
    expected = family.fit(cfg, data, straight)
    with pytest.raises(killed_after.Killed):
        family.fit(cfg, data, killed_after(tmp_path / "resumed", 1))
    resumed = LocalContext(tmp_path / "resumed")
    final = family.fit(cfg, data, resumed)
    assert resumed.steps == [4, 4]  # only what comes after the checkpoint, once
    assert resumed.reports[0] == straight.reports[1]  # same losses at step 4
    assert _values(final) == _values(expected)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_loss_falls_over_a_short_run(name, data, tmp_path):
    cfg = _config(name, steps=60, report_every=20, metrics=["mig"], metric_train_points=50)
    ctx = LocalContext(tmp_path)
    get_family(name).fit(cfg, data, ctx)
    first, last = ctx.reports[0]["train/loss"], ctx.reports[2]["train/loss"]
    assert last < first, (first, last)


def test_non_finite_loss_ends_the_trial_with_a_reason(data, tmp_path):
    from trainables import NonFiniteLoss

    cfg = _config("vae", lr=1e30)  # the first step explodes the weights
    with pytest.raises(NonFiniteLoss, match="non-finite loss term"):
        get_family("vae").fit(cfg, data, LocalContext(tmp_path))


def test_step_mode_continues_batches_across_epochs(data, tmp_path):
    # 72 train rows, batch 8: 9 steps per epoch; 12 steps run into the second epoch.
    cfg = _config("ae", steps=12, report_every=12)
    ctx = LocalContext(tmp_path)
    get_family("ae").fit(cfg, data, ctx)
    assert ctx.reports[0]["epoch"] == pytest.approx(12 / 9)
    assert ctx.reports[0]["step"] == 12


def test_a_metric_name_mlflow_would_refuse_fails_at_once(tmp_path):
    ctx = LocalContext(tmp_path)
    with pytest.raises(ValueError, match="MLflow allows only"):
        ctx.report({"relation_accuracy_shape+1": 0.5}, step=1)
    ctx.report({"relation_accuracy_shape_plus1": 0.5, "val/loss": 1.0}, step=1)
    assert ctx.steps == [1]
