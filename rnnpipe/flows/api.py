"""The Prefect API of a command that runs flows: the configured server, or a temporary
API-only one started beside the command's imports (`rnnpipe.prefect_server.PrefectServer`)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator

from rnnpipe.errors import Terminated
from rnnpipe.prefect_server import PrefectServer, free_port


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
    the temporary server to answer; with a configured server it returns at once)."""
    if _api_configured():
        yield lambda: None
        return
    server = PrefectServer("127.0.0.1", free_port(), api_only=True).launch()
    os.environ["PREFECT_API_URL"] = server.api_url
    os.environ["PREFECT_UI_URL"] = ""  # no UI: Prefect prints no "View at" link to nowhere

    def interrupt(signum, frame):
        raise Terminated

    previous = signal.signal(signal.SIGTERM, interrupt)
    timeout = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS") or 90)
    try:
        yield lambda: server.wait(timeout) and None
    finally:
        signal.signal(signal.SIGTERM, previous)
        _drain_prefect()
        os.environ.pop("PREFECT_API_URL", None)
        os.environ.pop("PREFECT_UI_URL", None)
        if server.stop() in (0, -signal.SIGTERM, None):
            server.log_path.unlink(missing_ok=True)  # kept when the server failed
