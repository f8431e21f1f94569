"""Is a study's data held once per node, whatever the number of concurrent trials?

Starts a local Ray, puts one prepared dSprites view (50,000 images, ~200 MB) into the object store
and starts 1 or 4 trial-like actors that read every byte of it. Data memory = object-store copy +
what each actor holds privately beyond an empty actor (USS from /proc/<pid>/smaps_rollup).
Compared with the naive path that copies the data into each trial. Goal: 4 trials < 1.25x of 1.

Run: python benchmarks/object_store_memory.py  (Linux)
"""

from __future__ import annotations

import os
import time

import numpy as np
import ray

from trainables import DatasetConfig
from trainables.core.view import prepare_view


def _private_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        fields = dict(line.split(":", 1) for line in handle if ":" in line)
    return sum(int(fields[k].split()[0]) * 1024 for k in ("Private_Clean", "Private_Dirty"))


@ray.remote(num_cpus=0)
class Trial:
    def __init__(self, refs, copy: bool):
        self.data = ray.get(refs[0]) if refs else None
        if self.data is not None and copy:
            self.data = {
                k: np.array(v) if isinstance(v, np.ndarray) else v for k, v in self.data.items()
            }
        self.checksum = 0 if self.data is None else int(self.data["images"].sum(dtype=np.int64))

    def usage(self) -> tuple[int, int, bool]:
        writeable = self.data is not None and self.data["images"].flags.writeable
        return os.getpid(), self.checksum, writeable


def measure(view, n_trials: int, copy: bool) -> float:
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        empty = Trial.remote([], False)
        pid, _, _ = ray.get(empty.usage.remote())
        baseline = _private_bytes(pid)
        ref = ray.put(view)
        trials = [Trial.remote([ref], copy) for _ in range(n_trials)]
        results = ray.get([t.usage.remote() for t in trials])
        time.sleep(0.5)
        private = sum(_private_bytes(p) - baseline for p, _, _ in results)
        store = view["images"].nbytes + view["factors"].nbytes + view["inputs"].nbytes
        return (store + max(private, 0)) / 2**20
    finally:
        ray.shutdown()


def main() -> None:
    view = prepare_view(DatasetConfig(n_samples=50_000))
    print(f"data: {view['images'].nbytes / 2**20:.0f} MB of images")
    print(f"{'path':<30}{'1 trial MB':>12}{'4 trials MB':>13}{'ratio':>8}")
    for name, copy in (("object store, zero-copy", False), ("copied into each trial", True)):
        one, four = measure(view, 1, copy), measure(view, 4, copy)
        print(f"{name:<30}{one:>12.0f}{four:>13.0f}{four / one:>8.2f}")
    print("goal: zero-copy ratio < 1.25")


if __name__ == "__main__":
    main()
