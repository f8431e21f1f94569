"""How fast does each model family train, and how much of its step is the data path?

For every registered family: samples/s of the full optimiser step (``Trainer.train_step``, which
includes the data path), and the share of that step spent in the data path alone (index the uint8
images on the device, convert to float, plus the target gather where a family has targets). The
goal is a data-path share under 5% for each family.

Run: python benchmarks/train_throughput.py [--steps 20] [--batch-size 64] [--device auto]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

from trainables import FAMILIES, DatasetConfig, Trainer
from trainables.core.view import as_tensor, resolve_device

GOAL = 0.05  # data-path share of a full step
# 3 shapes x 6 scales x 16 x 16 positions = 4608 images: small enough to render in seconds.
VIEW = DatasetConfig(subset={"orientation": 0, "posX": "0:32:2", "posY": "0:32:2"})


def _timed(fn: Callable[[list[np.ndarray]], object], steps, warmup: int, device) -> float:
    """Seconds for ``fn`` over ``steps[warmup:]``, after running it on ``steps[:warmup]``."""
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    for batches in steps[:warmup]:  # first-call allocations, kernel selection, lazy init
        fn(batches)
    sync()  # CUDA runs asynchronously: time finished work only
    started = time.perf_counter()
    for batches in steps[warmup:]:
        fn(batches)
    sync()
    return time.perf_counter() - started


def _data_path(trainer: Trainer) -> Callable[[list[np.ndarray]], object]:
    # What train_step reads from the device: every batch's images, and targets if it has any
    # (detected generically, so a new family with targets is measured the same way).
    targets = getattr(trainer, "targets", None)

    def run(batches: list[np.ndarray]) -> object:
        out = [trainer.batch(rows) for rows in batches]
        if isinstance(targets, torch.Tensor):
            out += [targets[torch.as_tensor(rows, device=targets.device)] for rows in batches]
        return out

    return run


def bench(name: str, args, device: torch.device) -> tuple[float, float, float]:
    """(samples/s, ms per full step, ms per data path) of one family."""
    family = FAMILIES[name]
    extra = {"n_tasks": 10} if "n_tasks" in family.Config.model_fields else {}
    cfg = family.Config(batch_size=args.batch_size, pictures=False, device=str(device), **extra)
    data = family.prepare_data(VIEW, [cfg])
    images = as_tensor(data["images"], device)
    torch.manual_seed(cfg.seed)
    trainer = family.trainer(cfg, images.shape[1], device)
    trainer.setup(data, images)
    trainer.modules.train()
    k = trainer.batches_per_step
    rng = np.random.default_rng(0)  # the same seeded batches for the full step and the data path
    train = np.asarray(data["train"])
    steps = [
        np.split(rng.choice(train, k * args.batch_size, replace=False), k)
        for _ in range(args.warmup + args.steps)
    ]
    phase = trainer.phases()[0].name
    full = _timed(lambda b: trainer.train_step(b, phase, 0), steps, args.warmup, device)
    data_s = _timed(_data_path(trainer), steps, args.warmup, device)
    samples = args.batch_size * k * args.steps
    return samples / full, 1e3 * full / args.steps, 1e3 * data_s / args.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma list")
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    names = [n.strip() for n in args.families.split(",") if n.strip()]
    unknown = sorted(set(names) - set(FAMILIES))
    if unknown:
        parser.error(f"unknown families {unknown}; known: {sorted(FAMILIES)}")
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)

    print(
        f"device={device} threads={args.threads} batch={args.batch_size} steps={args.steps} "
        f"warmup={args.warmup}"
    )
    print(f"{'family':<14}{'samples/s':>11}{'ms/step':>10}{'data ms':>10}{'data %':>9}  goal<5%")
    passed = 0
    for name in names:
        rate, step_ms, data_ms = bench(name, args, device)
        share = data_ms / step_ms
        ok = share < GOAL
        passed += ok
        print(
            f"{name:<14}{rate:>11.0f}{step_ms:>10.1f}{data_ms:>10.2f}{100 * share:>9.2f}  "
            f"{'pass' if ok else 'FAIL'}"
        )
    print(f"{passed}/{len(names)} families meet the goal (data path < {100 * GOAL:.0f}% of a step)")


if __name__ == "__main__":
    main()
