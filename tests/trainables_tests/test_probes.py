"""Probes on frozen representations (the multi-task paper, Sections 4.2 and 4.3), in process.

The upstream is a real model trained here and saved as a trial saves it; probes load it from its
artifact folder (the MLflow path is covered by tests/study_tests/test_probe_study.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainables import GROUND_TRUTH, DatasetConfig, LocalContext, get_family
from trainables.families.decoder_probe import DecoderProbe
from trainables.families.task_probe import TaskProbe

VIEW = DatasetConfig(
    subset={"scale": [0, 5], "orientation": 0, "posX": "0:32:4", "posY": "0:32:4"}
)  # 3 x 2 x 8 x 8 = 384 images
SMALL = dict(metric_train_points=200, metric_test_points=100, pictures=False)


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="module")
def data():
    return get_family("task_probe").prepare_data(VIEW, [get_family("task_probe").Config(n_tasks=4)])


def _upstream(tmp_path_factory, data, variant: str, epochs: int):
    from trainables.families.multitask import MultiTaskConfig

    directory = tmp_path_factory.mktemp(variant)
    cfg = MultiTaskConfig(
        variant=variant, epochs=epochs, n_tasks=4, batch_size=32, latent_dim=6, **SMALL
    )
    get_family("multitask").fit(cfg, data, LocalContext(directory))
    return directory / "artifacts"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    return _upstream(tmp_path_factory, data, "multi_head", 3)


@pytest.fixture(scope="module")
def random_encoder(tmp_path_factory, data):
    return _upstream(tmp_path_factory, data, "random", 0)


def test_ground_truth_codes_are_the_scaled_factors(data):
    cfg = get_family("task_probe").Config(upstream=GROUND_TRUTH, n_tasks=4, **SMALL)
    images = torch.from_numpy(data["images"])
    probe = TaskProbe(cfg, images.shape[1])
    probe.setup(data, images)
    assert probe.codes.shape == (384, 4)  # one column per scored factor
    assert np.allclose(probe.codes.numpy(), data["inputs"])
    assert probe.codes.min() >= -1 and probe.codes.max() <= 1
    with pytest.raises(ValueError, match="no image encoder"):
        probe.encode(images[:2].float())


def test_the_upstream_is_frozen_and_encoded_once(data, trained):
    cfg = get_family("decoder_probe").Config(
        upstream=str(trained), epochs=2, batch_size=32, **SMALL
    )
    images = torch.from_numpy(data["images"])
    probe = DecoderProbe(cfg, images.shape[1])
    probe.setup(data, images)
    upstream = probe.upstream.trainer.modules
    calls = []
    upstream["encoder"].register_forward_hook(lambda *args: calls.append(1))
    from trainables.core.loop import train

    train(probe, data, LocalContext())
    assert calls == []  # training read the codes computed in setup
    saved = torch.load(trained / "model" / "weights.pt", weights_only=True)
    for name, tensor in upstream.state_dict().items():
        assert torch.equal(tensor, saved[name.split(".", 1)[0]][name.split(".", 1)[1]]), name
    assert not any(p.requires_grad for p in upstream.parameters())
    assert not upstream.training
    # nor is it part of what the probe optimises, checkpoints or saves
    assert set(probe.modules) == {"decoder"}


def test_decoder_probe_learns_and_draws_traversals(data, trained, tmp_path):
    cfg = get_family("decoder_probe").Config(
        upstream=str(trained), epochs=12, batch_size=16, lr=2e-3, lr_halve_every=4,
        **{**SMALL, "pictures": True, "umap_points": 60},
    )  # fmt: skip
    ctx = LocalContext(tmp_path)
    final = get_family("decoder_probe").fit(cfg, data, ctx)
    curve = [r["val/reconstruction_mse"] for r in ctx.reports[:-1]]
    assert curve[-1] < curve[0]
    # an all-black image's error is the mean intensity: a decoder that learned beats it
    test = data["images"][data["test"]].astype(np.float64) / 255
    assert final["reconstruction_mse"] < (test**2).mean()
    for name in ("reconstructions.png", "traversals.png", "umap.png"):
        assert (tmp_path / "artifacts" / name).stat().st_size > 1000, name
    # the LR halves every lr_halve_every epochs
    state = torch.load(ctx.checkpoint_path, weights_only=True)
    assert state["trainer"]["optimizers"]["adam"]["param_groups"][0]["lr"] == pytest.approx(
        2e-3 / 8  # 12 epochs, halved at 4, 8 and 12
    )
    # the saved probe reloads: its decoder gives the same reconstruction of the same codes
    model = get_family("decoder_probe").load_encoder(tmp_path / "artifacts")
    assert model.info["code_dim"] == 6 and model.info["upstream"] == str(trained)
    codes = model.encode(data["images"][:4])
    assert codes.shape == (4, 6)
    # the reported errors, recomputed from the saved probe on the test split
    test_images = data["images"][data["test"]]
    decoded = model.trainer.decode(torch.as_tensor(model.encode(test_images), dtype=torch.float32))
    error = (decoded.double().numpy() - test_images / 255.0) ** 2
    assert final["reconstruction_mse"] == pytest.approx(error.mean(), rel=1e-5)
    assert final["reconstruction_sse"] == pytest.approx(error.sum(axis=(1, 2, 3)).mean(), rel=1e-5)


def test_task_probe_reports_standardised_and_raw_rmse(data, trained, tmp_path):
    cfg = get_family("task_probe").Config(upstream=str(trained), epochs=2, n_tasks=4, **SMALL)
    final = get_family("task_probe").fit(cfg, data, LocalContext(tmp_path))
    raw = data["targets"][(0, "all", 2, 0.5)][:, :4]
    scale = raw[data["train"]].std(axis=0)
    for i in range(4):
        assert final[f"rmse_raw_task_{i}"] == pytest.approx(
            final[f"rmse_task_{i}"] * scale[i], rel=1e-6
        )
    assert final["rmse"] == pytest.approx(
        np.sqrt(np.mean([final[f"rmse_task_{i}"] ** 2 for i in range(4)]))
    )
    assert math.isfinite(final["mig"])


def test_true_factors_beat_a_random_encoders_codes(data, random_encoder):
    """Table 1's baseline row: heads on the true factors regress the tasks (random MLPs of those
    factors) better than heads on an untrained encoder's codes, in the same short run."""
    rmse = {}
    for name, upstream in (("truth", GROUND_TRUTH), ("random", str(random_encoder))):
        cfg = get_family("task_probe").Config(
            upstream=upstream, epochs=40, batch_size=32, lr=1e-3, n_tasks=4, **SMALL
        )
        rmse[name] = get_family("task_probe").fit(cfg, data, LocalContext())["rmse"]
    assert rmse["truth"] < 0.8 * rmse["random"], rmse


def test_an_upstream_on_other_factors_is_refused(trained):
    other = get_family("decoder_probe").prepare_data(
        DatasetConfig(
            subset={
                "shape": 0,
                "scale": [0, 5],
                "orientation": 0,
                "posX": "0:32:4",
                "posY": "0:32:4",
            }
        ),
        [get_family("decoder_probe").Config()],
    )
    cfg = get_family("decoder_probe").Config(upstream=str(trained), **SMALL)
    images = torch.from_numpy(other["images"])
    with pytest.raises(ValueError, match="trained on factors"):
        DecoderProbe(cfg, images.shape[1]).setup(other, images)
