"""Devices, mixed precision and torch.compile in the shared loop, checked on the CPU; the CUDA-only
checks skip cleanly where no GPU is visible. The tiny view and config are test_contract's."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import pytest
import torch

from trainables import DatasetConfig, LocalContext, get_family, load_model
from trainables.core.loop import fit
from trainables.core.view import resolve_device
from trainables.families.vae import VAE, VAEConfig

TINY_VIEW = DatasetConfig(
    subset={"scale": [0, 5], "orientation": 0, "posX": "0:32:8", "posY": "0:32:8"}
)  # 96 images: 72 train rows, 9 steps an epoch at batch 8
NO_CUDA = not torch.cuda.is_available()
cuda_only = pytest.mark.skipif(NO_CUDA, reason="needs a CUDA device")

# bf16 keeps 8 significant bits (unit roundoff 2**-9, about 2e-3); the losses are means over many
# pixels, so rounding averages out: 4 steps stay well inside one unit roundoff (measured 1.4e-5).
BF16_RTOL = 2e-3
# Inductor fuses and reorders fp32 arithmetic: differences of a few fp32 ulps (measured 4.8e-8).
COMPILE_RTOL = 1e-6


def _config(**overrides) -> VAEConfig:
    params = dict(
        steps=4, report_every=2, batch_size=8, lr=1e-3, latent_dim=4, metrics=["mig"],
        metric_train_points=120, metric_test_points=60, pictures=False, umap_points=60,
    )  # fmt: skip
    return VAEConfig(**{**params, **overrides})


@pytest.fixture(scope="module")
def data():
    return get_family("vae").prepare_data(TINY_VIEW, [_config()])


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


class _Recording(VAE):
    """A VAE that keeps the trainers ``fit`` builds, so a test can look at them afterwards."""

    built: ClassVar[list[VAE]] = []

    def setup(self, data, images):
        super().setup(data, images)
        _Recording.built.append(self)


class _Stepped(_Recording):
    """The VAE's step written with ``Trainer.backward_step`` (what fp16 loss scaling needs)."""

    def train_step(self, batches, phase, step):
        loss, terms = self.loss_terms(self.batch(batches[0]), step)
        self.backward_step(loss, self.optimizers["adam"])
        return {"loss": loss.item(), **{k: v.item() for k, v in terms.items()}}


class _ScaledOnCPU(_Stepped):
    """Loss scaling forced on, on the CPU: the GradScaler path without a GPU. Growth at every
    step makes the scale a step counter (2**10 * 2**steps), so a lost scaler state shows."""

    def setup(self, data, images):
        super().setup(data, images)
        self.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=1)


class _UnscaledStepOnCPU(_Recording):
    """Loss scaling forced on, but a step written by hand (``optimizer.step()``), as a family
    that bypasses ``Trainer.backward_step`` would."""

    def setup(self, data, images):
        super().setup(data, images)
        self.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)

    def train_step(self, batches, phase, step):
        loss, terms = self.loss_terms(self.batch(batches[0]), step)
        optimizer = self.optimizers["adam"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.item(), **{k: v.item() for k, v in terms.items()}}


def _fit(cls, cfg, data, directory):
    _Recording.built.clear()
    ctx = LocalContext(directory)
    final = fit(cls, cfg, data, ctx)
    (trainer,) = _Recording.built
    return ctx, final, trainer


def _values(result: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in result.items() if not k.startswith("metric_seconds_")}


def _curve(ctx: LocalContext) -> list[float]:
    """Train and validation losses of the reports during training (not the final result)."""
    return [r[k] for r in ctx.reports[:-1] for k in ("train/loss", "val/reconstruction")]


def _assert_scored_codes_are_the_saved_models(cfg, data, directory):
    model = load_model(directory / "artifacts")  # the test's VAE subclass, by its dotted path
    saved = np.load(directory / "artifacts" / "codes.npz")
    n = cfg.metric_train_points + cfg.metric_test_points
    sample = np.random.default_rng(cfg.seed).integers(0, len(data["factors"]), n)
    codes = model.encode(data["images"][sample])
    assert np.array_equal(codes, np.concatenate([saved["codes"], saved["codes_test"]]))


def test_bf16_losses_are_finite_and_close_to_fp32(data, tmp_path):
    fp32, _, _ = _fit(_Recording, _config(), data, tmp_path / "fp32")
    cfg = _config(precision="bf16")
    bf16, _, _ = _fit(_Recording, cfg, data, tmp_path / "bf16")
    assert all(math.isfinite(v) for v in _curve(bf16))
    assert _curve(bf16) != _curve(fp32)  # autocast did run in bf16
    np.testing.assert_allclose(_curve(bf16), _curve(fp32), rtol=BF16_RTOL)
    # Evaluation encodes in fp32: the reloaded (fp32, eager) model gives the scored codes exactly.
    _assert_scored_codes_are_the_saved_models(cfg, data, tmp_path / "bf16")


def test_compile_matches_eager_and_the_saved_model_reloads(data, tmp_path):
    eager, _, _ = _fit(_Recording, _config(), data, tmp_path / "eager")
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    cfg = _config(compile=True)
    compiled, _, trainer = _fit(_Recording, cfg, data, tmp_path / "compiled")
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > graphs  # it did compile
    np.testing.assert_allclose(_curve(compiled), _curve(eager), rtol=COMPILE_RTOL)
    # Checkpoints and saved weights keep the plain keys; evaluation ran on the eager modules.
    checkpoint = torch.load(tmp_path / "compiled" / "checkpoint.pt", weights_only=True)
    plain = set(VAE(cfg, 1).modules.state_dict())
    assert set(checkpoint["trainer"]["modules"]) == plain
    assert not any("forward" in vars(m) for m in trainer.modules.modules())
    _assert_scored_codes_are_the_saved_models(cfg, data, tmp_path / "compiled")


