"""Why a trial ended other than by finishing: one name per cause, shared by the trial's MLflow tags
(``end_cause`` beside the sentence in ``end_reason``), ``study status`` and the launch summary.

Ray says what killed a trial only in the text of its error (``Trial.get_error``: the traceback Tune
writes as text; its pickled twin is never read here). The names Ray gives each cause are matched
in that text; anything else is the trial's own exception.
"""

from __future__ import annotations

TAG = "end_cause"

DIVERGED = "diverged"  # a non-finite loss (NonFiniteLoss)
MISCONFIGURED = "misconfigured"  # its final report lacks search.metric
OUT_OF_MEMORY = "out_of_memory"  # Ray's memory monitor killed its worker
NODE_LOST = "node_lost"  # the node it ran on died or left the cluster
WORKER_DIED = "worker_died"  # its process died otherwise (a signal, a crash)
ERROR = "error"  # an exception in the trial
SIGNAL = "signal"  # the study was stopped (SIGINT, SIGTERM) while it ran
LAUNCH_ENDED = "launch_ended"  # the launch ended before it, with no signal (see the driver's log)
STOPPED = "stopped"  # stopped early by the scheduler (ASHA)

ENDED_EARLY = "ended early"
"""What a launch records as ``interrupted`` when it ended before its trials without a signal."""

DESCRIPTIONS = {
    DIVERGED: "diverged (non-finite loss)",
    MISCONFIGURED: "without search.metric in their final report",
    OUT_OF_MEMORY: "killed by Ray's memory monitor (out of memory)",
    NODE_LOST: "lost with their node",
    WORKER_DIED: "their worker process died",
    ERROR: "raised an error",
    SIGNAL: "stopped by a signal to the study",
    LAUNCH_ENDED: "cut off when the launch ended early",
    STOPPED: "stopped early by the scheduler",
}

# (cause, what Ray's error text says for it), first match wins: an OOM kill also reads as a dead
# worker, a lost node as a dead actor.
_MARKERS = (
    (OUT_OF_MEMORY, ("OutOfMemoryError", "low on memory", "memory monitor")),
    (NODE_LOST, ("NodeDiedError", "node has died", "node died", "node was terminated",
                 "marked dead", "NodeLost")),
    (WORKER_DIED, ("ActorDiedError", "WorkerCrashedError", "exited unexpectedly",
                   "worker died", "SIGKILL", "SIGSEGV", "killed by signal")),
)  # fmt: skip


def classify(error_text: str | None) -> tuple[str, str]:
    """The cause and a one-line reason for a trial error, from Ray's text of it."""
    text = error_text or ""
    for cause, markers in _MARKERS:
        if any(marker in text for marker in markers):
            return cause, f"{DESCRIPTIONS[cause]}; see the trial's error.txt"
    return ERROR, f"trial error: {_last_exception_line(text)}"


def _last_exception_line(text: str) -> str:
    """``ValueError: ...``: the last line of a traceback that names an exception."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    named = [line for line in lines if ":" in line and line.split(":", 1)[0].endswith(
        ("Error", "Exception", "Interrupt", "Exit"))]  # fmt: skip
    line = (named or lines or ["(no error text; see Ray's log)"])[-1]
    return line[:300]


def interruption(signal_name: str | None) -> tuple[str, str]:
    """The cause and reason of trials left running when a launch ended early."""
    if signal_name:
        return SIGNAL, f"{signal_name}: study interrupted"
    return LAUNCH_ENDED, "the launch ended before this trial did (no signal; see the driver's output)"


def summary(causes: dict[str, int]) -> str:
    """``2 killed by Ray's memory monitor (out of memory), 1 diverged``: counts in words."""
    return ", ".join(f"{n} {DESCRIPTIONS.get(c, c)}" for c, n in sorted(causes.items()) if n)
