"""The Prefect API of a command that runs flows: the configured server, or a temporary
API-only one started beside the command's imports (`rnnpipe.prefect_server.PrefectServer`)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator

from rnnpipe.errors import RnnpipeError, Terminated
from rnnpipe.prefect_server import PrefectServer, free_port


def _user_error_names() -> set[str]:
    names, todo = set(), [RnnpipeError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return names


class UserErrorsOnce(logging.Filter):
    """Drops Prefect's console lines about a run that failed on a user error (an
    `RnnpipeError`: bad data, a bad setting; the error itself, the task's and the flow's final
    state), which the command prints itself, once, as
    `error: ...` (`rnnpipe.cli.user_errors`). The run's logs in Prefect's API keep them: the
    filter sits on the console handler only."""

    def __init__(self) -> None:
        super().__init__()
        self.names = re.compile(r"\b(?:" + "|".join(sorted(_user_error_names())) + r")\b[(:]")

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("prefect"):
            return True
        if record.exc_info and isinstance(record.exc_info[1], RnnpipeError):
            return False
        return not self.names.search(record.getMessage())


def user_errors_once() -> None:
    """Put `UserErrorsOnce` on Prefect's console handlers (Prefect configures them when it
    is imported), unless rnnpipe logs at debug level (-v): then everything is shown."""
    if os.environ.get("RNNPIPE_LOG_LEVEL") == "DEBUG":
        return
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not any(
            isinstance(f, UserErrorsOnce) for f in handler.filters
        ):
            handler.addFilter(UserErrorsOnce())


def _api_configured() -> bool:
    """A Prefect server is configured: in the environment, or in this process's Prefect
    settings (a test harness sets them in code)."""
    if os.environ.get("PREFECT_API_URL"):
        return True
    if "prefect.settings" in sys.modules:
        from prefect.settings import PREFECT_API_URL

        return bool(PREFECT_API_URL.value())
    return False


def _drain_prefect() -> None:
    """Send what Prefect still holds for the API (log lines, events) while it answers."""
    try:
        if "prefect.logging.handlers" in sys.modules:
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=5)  # what Prefect's own APILogHandler.flush does
        if "prefect.events.worker" in sys.modules:
            from prefect.events.worker import EventsWorker

            EventsWorker.drain_all()
    except Exception:  # noqa: BLE001 - best effort: the run's outcome is already decided
        pass


@contextlib.contextmanager
def flow_api() -> Iterator[Callable[[], None]]:
    """The Prefect API for a command that runs flows. A configured server (`PREFECT_API_URL`)
    is used as it is. Otherwise a temporary API-only server (`prefect server start
    --no-services --no-ui`) on a free loopback port, with its state in PREFECT_HOME, as
    Prefect's ephemeral mode has; but started by the command itself, before it imports
    torch, MLflow and the flows, so that its 5-12 s start overlaps them, and without
    importing the server's code into this process (~90 MB) as the ephemeral mode does.
    It stops when the block ends. SIGTERM ends
    the block like Ctrl-C (KeyboardInterrupt), so a killed run is marked so and the server
    never outlives the command. Yields `ready()`: call it before the first flow (it waits for
    the temporary server to answer; with a configured server it returns at once; either way
    Prefect's console then leaves a user error to the command, `user_errors_once`)."""
    if _api_configured():
        yield user_errors_once
        return
    server = PrefectServer("127.0.0.1", free_port(), api_only=True).launch()
    os.environ["PREFECT_API_URL"] = server.api_url
    os.environ["PREFECT_UI_URL"] = ""  # no UI: Prefect prints no "View at" link to nowhere

    def interrupt(signum, frame):
        raise Terminated

    previous = signal.signal(signal.SIGTERM, interrupt)
    timeout = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS") or 90)

    def ready() -> None:
        user_errors_once()
        server.wait(timeout)

    try:
        yield ready
    finally:
        signal.signal(signal.SIGTERM, previous)
        _drain_prefect()
        os.environ.pop("PREFECT_API_URL", None)
        os.environ.pop("PREFECT_UI_URL", None)
        if server.stop() in (0, -signal.SIGTERM, None):
            server.log_path.unlink(missing_ok=True)  # kept when the server failed
