"""``family: external``: an encoder trained elsewhere scores exactly as the codes it computes.

Each way of bringing it (TorchScript, a state dict plus its class, a file of codes) is checked
against codes computed here, independently, by calling the same network on the same images.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from trainables import LocalContext, get_family, load_model
from trainables.errors import InputError
from trainables.metrics.scoring import load_arrays, score_arrays
from trainables.testing import TINY, TINY_VIEW

EXTERNAL = get_family("external")
SETTINGS = {k: v for k, v in TINY.items() if k not in ("steps", "report_every")}


class SmallEncoder(nn.Module):
    """A user's encoder: images in [0, 1] -> (mean, log-variance)."""

    def __init__(self, width: int = 5):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 3, 8, 8), nn.ReLU(), nn.Flatten())
        self.mean = nn.Linear(3 * 8 * 8, width)
        self.logvar = nn.Linear(3 * 8 * 8, width)

    def forward(self, x):
        h = self.body(x)
        return self.mean(h), self.logvar(h)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(3)
    return SmallEncoder().eval()


@pytest.fixture(scope="module")
def data():
    return EXTERNAL.prepare_data(TINY_VIEW, [])


@pytest.fixture(scope="module")
def files(net, data, tmp_path_factory):
    root = tmp_path_factory.mktemp("external")
    torch.jit.save(torch.jit.script(net), str(root / "scripted.pt"))
    torch.save(net.state_dict(), root / "weights.pt")
    with torch.no_grad():
        mean = net(torch.as_tensor(data["images"]).float() / 255.0)[0].double().numpy()
    # One code per row of the dataset, in its row order: only the view's rows matter here.
    codes = np.full((int(data["rows"].max()) + 1, mean.shape[1]), 7.0)
    codes[data["rows"]] = mean
    np.savez(root / "codes.npz", codes=codes)
    return root, mean


def _fit(tmp_path, data, **params):
    cfg = EXTERNAL.Config(**SETTINGS, **params)
    ctx = LocalContext(tmp_path)
    return EXTERNAL.fit(cfg, data, ctx), ctx


def _scored_codes(art):
    saved = np.load(art / "codes.npz")
    return np.concatenate([saved["codes"], saved["codes_test"]])


def _sample(data):
    n = SETTINGS["metric_train_points"] + SETTINGS["metric_test_points"]
    return np.random.default_rng(0).integers(0, len(data["factors"]), n)


def test_torchscript_encoder_scores_the_codes_its_network_computes(tmp_path, data, files):
    root, mean = files
    final, ctx = _fit(tmp_path, data, encoder=str(root / "scripted.pt"))
    assert ctx.steps == [0]  # nothing trains: one final report
    assert np.allclose(_scored_codes(tmp_path / "artifacts"), mean[_sample(data)], atol=1e-6)
    rescored = score_arrays(load_arrays(tmp_path / "artifacts" / "codes.npz"), n_jobs=1)
    assert rescored["mig"] == final["mig"] and 0.0 <= final["mig"] <= 1.0


def test_state_dict_with_class_path_equals_the_torchscript_file(tmp_path, data, files):
    root, _ = files
    scripted, _ = _fit(tmp_path / "a", data, encoder=str(root / "scripted.pt"))
    by_class, _ = _fit(
        tmp_path / "b", data, encoder=str(root / "weights.pt"),
        encoder_class=f"{__name__}:SmallEncoder", encoder_kwargs={"width": 5},
    )  # fmt: skip
    keys = ("mig", "dci_disentanglement", "dci_completeness", "dci_informativeness")
    assert {k: by_class[k] for k in keys} == {k: scripted[k] for k in keys}


def test_codes_file_is_read_by_dataset_row(tmp_path, data, files):
    root, mean = files
    final, _ = _fit(tmp_path, data, codes=str(root / "codes.npz"))
    # Rows outside the view hold 7.0: a lookup by the wrong row would score those.
    assert np.allclose(_scored_codes(tmp_path / "artifacts"), mean[_sample(data)], atol=1e-6)
    assert np.isfinite(final["mig"])


def test_mean_logvar_output_scores_the_sample_too(tmp_path, data, files):
    root, _ = files
    final, _ = _fit(tmp_path, data, encoder=str(root / "scripted.pt"), output="mean_logvar")
    assert np.isfinite(final["mig_sampled"]) and final["mig_sampled"] != final["mig"]


def test_a_probe_sits_on_an_external_codes_file(tmp_path, data, files):
    root, mean = files
    _fit(tmp_path / "ext", data, codes=str(root / "codes.npz"))
    assert load_model(tmp_path / "ext" / "artifacts").family == "external"
    probe = get_family("task_probe")
    cfg = probe.Config(**TINY, n_tasks=2, upstream=str(tmp_path / "ext" / "artifacts"))
    probe_data = probe.prepare_data(TINY_VIEW, [cfg])
    trainer = probe.trainer(cfg, 1)
    trainer.setup(probe_data, torch.as_tensor(probe_data["images"]))
    assert np.allclose(trainer.codes.numpy(), mean, atol=1e-6)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "exactly one of encoder"),
        ({"encoder": "nowhere.pt"}, "'nowhere.pt' not found"),
        ({"encoder": "WEIGHTS"}, "not a TorchScript file"),
        ({"encoder": "SCRIPTED", "codes": "CODES"}, "exactly one of encoder"),
        ({"codes": "CODES", "output": "mean_logvar"}, "leave output at mean"),
        ({"encoder": "SCRIPTED", "steps": 10}, "does not train"),
        ({"encoder": "SCRIPTED", "epochs": 3}, "epochs"),
    ],
)
def test_bad_configs_are_refused(files, params, message):
    root, _ = files
    names = {"WEIGHTS": "weights.pt", "SCRIPTED": "scripted.pt", "CODES": "codes.npz"}
    params = {k: str(root / names[v]) if v in names else v for k, v in params.items()}
    with pytest.raises(ValueError, match=message):
        EXTERNAL.Config(**params)


def test_wrong_class_or_codes_are_one_line(tmp_path, data, files):
    root, _ = files
    cfg = EXTERNAL.Config(encoder=str(root / "weights.pt"), encoder_class="torch.nn:Linear",
                          encoder_kwargs={"in_features": 2, "out_features": 2})  # fmt: skip
    with pytest.raises(InputError, match="does not fit torch.nn:Linear") as err:
        EXTERNAL.trainer(cfg, 1)
    assert "\n" not in str(err.value)
    cfg = EXTERNAL.Config(encoder=str(root / "weights.pt"), encoder_class="numpy:ndarray")
    with pytest.raises(InputError, match="not a torch.nn.Module class"):
        EXTERNAL.trainer(cfg, 1)
    np.savez(tmp_path / "short.npz", codes=np.zeros((5, 2)))
    np.savez(tmp_path / "other.npz", z=np.zeros((5, 2)))
    for name, message in (("short.npz", "has 5 rows"), ("other.npz", "no array 'codes'")):
        with pytest.raises(InputError, match=message):
            _fit(tmp_path / f"run_{name}", data, codes=str(tmp_path / name))
