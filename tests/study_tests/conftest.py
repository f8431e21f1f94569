from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from trainables import get_family

# The benchmarks' shared helpers (local_servers: a real mlflow server, a real PostgreSQL) and the
# benchmarks some tests run at a small size, imported by name as the benchmark scripts do.
BENCHMARKS = str(Path(__file__).resolve().parents[2] / "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.append(BENCHMARKS)

TINY_SUBSET = {"orientation": 0, "posX": "0:32:8", "posY": "0:32:8", "scale": [0, 5]}  # 96 images


@pytest.fixture
def external_study(tmp_path):
    """Writes the YAML of a small, fast study (``family: external`` on a random TorchScript
    encoder: no training, one report per trial) under ``tmp_path``; returns its path. Keyword
    arguments go under ``fixed``; ``seeds`` and the top-level ``extra`` keys as given."""
    encoder = get_family("external").trainer.tiny_inputs(tmp_path / "inputs")["encoder"]

    def write(name: str, seeds=(0,), extra=None, **fixed) -> Path:
        spec = {
            "name": name,
            "family": "external",
            "dataset": {"name": "dsprites", "subset": TINY_SUBSET},
            "fixed": {"encoder": encoder, "metric_train_points": 200,
                      "metric_test_points": 100, "umap_points": 60, **fixed},
            "metrics": ["mig"],
            "sweep": {"seed": list(seeds)},
            "resources": {"cpu": 1, "gpu": 0},
            **(extra or {}),
        }  # fmt: skip
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path

    return write
