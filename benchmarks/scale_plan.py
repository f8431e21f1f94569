"""What does reproducing each paper at its own scale cost, and what cluster runs it?

For every step of the paper-scale chains (``configs/reproduce/multitask_paper.yaml`` and
``modular_paper.yaml``): the trials the study launches, optimiser steps per trial at the paper's
settings, the CPU time of one step measured here (the fastest of ``--steps`` calls of the family's
``Trainer.train_step`` at the config's own batch size, architecture, latent size, tasks and hidden
sizes, on seeded random batches of a small rendered view), the forward + backward FLOPs of one step
(``FlopCounterMode`` around one ``train_step``: matmuls and convolutions, not element-wise ops or
optimiser updates), and from them CPU-hours and GPU-hours at an assumed effective GPU throughput
(``--gpu-tflops``). Trials of a study whose parameters change the cost (e.g. multitask's variants,
modular's data versions) are timed apart and weighted by their trial counts (``COST_NEUTRAL``: the
params that do not); modular's warm-up and full phases are timed apart and weighted by their steps.
Then, per chain, the cluster shape from ``cluster.yaml``: trials per GPU, wall-clock hours on 8 and
64 GPUs, and the ``max_concurrent_trials`` that keeps them busy.

Run: python benchmarks/scale_plan.py [--steps 5] [--warmup 2] [--gpu-tflops 20] [--threads 2]
     python benchmarks/scale_plan.py --steps 2 --warmup 1      (a check: 10-20 min on 2 busy cores)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from study.reproduce import chain_path, load_chain
from study.spec import StudySpec, family_params, load_spec
from trainables import FAMILIES, GROUND_TRUTH, DatasetConfig
from trainables import data as datasets
from trainables.core import view as core_view
from trainables.core.loop import Schedule
from trainables.core.saved import save_model
from trainables.core.view import as_tensor

ROOT = Path(__file__).resolve().parent.parent
PAPERS = ("multitask", "modular")
GPU_COUNTS = (8, 64)
# Per-step cost depends on the batch and the networks, not on how many images the view holds, so
# steps are timed on small rendered views: train_throughput.py's 4,608 dSprites images, and the
# named small subsets of Shapes3D and MPI3D (3 channels, as the paper's).
TIMING_VIEWS = {
    "dsprites": DatasetConfig(subset={"orientation": 0, "posX": "0:32:2", "posY": "0:32:2"}),
    "shapes3d": DatasetConfig(name="shapes3d", subset="small"),
    "mpi3d": DatasetConfig(name="mpi3d", options={"variant": "toy"}, subset="small"),
}
TIMING_ROWS = 4608  # rows rendered at most per timing view: seconds to render, not minutes
# Params that select data or a seed but leave every tensor shape of a step unchanged (n_labels: the
# labelled batch is labelled_batch_size whatever the labelled pool's size), and modular's
# partition_size: 4 or 8 code dimensions per factor changed a step's FLOPs by 0.1% when timed apart
# (the conv nets and the 1024-wide MLPs dominate), and would double the slowest family's timing.
COST_NEUTRAL = frozenset({"seed", "task_index", "n_labels", "partition_size"})
# Ray detects GPUs and CPUs on a node; cluster.yaml leaves resources {} for them, so the node's
# shape comes from its instance type (AWS's published shapes).
INSTANCE_SHAPES = {
    "g4dn.12xlarge": (4, 48, "T4"),
    "g5.12xlarge": (4, 48, "A10G"),
    "g5.48xlarge": (8, 192, "A10G"),
    "g6.12xlarge": (4, 48, "L4"),
    "p4d.24xlarge": (8, 96, "A100"),
    "p5.48xlarge": (8, 192, "H100"),
}
LAUNCH_BOUND_MS = 2.0  # eager PyTorch steps rarely finish faster on a GPU: kernel launches


@dataclass
class CostClass:
    """Trials of one step that cost the same per optimiser step (timed once)."""

    label: str
    params: dict[str, Any]  # family params of a representative trial
    view: DatasetConfig  # the paper's data view of these trials
    trials: int
    upstream: tuple[str, dict[str, Any]] | None = None  # probes: (family, params) or ground truth
    steps: int = 0  # optimiser steps per trial at the paper's view
    phase_steps: dict[str, int] = field(default_factory=dict)
    phase_seconds: dict[str, float] = field(default_factory=dict)
    seconds: float = math.nan  # CPU seconds per step, phase-weighted
    flops: float = math.nan  # forward + backward FLOPs per step, phase-weighted


@dataclass
class StepPlan:
    chain: str
    study: str
    family: str
    dataset: str
    spec: StudySpec
    classes: list[CostClass] = field(default_factory=list)
    why_not: str = ""  # set when the step could not be timed: printed instead of numbers

    @property
    def trials(self) -> int:
        return sum(c.trials for c in self.classes)

    @property
    def total_steps(self) -> int:
        return sum(c.trials * c.steps for c in self.classes)

    @property
    def cpu_seconds(self) -> float:
        return sum(c.trials * c.steps * c.seconds for c in self.classes)

    @property
    def flops(self) -> float:
        return sum(c.trials * c.steps * c.flops for c in self.classes)


# -- what each step trains ---------------------------------------------------------------------
def _cost_key(params: dict[str, Any]) -> str:
    return json.dumps(
        {k: v for k, v in params.items() if k not in COST_NEUTRAL}, sort_keys=True, default=repr
    )


def _grouped(entries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        groups.setdefault(_cost_key(entry), []).append(entry)
    return list(groups.values())


def _label(entry: dict[str, Any], varying: set[str]) -> str:
    return ",".join(f"{k.removeprefix('dataset.')}={entry[k]}" for k in sorted(varying)) or "all"


def _varying(entries: list[dict[str, Any]]) -> set[str]:
    keys = {k for e in entries for k in e} - COST_NEUTRAL
    return {k for k in keys if len({json.dumps(e.get(k), default=repr) for e in entries}) > 1}


def _matches(entry: dict[str, Any], where: dict[str, Any], defaults: dict[str, Any]) -> bool:
    # As the source resolver selects finished runs, but on the planned grid: a param the entry
    # does not set is the family Config's default (task_index 0 for multi_head); compare as text.
    for key, wanted in where.items():
        value = entry.get(key, defaults.get(key))
        accepted = wanted if isinstance(wanted, list) else [wanted]
        if not any(str(value) == str(a) for a in accepted):
            return False
    return True


def plain_classes(spec: StudySpec) -> list[CostClass]:
    grid = spec.grid()
    varying = _varying(grid)
    return [
        CostClass(_label(g[0], varying), family_params(g[0]), spec.dataset_for(g[0]), len(g))
        for g in _grouped(grid)
    ]


def probe_classes(spec: StudySpec, earlier: dict[str, StudySpec]) -> list[CostClass]:
    """One class per upstream study (its matching trials) and ground truth, times the probe's
    own grid (its ``grid()`` before resolution holds every point but no upstream axis)."""
    source = spec.source
    if source.pick != "all" or source.runs:
        raise ValueError(
            f"source pick {source.pick!r} / runs: the count depends on finished runs, not the plan"
        )
    names = [source.study] if isinstance(source.study, str) else list(source.study or [])
    sources: list[tuple[str, int, tuple[str, dict[str, Any]] | None, DatasetConfig]] = []
    for name in names:
        if name not in earlier:
            raise ValueError(f"upstream study {name!r} is not an earlier step of the chain")
        up = earlier[name]
        defaults = {k: f.default for k, f in FAMILIES[up.family].Config.model_fields.items()}
        matched = [e for e in up.grid() if _matches(e, source.where, defaults)]
        if not matched:
            raise ValueError(f"no trial of {name} matches where {source.where}")
        rep = matched[0]
        sources.append((name, len(matched), (up.family, family_params(rep)), up.dataset_for(rep)))
    if source.ground_truth:
        view = sources[0][3] if sources else spec.dataset  # a probe's data is its upstream's
        sources.append((GROUND_TRUTH, 1, None, view))
    # The probe's own points: the product of its sweep axes (1 without any).
    own_axes = [a for a in spec.grid_axes if a.name != "upstream"]
    own = math.prod(len(a.values) for a in own_axes) * spec.n_points
    groups = _grouped(spec.grid())  # cost-relevant axes of the probe itself, usually none
    if sum(len(g) for g in groups) != own:  # a family expansion: count the axes, time one point
        groups = [[spec.base_params] * own]
    varying = _varying([g[0] for g in groups])
    classes = []
    for name, count, upstream, view in sources:
        for group in groups:
            extra = _label(group[0], varying)
            label = f"on {name}" + ("" if extra == "all" else f",{extra}")
            params = family_params(group[0])
            classes.append(CostClass(label, params, view, count * len(group), upstream))
    return classes


def view_rows(view: DatasetConfig) -> int:
    """Images of a paper data view, from factor sizes (nothing rendered)."""
    if view.n_samples is not None:
        return view.n_samples
    return datasets.subset(datasets.load(view.name, **view.options), view.subset).num_samples


def plan_steps(family: str, cls: CostClass) -> None:
    """Steps per trial as the shared loop counts them (``Schedule``): epochs x batches per epoch
    of the paper view's train split, or the config's ``steps``."""
    cfg = FAMILIES[family].Config(**cls.params)
    trainer = FAMILIES[family].trainer
    n_train = int(round(cls.view.split[0] * view_rows(cls.view)))
    cls.steps = Schedule.of(cfg, n_train, trainer.batches_per_step).total_steps


# -- timing ------------------------------------------------------------------------------------
def timing_view(view: DatasetConfig) -> DatasetConfig:
    """A small rendered view with the paper view's channels (and its factors, for a subset)."""
    if view.subset:  # a data version (modular's v2..v5): keep its factors, sample fewer rows
        base = DatasetConfig(name=view.name, options=view.options, subset=view.subset)
    else:
        base = TIMING_VIEWS[view.name]
    rows = view_rows(base)
    return base if rows <= TIMING_ROWS else base.model_copy(update={"n_samples": TIMING_ROWS})


