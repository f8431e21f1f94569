"""``study reproduce PAPER``: run a paper's chain of studies in order, then judge its findings.

A chain (``configs/reproduce/<paper>_<scale>.yaml``) lists study configs in the order they must run:
probes pick their upstream runs from the studies before them. Each step is one ``study run`` in
its own process (its own local Ray, or the cluster's), so a step that fails or is interrupted
stops the chain with that step's exit code and the steps before it stay recorded. Running the
chain again skips every step whose latest launch FINISHED in MLflow, resumes one whose launch
was cut short, and starts the rest; then the reproduction report is written from MLflow alone.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import SpecError

CHAINS = Path(__file__).resolve().parent.parent / "configs" / "reproduce"
PAPERS = ("multitask", "modular", "locatello")
SCALES = ("cpu", "paper")


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    """What the step's runs stand for in the paper (``encoders``, ``decoders``, ``heads``, ...)."""
    config: str
    """The study YAML, relative to the chain file."""


class Chain(BaseModel):
    model_config = ConfigDict(extra="forbid")

    paper: Literal["multitask", "modular", "locatello"]
    scale: Literal["cpu", "paper"]
    description: str = ""
    steps: list[Step] = Field(min_length=1)


@dataclass(frozen=True)
class ChainStep:
    role: str
    dataset: str
    study: str
    path: Path


def chain_path(paper: str, scale: str) -> Path:
    if paper not in PAPERS:
        raise SpecError(f"paper: {paper!r} is not one of {', '.join(PAPERS)}")
    if scale not in SCALES:
        raise SpecError(f"--scale: {scale!r} is not one of {', '.join(SCALES)}")
    return CHAINS / f"{paper}_{scale}.yaml"


def load_chain(path: Path) -> tuple[Chain, list[ChainStep]]:
    """The chain and its steps, every step's study YAML validated (before anything runs)."""
    from .spec import load_spec

    try:
        raw = yaml.safe_load(path.read_text())
        chain = Chain.model_validate(raw)
    except OSError as err:
        raise SpecError(f"{path}: cannot read the chain: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML: {err}") from None
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "chain"
        raise SpecError(f"{path}: {where}: {first['msg']}") from None
    steps, names = [], set()
    for i, step in enumerate(chain.steps):
        config = (path.parent / step.config).resolve()
        if not config.is_file():
            raise SpecError(f"{path}: steps.{i}.config: no such file {config}")
        spec = load_spec(config)
        if spec.name in names:
            raise SpecError(f"{path}: steps.{i}: study {spec.name!r} appears twice")
        names.add(spec.name)
        steps.append(ChainStep(step.role, _datasets(spec), spec.name, config))
    return chain, steps


def _datasets(spec) -> str:
    """The step's dataset, or its datasets in axis order where it sweeps ``dataset.name``."""
    names = [str(v) for a in spec.data_axes if a.name == "dataset.name" for v in a.values]
    return ", ".join(dict.fromkeys(names)) if names else spec.dataset.name


def step_state(tracking_uri: str, study: str) -> str:
    """``done`` (its latest launch FINISHED), ``cut`` (a launch that did not finish: resume it)
    or ``new`` (no launch yet)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(study)
    if experiment is None:
        return "new"
    launches = client.search_runs(
        [experiment.experiment_id], "tags.role = 'launch'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )  # fmt: skip
    if not launches:
        return "new"
    return "done" if launches[0].info.status == "FINISHED" else "cut"


def run_steps(
    steps: list[ChainStep],
    *,
    tracking_uri: str,
    storage: str,
    address: str | None,
    num_cpus: int | None,
    say=print,
) -> int:
    """Run the steps not done yet, in order; the first nonzero exit code stops the chain."""
    common = ["--tracking-uri", tracking_uri, "--storage", storage]
    common += ["--address", address] if address else []
    common += ["--num-cpus", str(num_cpus)] if num_cpus else []
    for i, step in enumerate(steps, 1):
        state = step_state(tracking_uri, step.study)
        head = f"[{i}/{len(steps)}] {step.study} ({step.role}, {step.dataset})"
        if state == "done":
            say(f"{head}: finished earlier, skipped")
            continue
        if state == "cut":
            say(f"{head}: its latest launch did not finish: resuming it")
            command = ["resume", step.study, *common]
        else:
            say(f"{head}: running {step.path.name}")
            command = ["run", str(step.path), *common]
        code = subprocess.call([sys.executable, "-m", "study.cli", *command])
        if code != 0:
            say(f"{head}: exit code {code}; the chain stops here (run it again to continue)")
            return code
    return 0
