"""slurm/study.sbatch on a real SLURM (Debian's slurm-wlm): a slurmctld and two slurmd on this
machine, in a folder of their own under /tmp, each slurmd a node (n1, n2) with one CPU for the job
and one fake GPU (a gres on /dev/null: SLURM sets SLURM_GPUS_ON_NODE and CUDA_VISIBLE_DEVICES as
for a real one). The script, submitted with sbatch as docs/slurm.md says, starts the Ray head on
n1, a worker on n2 and an MLflow server on the head, then `study run --address`.

One study, 2 trials of 1 CPU (one on each node), is stopped the way the time limit stops it
(TERM to the batch shell), which must end the job non-zero; the same command submitted again
resumes it, and the job ends 0 with every trial FINISHED in the MLflow store the script used. A
config that does not exist fails the job at once. About 3-5 minutes on 2 busy cores.

Needs root (slurmd starts jobs as their user). Skipped without slurm-wlm (.ci/run installs it).
Every daemon and every process of the jobs is gone afterwards, also when a test fails: the fixture
kills whatever still names its folder (command line or environment)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from local_servers import free_port  # benchmarks/ (conftest.py)
from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "slurm" / "study.sbatch"
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
STUDY = "slurm_study"
# A small quickstart (as the cluster rehearsal's): 576 images, 2 tasks, 8 epochs of about a second,
# a checkpoint every epoch; 2 trials of 1 CPU, and each node offers Ray 1 CPU: one trial a node.
SETTINGS = [
    f"name={STUDY}",
    "dataset.subset={orientation: 0, posX: '0:32:4', posY: '0:32:4'}",
    "fixed.epochs=8",
    "fixed.n_tasks=2",
    "fixed.metric_train_points=200",
    "fixed.metric_test_points=100",
    "fixed.pictures=false",
    "sweep={variant: [multi_head, one_head], seed: [0]}",
    "resources={cpu: 1, gpu: 0}",
]
JOB_TIMEOUT_S = 420
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
         "BOOT_FAIL", "DEADLINE"}  # fmt: skip


def _tool(name: str) -> str | None:
    """A SLURM program's path: on PATH, or in /usr/sbin (the daemons; not on a user's PATH)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


def _slurm_missing() -> str | None:
    missing = [t for t in ("slurmctld", "slurmd", "sbatch", "scontrol") if _tool(t) is None]
    if missing:
        return f"slurm-wlm is not installed (no {', '.join(missing)}): apt-get install slurm-wlm"
    if os.geteuid() != 0:
        return "needs root: slurmd starts each job as its user"
    return None


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return f"--- {path.name}:\n{path.read_text(errors='replace')[-chars:]}"
    except OSError:
        return f"--- {path.name}: (none)"


def _naming(needle: bytes) -> list[int]:
    """Processes (not this one) whose command line or environment holds ``needle``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if (
                needle in (entry / "cmdline").read_bytes()
                or needle in (entry / "environ").read_bytes()
            ):
                found.append(int(entry.name))
    return found


class Slurm:
    """slurmctld + slurmd n1 and n2 on this machine: no munge (auth/none), no accounting database,
    processes tracked by parentage (proctrack/linuxproc), no cgroups."""

    def __init__(self) -> None:
        # Short, under /tmp itself: slurmd's sockets and Ray's live under it.
        self.root = Path(tempfile.mkdtemp(prefix="dsslurm"))
        self.conf = self.root / "slurm.conf"
        self.logs = self.root / "logs"
        self.daemons: list[subprocess.Popen] = []
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        for key in [k for k in self.env if k.startswith(("SLURM_", "SBATCH_", "SRUN_"))]:
            if key != "SLURM_CONF":
                del self.env[key]

    def start(self) -> None:
        host = socket.gethostname().split(".")[0]
        for folder in ("state", "spool/n1", "spool/n2", "logs", "jobs"):
            (self.root / folder).mkdir(parents=True)
        ports = [free_port() for _ in range(3)]
        nodes = "\n".join(
            f"NodeName=n{i} NodeHostname={host} NodeAddr=127.0.0.1 Port={port} CPUs=2 "
            "RealMemory=2000 Gres=gpu:1 State=UNKNOWN"
            for i, port in enumerate(ports[1:], start=1)
        )
        self.conf.write_text(f"""\
