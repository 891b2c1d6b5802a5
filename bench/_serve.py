"""A served model for the benchmarks: `rnnpipe serve` started on a free loopback port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    model: str, env: dict[str, str] | None = None, timeout: float = 180
) -> tuple[subprocess.Popen, int, float]:
    """`rnnpipe serve MODEL` in its own session -> (process, port, seconds until /ping answered)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnpipe.cli", "serve", model, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    t0 = time.perf_counter()
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                return proc, port, time.perf_counter() - t0
        except OSError:
            if time.perf_counter() - t0 > timeout or proc.poll() is not None:
                proc.kill()
                raise SystemExit("server did not start") from None
            time.sleep(0.2)
