"""Hard-parameter-sharing multi-task regression (the multi-task vs disentanglement paper, Sec. 3-4.1).

A shared conv encoder maps an image to a code; task heads regress random-MLP targets of the true
factors. Variants:
  multi_head   one head per task on the shared code (sum of per-task MSE);
  one_head     one head with n_tasks outputs;
  single_task  one head trained on task ``task_index`` alone;
  random       the encoder stays at its random initialisation; only the heads train (a baseline
               whose representation is still scored).
After training, the encoder's codes go through the shared evaluation path (``trainables.core.evaluation``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from ..core.config import DatasetConfig, TrainConfig
from ..core.outputs import Output
from ..core.trainer import Trainer
from ..core.view import prepare_view
from ..data.tasks import task_targets
from ..nets import ConvEncoder, MLPHead


class TaskConfig(TrainConfig):
    """The random-MLP tasks a model regresses (shared by ``multitask`` and ``task_probe``)."""

    n_tasks: int = Field(default=10, gt=0)
    """Tasks 0..n_tasks-1 of the random-MLP family; task i does not depend on n_tasks."""
    task_seed: int = 0
    task_mask: Literal["all", "grow", "independent", "random"] = "all"
    """Which factors each task sees (see ``trainables.data.tasks.task_mask``)."""
    task_mask_group: int = Field(default=2, ge=1)
    task_mask_p: float = Field(default=0.5, gt=0, le=1)
    head_hidden: tuple[int, ...] = (300, 300, 300)
    standardize_targets: bool = True
    """Train on and report RMSE of targets scaled to unit train variance (the paper used raw units)."""


class MultiTaskConfig(TaskConfig):
    """Defaults follow the paper's Appendix C (Adam 1e-3, batch 256); epochs are shortened."""

    variant: Literal["multi_head", "one_head", "single_task", "random"] = "multi_head"
    latent_dim: int = Field(default=10, gt=0)
    task_index: int = Field(default=0, ge=0)
    """The task a ``single_task`` model learns. A study that does not set it trains one
    ``single_task`` model per task (``MultiTask.expand``)."""
    epochs: int = Field(default=20, ge=0)
    batch_size: int = Field(default=256, gt=0)
    lr: float = Field(default=1e-3, gt=0, allow_inf_nan=False)
    encoder: Literal["conv6", "conv4"] = "conv6"
    latent_activation: Literal["none", "tanh"] = "none"

    @model_validator(mode="after")
    def _task_index_in_range(self) -> MultiTaskConfig:
        if self.task_index >= self.n_tasks:
            raise ValueError(f"task_index={self.task_index} must be < n_tasks={self.n_tasks}")
        return self


def _targets_key(cfg: TaskConfig) -> tuple:
    """Trials that share this key share targets (the first n_tasks columns)."""
    return (cfg.task_seed, cfg.task_mask, cfg.task_mask_group, cfg.task_mask_p)


def _task_columns(cfg: TaskConfig) -> list[int]:
    if getattr(cfg, "variant", None) == "single_task":
        return [cfg.task_index]
    return list(range(cfg.n_tasks))


def prepare_task_data(dataset: DatasetConfig, configs: Sequence[TaskConfig]) -> dict[str, Any]:
    """Images, factors and targets for every trial of a study, computed once on the driver.

    Targets hold max(n_tasks) columns per task_seed; a trial takes its first n_tasks.
    """
    view = prepare_view(dataset)
    n_tasks: dict[tuple, int] = {}
    for cfg in configs:
        n_tasks[_targets_key(cfg)] = max(n_tasks.get(_targets_key(cfg), 0), cfg.n_tasks)
    view["targets"] = {
        key: task_targets(
            view["inputs"], n_tasks=n, task_seed=key[0], mask=key[1],
            mask_group=key[2], mask_p=key[3],
        )  # fmt: skip
        for key, n in n_tasks.items()
    }
    return view


# What both task-head families report (``Trainer.outputs``): the test RMSE and its curves.
TASK_OUTPUTS = (
    Output("rmse", False, (0.0, None), "test RMSE: root of the mean over tasks of the squared "
           "per-task RMSE (training units)", primary=True),
    Output("rmse_task_*", False, (0.0, None), "test RMSE of one task", detail=True),
    Output("val/rmse", False, (0.0, None), "validation RMSE at each report", curve=True),
    Output("val/loss", False, (0.0, None), "validation loss (sum of per-task MSE)", curve=True),
)  # fmt: skip


