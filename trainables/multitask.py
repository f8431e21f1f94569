"""Hard-parameter-sharing multi-task regression (the multi-task vs disentanglement paper, Sec. 3-4.1).

A shared conv encoder maps an image to a code; task heads regress random-MLP targets of the true
factors. Variants:
  multi_head   one head per task on the shared code (sum of per-task MSE);
  one_head     one head with n_tasks outputs;
  single_task  one head trained on task ``task_index`` alone;
  random       the encoder stays at its random initialisation; only the heads train (a baseline
               whose representation is still scored).
After training the encoder's codes on a sample of the view are scored with the registered metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

from ._config import DatasetConfig
from ._context import TrialContext
from ._eval import as_tensor, encode, prepare_view, resolve_device, score
from .data.tasks import task_targets
from .metrics import GridCodes, get_metric
from .nets import ConvEncoder, MLPHead


class MultiTaskConfig(BaseModel):
    """Defaults follow the paper's Appendix C (Adam 1e-3, batch 256); epochs are shortened."""

    model_config = ConfigDict(extra="forbid")

    variant: Literal["multi_head", "one_head", "single_task", "random"] = "multi_head"
    seed: int = 0
    latent_dim: int = Field(default=10, gt=0)
    n_tasks: int = Field(default=10, gt=0)
    """Tasks 0..n_tasks-1 of the random-MLP family; task i does not depend on n_tasks."""
    task_seed: int = 0
    task_mask: Literal["all", "grow", "independent", "random"] = "all"
    """Which factors each task sees (see ``trainables.data.tasks.task_mask``)."""
    task_mask_group: int = Field(default=2, ge=1)
    task_mask_p: float = Field(default=0.5, gt=0, le=1)
    task_index: int = Field(default=0, ge=0)
    """The task a ``single_task`` model learns."""
    epochs: int = Field(default=20, ge=0)
    batch_size: int = Field(default=256, gt=0)
    lr: float = Field(default=1e-3, gt=0)
    encoder: Literal["conv6", "conv4"] = "conv6"
    latent_activation: Literal["none", "tanh"] = "none"
    head_hidden: tuple[int, ...] = (300, 300, 300)
    standardize_targets: bool = True
    """Train on and report RMSE of targets scaled to unit train variance (the paper used raw units)."""
    metrics: list[str] = Field(default_factory=lambda: ["mig", "dci"])
    metric_train_points: int = Field(default=10_000, gt=1)
    metric_test_points: int = Field(default=5_000, gt=1)
    metric_mode: Literal["reference", "fast"] = "fast"
    """``fast``: DCI's boosting in compiled code, the reference's trees to rounding (README)."""
    device: str = "cpu"

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, names: list[str]) -> list[str]:
        for name in names:
            get_metric(name)  # raises "unknown metric ..."
        return names

    @model_validator(mode="after")
    def _task_index_in_range(self) -> MultiTaskConfig:
        if self.task_index >= self.n_tasks:
            raise ValueError(f"task_index={self.task_index} must be < n_tasks={self.n_tasks}")
        return self


def prepare_data(dataset: DatasetConfig, configs: Sequence[MultiTaskConfig]) -> dict[str, Any]:
    """Images, factors and targets for every trial of a study, computed once on the driver.

    Targets hold max(n_tasks) columns per task_seed; a trial takes its first n_tasks.
    """
    view = prepare_view(dataset)
    n_tasks: dict[tuple, int] = {}
    for cfg in configs:
        n_tasks[_targets_key(cfg)] = max(n_tasks.get(_targets_key(cfg), 0), cfg.n_tasks)
    view["targets"] = {
        key: task_targets(
            view["inputs"],
            n_tasks=n,
            task_seed=key[0],
            mask=key[1],
            mask_group=key[2],
            mask_p=key[3],
        )  # fmt: skip
        for key, n in n_tasks.items()
    }
    return view


def _targets_key(cfg: MultiTaskConfig) -> tuple:
    """Trials that share this key share targets (the first n_tasks columns)."""
    return (cfg.task_seed, cfg.task_mask, cfg.task_mask_group, cfg.task_mask_p)


class MultiTaskNet(nn.Module):
    def __init__(self, cfg: MultiTaskConfig, in_channels: int):
        super().__init__()
        self.encoder = ConvEncoder(in_channels, cfg.latent_dim, cfg.encoder, cfg.latent_activation)
        if cfg.variant == "one_head":
            self.heads = nn.ModuleList([MLPHead(cfg.latent_dim, cfg.n_tasks, cfg.head_hidden)])
        elif cfg.variant == "single_task":
            self.heads = nn.ModuleList([MLPHead(cfg.latent_dim, 1, cfg.head_hidden)])
        else:
            self.heads = nn.ModuleList(
                [MLPHead(cfg.latent_dim, 1, cfg.head_hidden) for _ in range(cfg.n_tasks)]
            )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        codes = self.encoder(images)  # (B, latent_dim)
        return torch.cat([head(codes) for head in self.heads], dim=1)  # (B, tasks trained)


