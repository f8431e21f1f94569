"""benchmarks/train_throughput.py at a small size: its bare PyTorch loops do the families' work (the
same losses and weight updates as our loop's step), and the table row carries a ratio."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from trainables import DatasetConfig

# The benchmark, imported by name as the benchmark scripts are (tests/study_tests/conftest.py;
# under --import-mode=importlib a test module cannot import a conftest).
BENCHMARKS = str(Path(__file__).resolve().parents[2] / "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.append(BENCHMARKS)

import train_throughput  # noqa: E402 (benchmarks/, above)

# 3 shapes x 2 scales x 4 x 4 positions = 96 images, 72 of them in the train split.
TINY_VIEW = DatasetConfig(subset={"orientation": 0, "posX": "0:32:8", "posY": "0:32:8", "scale": [0, 5]})  # fmt: skip
ARGS = ["--warmup", "1", "--rounds", "1", "--batch-size", "16"]


@pytest.fixture(autouse=True)
def _one_thread():
    """As the benchmark's ``--threads 1``: tiny steps on a shared machine, no oversubscription."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# vae: sampling; beta_tc_vae: sampling and the minibatch TC estimate; multitask: targets.
@pytest.mark.parametrize("name", ["vae", "beta_tc_vae", "multitask"])
def test_bare_loop_matches_the_family_and_the_row_has_a_ratio(name):
    args = train_throughput.parser().parse_args(["--steps", "2", *ARGS])
    row = train_throughput.bench(name, args, torch.device("cpu"), view=TINY_VIEW)
    assert row.loss_match <= train_throughput.MATCH_TOL, row
    assert row.step_match <= train_throughput.STEP_TOL, row
    assert row.matches and row.no_bare is None and row.not_timed is None
    assert math.isfinite(row.ratio) and row.ratio > 0
    line = train_throughput.format_row(row)
    assert line.startswith(name) and f"{row.ratio:.3f}" in line and "MISMATCH" not in line


def test_a_wrong_bare_loss_is_caught(monkeypatch):
    # At initialisation the KL is tiny next to the reconstruction, so the losses alone barely
    # see it doubled: the weight updates do.
    def doubled_kl(cfg):
        return lambda mean, logvar, z, kl, index: 2 * kl

    monkeypatch.setitem(train_throughput.BARE, "vae", train_throughput._gaussian(doubled_kl))
    args = train_throughput.parser().parse_args(["--steps", "1", *ARGS])
    row = train_throughput.bench("vae", args, torch.device("cpu"), view=TINY_VIEW)
    assert not row.matches and "MISMATCH" in train_throughput.format_row(row)


def test_a_family_that_trains_nothing_says_why():
    args = train_throughput.parser().parse_args(["--steps", "2"])
    row = train_throughput.bench("external", args, torch.device("cpu"), view=TINY_VIEW)
    assert "nothing trains" in train_throughput.format_row(row)