class TaskTargets:
    """A trial's task targets on the device (standardised on the train split when asked), and the
    per-task train standard deviations that turn a standardised RMSE back into raw units."""

    def __init__(self, cfg: TaskConfig, data: dict[str, Any], device: torch.device):
        self.columns = _task_columns(cfg)
        raw = data["targets"][_targets_key(cfg)]
        if raw.shape[1] < cfg.n_tasks:
            raise ValueError(f"prepared data has {raw.shape[1]} tasks, trial needs {cfg.n_tasks}")
        raw = raw[:, self.columns]
        train = data["train"]
        self.scale = np.ones(len(self.columns))
        if cfg.standardize_targets:
            mean, self.scale = raw[train].mean(axis=0), raw[train].std(axis=0) + 1e-12
            raw = (raw - mean) / self.scale
        self.values = torch.as_tensor(raw, dtype=torch.float32, device=device)

    def loss(self, predicted: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        """Sum over tasks of per-task MSE (the paper's Appendix C) on a batch of rows."""
        target = self.values[torch.as_tensor(rows, device=self.values.device)]
        return ((predicted - target) ** 2).mean(dim=0).sum()

    @staticmethod
    def validation(rmse: np.ndarray) -> dict[str, float]:
        """The learning-curve entries of per-task validation RMSEs."""
        return {"val/loss": float((rmse**2).sum()), "val/rmse": float(np.sqrt(np.mean(rmse**2)))}

    @torch.no_grad()
    def rmse(self, predict, inputs, index: np.ndarray, batch: int = 1024) -> np.ndarray:
        """Per-task RMSE of ``predict(inputs(rows))`` over ``index``, in training units."""
        if len(index) == 0:
            raise ValueError("cannot compute RMSE on an empty split")
        squared = torch.zeros(self.values.shape[1], dtype=torch.float64, device=self.values.device)
        for start in range(0, len(index), batch):
            rows = index[start : start + batch]
            error = predict(inputs(rows)) - self.values[torch.as_tensor(rows)]
            squared += (error.double() ** 2).sum(dim=0)
        return torch.sqrt(squared / len(index)).cpu().numpy()


class TaskHeads:
    """What trainers with task heads share: the step, per-task RMSE and the validation summary.

    A subclass defines ``predict(inputs)`` and ``task_inputs(rows)`` (images for ``multitask``,
    frozen codes for ``task_probe``) and sets ``self.tasks`` (``TaskTargets``) in ``setup``.
    """

    def train_step(self, batches: list[np.ndarray], phase: str, step: int) -> dict[str, float]:
        (rows,) = batches
        loss = self.tasks.loss(self.predict(self.task_inputs(rows)), rows)
        optimizer = self.optimizers["adam"]
        self.backward_step(loss, optimizer)
        return {"loss": loss.item()}

    def task_rmse(self, index: np.ndarray) -> np.ndarray:
        """Per-task RMSE over ``index``: (tasks trained,)."""
        self.modules.eval()
        return self.tasks.rmse(self.predict, self.task_inputs, index)

    def validate(self, data: dict[str, Any]) -> dict[str, float]:
        return self.tasks.validation(self.task_rmse(data["val"]))


class MultiTask(TaskHeads, Trainer):
    name = "multitask"
    Config = MultiTaskConfig
    description = (
        "hard-parameter-sharing multi-task encoder (multi_head, one_head, single_task, random)"
    )
    tiny_config = {"latent_dim": 4, "n_tasks": 3}
    outputs = TASK_OUTPUTS

    @classmethod
    def build_modules(cls, cfg: MultiTaskConfig, in_channels: int) -> dict[str, nn.Module]:
        # DO NOT REORDER: encoder then heads, the order that fixes their initial weights.
        encoder = ConvEncoder(in_channels, cfg.latent_dim, cfg.encoder, cfg.latent_activation)
        n_heads, outputs = {
            "one_head": (1, cfg.n_tasks),
            "single_task": (1, 1),
        }.get(cfg.variant, (cfg.n_tasks, 1))
        heads = nn.ModuleList(
            [MLPHead(cfg.latent_dim, outputs, cfg.head_hidden) for _ in range(n_heads)]
        )
        return {"encoder": encoder, "heads": heads}

    @classmethod
    def prepare_data(
        cls, dataset: DatasetConfig, configs: Sequence[MultiTaskConfig]
    ) -> dict[str, Any]:
        return prepare_task_data(dataset, configs)

    @classmethod
    def expand(cls, params: dict[str, Any]) -> list[dict[str, Any]]:
        # The paper's single-task baseline is one model per task (Table 5 and Figures 3-4: mean,
        # max and min over them). A study pins one task by setting task_index (fixed or sweep).
        if params.get("variant") != "single_task" or "task_index" in params:
            return [{}]
        n_tasks = params.get("n_tasks", MultiTaskConfig.model_fields["n_tasks"].default)
        if not isinstance(n_tasks, int) or isinstance(n_tasks, bool) or n_tasks < 1:
            return [{}]  # validation names the bad n_tasks
        return [{"task_index": index} for index in range(n_tasks)]

    def setup(self, data: dict[str, Any], images: torch.Tensor) -> None:
        super().setup(data, images)
        self.tasks = TaskTargets(self.cfg, data, images.device)
        self.columns, self.targets = self.tasks.columns, self.tasks.values
        if self.cfg.variant == "random":
            self.modules["encoder"].requires_grad_(False)
        params = [p for p in self.modules.parameters() if p.requires_grad]
        self.optimizers["adam"] = torch.optim.Adam(params, lr=self.cfg.lr)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        codes = self.modules["encoder"](x)  # (B, latent_dim)
        return torch.cat([head(codes) for head in self.modules["heads"]], dim=1)  # (B, tasks)

    def task_inputs(self, rows: np.ndarray) -> torch.Tensor:
        return self.batch(rows)

    def test_metrics(self, data: dict[str, Any]) -> dict[str, float]:
        test_rmse = self.task_rmse(data["test"])
        final = {"rmse": float(np.sqrt(np.mean(test_rmse**2)))}
        final.update({f"rmse_task_{c}": float(r) for c, r in zip(self.columns, test_rmse, strict=True)})
        return final

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.modules["encoder"](x), None
