from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainables import DatasetConfig, LocalContext, get_family
from trainables.core.evaluation import encode
from trainables.families.multitask import MultiTask, MultiTaskConfig

TINY_VIEW = DatasetConfig(
    subset={"scale": [0, 5], "orientation": 0, "posX": "0:32:8", "posY": "0:32:8"}
)  # 3 x 2 x 4 x 4 = 96 images


def _config(**overrides):
    params = dict(
        epochs=1, n_tasks=3, batch_size=32, metric_train_points=200, metric_test_points=100,
        pictures=False,
    )  # fmt: skip
    return MultiTaskConfig(**{**params, **overrides})


@pytest.fixture(scope="module")
def data():
    return get_family("multitask").prepare_data(TINY_VIEW, [_config(n_tasks=4)])


def test_prepare_data_shapes_and_split(data):
    assert data["images"].shape == (96, 1, 64, 64) and data["images"].dtype == np.uint8
    assert data["factor_names"] == ["shape", "scale", "posX", "posY"]
    assert next(iter(data["targets"].values())).shape == (96, 4)
    parts = np.concatenate([data["train"], data["val"], data["test"]])
    assert sorted(parts.tolist()) == list(range(96))
    assert len(data["train"]) == 72 and len(data["val"]) == 12


@pytest.mark.parametrize("variant", ["multi_head", "one_head", "single_task", "random"])
def test_one_epoch_reports_and_scores(variant, data, tmp_path):
    torch.set_num_threads(1)
    ctx = LocalContext(tmp_path)
    final = get_family("multitask").fit(_config(variant=variant, task_index=1), data, ctx)
    assert ctx.reports[0]["epoch"] == 1 and math.isfinite(ctx.reports[0]["train/loss"])
    for key in ("rmse", "mig", "dci_disentanglement", "dci_completeness", "dci_informativeness"):
        assert math.isfinite(final[key]), key
    tasks = [k for k in final if k.startswith("rmse_task_")]
    assert tasks == (
        ["rmse_task_1"]
        if variant == "single_task"
        else ["rmse_task_0", "rmse_task_1", "rmse_task_2"]
    )
    assert (tmp_path / "artifacts" / "codes.npz").exists()


def test_random_variant_keeps_encoder_untrained(data, tmp_path):
    cfg = _config(variant="random")
    torch.manual_seed(cfg.seed)
    initial = MultiTask(cfg, 1).modules.state_dict()
    ctx = LocalContext(tmp_path)
    get_family("multitask").fit(cfg, data, ctx)
    trained = torch.load(ctx.checkpoint_path, weights_only=True)["trainer"]["modules"]
    for name, tensor in initial.items():
        if name.startswith("encoder."):
            assert torch.equal(trained[name], tensor)
    assert any(not torch.equal(trained[k], v) for k, v in initial.items() if k.startswith("heads"))


def test_resume_from_checkpoint_matches_uninterrupted_run(data, tmp_path):
    torch.set_num_threads(1)
    fit = get_family("multitask").fit
    straight = fit(_config(epochs=2), data, LocalContext(tmp_path / "a"))
    interrupted = LocalContext(tmp_path / "b")
    fit(_config(epochs=1), data, interrupted)  # the "killed" trial's first epoch
    resumed = LocalContext(tmp_path / "b")
    final = fit(_config(epochs=2), data, resumed)
    assert [r["epoch"] for r in resumed.reports] == [2, 2]  # epoch 2, then the final result
    assert resumed.steps == [2, 2]
    assert final["rmse"] == straight["rmse"] and final["mig"] == straight["mig"]


def test_same_seed_same_numbers_different_seed_differs(data, tmp_path):
    torch.set_num_threads(1)
    fit = get_family("multitask").fit
    a = fit(_config(), data, LocalContext(tmp_path / "a"))
    b = fit(_config(), data, LocalContext(tmp_path / "b"))
    c = fit(_config(seed=1), data, LocalContext(tmp_path / "c"))

    def values(result):
        return {k: v for k, v in result.items() if not k.startswith("metric_seconds_")}

    assert values(a) == values(b)
    assert a["rmse"] != c["rmse"]


def test_config_rejects_bad_task_index():
    with pytest.raises(ValueError, match="task_index"):
        MultiTaskConfig(n_tasks=2, task_index=2)


def test_sampling_metrics_use_the_encoded_grid(data, tmp_path):
    torch.set_num_threads(1)
    cfg = _config(metrics=["mig", "factor_vae", "beta_vae"])
    final = get_family("multitask").fit(cfg, data, LocalContext(tmp_path))
    assert 0.0 <= final["factor_vae"] <= 1.0 and 0.0 <= final["beta_vae"] <= 1.0
    assert math.isfinite(final["mig"])
    # The array metrics' codes come from the encoded grid table: they must equal a fresh encode.
    model = get_family("multitask").load_encoder(tmp_path / "artifacts")
    sample = np.random.default_rng(cfg.seed).integers(0, 96, 300)
    saved = np.load(tmp_path / "artifacts" / "codes.npz")
    images = torch.from_numpy(data["images"])
    fresh, sampled = encode(
        lambda rows: model.trainer.encode(images[rows].float() / 255), sample, images.device
    )
    assert sampled is None  # a deterministic encoder
    scored = np.concatenate([saved["codes"], saved["codes_test"]])
    assert np.allclose(scored, fresh, atol=1e-5)
    assert np.array_equal(saved["factors"], data["factors"][sample[:200]])


def test_sampling_metrics_refuse_a_sampled_view(tmp_path):
    from trainables.core.view import sampling_metrics_refusal

    assert "n_samples" in sampling_metrics_refusal(
        TINY_VIEW.model_copy(update={"n_samples": 60}), ["mig", "factor_vae"]
    )
    assert sampling_metrics_refusal(TINY_VIEW, ["mig", "factor_vae"]) is None
    view = TINY_VIEW.model_copy(update={"n_samples": 60})
    cfg = _config(metrics=["factor_vae"])
    sampled = get_family("multitask").prepare_data(view, [cfg])
    with pytest.raises(ValueError, match="whole plain factor grid"):
        get_family("multitask").fit(cfg, sampled, LocalContext(tmp_path))


def test_metric_options_follow_the_config(data, tmp_path):
    torch.set_num_threads(1)
    options = {"factor_vae": {"prune_threshold": 1e9, "num_train": 64, "num_eval": 64}}
    cfg = _config(metrics=["factor_vae"], metric_options=options)
    final = get_family("multitask").fit(cfg, data, LocalContext(tmp_path))
    # Every code is pruned at that threshold: the score is 0 with no active dims.
    assert final["factor_vae"] == 0.0 and final["factor_vae_active_dims"] == 0.0
    options["factor_vae"]["prune_threshold"] = 0.0  # now no code is pruned
    cfg = _config(metrics=["factor_vae"], metric_options=options)
    kept = get_family("multitask").fit(cfg, data, LocalContext(tmp_path / "kept"))
    assert kept["factor_vae_active_dims"] == cfg.latent_dim
