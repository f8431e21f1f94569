"""The trial's sending thread: records reach MLflow beside training, each once; a server that is
away is retried with back-off (not at every report); stopping ends the thread at once."""

from __future__ import annotations

import socket
import threading
import time

import pyarrow.fs as pafs
from mlflow.tracking import MlflowClient

from study import tracking
from study.journal import Journal, Sender


def _trial(uri: str, folder, trial_id: str = "t0") -> tuple[Journal, str]:
    experiment_id, parent = tracking.start_parent_run(uri, "journal_test", "multitask", "", {})
    info = tracking.TrackingInfo(
        uri=uri, experiment_id=experiment_id, parent_run_id=parent, study="journal_test",
        family="multitask", dataset={"name": "dsprites"},
    )  # fmt: skip
    journal = Journal(pafs.LocalFileSystem(), str(folder))
    journal.append(tracking.run_record(info, trial_id, f"trial_{trial_id}", {"lr": 0.1}))
    return journal, experiment_id


class CountingSender(Sender):
    def __init__(self, *args):
        super().__init__(*args)
        self.attempts = 0

    def flush(self, stoppable: bool = False) -> bool:
        self.attempts += 1
        return super().flush(stoppable)


def _wait_until(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_sending_thread_sends_every_record_once(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    journal, experiment_id = _trial(uri, tmp_path / "trial")
    sender = Sender(uri, journal)
    sender.start()
    sender.notify()
    for step in range(1, 21):
        journal.append({"op": "metrics", "step": step, "metrics": {"loss": 1.0 / step}, "time": 0})
        sender.notify()
    _wait_until(lambda: journal.sent == len(journal.records()))
    sender.stop()
    assert sender._thread is None
    journal.append({"op": "end", "status": "FINISHED", "reason": ""})
    assert sender.flush() and journal.sent == 22  # after stop, the caller sends the rest

    client = MlflowClient(uri)
    (run,) = client.search_runs([experiment_id], "tags.trial_id = 't0'")
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(1, 21))
    assert {m.step: m.value for m in history}[4] == 0.25


def test_an_unreachable_server_is_retried_with_back_off_and_stop_is_prompt(tmp_path):
    good = f"sqlite:///{tmp_path / 'mlruns.db'}"
    journal, _ = _trial(good, tmp_path / "trial")
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tracking.fail_fast():
        sender = CountingSender(f"http://127.0.0.1:{port}", journal)
        sender.start()
        started = time.monotonic()
        for step in range(1, 41):  # 40 reports in ~2 s: far more than the back-off allows
            journal.append({"op": "metrics", "step": step, "metrics": {"loss": 1.0}, "time": 0})
            sender.notify()
            time.sleep(0.05)
        attempts = sender.attempts
        thread = sender._thread
        stopping = time.monotonic()
        sender.stop()
    # back-off waits 1 s, 2 s, 4 s, ...: a handful of attempts, not one per report
    assert 1 <= attempts < 10, attempts
    assert not thread.is_alive() and time.monotonic() - stopping < 10
    assert journal.sent == 0 and len(journal.records()) == 41  # nothing lost, nothing sent
    assert time.monotonic() - started < 60


def test_sent_count_never_goes_back_and_a_record_is_on_disk_before_it_is_seen(tmp_path):
    journal = Journal(pafs.LocalFileSystem(), str(tmp_path / "trial"))
    journal.append({"op": "run", "tags": {"trial_id": "x"}})
    journal.mark_sent(1)
    journal.mark_sent(0)  # a slower second sender finishing late
    assert journal.sent == 1
    on_disk = Journal(pafs.LocalFileSystem(), str(tmp_path / "trial"))
    journal.append({"op": "metrics", "step": 1, "metrics": {"loss": 1.0}, "time": 0})
    assert len(on_disk.records()) == len(journal.records()) == 2


def test_stop_with_a_timeout_keeps_a_busy_thread_for_the_next_stop(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    journal, _ = _trial(uri, tmp_path / "trial")
    release = threading.Event()

    class SlowSender(Sender):
        def flush(self, stoppable: bool = False) -> bool:
            release.wait(30)  # a flush stuck on a slow server
            return super().flush(stoppable)

    sender = SlowSender(uri, journal)
    sender.start()
    sender.notify()
    time.sleep(0.2)
    assert sender.stop(timeout_s=0.2) is False and sender._thread is not None
    release.set()
    assert sender.stop() is True and sender._thread is None
    # it stopped between records: what it did not send, the caller sends, once
    assert Sender(uri, journal).flush() and journal.sent == len(journal.records())


def test_a_drivers_end_for_a_stopped_trial_is_kept_and_sent_after_the_trials_thread(tmp_path):
    # An ASHA stop: the driver journals the end (its own Journal of the trial's folder) while the
    # trial's sending thread may still be sending; the trial stops that thread (close)
    # and the driver sends later (_CloseRuns.SEND_AFTER_S). Nothing the two wrote is lost.
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    trial, experiment_id = _trial(uri, tmp_path / "trial")
    sender = Sender(uri, trial)
    sender.start()
    for step in range(1, 31):
        trial.append({"op": "metrics", "step": step, "metrics": {"loss": 1.0 / step}, "time": 0})
        sender.notify()
    driver = Journal(pafs.LocalFileSystem(), str(tmp_path / "trial"))
    driver.append(
        {"op": "end", "status": "KILLED", "reason": "stopped", "tags": {"stopped": "asha"}}
    )
    assert sender.stop(timeout_s=30.0) is True  # a loaded machine may take over a second
    assert Sender(uri, driver).flush()

    on_disk = Journal(pafs.LocalFileSystem(), str(tmp_path / "trial")).records()
    assert len(on_disk) == 32 and on_disk[-1]["status"] == "KILLED"
    assert driver.sent == 32
    client = MlflowClient(uri)
    (run,) = client.search_runs([experiment_id], "tags.trial_id = 't0'")
    assert run.info.status == "KILLED" and run.data.tags["stopped"] == "asha"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(1, 31))



_APPENDER = """
import sys, pyarrow.fs as pafs
from study.journal import Journal
journal = Journal(pafs.LocalFileSystem(), sys.argv[1])
for step in range(400):
    journal.append({"op": "metrics", "step": step, "metrics": {"pad": "x" * 2000}})
"""


def test_a_reader_never_sees_a_journal_shorter_than_before(tmp_path):
    """Each append rewrites the whole journal (object stores cannot append). Written in place, a
    reader (``study status``, ``study sync``, a retried trial) could find it cut short: a trial
    killed mid-write then lost epochs its newest checkpoint had passed (never sent, never trained
    again). Written beside and renamed, every read sees a whole journal: records only grow."""
    import subprocess
    import sys

    folder = tmp_path / "trial"
    writer = subprocess.Popen([sys.executable, "-c", _APPENDER, str(folder)])
    seen, reads = 0, 0
    while writer.poll() is None or reads == 0:
        steps = [r["step"] for r in Journal(pafs.LocalFileSystem(), str(folder)).records()]
        assert steps == list(range(len(steps))) and len(steps) >= seen, (seen, len(steps))
        seen, reads = len(steps), reads + 1
    assert writer.returncode == 0 and seen == 400 and reads > 50, (seen, reads)


def test_params_refused_after_the_run_was_made_are_sent_at_the_next_flush(tmp_path):
    """Found by benchmarks/tracking_load.py: a run made, then its params call failed (a busy
    server's timeout, a 5xx); the next flush found the run and sent the rest, never the params."""
    from mlflow.exceptions import MlflowException

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    journal, experiment_id = _trial(uri, tmp_path / "trial")
    journal.append({"op": "metrics", "step": 1, "metrics": {"loss": 1.0}, "time": 0})
    sender = Sender(uri, journal)
    log_batch, refused = sender.client.log_batch, []

    def refuse_params_once(run_id, metrics=(), params=(), tags=(), **kwargs):
        if params and not refused:
            refused.append(run_id)
            raise MlflowException("server busy")
        return log_batch(run_id, metrics=metrics, params=params, tags=tags, **kwargs)

    sender.client.log_batch = refuse_params_once
    assert not sender.flush() and journal.sent == 0  # the run is made, its params are not
    assert sender.flush() and journal.sent == 2
    (run,) = MlflowClient(uri).search_runs([experiment_id], "tags.trial_id = 't0'")
    assert refused == [run.info.run_id]
    assert run.data.params == {"lr": "0.1", "dataset.name": "dsprites"}
    assert run.data.metrics == {"loss": 1.0}
