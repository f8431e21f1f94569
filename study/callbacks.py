"""The driver's Tune callback that ends child runs a trial process could not end itself (stopped by
the scheduler, errored, killed), in the trial's journal and in MLflow."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from ray import tune

from . import causes, tracking
from .journal import Journal, Sender
from .resume import RESUMES

log = logging.getLogger(__name__)


class CloseRuns(tune.Callback):
    """End child runs that trial processes could not end themselves."""

    # A stopped trial's own sending thread ends within about a second (RayContext.close): the
    # driver sends the end it journals for such a trial only after this, never beside it.
    SEND_AFTER_S = 5.0

    def __init__(
        self,
        info: tracking.TrackingInfo,
        scheduler: bool = False,
        resumed: dict[str, dict[str, str]] | None = None,
    ):
        self.info = info
        self.scheduler = scheduler
        self.resumed = resumed or {}
        self._to_send: list[tuple[float, Journal]] = []

    def _place(self, trial: Any) -> tuple[Journal, str]:
        """A trial's journal and trial id: those of the trial it continues, on a resume."""
        continues = trial.config.get(RESUMES)
        fs = trial.storage.storage_filesystem
        if continues in self.resumed:
            return Journal(fs, self.resumed[continues]["path"]), continues
        return Journal(fs, trial.storage.trial_fs_path), trial.trial_id

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # A trial that returned journaled its end; one without an end was stopped by the
        # scheduler (ASHA) between reports: record it as stopped, not finished.
        if not self.scheduler:
            return
        try:
            journal, _ = self._place(trial)
            records = journal.records()
            if any(r["op"] == "end" for r in records):
                return
            reports = sum(r["op"] == "metrics" for r in records)
            reason = f"stopped early by the scheduler after {reports} reports"
            tags = {"stopped": "asha", causes.TAG: causes.STOPPED}
            journal.append({"op": "end", "status": "KILLED", "reason": reason, "tags": tags})
            self._to_send.append((time.monotonic() + self.SEND_AFTER_S, journal))
        except Exception as err:  # never stop the study over bookkeeping; `study sync` retries
            log.warning("could not record the early stop of trial %s: %s", trial.trial_id, err)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        # What is still here when the launch ends goes with its final replay of the journals.
        now = time.monotonic()
        due = [journal for at, journal in self._to_send if at <= now]
        self._to_send = [(at, journal) for at, journal in self._to_send if at > now]
        for journal in due:
            try:
                with tracking.fail_fast():
                    Sender(self.info.uri, journal).flush()
            except Exception as err:
                log.warning("could not send the early stop in %s: %s", journal.directory, err)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # The trial cannot journal its own end any more: the driver does, for `status` and `sync`,
        # naming the cause Ray's error text gives (a memory kill, a lost node, an exception).
        try:
            cause, reason = causes.classify(_error_text(trial))
        except Exception:  # the error file is unreadable: still end the trial
            cause, reason = causes.ERROR, "trial error (see Ray's log)"
        journal, trial_id = self._place(trial)
        try:
            if not any(r["op"] == "run" for r in journal.records()):
                # Killed before it started (e.g. by the memory monitor at start-up): its run is
                # made here, with the params it was given, so MLflow shows it FAILED and why.
                given = {k: v for k, v in trial.config.items() if k != RESUMES}
                config = json.loads(json.dumps(given, default=str))
                record = tracking.run_record(self.info, trial_id, str(trial), config)
                journal.append({**record, "config": config})
            journal.append({"op": "end", "status": "FAILED", "reason": reason,
                            "tags": {causes.TAG: cause}})  # fmt: skip
        except Exception as err:  # never stop the study over bookkeeping
            log.warning("could not journal the end of trial %s: %s", trial.trial_id, err)
        try:
            with tracking.fail_fast():
                tracking.close_trial_run(self.info, trial_id, "FAILED", reason, cause)
        except Exception as err:  # the tracking server may be away: never stop the study for it
            log.warning("could not mark trial %s FAILED in MLflow: %s", trial.trial_id, err)




def _error_text(trial: Any) -> str | None:
    """Tune's text of a trial's error: the driver's local copy (written before this callback),
    else the one in storage. Text only: the pickled twin is never read."""
    local = trial.error_file
    if local and Path(local).is_file():
        return Path(local).read_text(errors="replace")
    return trial.get_error()
