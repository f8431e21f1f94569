"""What a launch prints while it runs: one line each time its state changes, instead of Tune's
trial tables every 30 seconds (744 lines for the 8-trial quickstart). The line is what ``study
status`` says (read from the same journals): trials ended / running / pending, best so far by the
study's metric, elapsed time and time left. ``study run --verbose`` brings Tune's tables back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ray import tune

from .status import Seen, StudyStatus, study_status
from .storage import StoragePath

log = logging.getLogger(__name__)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def progress_line(state: StudyStatus) -> str:
    """``[3/8] 3 finished, 2 running, 3 pending · best mig 0.3123 (seed=0) · 1m40s, ~2m left``."""
    news, clock = _progress_parts(state)
    return f"{news} · {clock}"


def _progress_parts(state: StudyStatus) -> tuple[str, str]:
    """(what changed: counts and the best so far, the clock: elapsed and time left)."""
    counts = state.counts
    ended = counts["FINISHED"] + counts["FAILED"] + counts["STOPPED"] + counts["KILLED"]
    width = len(str(state.n_trials))
    parts = [f"{n} {status.lower()}" for status, n in counts.items() if n]
    news = f"[{ended:>{width}}/{state.n_trials}] {', '.join(parts) or 'starting'}"
    if state.best is not None:
        news += f" · best {state.metric} {state.best.metric:.4f} ({state.best.label()})"
    clock = _duration(state.elapsed_s)
    if state.remaining_s:
        clock += f", ~{_duration(state.remaining_s)} left"
    return news, clock


class Progress(tune.Callback):
    """Says ``progress_line`` once trials have started or ended (``settle_s`` after the first
    change, so that a trial ending and the next starting make one line), and once more at the
    end. Never stops a study: a line it cannot read is skipped."""

    def __init__(
        self, storage: StoragePath, study: str, say: Callable[[str], Any], settle_s: float = 1.5
    ):
        self.storage, self.study, self.say, self.settle_s = storage, study, say, settle_s
        self._changed_at: float | None = None
        self._said_at, self._gap_s = 0.0, 0.0
        self._last = ""
        self._seen: Seen = {}  # journals read, kept: each line reads only the ones that changed

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks into tuner.pkl; a console (its lock) cannot be, and is not
        # needed there: a resume never reads that file (study.resume).
        return {**self.__dict__, "say": print, "_seen": {}}

    def _note(self, *args: Any, **info: Any) -> None:
        if self._changed_at is None:
            self._changed_at = time.monotonic()

    on_trial_start = on_trial_complete = on_trial_error = on_trial_recover = _note

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        if (
            self._changed_at is not None
            and now - self._changed_at >= self.settle_s
            and now - self._said_at >= self._gap_s
        ):
            self._tell()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._tell()

    def _tell(self) -> None:
        self._changed_at, self._said_at = None, time.monotonic()
        try:
            state = study_status(self.storage, self.study, seen=self._seen)
        except Exception as err:  # a journal mid-write on a slow store: the next change says it
            log.debug("progress: %s", err)
            return
        # Each line reads every trial's journal: a study of thousands of trials says less often
        # (12,600 trials: a line a minute at most), so the driver is not busy reading.
        self._gap_s = state.n_trials / 200
        news, clock = _progress_parts(state)
        if news != self._last:  # the same counts and best again: only the clock moved
            self.say(f"{news} · {clock}")
        self._last = news