def _seconds(fn: Callable[[list[np.ndarray]], object], steps, warmup: int) -> float:
    """Seconds of the fastest call of ``fn`` over ``steps[warmup:]``, after ``steps[:warmup]``."""
    for batches in steps[:warmup]:  # first-call allocations, lazy init, modular's prior fit
        fn(batches)
    # The fastest step, not the mean: on a shared machine other processes only ever add time,
    # so the minimum is the step's own cost and repeats from run to run.
    times = []
    for batches in steps[warmup:]:
        started = time.perf_counter()
        fn(batches)
        times.append(time.perf_counter() - started)
    return min(times)


def _flops(fn: Callable[[list[np.ndarray]], object], batches: list[np.ndarray]) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        fn(batches)
    return float(counter.get_total_flops())


def _save_upstream(
    upstream: tuple[str, dict[str, Any]], data: dict, images: torch.Tensor, directory: Path
) -> str:
    """An untrained upstream model as a trial saves one: a probe step costs the same on its
    codes (only their width matters, and the upstream encodes once, in setup, untimed)."""
    family, params = upstream
    cfg = FAMILIES[family].Config(**{**params, "device": "cpu"})
    torch.manual_seed(cfg.seed)
    trainer = FAMILIES[family].trainer(cfg, images.shape[1], torch.device("cpu"))
    if not trainer.modules:  # a family that builds its modules from the data view
        trainer.setup(data, images)
    save_model(trainer, data, directory)
    return str(directory)