def test_fp16_is_refused_on_the_cpu():
    with pytest.raises(ValueError, match="fp16 needs a CUDA device.*use bf16"):
        _config(precision="fp16")
    assert _config(precision="fp16", device="cuda").precision == "fp16"  # refused on CPU only
    assert _config(precision="bf16").precision == "bf16"


@pytest.mark.skipif(not NO_CUDA, reason="auto finds a GPU here")
def test_fp16_with_device_auto_is_refused_at_the_start_without_a_gpu(data, tmp_path):
    ctx = LocalContext(tmp_path)
    with pytest.raises(ValueError, match="fp16 needs a CUDA device.*device 'auto' is cpu"):
        fit(VAE, _config(precision="fp16", device="auto"), data, ctx)
    assert ctx.reports == []  # refused before any training


@pytest.mark.skipif(not NO_CUDA, reason="auto finds a GPU here")
def test_device_auto_resolves_to_the_cpu_here(data, tmp_path):
    assert resolve_device("auto") == torch.device("cpu")
    _, _, trainer = _fit(_Recording, _config(device="auto"), data, tmp_path)
    assert trainer.device == torch.device("cpu")
    assert trainer.images.device.type == "cpu" and trainer.images.dtype == torch.uint8


def test_backward_step_is_the_plain_step_at_fp32(data, tmp_path):
    plain, plain_final, _ = _fit(_Recording, _config(), data, tmp_path / "plain")
    stepped, stepped_final, trainer = _fit(_Stepped, _config(), data, tmp_path / "stepped")
    assert not trainer.scaler.is_enabled()
    assert stepped.reports[:-1] == plain.reports[:-1]  # the same numbers, to the bit
    assert _values(stepped_final) == _values(plain_final)
    checkpoint = torch.load(tmp_path / "stepped" / "checkpoint.pt", weights_only=True)
    assert "scaler" not in checkpoint["trainer"]  # fp32 checkpoints keep their old layout


def test_grad_scaler_state_is_checkpointed_and_resume_is_exact(data, tmp_path, killed_after):
    cfg = _config()
    plain, _, _ = _fit(_Recording, cfg, data, tmp_path / "plain")
    straight, final, trainer = _fit(_ScaledOnCPU, cfg, data, tmp_path / "straight")
    assert trainer.scaler.get_scale() == 2.0**14  # grew at each of the 4 steps: none skipped
    # Power-of-two scaling is exact in fp32: unscaled before the step, the numbers are fp32's.
    assert straight.reports[:-1] == plain.reports[:-1]
    checkpoint = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    assert checkpoint["trainer"]["scaler"]["scale"] == 2.0**14

    with pytest.raises(killed_after.Killed):
        _Recording.built.clear()
        fit(_ScaledOnCPU, cfg, data, killed_after(tmp_path / "resumed", 1))
    resumed, resumed_final, resumed_trainer = _fit(_ScaledOnCPU, cfg, data, tmp_path / "resumed")
    assert resumed.steps == [4, 4]
    assert resumed.reports[0] == straight.reports[1]
    assert resumed_trainer.scaler.get_scale() == 2.0**14  # restored at 2**12, then 2 more steps
    assert _values(resumed_final) == _values(final)


def test_an_optimiser_stepped_outside_backward_step_is_refused_under_loss_scaling(data, tmp_path):
    with pytest.raises(RuntimeError, match="steps optimiser 'adam' itself"):
        fit(_UnscaledStepOnCPU, _config(), data, LocalContext(tmp_path))


@cuda_only
def test_device_auto_trains_on_the_gpu_with_uint8_images_there(data, tmp_path):
    ctx, final, trainer = _fit(_Recording, _config(device="auto"), data, tmp_path)
    assert trainer.device.type == "cuda"
    assert trainer.images.device.type == "cuda" and trainer.images.dtype == torch.uint8
    assert all(math.isfinite(v) for v in _curve(ctx))
    assert math.isfinite(final["mig"])


@cuda_only
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_the_gpu(precision, data, tmp_path):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    cfg = _config(device="auto", precision=precision)
    ctx, _, trainer = _fit(_Stepped, cfg, data, tmp_path)
    assert all(math.isfinite(v) for v in _curve(ctx))
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert trainer.scaler.is_enabled() == (precision == "fp16")
    assert ("scaler" in checkpoint["trainer"]) == (precision == "fp16")
    codes = load_model(tmp_path / "artifacts").encode(data["images"][:16])
    assert np.isfinite(codes).all()


class _TwiceScaledOnCPU(_ScaledOnCPU):
    """Two updates of one optimiser in a step, as modular_ae's relational steps do."""

    def train_step(self, batches, phase, step):
        for _ in range(2):
            loss, terms = self.loss_terms(self.batch(batches[0]), step)
            self.backward_step(loss, self.optimizers["adam"])
        return {"loss": loss.item(), **{k: v.item() for k, v in terms.items()}}


def test_an_optimiser_stepped_twice_in_a_step_works_under_loss_scaling(data, tmp_path):
    ctx, final, trainer = _fit(_TwiceScaledOnCPU, _config(), data, tmp_path)
    # GradScaler refuses a second step() before update(): backward_step updates in between
    assert all(math.isfinite(v) for v in _curve(ctx)) and math.isfinite(final["mig"])
    assert trainer.scaler.get_scale() == 2.0**10 * 2.0 ** (2 * 4)  # grew at each of 8 updates
