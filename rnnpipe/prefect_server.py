"""A Prefect server on loopback as a child process: what scheduled runs need (the ephemeral
API cannot run schedules), and the temporary API of a command that runs flows
(`rnnpipe.flows.api.flow_api`). Only the `prefect` command is started; nothing here imports Prefect."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from rnnpipe import settings
from rnnpipe.errors import RnnpipeError


class PrefectServer:
    """`prefect server start` on host:port, as a child process with its log in PREFECT_HOME.
    `api_only`: the API alone, without the UI and the background services (scheduler,
    late runs...), as Prefect's own temporary server runs."""

    def __init__(self, host: str = "127.0.0.1", port: int = 4200, api_only: bool = False):
        self.host, self.port, self.api_only = host, port, api_only
        self.proc: subprocess.Popen | None = None
        self.log_path = settings.prefect_home() / (f"api-{os.getpid()}.log" if api_only else f"server-{port}.log")

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.ui_url}/api"

    def healthy(self, timeout: float = 2.0) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=timeout) as r:
                return r.status == 200 and json.loads(r.read() or b"false") is True
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def start(self, timeout: float = 90.0) -> PrefectServer:
        return self.launch().wait(timeout)

    def launch(self) -> PrefectServer:
        """Start the process and return at once (`wait` for it to answer). It runs in its own
        session: Ctrl-C in the terminal reaches this process, which stops the server last."""
        prefect_bin = Path(sys.executable).with_name("prefect")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        # the UI in the browser calls the API at this URL; by default it assumes port 4200
        env["PREFECT_SERVER_UI_API_URL"] = self.api_url
        extra = ["--no-services", "--no-ui"] if self.api_only else []
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(prefect_bin), "server", "start", "--host", self.host, "--port", str(self.port), *extra],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_end_with_parent if self.api_only else None,
            )
        return self

    def wait(self, timeout: float = 90.0) -> PrefectServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RnnpipeError(f"the Prefect server exited with code {self.proc.returncode}; see {self.log_path}")
            if self.healthy():
                return self
            time.sleep(0.1)
        self.stop()
        raise RnnpipeError(f"the Prefect server did not become healthy in {timeout:.0f} s; see {self.log_path}")

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()


def _end_with_parent() -> None:
    """In the child, before it runs: SIGTERM when the parent dies (Linux), so that a temporary
    server outlives no command, even one killed with SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