def time_class(family: str, cls: CostClass, data: dict, images: torch.Tensor, args) -> None:
    params = {**cls.params, "device": "cpu", "pictures": False}
    with tempfile.TemporaryDirectory(prefix="scale-plan-upstream-") as tmp:
        if "upstream" in FAMILIES[family].Config.model_fields:
            params["upstream"] = (
                _save_upstream(cls.upstream, data, images, Path(tmp))
                if cls.upstream is not None
                else GROUND_TRUTH
            )
        cfg = FAMILIES[family].Config(**params)
        torch.manual_seed(cfg.seed)
        trainer = FAMILIES[family].trainer(cfg, images.shape[1], torch.device("cpu"))
        trainer.setup(data, images)
    trainer.modules.train()
    k = trainer.batches_per_step
    rng = np.random.default_rng(0)
    train = np.asarray(data["train"])
    # Phases by step (modular_ae: warm-up, then full): each timed, weighted by its steps.
    phases = trainer.phases()
    bounds = [*(p.start for p in phases[1:]), cls.steps]
    cls.phase_steps = {
        p.name: max(0, min(end, cls.steps) - min(p.start, cls.steps))
        for p, end in zip(phases, bounds, strict=True)
    }
    seconds = flops = 0.0
    for phase in phases:
        share = cls.phase_steps[phase.name] / max(1, cls.steps)
        if share == 0:
            continue
        steps = [
            np.split(rng.choice(train, k * cfg.batch_size, replace=False), k)
            for _ in range(args.warmup + args.steps + 1)
        ]

        def step(batches: list[np.ndarray], name: str = phase.name) -> object:
            return trainer.train_step(batches, name, 0)

        cls.phase_seconds[phase.name] = _seconds(step, steps[:-1], args.warmup)
        seconds += share * cls.phase_seconds[phase.name]
        flops += share * _flops(step, steps[-1])  # after the warm-up: no one-off work counted
    cls.seconds, cls.flops = seconds, flops