def _task_columns(cfg: MultiTaskConfig) -> list[int]:
    return [cfg.task_index] if cfg.variant == "single_task" else list(range(cfg.n_tasks))


@torch.no_grad()
def _rmse(model: MultiTaskNet, images, targets, index: np.ndarray, batch: int) -> np.ndarray:
    """Per-task RMSE over ``index``: (tasks trained,)."""
    model.eval()
    squared = torch.zeros(targets.shape[1], dtype=torch.float64, device=targets.device)
    for start in range(0, len(index), batch):
        rows = torch.as_tensor(index[start : start + batch], device=images.device)
        error = model(images[rows].float().div_(255.0)) - targets[rows]
        squared += (error.double() ** 2).sum(dim=0)
    return torch.sqrt(squared / max(len(index), 1)).cpu().numpy()


def get_batch(
    images: torch.Tensor, targets: torch.Tensor, rows: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """The data path: index uint8 images on their device, then convert (no host copies)."""
    index = torch.as_tensor(rows, device=images.device)
    return images[index].float().div_(255.0), targets[index]  # (B, C, 64, 64), (B, tasks)


def train_step(model: MultiTaskNet, optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    # Sum over tasks of per-task MSE (Appendix C).
    loss = ((model(x) - y) ** 2).mean(dim=0).sum()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def fit(cfg: MultiTaskConfig, data: dict[str, Any], ctx: TrialContext) -> dict[str, float]:
    """Train, report each epoch (with a checkpoint), then score the representation."""
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    columns = _task_columns(cfg)
    raw = data["targets"][_targets_key(cfg)]
    if raw.shape[1] < cfg.n_tasks:
        raise ValueError(f"prepared data has {raw.shape[1]} tasks, trial needs {cfg.n_tasks}")
    raw = raw[:, columns]
    train, val, test = data["train"], data["val"], data["test"]
    if cfg.standardize_targets:
        mean, std = raw[train].mean(axis=0), raw[train].std(axis=0) + 1e-12
        raw = (raw - mean) / std
    images = as_tensor(data["images"], device)  # uint8 stays uint8 on the device
    targets = torch.as_tensor(raw, dtype=torch.float32, device=device)

    model = MultiTaskNet(cfg, images.shape[1]).to(device)
    if cfg.variant == "random":
        model.encoder.requires_grad_(False)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    start_epoch = 0
    state = ctx.restore()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = state["epoch"]

    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        # DO NOT REORDER: the shuffle depends only on (seed, epoch), so a resumed trial repeats it.
        shuffle = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        order = train[torch.randperm(len(train), generator=shuffle).numpy()]
        total, seen = 0.0, 0
        for start in range(0, len(order), cfg.batch_size):
            x, y = get_batch(images, targets, order[start : start + cfg.batch_size])
            total += train_step(model, optimizer, x, y) * len(x)
            seen += len(x)
        val_rmse = _rmse(model, images, targets, val, 1024)
        metrics = {
            "epoch": epoch + 1,
            "train/loss": total / max(seen, 1),
            "val/loss": float((val_rmse**2).sum()),
            "val/rmse": float(np.sqrt(np.mean(val_rmse**2))),
        }
        state = {
            "epoch": epoch + 1,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
        }
        ctx.report(metrics, state=state)

    test_rmse = _rmse(model, images, targets, test, 1024)
    final: dict[str, float] = {"epoch": cfg.epochs, "rmse": float(np.sqrt(np.mean(test_rmse**2)))}
    final.update({f"rmse_task_{c}": float(r) for c, r in zip(columns, test_rmse, strict=True)})

    rng = np.random.default_rng(cfg.seed)
    n_points = cfg.metric_train_points + cfg.metric_test_points
    sample = rng.integers(0, len(data["factors"]), n_points)  # with replacement, as the reference
    source = None
    if any(get_metric(name).needs_source for name in cfg.metrics):
        if not data["full_grid"]:
            raise ValueError(
                "factor_vae / beta_vae need the whole plain factor grid: unset dataset.n_samples "
                "and use no bins or nuisance factors"
            )
        # The view is the grid in official order: one code per grid point serves every vote,
        # and the array metrics' sample is read from the same table instead of encoded again.
        source = GridCodes(
            encode(model.encoder, images, np.arange(len(images))), data["factor_sizes"]
        )
        codes = source.table[sample]
    else:
        codes = encode(model.encoder, images, sample)
    np.savez_compressed(
        ctx.artifact_dir / "codes.npz", codes=codes[:2000], factors=data["factors"][sample[:2000]]
    )
    final.update(
        score(
            codes,
            data["factors"][sample],
            cfg.metrics,
            n_train=cfg.metric_train_points,
            rng=rng,
            n_jobs=torch.get_num_threads(),  # the trial's CPU share, not the whole node
            mode=cfg.metric_mode,
            source=source,
        )
    )
    ctx.report(final)
    return final
