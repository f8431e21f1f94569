"""Faults against real processes: a trial process SIGKILLed; the driver interrupted (SIGINT) or
killed (SIGKILL) mid-study and resumed; a worker node removed; the tracking server stopped; a config
that differs from the launch being resumed; a second concurrent launch. Each
study must end with one run per trial, every run FINISHED, every epoch logged once, and
the same final numbers as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from study.records import study_lock
from trainables import DatasetConfig, LocalContext, get_family

QUICKSTART = Path(__file__).parents[2] / "configs" / "quickstart.yaml"
EPOCHS = 8
SUBSET = {"scale": [0, 5], "orientation": 0, "posX": "0:32:4", "posY": "0:32:4"}
SETTINGS = [
    "dataset.subset={scale: [0, 5], orientation: 0, posX: '0:32:4', posY: '0:32:4'}",
    f"fixed.epochs={EPOCHS}",
    "fixed.n_tasks=2",
    "fixed.metric_train_points=200",
    "fixed.metric_test_points=100",
    "fixed.pictures=false",
    "sweep={variant: [multi_head, random], seed: [0]}",
]
SECRET = "planted-secret-7f3a9c"  # an environment credential that must never be recorded

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _args(name: str, *extra: str) -> list[str]:
    args = [sys.executable, "-m", "study.cli", "run", str(QUICKSTART), "--num-cpus", "2"]
    for item in [*SETTINGS, f"name={name}", *extra]:
        args += ["--set", item]
    return args


def _env() -> dict[str, str]:
    return {**os.environ, "AWS_SECRET_ACCESS_KEY": SECRET}


def _client(cwd: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{cwd / 'mlruns.db'}")


def _runs(client: MlflowClient, name: str, role: str) -> list:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], f"tags.role = '{role}'")


def _max_epochs_logged(client: MlflowClient, name: str) -> int:
    try:
        runs = _runs(client, name, "trial")
        return max(
            (len(client.get_metric_history(r.info.run_id, "train/loss")) for r in runs), default=0
        )
    except Exception:  # the store may be mid-creation
        return 0


def _start_and_stop(
    cwd: Path, name: str, sig: int, *extra: str, client=None
) -> subprocess.CompletedProcess:
    """Start a study, send ``sig`` to the driver once a trial has logged 2 epochs."""
    process = subprocess.Popen(
        [*_args(name), *extra], cwd=cwd, env=_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    client = client or _client(cwd)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if _max_epochs_logged(client, name) >= 2:
            process.send_signal(sig)
            break
        time.sleep(0.2)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode not in (None, 0), stdout[-2000:] + stderr[-2000:]
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def stderr_of(result: subprocess.CompletedProcess) -> str:
    return result.stderr or ""


def _resume(cwd: Path, name: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "study.cli", "resume", name, "--num-cpus", "2"],
        cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert SECRET not in result.stdout + result.stderr  # nor in what the driver prints
    return result


@pytest.fixture(scope="module")
def uninterrupted() -> dict[str, dict[str, float]]:
    """The same trials in process, never stopped (the CPU gives the same numbers)."""
    torch.set_num_threads(1)
    family = get_family("multitask")
    results = {}
    for variant in ("multi_head", "random"):
        cfg = family.Config(
            variant=variant, epochs=EPOCHS, n_tasks=2, metric_train_points=200,
            metric_test_points=100, pictures=False, latent_dim=10, batch_size=128, lr=1e-3,
            task_seed=0,
        )  # fmt: skip
        data = family.prepare_data(DatasetConfig(subset=SUBSET), [cfg])
        results[variant] = family.fit(cfg, data, LocalContext())
    return results


def _assert_complete(cwd: Path, name: str, uninterrupted, client=None) -> None:
    client = client or _client(cwd)
    launches = _runs(client, name, "launch")
    assert len(launches) == 1 and launches[0].info.status == "FINISHED"
    trials = _runs(client, name, "trial")
    epochs = [len(client.get_metric_history(r.info.run_id, "train/loss")) for r in trials]
    print(  # what a reader of `pytest -s` sees: the closing note's fault table
        f"\n{name}: launches {[r.info.status for r in launches]}, trial runs "
        f"{sorted(r.info.status for r in trials)}, train/loss points per run {epochs}"
    )
    assert sorted(r.data.tags["variant"] for r in trials) == ["multi_head", "random"]
    for run in trials:
        assert run.info.status == "FINISHED"
        for key in ("train/loss", "val/rmse", "epoch"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert sorted(steps) == list(range(1, EPOCHS + 1)), (key, steps)
        expected = uninterrupted[run.data.tags["variant"]]
        for key in ("rmse", "mig", "dci_disentanglement", "dci_informativeness"):
            assert run.data.metrics[key] == expected[key], key
    # No credential from the environment reached the store, the artifacts or Ray's folders.
    for root in ("mlruns.db", "mlartifacts", "ray_results"):
        path = cwd / root
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            assert SECRET.encode() not in file.read_bytes(), file


def _trial_pids() -> list[int]:
    """Tune's trial actor processes on this machine."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="ignore")
            except OSError:
                continue
            if "ray::ImplicitFunc" in cmdline:
                pids.append(int(entry.name))
    return pids