@contextlib.contextmanager
def render_once() -> Iterator[None]:
    """Every family's ``prepare_data`` renders through ``core.view.prepare_view``, a pure function of
    the view: render each timing view once for all the steps that share it (on a busy 2-core
    machine a render takes longer than timing the step)."""
    original = core_view.prepare_view
    cache: dict[str, dict[str, Any]] = {}

    def cached(cfg: DatasetConfig) -> dict[str, Any]:
        key = cfg.model_dump_json()
        if key not in cache:
            cache[key] = original(cfg)
        return dict(cache[key])  # a family adds keys (targets) to its copy; arrays are shared

    # Families import it by name (``from ..core.view import prepare_view``): swap every such binding.
    holders = [
        m
        for name, m in list(sys.modules.items())
        if name.startswith("trainables") and getattr(m, "prepare_view", None) is original
    ]
    for module in holders:
        module.prepare_view = cached
    try:
        yield
    finally:
        for module in holders:
            module.prepare_view = original


def time_step(plan: StepPlan, args, say: Callable[[str], None]) -> None:
    family = FAMILIES[plan.family]
    by_view: dict[str, list[CostClass]] = {}
    for cls in plan.classes:
        by_view.setdefault(timing_view(cls.view).model_dump_json(), []).append(cls)
    for key, classes in by_view.items():
        view = DatasetConfig.model_validate_json(key)
        configs = [
            family.Config(**{**c.params, "device": "cpu", "pictures": False}) for c in classes
        ]
        started = time.perf_counter()
        data = family.prepare_data(view, configs)
        images = as_tensor(data["images"], torch.device("cpu"))
        say(f"  {plan.study}: {len(images)} images ready in {time.perf_counter() - started:.0f} s")
        for cls in classes:
            time_class(plan.family, cls, data, images, args)
            say(f"  {plan.study} [{cls.label}]: {1e3 * cls.seconds:.0f} ms/step")


def build_plans(papers: list[str]) -> list[StepPlan]:
    plans = []
    for paper in papers:
        _, steps = load_chain(chain_path(paper, "paper"))
        earlier: dict[str, StudySpec] = {}
        for step in steps:
            spec = load_spec(step.path)
            plan = StepPlan(paper, step.study, spec.family, step.dataset, spec)
            try:
                plan.classes = (
                    probe_classes(spec, earlier) if spec.source is not None else plain_classes(spec)
                )
                for cls in plan.classes:
                    plan_steps(spec.family, cls)
            except (ValueError, datasets.DataError) as err:
                plan.why_not = str(err)
            earlier[step.study] = spec
            plans.append(plan)
    return plans


# -- cluster -----------------------------------------------------------------------------------
def gpu_node_types(path: Path) -> list[tuple[str, str, int, int, str, int]]:
    """(node type, instance type, GPUs, CPUs, GPU model, max workers) of each GPU node type."""
    cluster = yaml.safe_load(path.read_text())
    out = []
    for name, node in cluster.get("available_node_types", {}).items():
        instance = node.get("node_config", {}).get("InstanceType", "")
        gpus, cpus, model = INSTANCE_SHAPES.get(instance, (0, 0, "?"))
        resources = node.get("resources") or {}
        gpus, cpus = int(resources.get("GPU", gpus)), int(resources.get("CPU", cpus))
        if gpus > 0:
            out.append((name, instance, gpus, cpus, model, int(node.get("max_workers", 0))))
    return out


# -- output ------------------------------------------------------------------------------------
def _num(value: float, digits: int = 1) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:,.{digits}f}"


def _steps_per_trial(plan: StepPlan) -> str:
    counts = {c.steps for c in plan.classes}
    if len(counts) == 1:
        return f"{counts.pop():,}"
    return f"~{plan.total_steps / plan.trials:,.0f}"  # classes differ: the trial-weighted mean


