"""Multi-task heads on a frozen representation (the multi-task paper, Section 4.3, Table 1).

Does a disentangled representation help multi-task learning? The codes of a frozen auto-encoder
(or the true factors: the ``ground_truth`` baseline) feed one head per random-MLP task (Table 3:
dense 300-300-300); the sum of per-task squared errors trains them. The paper: 30 epochs, batch 64,
Adam lr 1e-4, three seeds.

Reported on the test split: ``rmse`` and ``rmse_task_<i>`` in the units trained on (standardised by
default: each target scaled to unit variance on the train split), and ``rmse_raw`` /
``rmse_raw_task_<i>`` in the targets' raw units, the paper's (its Table 1 values, ~60-200, depend on
its own targets' scale: compare rankings across sources, not the numbers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn

from ..core.config import DatasetConfig
from ..core.outputs import Output
from ..nets import MLPHead
from ._probe import GROUND_TRUTH, UPSTREAM_DOC, ProbeTrainer
from .multitask import TASK_OUTPUTS, TaskConfig, TaskHeads, TaskTargets, prepare_task_data


class TaskProbeConfig(TaskConfig):
    upstream: str = Field(default=GROUND_TRUTH, description=UPSTREAM_DOC)
    epochs: int = Field(default=30, ge=0)
    batch_size: int = Field(default=64, gt=0)
    lr: float = Field(default=1e-4, gt=0, allow_inf_nan=False)


class TaskProbe(TaskHeads, ProbeTrainer):
    name = "task_probe"
    Config = TaskProbeConfig
    description = "multi-task heads on a frozen upstream representation or the true factors (4.3)"
    tiny_config = {"n_tasks": 3}
    outputs = (
        *TASK_OUTPUTS[:2],
        Output("rmse_raw", False, (0.0, None), "test RMSE in the targets' own units"),
        Output("rmse_raw_task_*", False, (0.0, None), "one task's RMSE in its units", detail=True),
        *TASK_OUTPUTS[2:],
    )

    @classmethod
    def prepare_data(
        cls, dataset: DatasetConfig, configs: Sequence[TaskProbeConfig]
    ) -> dict[str, Any]:
        return prepare_task_data(dataset, configs)

    def build_probe(self, code_dim: int) -> dict[str, nn.Module]:
        cfg = self.cfg
        return {
            "heads": nn.ModuleList(
                MLPHead(code_dim, 1, cfg.head_hidden) for _ in range(cfg.n_tasks)
            )
        }

    def setup(self, data: dict[str, Any], images: torch.Tensor) -> None:
        super().setup(data, images)
        self.tasks = TaskTargets(self.cfg, data, self.device)
        self.optimizers["adam"] = torch.optim.Adam(
            self.modules["heads"].parameters(), lr=self.cfg.lr
        )

    def predict(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.cat([head(codes) for head in self.modules["heads"]], dim=1)  # (B, tasks)

    def task_inputs(self, rows: np.ndarray) -> torch.Tensor:
        return self.codes_of(rows)

    def test_metrics(self, data: dict[str, Any]) -> dict[str, float]:
        rmse = self.task_rmse(data["test"])
        raw = rmse * self.tasks.scale
        final = {
            "rmse": float(np.sqrt(np.mean(rmse**2))),
            "rmse_raw": float(np.sqrt(np.mean(raw**2))),
        }
        for column, value, value_raw in zip(self.tasks.columns, rmse, raw, strict=True):
            final[f"rmse_task_{column}"] = float(value)
            final[f"rmse_raw_task_{column}"] = float(value_raw)
        return final