def test_a_trial_process_killed_is_retried_from_its_checkpoint(tmp_path, uninterrupted):
    name = "faults_trial"
    process = subprocess.Popen(
        [*_args(name, "max_failures=2")], cwd=tmp_path, env=_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    client = _client(tmp_path)
    killed, deadline = False, time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if _max_epochs_logged(client, name) >= 2 and _trial_pids():
            for pid in _trial_pids():
                os.kill(pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.2)
    stdout, stderr = process.communicate(timeout=600)
    assert killed, stdout[-3000:] + stderr[-3000:]
    assert process.returncode == 0, stdout[-3000:] + stderr[-3000:]
    # Retried into the same run, epochs after the checkpoint trained again but logged once.
    _assert_complete(tmp_path, name, uninterrupted)


def test_sigint_then_resume(tmp_path, uninterrupted):
    stopped = _start_and_stop(tmp_path, "faults_int", signal.SIGINT)
    assert stopped.returncode == 130
    assert SECRET not in stopped.stdout + stderr_of(stopped)
    assert "study resume faults_int" in stopped.stderr
    assert "done" not in stopped.stdout.split("\n")[-3:]
    client = _client(tmp_path)
    (launch,) = _runs(client, "faults_int", "launch")
    assert launch.info.status == "KILLED"
    statuses = {r.info.status for r in _runs(client, "faults_int", "trial")}
    assert "RUNNING" not in statuses and "KILLED" in statuses
    _resume(tmp_path, "faults_int")
    _assert_complete(tmp_path, "faults_int", uninterrupted)


class _Crafted:
    """Unpickled, it writes a marker file: what anyone who can write shared storage could plant."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def _plant_crafted_state(experiment: Path, marker: Path) -> list[str]:
    """Replace Tune's state in a launch folder with payloads that run code when unpickled: every
    pickle (tuner.pkl, params.pkl, searcher state) and a cloudpickle payload in each JSON state."""
    import json
    import pickle

    import cloudpickle

    payload = pickle.dumps(_Crafted(marker))
    planted = []
    for path in [*experiment.rglob("*.pkl"), experiment / "tuner.pkl"]:
        path.write_bytes(payload)
        planted.append(path.name)
    fallback = {"_type": "CLOUDPICKLE_FALLBACK",
                "value": cloudpickle.dumps(_Crafted(marker)).hex()}  # fmt: skip
    for path in [*experiment.glob("experiment_state-*.json"), *experiment.glob("*-state-*.json")]:
        path.write_text(json.dumps({"trial_data": [], "runner_data": fallback}))
        planted.append(path.name)
    return planted


def test_sigkill_of_the_driver_then_resume(tmp_path, uninterrupted):
    """Resumed after a SIGKILL, from storage whose Tune state was replaced by crafted pickles:
    nothing of it is unpickled (the resume is planned from the trial journals' JSON)."""
    stopped = _start_and_stop(tmp_path, "faults_kill", signal.SIGKILL)
    assert stopped.returncode == -signal.SIGKILL
    ray = Path(sys.executable).with_name("ray")  # the driver's local Ray outlives it
    subprocess.run([str(ray), "stop", "--force"], capture_output=True, timeout=120)
    (launch,) = _runs(_client(tmp_path), "faults_kill", "launch")
    assert launch.info.status == "RUNNING"  # nobody could end it
    (experiment,) = (tmp_path / "ray_results").glob("faults_kill_*")
    marker = tmp_path / "crafted_pickle_ran"
    planted = _plant_crafted_state(experiment, marker)
    assert "tuner.pkl" in planted and any(p.startswith("experiment_state") for p in planted)
    resumed = _resume(tmp_path, "faults_kill")
    assert not marker.exists()
    assert f"resuming {experiment.name}: 0 trials ended, 2 to continue, 0 to start" in resumed.stdout
    _assert_complete(tmp_path, "faults_kill", uninterrupted)


def test_resume_refuses_a_different_config_and_a_second_launch_is_refused(tmp_path):
    stopped = _start_and_stop(tmp_path, "faults_cfg", signal.SIGINT)
    assert stopped.returncode == 130
    changed = subprocess.run(
        [*_args("faults_cfg", "fixed.lr=0.01"), "--resume"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert changed.returncode == 2
    assert changed.stderr.strip().startswith("error: resume: fixed.lr differs")
    with study_lock((tmp_path / "ray_results").resolve(), "faults_cfg"):
        second = subprocess.run(
            [sys.executable, "-m", "study.cli", "resume", "faults_cfg", "--num-cpus", "2"],
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert second.returncode == 2 and "already running" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1


class _Server:
    """A real `mlflow server` on 127.0.0.1 that can be stopped and started again on its port."""

    def __init__(self, root: Path):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.root, self.process = root, None
        self.uri = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        mlflow = Path(sys.executable).with_name("mlflow")
        self.process = subprocess.Popen(
            [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--backend-store-uri", f"sqlite:///{self.root / 'server.db'}",
             "--artifacts-destination", str(self.root / "server-artifacts"), "--workers", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        import requests

        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if requests.get(f"{self.uri}/health", timeout=1).ok:
                    return
            except requests.RequestException:
                time.sleep(0.5)
        raise RuntimeError("mlflow server did not start")

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=60)


def test_tracking_server_outage_then_sync(tmp_path, uninterrupted):
    server = _Server(tmp_path)
    server.start()
    client = MlflowClient(server.uri)
    name = "faults_outage"
    try:
        process = subprocess.Popen(
            [*_args(name), "--tracking-uri", server.uri], cwd=tmp_path,
            env={**_env(), "STUDY_TRACKING_RETRY_S": "5"},  # trials give up sending quickly
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.time() + 300
        while time.time() < deadline and _max_epochs_logged(client, name) < 2:
            time.sleep(0.2)
        server.stop()  # down for the rest of the study: far longer than the client's retries
        try:
            stdout, stderr = process.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        # Every trial trained to the end; only tracking is pending, and the study says so.
        assert process.returncode == 1, stdout[-2000:] + stderr[-2000:]
        assert f"study sync {name}" in stderr
        server.start()
        assert _max_epochs_logged(client, name) < EPOCHS  # the outage really lost records
        sync = [sys.executable, "-m", "study.cli", "sync", name, "--tracking-uri", server.uri]
        first = subprocess.run(sync, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert first.returncode == 0, first.stdout + first.stderr
        again = subprocess.run(sync, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0 and ", 0 records sent" in again.stdout  # idempotent
        _assert_complete(tmp_path, name, uninterrupted, client)
    finally:
        if server.process and server.process.poll() is None:
            server.stop()


def test_a_worker_node_removed_mid_study(tmp_path, uninterrupted, monkeypatch):
    import threading

    import ray
    from ray.cluster_utils import Cluster

    from study.launch import run_study
    from study.spec import load_spec

    monkeypatch.chdir(tmp_path)
    name = "faults_node"
    spec = load_spec(QUICKSTART, [*SETTINGS, f"name={name}", "max_failures=3"])
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=1)  # one trial per node
    cluster.wait_for_nodes()
    client = _client(tmp_path)

    def remove_worker_mid_study() -> None:
        deadline = time.time() + 300
        while time.time() < deadline and _max_epochs_logged(client, name) < 2:
            time.sleep(0.2)
        cluster.remove_node(worker)  # its trial dies with it and is retried on the head

    remover = threading.Thread(target=remove_worker_mid_study)
    try:
        ray.init(address=cluster.address, logging_level="ERROR")
        remover.start()
        result = run_study(
            spec, config_text="", tracking_uri=f"sqlite:///{tmp_path / 'mlruns.db'}",
            storage=tmp_path / "ray_results", verbose=0,
        )  # fmt: skip
        remover.join(timeout=300)
        assert result.n_errors == 0 and result.interrupted is None
        # The trial on the removed node started twice (its journal opened its run twice).
        journals = list((tmp_path / "ray_results").rglob("tracking_journal.jsonl"))
        starts = [p.read_text().count('"op": "run"') for p in journals]
        assert len(journals) == 2 and max(starts) == 2, starts
        _assert_complete(tmp_path, name, uninterrupted)
    finally:
        ray.shutdown()
        cluster.shutdown()
