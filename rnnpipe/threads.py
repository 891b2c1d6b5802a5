"""How many CPU threads a job of rnnpipe uses, so that sharing the machine costs what it should.

Two trainings on one 2-core machine, each with torch's defaults (2 intra-op threads, OpenMP
threads that spin at every barrier), ran at 1-30% of their lone speed: a spinning thread on a
core another process also wants burns the time slice the other's thread needs. No fixed
setting serves both cases (`bench/bench_contention.py`, stocks' default model, 2 cores):

    setting                         alone        two at once (each, share of alone)
    2 threads, spinning (before)    3,530 /s     1,007 /s   29%
    2 threads, OMP_WAIT_POLICY=PASSIVE 2,261 /s  2,063 /s   91%   (alone: -36%)
    1 thread                        2,278 /s     2,301 /s  101%   (alone: -35%)

so the number of threads follows what the cores are doing. `ThreadGovernor` starts with the
cores this process may use (`available_cpus`: its affinity mask, capped by a cgroup CPU
quota; a worker's share when a sweep, backtest or batch job splits the cores) and, every
`INTERVAL_S` of a training or prediction loop (`tick`), reads how much of those cores other
processes used since the last look (`/proc/stat` minus this process's own CPU time). It keeps
as many threads as there are cores the others leave free, at least one. A team of one thread
has no barrier to spin at, so a process that shares its cores stops spinning; alone, it keeps
the spinning team that makes it fast.

`train.threads = auto | N` chooses: `N` is fixed (capped by the cores available), `auto`
adapts. The run logs the setting as a param and the cores it started with as the tag
`torch_threads`. This module imports torch only when it changes torch's setting.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

INTERVAL_S = 0.5  # how often a loop's `tick` looks at the cores
SPARE = 0.25  # a core counts as free while other processes use at most this much of it (floor(cores - others + SPARE))

_share: int | None = None  # a worker's share of the cores, set by `share`
_governor: ThreadGovernor | None = None


def _cgroup_quota(root: Path) -> float | None:
    """CPUs allowed by a cgroup CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us`), or None."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def _affinity() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return list(range(os.cpu_count() or 1))


def available_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """The cores this process may run on: its affinity mask, capped by a cgroup quota
    (rounded up: a quota of 1.5 CPUs gets 2 threads)."""
    cpus = len(_affinity())
    quota = _cgroup_quota(cgroup_root)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def share(n: int | None) -> int | None:
    """A worker of a sweep, backtest or batch job gets `n` of the cores (None: no split):
    no thread setting in this process goes above it. Returns the share it replaces."""
    global _share
    before, _share = _share, (None if n is None else max(1, int(n)))
    return before


@contextlib.contextmanager
def worker_share(n: int | None):
    """`share(n)` for one piece of work, the earlier share restored after it (a trial run in
    the caller's process must not cap what the process does next)."""
    before = share(n)
    try:
        yield
    finally:
        share(before)


def parse(setting: str | int) -> str | int:
    """`train.threads`: "auto" or a whole number >= 1 (text from the command line or TOML)."""
    from rnnpipe.errors import ConfigError

    text = str(setting).strip().lower()
    if text == "auto":
        return "auto"
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"train.threads={setting!r}: expected auto or a whole number >= 1")
    return n


def resolve(setting: str | int = "auto", cpus: int | None = None) -> int:
    """The most intra-op threads a job may use: `setting` (a number) or, for `auto`, the
    available cores, never above a worker's share nor the available cores."""
    limit = cpus or available_cpus()
    if _share is not None:
        limit = min(limit, _share)
    chosen = parse(setting)
    return max(1, min(limit if chosen == "auto" else int(chosen), limit))


def _busy_seconds(cpus: list[int]) -> float | None:
    """CPU seconds the cores `cpus` have spent busy since boot (`/proc/stat`), or None."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    wanted, busy = {f"cpu{c}" for c in cpus}, 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if name in wanted:
            v = [int(x) for x in rest.split()]
            busy += v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)  # not idle, iowait
    return busy / os.sysconf("SC_CLK_TCK")


class ThreadGovernor:
    """Keeps torch's intra-op threads at the number of cores (up to `limit`) that other
    processes leave free, looked at every `interval` seconds of `tick` calls."""

    def __init__(self, limit: int, interval: float = INTERVAL_S):
        self.limit, self.interval = limit, interval
        self.cpus = _affinity()
        self._last = self._sample()

    def _sample(self) -> tuple[float, float | None, float]:
        return time.monotonic(), _busy_seconds(self.cpus), time.process_time()

    def others(self, before, after) -> float | None:
        """Cores used by other processes between two samples."""
        (t0, b0, own0), (t1, b1, own1) = before, after
        if b0 is None or b1 is None or t1 <= t0:
            return None
        return max(0.0, (b1 - b0) - (own1 - own0)) / (t1 - t0)

    def target(self, others: float) -> int:
        return max(1, min(self.limit, math.floor(len(self.cpus) - others + SPARE)))

    def tick(self) -> None:
        if time.monotonic() - self._last[0] < self.interval:
            return
        now = self._sample()
        others = self.others(self._last, now)
        self._last = now
        if others is not None and _set_torch_threads(self.target(others)):
            log.debug("other processes used %.2f cores: %d torch threads", others, self.target(others))


def _set_torch_threads(n: int) -> bool:
    import torch

    if torch.get_num_threads() == n:
        return False
    torch.set_num_threads(n)
    return True


def apply(setting: str | int = "auto") -> int:
    """Set torch's intra-op threads for a job (training, evaluation, a batch job) and, for
    `auto` on a machine whose cores can be watched, start adapting them (`tick`). Returns the
    most threads the job may use."""
    global _governor
    n = resolve(setting)
    _set_torch_threads(n)
    adaptive = parse(setting) == "auto" and n > 1 and available_cpus() == len(_affinity())
    _governor = ThreadGovernor(n) if adaptive and _busy_seconds(_affinity()) is not None else None
    return n


def tick() -> None:
    """Called often from training and prediction loops: cheap unless `INTERVAL_S` passed."""
    if _governor is not None:
        _governor.tick()
