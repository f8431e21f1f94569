"""Does the multi-task trainable's data path cost under 5% of a training step?

Compares samples/s of the full data path (index uint8 images on the device, convert to float, gather
targets, train step) with the same model fed one pre-made float batch. Run: python benchmarks/train_throughput.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from trainables import DatasetConfig
from trainables._eval import as_tensor, resolve_device
from trainables.multitask import MultiTaskConfig, MultiTaskNet, get_batch, prepare_data, train_step


def _time(step, n_steps: int) -> float:
    step()  # warm-up: first-call allocations
    started = time.perf_counter()
    for _ in range(n_steps):
        step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)

    cfg = MultiTaskConfig(n_tasks=10, batch_size=args.batch_size)
    view = DatasetConfig(subset={"orientation": 0, "posX": "0:32:2", "posY": "0:32:2"})
    data = prepare_data(view, [cfg])
    images = as_tensor(data["images"], device)
    targets = torch.as_tensor(
        next(iter(data["targets"].values())), dtype=torch.float32, device=device
    )
    torch.manual_seed(0)
    model = MultiTaskNet(cfg, 1).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(0)
    batches = [
        rng.choice(len(images), args.batch_size, replace=False) for _ in range(args.steps + 1)
    ]
    premade = get_batch(images, targets, batches[0])

    it = iter(batches * 2)
    full = _time(
        lambda: train_step(model, optimizer, *get_batch(images, targets, next(it))), args.steps
    )
    fed = _time(lambda: train_step(model, optimizer, *premade), args.steps)
    it = iter(batches * 2)
    data_only = _time(lambda: get_batch(images, targets, next(it)), args.steps)

    n = args.steps * args.batch_size
    rows = [
        ("full data path + step", n / full, full / fed),
        ("pre-made batch + step", n / fed, 1.0),
        ("data path alone", n / data_only, data_only / fed),
    ]
    print(f"device={device} threads={args.threads} batch={args.batch_size} steps={args.steps}")
    print(f"{'path':<24}{'samples/s':>12}{'time ratio':>12}")
    for name, rate, ratio in rows:
        print(f"{name:<24}{rate:>12.0f}{ratio:>12.3f}")
    overhead = full / fed - 1.0
    print(f"data-path overhead: {100 * overhead:.1f}% (goal < 5%)")


if __name__ == "__main__":
    main()
