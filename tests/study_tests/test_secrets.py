"""A secret in the driver's environment reaches no file a local study writes: not its folders, the
tracking store, the artifacts, nor Ray's session logs (Tune forwards ``AWS_*`` variables into each
trial's runtime env, which Ray logs in plain text, unless ``study`` stops it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

def _files_holding(text: bytes, *roots: Path) -> list[str]:
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink() and text in path.read_bytes():
                found.append(str(path))
    return found


def test_a_planted_aws_secret_is_written_nowhere(tmp_path, external_study):
    external_study("secrets")
    secret = f"planted-{uuid.uuid4().hex}"
    # Ray's session folder of this study only (short: Ray's socket paths must stay under 107 chars).
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    env = {**os.environ, "AWS_SECRET_ACCESS_KEY": secret, "AWS_SESSION_TOKEN": secret,
           "RAY_TMPDIR": str(ray_tmp)}  # fmt: skip
    try:
        result = subprocess.run(
            [sys.executable, "-m", "study.cli", "run", "secrets.yaml", "--num-cpus", "1"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        logs = list(ray_tmp.rglob("runtime_env_agent.log"))
        assert logs, "Ray's session logs are not where this test looks"
        assert _files_holding(secret.encode(), tmp_path, ray_tmp) == []
        assert secret not in result.stdout + result.stderr
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