def print_table(plans: list[StepPlan], args) -> None:
    tflops = args.gpu_tflops * 1e12
    head = (
        f"{'chain':<10}{'study':<29}{'family':<14}{'dataset':<9}{'trials':>7}{'steps/trial':>13}"
        f"{'CPU ms':>9}{'GFLOP':>8}{'GPU ms':>8}{'total steps':>14}{'CPU-h':>11}{'GPU-h':>9}"
    )
    print(head)
    print("-" * len(head))
    chains: dict[str, list[StepPlan]] = {}
    for plan in plans:
        chains.setdefault(plan.chain, []).append(plan)
        if plan.why_not or not plan.classes:
            print(f"{plan.chain:<10}{plan.study:<29}{plan.family:<14}{plan.dataset:<9}  n/a")
            continue
        steps = plan.total_steps
        ms = 1e3 * plan.cpu_seconds / steps
        flop = plan.flops / steps
        gpu_ms = 1e3 * flop / tflops
        mark = "*" if gpu_ms < LAUNCH_BOUND_MS else " "
        print(
            f"{plan.chain:<10}{plan.study:<29}{plan.family:<14}{plan.dataset:<9}{plan.trials:>7}"
            f"{_steps_per_trial(plan):>13}{_num(ms, 0):>9}{_num(flop / 1e9, 2):>8}"
            f"{_num(gpu_ms, 2):>7}{mark}{steps:>14,}{_num(plan.cpu_seconds / 3600):>11}"
            f"{_num(plan.flops / tflops / 3600, 2):>9}"
        )
    print("-" * len(head))
    rows = [*chains.items(), ("all", plans)]
    for name, members in rows:
        timed = [p for p in members if not p.why_not and p.classes]
        cpu_h = sum(p.cpu_seconds for p in timed) / 3600
        gpu_h = sum(p.flops for p in timed) / tflops / 3600
        steps = sum(p.total_steps for p in timed)
        trials = sum(p.trials for p in timed)
        print(
            f"{'total ' + name:<62}{trials:>7}{'':>13}{'':>9}{'':>8}{'':>8}{steps:>14,}"
            f"{_num(cpu_h):>11}{_num(gpu_h, 2):>9}   CPU-h / GPU-h = {_num(cpu_h / gpu_h, 0)}"
        )
    untimed = [p for p in plans if p.why_not]
    for plan in untimed:
        print(f"n/a {plan.study}: {plan.why_not}")


def print_classes(plans: list[StepPlan]) -> None:
    """Which trials were timed apart, so a step's mean can be checked against its parts."""
    print("\nTimed classes (trials of a step that differ in cost; steps/trial per phase):")
    for plan in plans:
        if len(plan.classes) < 2 and all(len(c.phase_steps) < 2 for c in plan.classes):
            continue
        for cls in plan.classes:
            phases = " + ".join(
                f"{n} {s:,} at {1e3 * cls.phase_seconds.get(n, math.nan):,.0f} ms"
                for n, s in cls.phase_steps.items()
            )
            print(
                f"  {plan.study:<29}{cls.label:<42}{cls.trials:>4} trials {cls.steps:>9,} steps"
                f"{1e3 * cls.seconds:>8.0f} ms{cls.flops / 1e9:>8.2f} GFLOP"
                + (f"  ({phases})" if len(cls.phase_steps) > 1 else "")
            )


