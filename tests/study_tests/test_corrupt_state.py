"""Corrupt state of a real launch is one line, exit 2, and nothing written: a trial journal cut in
the middle or replaced by other JSON (``status``, ``sync``), a checkpoint empty, cut, or replaced
by another file (``resume``). Each case corrupts its own copy of one finished launch."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SMOKE = Path(__file__).parents[2] / "configs" / "smoke" / "ae.yaml"
SHRINK = [
    "dataset.subset={scale: [0, 5], orientation: 0, posX: '0:32:8', posY: '0:32:8'}",
    "fixed.steps=20", "fixed.report_every=10", "fixed.batch_size=16", "fixed.pictures=false",
    "fixed.metric_train_points=200", "fixed.metric_test_points=100",
    "sweep={seed: [0]}", "name=corrupt",
]  # fmt: skip


@pytest.fixture(scope="module")
def launch(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("launch")
    args = [sys.executable, "-m", "study.cli", "run", str(SMOKE), "--num-cpus", "2"]
    for item in SHRINK:
        args += ["--set", item]
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return cwd


def _copy(launch: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    cwd = tmp_path / "copy"
    shutil.copytree(launch, cwd)
    (trial,) = [p for p in (cwd / "ray_results").glob("corrupt_*/*") if p.is_dir()
                and (p / "tracking_journal.jsonl").exists()]  # fmt: skip
    checkpoints = sorted(trial.glob("checkpoint_*/state.pt"))
    return cwd, trial / "tracking_journal.jsonl", checkpoints[-1]


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def _one_line_exit_2(cwd: Path, named: Path, *args: str) -> None:
    before = _files(cwd)
    result = subprocess.run(
        [sys.executable, "-m", "study.cli", *args, "--tracking-uri",
         f"sqlite:///{cwd / 'mlruns.db'}"],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stdout[-1500:] + result.stderr[-1500:]
    assert len(lines) == 1 and str(named) in lines[0] and "Traceback" not in result.stdout
    assert _files(cwd) == before  # nothing created, nothing changed


def _cut_in_the_middle(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = lines[1][: len(lines[1]) // 2] + "\n"
    path.write_text("".join(lines))


@pytest.mark.parametrize(
    "corrupt",
    [_cut_in_the_middle, lambda p: p.write_text('[1, 2]\n{"not": "a record"}\n')],
    ids=["cut", "foreign"],
)
def test_a_corrupt_journal_is_one_line_for_status_and_sync(launch, tmp_path, corrupt):
    cwd, journal, _ = _copy(launch, tmp_path)
    corrupt(journal)
    _one_line_exit_2(cwd, journal, "sync", "corrupt")
    status = subprocess.run([sys.executable, "-m", "study.cli", "status", "corrupt"],
                            cwd=cwd, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert status.returncode == 2 and str(journal) in status.stderr
    assert len(status.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda p: p.write_bytes(b""),
        lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
        lambda p: p.write_text("not a checkpoint"),
    ],
    ids=["empty", "cut", "foreign"],
)
def test_a_corrupt_checkpoint_is_one_line_for_resume(launch, tmp_path, corrupt):
    cwd, _, checkpoint = _copy(launch, tmp_path)
    corrupt(checkpoint)
    _one_line_exit_2(cwd, checkpoint, "resume", "corrupt")
