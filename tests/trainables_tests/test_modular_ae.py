"""The modular weakly-disentangled auto-encoder (``trainables.families.modular_ae``): both phases, exact
resume with the adaptive prior in the checkpoint, the relational learner's loss, the test metrics
and the saved model."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
import torch

from trainables import DatasetConfig, LocalContext
from trainables.core.loop import fit
from trainables.families import modular_pictures
from trainables.families.modular_ae import ModularAE, ModularAEConfig, metric_name
from trainables.families.modular_parts import chance_accuracy

# 3 shapes x 2 scales (nuisance) x 6 x 6 positions in 3 bins each = 216 images, 27 classes
VIEW = DatasetConfig(
    subset={
        "scale": {"values": [2, 5], "role": "nuisance"},
        "orientation": 0,
        "posX": {"values": [0, 4, 13, 17, 27, 31], "bins": 3},
        "posY": {"values": [0, 4, 13, 17, 27, 31], "bins": 3},
    }
)
assert metric_name("posX_bin-1") == "posX_bin_minus1"  # MLflow refuses "+" in metric names
RELATIONS = ["shape+1", "shape-1", "posX_bin+1", "posX_bin-1", "posY_bin+1", "posY_bin-1"]


def _config(**overrides) -> ModularAEConfig:
    params = dict(
        steps=12, report_every=4, warmup_steps=4, batch_size=16, lr=1e-3, partition_size=2,
        discriminator_hidden=(32, 32), relational_hidden=(32, 32), labelled_batch_size=16,
        relational_batch_size=32, n_labels=100, relation_samples=300, metric_train_points=100,
        metric_test_points=50, pictures=False,
    )  # fmt: skip
    return ModularAEConfig(**{**params, **overrides})


def _values(result: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in result.items() if "seconds" not in k}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data():
    return ModularAE.prepare_data(VIEW, [_config()])


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    torch.set_num_threads(1)
    ctx = LocalContext(tmp_path_factory.mktemp("straight"))
    final = fit(ModularAE, _config(), data, ctx)
    return ctx, final


def _prior_state(ctx: LocalContext) -> dict[str, torch.Tensor]:
    modules = torch.load(ctx.checkpoint_path, weights_only=True)["trainer"]["modules"]
    return {k: v for k, v in modules.items() if k.startswith("prior.")}


def test_view_has_three_factors_of_three_values(data):
    assert data["factor_names"] == ["shape", "posX_bin", "posY_bin"]
    assert data["factor_sizes"] == [3, 3, 3]


def test_fit_runs_warmup_then_full(straight):
    ctx, final = straight
    assert ctx.steps == [4, 8, 12, 12]
    warmup, full = ctx.reports[0], ctx.reports[1]
    assert "train/relational" not in warmup and "train/supervised" not in warmup
    assert "val/converted_accuracy" not in warmup
    for key in ("train/loss", "train/reconstruction", "train/discriminator", "train/relational",
                "train/supervised", "val/converted_accuracy"):  # fmt: skip
        assert math.isfinite(full[key]), key
    assert math.isfinite(final["mig"]) and math.isfinite(final["dci_disentanglement"])


@pytest.mark.parametrize("kill_at", [1, 2], ids=["in-warmup", "after-prior-fit"])
def test_killed_and_resumed_fit_equals_uninterrupted(
    data, straight, tmp_path, kill_at, killed_after
):
    ctx, expected = straight
    with pytest.raises(killed_after.Killed):
        fit(ModularAE, _config(), data, killed_after(tmp_path, kill_at))
    interrupted = _prior_state(LocalContext(tmp_path))
    assert bool(interrupted["prior.fitted"]) == (kill_at == 2)
    resumed = LocalContext(tmp_path)
    final = fit(ModularAE, _config(), data, resumed)
    assert resumed.steps == [4 * s for s in range(kill_at + 1, 4)] + [12]
    assert resumed.reports[: 3 - kill_at] == ctx.reports[kill_at:3]
    np.testing.assert_equal(_values(final), _values(expected))  # NaN equals NaN here
    # The prior fitted at step 4 is the one every later checkpoint holds: kept, not refitted.
    prior = _prior_state(resumed)
    assert bool(prior["prior.fitted"])
    for key, value in _prior_state(ctx).items():
        assert torch.equal(prior[key], value), key
        if kill_at == 2:
            assert torch.equal(interrupted[key], value), key


def test_test_metrics_keys_and_ranges(data, straight):
    _, final = straight
    assert (
        final["relation_chance"] == chance_accuracy(data["factor_sizes"]) == pytest.approx(1 / 27)
    )
    assert 0 <= final["relation_accepted"] <= 1
    assert math.isfinite(final["relation_threshold"])
    for name in ["relation_accuracy", *[f"relation_accuracy_{metric_name(r)}" for r in RELATIONS]]:
        assert math.isnan(final[name]) or 0 <= final[name] <= 1, name
    for key in ("converted_dci_disentanglement", "converted_dci_completeness",
                "converted_dci_informativeness", "converted_mig", "converted_sap",
                "converted_accuracy", "converted_accuracy_shape", "converted_accuracy_posX_bin",
                "converted_accuracy_posY_bin"):  # fmt: skip
        assert isinstance(final[key], float) and 0 <= final[key] <= 1, key
    assert final["reconstruction_loss"] > 0 and 0 < final["reconstruction_mse"] < 1


def test_relational_loss_falls(data, tmp_path):
    cfg = _config(steps=60, report_every=20, warmup_steps=0, metrics=["mig"])
    ctx = LocalContext(tmp_path)
    fit(ModularAE, cfg, data, ctx)
    first, last = ctx.reports[0]["train/relational"], ctx.reports[2]["train/relational"]
    assert last < 0.7 * first, (first, last)


def _saved_trainer(ctx: LocalContext) -> tuple[ModularAE, dict]:
    model_dir = ctx.artifact_dir / "model"
    info = json.loads((model_dir / "config.json").read_text())
    cfg = ModularAEConfig(**info["config"])
    trainer = ModularAE.from_saved(cfg, info, torch.device("cpu"))
    weights = torch.load(model_dir / "weights.pt", weights_only=True)
    for name, module in trainer.modules.items():
        module.load_state_dict(weights[name])
    trainer.modules.eval()
    return trainer, info


def test_saved_model_has_the_prior_and_gives_the_scored_codes(data, straight):
    ctx, _ = straight
    trainer, info = _saved_trainer(ctx)
    cfg = trainer.cfg
    assert info["family"] == "modular_ae" and info["relations"] == RELATIONS
    assert trainer.prior_fitted and trainer.prior.factor_sizes == (3, 3, 3)
    saved = np.load(ctx.artifact_dir / "codes.npz")
    sample = np.random.default_rng(cfg.seed).integers(0, len(data["factors"]), 150)
    with torch.no_grad():
        codes = trainer.encode(torch.as_tensor(data["images"][sample]).float() / 255)[0]
    expected = np.concatenate([saved["codes"], saved["codes_test"]])
    np.testing.assert_allclose(codes.double().numpy(), expected, rtol=0, atol=1e-6)
    assert trainer.relate(codes, torch.zeros(150).long()).shape == codes.shape == (150, 6)


def _png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", head[16:24])  # width, height


def test_relations_picture_is_a_png_of_examples_by_relations(data, straight, tmp_path):
    ctx, _ = straight
    trainer, _ = _saved_trainer(ctx)
    paths = trainer.draw_pictures(data, tmp_path)
    assert paths == [tmp_path / "relations.png"] and paths[0].is_file()
    width, height = _png_size(paths[0])
    # 8 test images x (input, reconstruction, 6 relations), laid out as modular_pictures.relation_results
    rows, cols = 8, 2 + len(RELATIONS)
    width_in = (
        modular_pictures.RELATION_LABEL_IN
        + cols * (modular_pictures.RELATION_CELL_IN + modular_pictures.RELATION_GAP_IN)
        + modular_pictures.RELATION_GROUP_GAP_IN
        + modular_pictures.RELATION_PAD_IN
    )
    height_in = (
        modular_pictures.RELATION_HEADER_IN
        + rows * (modular_pictures.RELATION_CELL_IN + modular_pictures.RELATION_NOTE_IN)
        + modular_pictures.RELATION_PAD_IN
    )
    assert width / height == pytest.approx(width_in / height_in, rel=0.01)
    assert width > 500 and height > 500


def test_config_errors(data, tmp_path):
    assert ModularAEConfig().partition_size == 8 and ModularAEConfig().n_labels == 1000
    with pytest.raises(ValueError):
        ModularAEConfig(relations={"shape": "circular"})
    with pytest.raises(ValueError, match="unknown factors"):
        fit(ModularAE, _config(relations={"colour": "cyclic"}), data, LocalContext(tmp_path))
    with pytest.raises(ValueError, match="not a multiple"):
        fit(ModularAE, _config(latent_dim=7), data, LocalContext(tmp_path / "b"))


def test_relation_kinds_serve_several_views_and_refuse_typos(data):
    # scale is nuisance in this view: its kind is ignored; posX_bin saturates, the rest wrap
    cfg = _config(relation_kinds={"scale": "saturating", "scale_bin": "saturating",
                                  "posX_bin": "saturating"})  # fmt: skip
    trainer = ModularAE(cfg, 1)
    trainer._build(data["factor_names"], data["factor_sizes"])
    kinds = {r.name: r.kind for r in trainer.relations}
    assert [r.name for r in trainer.relations] == RELATIONS
    assert kinds["posX_bin+1"] == kinds["posX_bin-1"] == "saturating"
    assert kinds["shape+1"] == kinds["posY_bin-1"] == "cyclic"
    with pytest.raises(ValueError, match=r"relation_kinds: \['sclae'\] name no factor of dsprites"):
        ModularAE(_config(relation_kinds={"sclae": "saturating"}), 1).setup(data, None)


def test_cells_are_judged_by_code_and_by_decoded_image():
    # one row, four cells: code wrong (red); code wrong only as its source's was (orange);
    # code right but image shows other values (purple); code right and image blank (purple)
    ok = np.array([[False, False, True, True]])
    frames = modular_pictures.judge_cells(
        truth_ok=ok,
        code_ok=np.array([[False, True, True, True]]),
        image_ok=np.array([[True, True, False, True]]),
        flat=np.array([[False, False, False, True]]),
        got=np.array([[[1, 2], [3, 4], [0, 0], [0, 0]]]),
        shows=np.array([[[0, 0], [0, 0], [5, 6], [0, 0]]]),
    )
    w, i, d = modular_pictures.WRONG, modular_pictures.INHERITED, modular_pictures.DRAWN
    assert frames.kinds.tolist() == [[w, i, d, d]]
    assert frames.notes == [["got 1 2", "got 3 4", "shows 5 6", "blank"]]
    right = modular_pictures.judge_cells(
        truth_ok=np.ones((1, 1), bool), code_ok=np.ones((1, 1), bool),
        image_ok=np.ones((1, 1), bool), flat=np.zeros((1, 1), bool),
        got=np.zeros((1, 1, 2)), shows=np.zeros((1, 1, 2)),
    )  # fmt: skip
    assert right.kinds.tolist() == [[""]] and right.notes == [[""]]


def test_flat_images_are_those_with_no_contrast():
    images = np.zeros((3, 1, 4, 4))
    images[1] += 0.9  # one bright tone: still nothing drawn
    images[2, 0, 1, 1] = 0.5  # a faint sprite on black
    assert modular_pictures.flat_images(images).tolist() == [True, True, False]