def print_cluster(plans: list[StepPlan], args) -> None:
    tflops = args.gpu_tflops * 1e12
    nodes = gpu_node_types(ROOT / "cluster.yaml")
    print("\nCluster (cluster.yaml):")
    for name, instance, gpus, cpus, model, workers in nodes:
        print(
            f"  node type {name}: {instance}, {gpus} x {model} GPU, {cpus} CPUs per node, "
            f"max_workers {workers} ({gpus * workers} GPUs)"
        )
    if not nodes:
        print("  no GPU node type found (instance types known here: " + ", ".join(INSTANCE_SHAPES))
        return
    _, _, node_gpus, node_cpus, model, _ = nodes[0]
    if model not in ("A100", "H100"):
        print(
            f"  note: {model} GPUs are not A100/H100-class: {args.gpu_tflops:g} TFLOP/s effective "
            "is optimistic for them; rerun with a lower --gpu-tflops to plan this cluster"
        )
    chains: dict[str, list[StepPlan]] = {}
    for plan in plans:
        if not plan.why_not and plan.classes:
            chains.setdefault(plan.chain, []).append(plan)
    head = (
        f"  {'chain':<10}{'gpu/trial':>10}{'cpu/trial':>10}{'trials/GPU':>11}{'trials/node':>12}"
        + "".join(f"{f'N={n}: wall h':>14}{'nodes':>6}{'max_conc':>9}" for n in GPU_COUNTS)
    )
    print(head)
    for chain, members in chains.items():
        gpu_h = sum(p.flops for p in members) / tflops / 3600
        fractions = sorted({p.spec.resources.gpu for p in members})
        cpus = sorted({p.spec.resources.cpu for p in members})
        gpu, cpu = max(fractions), max(cpus)  # the largest request sets the packing
        per_gpu = 1 / gpu if gpu else math.inf
        # A node fits as many trials as both its GPUs and its CPUs allow.
        per_node = min(node_gpus * per_gpu, node_cpus // cpu)
        line = (
            f"  {chain:<10}{'/'.join(f'{f:g}' for f in fractions):>10}"
            f"{'/'.join(f'{c:g}' for c in cpus):>10}{per_gpu:>11g}{per_node:>12g}"
        )
        for n in GPU_COUNTS:
            line += f"{gpu_h / n:>14.2f}{math.ceil(n / node_gpus):>6}{n * per_gpu:>9g}"
        print(line)
        for n in GPU_COUNTS:
            waves = sum(_waves_hours(p, n, tflops) for p in members)
            capped = sorted(
                {
                    p.spec.max_concurrent_trials
                    for p in members
                    if p.spec.max_concurrent_trials is not None
                    and p.spec.max_concurrent_trials < min(p.trials, n / p.spec.resources.gpu)
                }
            )
            note = (
                f" (max_concurrent_trials {capped} in the configs holds some back)"
                if capped
                else ""
            )
            print(f"    N={n}: chain steps one after another, trials in waves: {waves:.2f} h{note}")


def _waves_hours(plan: StepPlan, n: int, tflops: float) -> float:
    """Wall hours of one chain step on ``n`` GPUs when its trials run in waves: at most
    min(trials, max_concurrent_trials, n / resources.gpu) at once, each wave as long as the step's
    longest trial at its reserved share of a GPU (it gets no more of the GPU's throughput)."""
    gpu = plan.spec.resources.gpu
    if gpu == 0:
        return math.nan
    at_once = min(plan.trials, plan.spec.max_concurrent_trials or plan.trials, int(n / gpu))
    longest = max(c.steps * c.flops for c in plan.classes) / tflops / 3600
    return math.ceil(plan.trials / at_once) * longest / gpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per class and phase")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    parser.add_argument("--gpu-tflops", type=float, default=20.0, help="effective, per GPU")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--papers", default=",".join(PAPERS), help="comma list")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args()
    papers = [p.strip() for p in args.papers.split(",") if p.strip()]
    unknown = sorted(set(papers) - set(PAPERS))
    if unknown:
        parser.error(f"unknown papers {unknown}; known: {list(PAPERS)}")
    if args.steps < 1 or args.warmup < 0 or args.gpu_tflops <= 0:
        parser.error("--steps >= 1, --warmup >= 0 and --gpu-tflops > 0")
    torch.set_num_threads(args.threads)

    def say(line: str) -> None:
        if not args.quiet:
            print(line, flush=True)

    load = os.getloadavg()[0]
    started = time.perf_counter()
    plans = build_plans(papers)
    with render_once():
        for plan in plans:
            if plan.why_not:
                continue
            try:
                time_step(plan, args, say)
            except (RuntimeError, ValueError, datasets.DataError) as err:
                plan.why_not = f"could not be timed in-process: {err}"
    say(f"timed in {time.perf_counter() - started:.0f} s\n")

    print(
        f"torch {torch.__version__}, CPU threads {args.threads}, CPU ms = fastest of {args.steps} "
        f"timed steps after {args.warmup} warm-up per class and phase, load average at start "
        f"{load:.1f} (on {os.cpu_count()} cores)"
    )
    print(
        f"GPU-hours ASSUME {args.gpu_tflops:g} TFLOP/s effective per GPU: an assumption for small "
        "conv nets in fp32/TF32 on an A100/H100-class GPU, well under their peak; not measured."
    )
    print(
        "FLOPs: FlopCounterMode over one train_step (forward + backward matmuls and convolutions; "
        "element-wise ops and optimiser updates not counted). CPU ms: this machine."
    )
    print_table(plans, args)
    print(
        f"* GPU ms under {LAUNCH_BOUND_MS:g}: at that size an eager step is bound by kernel "
        "launches, not FLOPs; GPU-hours of those rows are a lower bound."
    )
    print_classes(plans)
    print_cluster(plans, args)
    print(
        "  wall h = GPU-hours / N, trials packed perfectly; max_conc = N / resources.gpu, the "
        "max_concurrent_trials that keeps N GPUs full; nodes = N / GPUs per node. Waves: a "
        "step of few trials cannot fill N GPUs, and the chain's steps run in order."
    )


if __name__ == "__main__":
    main()
