"""Bad input through the real CLI: exit 2, one ``error: ...`` line naming the culprit, nothing written
(no MLflow store, no Ray results) in the working directory."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).parents[2]
QUICKSTART = REPO / "configs" / "quickstart.yaml"


def _study(tmp_path: Path, *args: str) -> str:
    """Run ``python -m study.cli ARGS`` in tmp_path; check the refusal and return its one line."""
    result = subprocess.run(
        [sys.executable, "-m", "study.cli", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "mlruns.db").exists(), "an MLflow store was written"
    assert not (tmp_path / "ray_results").exists(), "Ray results were written"
    return lines[0]


def _run(tmp_path: Path, *args: str) -> str:
    return _study(tmp_path, "run", str(QUICKSTART), *args)


def test_a_binary_config(tmp_path):
    (tmp_path / "x.yaml").write_bytes(bytes(range(256)) * 4)
    assert "not a text file" in _study(tmp_path, "run", "x.yaml")


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("fixed.epochs=[1,", "fixed.epochs"),
        ("fixed.device=cuda", "resources.gpu"),  # quickstart asks for no GPU
        ("fixed.lr=.inf", "fixed.lr"),
        ("name=..", ": name: "),
        ("fixed.metrics=[sap]", "metrics"),  # quickstart lists metrics at the top level too
        ("dataset.split=[0.9, 0.9, 0.9]", "dataset.split"),
    ],
)
def test_a_bad_override(override, named, tmp_path):
    line = _run(tmp_path, "--set", override)
    assert named in line, line


def test_negative_num_cpus(tmp_path):
    assert "--num-cpus" in _run(tmp_path, "--num-cpus", "-1")


@pytest.mark.parametrize("where", ["under_a_file", "procfs"])
def test_storage_that_cannot_be_written(where, tmp_path):
    # Paths no user can create, root included (mode bits would not stop root).
    if where == "under_a_file":
        blocker = tmp_path / "a_file"
        blocker.write_text("not a folder")
        storage = blocker / "results"
    else:
        storage = Path("/proc/nope/results")  # procfs refuses new folders, even to root
    line = _run(tmp_path, "--storage", str(storage))
    assert "--storage" in line and "not a writable folder" in line, line


def test_a_huge_sweep_needs_yes(tmp_path):
    seeds = ", ".join(str(i) for i in range(1000))
    lrs = ", ".join(f"{(i + 1) * 1e-5:g}" for i in range(1000))
    started = time.perf_counter()
    line = _run(tmp_path, "--set", f"sweep={{seed: [{seeds}], lr: [{lrs}]}}")
    seconds = time.perf_counter() - started
    assert "1000000 trials" in line and "--yes" in line, line
    assert seconds < 60, f"refusing a 1,000,000-trial sweep took {seconds:.0f}s"


def test_an_unreachable_tracking_server(tmp_path):
    line = _run(tmp_path, "--tracking-uri", "http://127.0.0.1:9")  # the discard port: no server
    assert "not reachable" in line and "127.0.0.1:9" in line, line


def test_resume_of_a_study_never_launched(tmp_path):
    line = _study(tmp_path, "resume", "nosuchstudy")
    assert "no launch" in line and "nosuchstudy" in line, line
