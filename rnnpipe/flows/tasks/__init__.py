"""Prefect tasks: thin wrappers that add retries, logging and artifacts around one library call
each. No maths here."""

from __future__ import annotations

import logging

from rnnpipe.errors import RnnpipeError


def retry_unless_user_error(task, task_run, state) -> bool:
    """Retry I/O failures, never user errors: a bad file stays bad on the second try."""
    try:
        state.result()
    except RnnpipeError:
        return False
    except Exception:
        return True
    return True


class _HideUserErrorTracebacks(logging.Filter):
    """Prefect logs failed runs with their traceback; for a user error (bad config, bad data)
    the one-line message is the whole story."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, RnnpipeError):
            record.exc_info, record.exc_text = None, None
        return True


def hide_user_error_tracebacks() -> None:
    for name in ("prefect.task_runs", "prefect.flow_runs"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _HideUserErrorTracebacks) for f in logger.filters):
            logger.addFilter(_HideUserErrorTracebacks())