ClusterName=dstest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ports[0]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
GresTypes=gpu
MpiDefault=none
StateSaveLocation={self.root}/state
SlurmdSpoolDir={self.root}/spool/%n
SlurmctldPidFile={self.root}/slurmctld.pid
SlurmdPidFile={self.root}/slurmd-%n.pid
SlurmctldLogFile={self.logs}/slurmctld.log
SlurmdLogFile={self.logs}/slurmd-%n.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=3600
SlurmdParameters=config_overrides
{nodes}
PartitionName=debug Nodes=n[1-2] Default=YES MaxTime=INFINITE State=UP
""")
        # A GPU that is /dev/null: SLURM hands it out and sets the variables; nothing uses it.
        (self.root / "gres.conf").write_text("Name=gpu File=/dev/null\n")
        self._daemon("slurmctld", [_tool("slurmctld"), "-D", "-f", str(self.conf)])
        time.sleep(2)
        for node in ("n1", "n2"):
            self._daemon(
                f"slurmd-{node}", [_tool("slurmd"), "-D", "-f", str(self.conf), "-N", node]
            )
        deadline, states = time.monotonic() + 90, ""
        while time.monotonic() < deadline:
            for daemon in self.daemons:
                if daemon.poll() is not None:
                    raise RuntimeError(
                        f"{daemon.args[0]} exited ({daemon.returncode})\n" + self.tails()
                    )
            states = self.run("sinfo", "-h", "-N", "-o", "%N %T", check=False).stdout
            if states.split() == ["n1", "idle", "n2", "idle"]:
                return
            time.sleep(1)
        raise RuntimeError(f"the nodes did not become idle: {states!r}\n" + self.tails())

    def _daemon(self, name: str, argv: list[str]) -> None:
        with open(self.logs / f"{name}.out", "w") as out:
            self.daemons.append(subprocess.Popen(argv, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                                 stdin=subprocess.DEVNULL, start_new_session=True))  # fmt: skip

    def run(self, *argv: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        done = subprocess.run(argv, env=kwargs.pop("env", self.env), capture_output=True, text=True,
                              timeout=60, **kwargs)  # fmt: skip
        if check:
            assert done.returncode == 0, f"{' '.join(argv)}: {done.stdout}{done.stderr}"
        return done

    def tails(self) -> str:
        return "\n".join(_tail(p) for p in sorted(self.logs.iterdir()))

    def stop(self) -> None:
        """Cancel every job, stop the daemons, then kill whatever still names this folder (a job's
        Ray or MLflow processes that outlived it), and remove the folder."""
        if any(d.poll() is None for d in self.daemons):
            self.run("scancel", "--full", "--user", "root", check=False)
            deadline = time.monotonic() + 45
            while time.monotonic() < deadline:
                listed = self.run("squeue", "-h", "-o", "%i", check=False)
                if listed.returncode != 0 or not listed.stdout.strip():
                    break
                time.sleep(1)
        for daemon in self.daemons:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(daemon.pid, signal.SIGTERM)
        for daemon in self.daemons:
            try:
                daemon.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait(timeout=10)
        needle = str(self.root).encode()
        for _ in range(20):
            left = _naming(needle)
            if not left:
                break
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def slurm():
    reason = _slurm_missing()
    if reason:
        pytest.skip(reason)
    cluster = Slurm()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
    assert not _naming(str(cluster.root).encode()), "processes of the SLURM test are left"


def _submit(slurm: Slurm, work: Path, *sbatch_args: str, config: Path = QUICKSTART,
            study_args: list[str] | None = None) -> tuple[str, Path]:  # fmt: skip
    """sbatch the script from ``work`` (the job's WORKDIR); returns the job id and its output file."""
    work.mkdir(exist_ok=True)
    env = {
        **slurm.env,
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "CONFIG": str(config),
        "RAY_PORT": str(free_port()),
        "RAY_DASHBOARD_PORT": str(free_port()),
        "MLFLOW_PORT": str(free_port()),
        "MLFLOW_WORKERS": "1",
        "RAY_TEMP_DIR": str(slurm.root / "ray"),
    }
    if "DISENTANGLE_CACHE" in os.environ:  # this test's own cache (conftest.py), not the module's
        env["DISENTANGLE_CACHE"] = os.environ["DISENTANGLE_CACHE"]
    for key in ("TRACKING_URI", "MLFLOW_TRACKING_URI", "RAY_ADDRESS", "STORAGE", "WORKDIR", "VENV"):
        env.pop(key, None)
    args = [
        a for item in (study_args if study_args is not None else SETTINGS) for a in ("--set", item)
    ]
    done = slurm.run("sbatch", "--parsable", "--time=15", "--cpus-per-task=1", "--gpus-per-node=1",
                     f"--output={work}/job-%j.out", *sbatch_args, str(SCRIPT), *args, env=env, cwd=work)  # fmt: skip
    job = done.stdout.strip().split(";")[0]
    return job, work / f"job-{job}.out"


def _job(slurm: Slurm, job: str) -> dict[str, str]:
    shown = slurm.run("scontrol", "show", "job", "-o", job).stdout
    return dict(re.findall(r"(\w+)=(\S+)", shown))


def _wait(slurm: Slurm, job: str, output: Path, until: str | None = None) -> dict[str, str]:
    """The job's scontrol record once it has ended (or, with ``until``, once its output holds
    that text while it runs)."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        record = _job(slurm, job)
        if record.get("JobState") in ENDED:
            return record
        if until is not None and output.exists() and until in output.read_text(errors="replace"):
            return record
        time.sleep(2)
    raise AssertionError(f"job {job} still {record.get('JobState')} after {JOB_TIMEOUT_S} s\n"
                         f"{_tail(output, 6000)}\n{slurm.tails()}")  # fmt: skip


def _runs(uri: str, role: str) -> list:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(STUDY)
    assert experiment is not None, f"no experiment {STUDY} in {uri}"
    return client.search_runs([experiment.experiment_id], f"tags.role = '{role}'")


def test_study_stopped_then_resumed_on_two_slurm_nodes(slurm):
    work = slurm.root / "work"
    store = f"sqlite:///{work}/mlflow/mlflow.db"  # the script's default: MLFLOW_DIR=$WORKDIR/mlflow

    # 1. Submitted; stopped as the time limit stops it (--signal=B:TERM: the batch shell gets TERM)
    #    once both trials run: study run ends 130, and so does the job.
    job, output = _submit(slurm, work, "--nodes=2")
    record = _wait(slurm, job, output, until="2 running")
    assert record["JobState"] == "RUNNING", _tail(output, 6000) + slurm.tails()
    slurm.run("scancel", "--batch", "--signal=TERM", job)
    record = _wait(slurm, job, output)
    text = output.read_text()
    print(text[-3000:])
    assert record["JobState"] == "FAILED" and record["ExitCode"] == "130:0", (
        text[-6000:] + slurm.tails()
    )
    assert "Ray: 2 of 2 nodes joined: 2 CPUs, 2 GPUs" in text  # SLURM's CPUs and GPUs, both nodes
    assert "got SIGTERM: stopping the study" in text and "study run exited with 130" in text
    assert [r.info.status for r in _runs(store, "launch")] == ["KILLED"]
    # Its Ray logs are kept (it failed) and named; the job's token is removed in any case.
    assert f"Ray's logs: {work}/slurm_logs/{job}/ray-NODE.log" in text
    assert not (work / "slurm_logs" / job / "ray_auth_token").exists()

    # 2. The same command again: the launch is found under the storage and resumed; the job ends 0
    #    with both trials FINISHED in the MLflow store, each run once, on both nodes.
    job2, output2 = _submit(slurm, work, "--nodes=2")
    record = _wait(slurm, job2, output2)
    text = output2.read_text()
    print(text[-3000:])
    assert record["JobState"] == "COMPLETED" and record["ExitCode"] == "0:0", (
        text[-6000:] + slurm.tails()
    )
    assert f"study {STUDY} has a launch under {work}/ray_results: resuming it" in text
    assert "Ray: 2 of 2 nodes joined" in text
    (launch,) = _runs(store, "launch")
    assert launch.info.status == "FINISHED"
    trials = _runs(store, "trial")
    assert sorted(r.info.status for r in trials) == ["FINISHED", "FINISHED"], text[-4000:]
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {launch.info.run_id}
    assert len({r.data.tags.get("ray_node") for r in trials}) == 2  # one trial on each node
    assert any((work / "mlflow" / "artifacts").rglob("*")), "no artifact reached MLFLOW_DIR"
    # A study that succeeded leaves no Ray folder and no token, and no process of it is left.
    assert not (slurm.root / "ray").exists()
    assert not (work / "slurm_logs" / job2 / "ray_auth_token").exists()
    time.sleep(2)
    assert not _naming(str(slurm.root / "ray").encode()), "Ray processes outlived the job"
    assert not _naming(f"{work}/mlflow".encode()), "the MLflow server outlived the job"


def test_missing_config_fails_the_job(slurm):
    work = slurm.root / "missing"
    job, output = _submit(slurm, work, "--nodes=1", config=work / "no_such_study.yaml",
                          study_args=[])  # fmt: skip
    record = _wait(slurm, job, output)
    text = output.read_text()
    assert record["JobState"] == "FAILED" and record["ExitCode"] == "2:0", text
    assert "no_such_study.yaml: no such file" in text
    assert "starting the Ray head" not in text  # refused before anything started
