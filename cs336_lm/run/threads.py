"""How many intra-op threads torch uses on the CPU: ``train.threads: auto | N`` of ``lm-train``, and ``--threads``
of ``lm-generate``, ``lm-serve``, ``lm-perplexity`` and ``lm-compare``, one rule for all.

The threads of one CPU op (a matmul split into N parts) wait for each other at its end, so when another process
holds one of the cores, the part on that core finishes late and the whole op waits for it. On a shared machine
more threads than idle cores make a step slower, not faster: on the 2-core development machine at load 3, two
threads trained the demo at 350–1,500 tokens/s and one thread at 5,500–6,200 (docs/bench/demo.md), and beside a
process burning one core ``lm-generate`` decoded at 3.6 tokens/s on two threads and 113 on one
(docs/bench/threads.md). ``auto`` therefore gives each process one thread per idle core, as ``make demo`` does
(``scripts/demo.py``), counting the cores other work keeps busy during a quarter of a second at startup
(``/proc/stat``), not the 1-minute load average, which still counts a job that ended a moment ago.

``choose_threads`` is a pure function of the setting and the machine's state, so each rule is tested on its own.
On CUDA the setting still governs only the CPU's threads (tokenizing, sampling, the host side of each step).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cs336_lm.errors import ConfigError


@dataclass(frozen=True)
class ThreadChoice:
    """A thread count and why it was chosen, for the opening lines of a run."""

    count: int
    reason: str

    def describe(self) -> str:
        """E.g. ``1 (one per idle core: 2 CPUs, 1.3 busy now)``."""
        return f"{self.count} ({self.reason})"


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, as a container or ``taskset`` limits it), else the count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_average() -> float:
    """The 1-minute load average: runnable processes averaged over the last minute (0 where the OS has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


PROC_STAT = Path("/proc/stat")
BUSY_WINDOW_S = 0.25


def busy_cores(window: float = BUSY_WINDOW_S, stat: Path = PROC_STAT) -> float | None:
    """How many of this process's usable CPUs other work keeps busy right now: the non-idle share of their time in
    ``/proc/stat`` over ``window`` seconds, while this process sleeps. None where there is no ``/proc/stat``.

    Unlike the load average, it does not remember the last minute: a job that has just ended no longer counts.
    """
    cpus = {f"cpu{i}" for i in os.sched_getaffinity(0)} if hasattr(os, "sched_getaffinity") else None

    def sample() -> tuple[int, int] | None:
        try:
            lines = stat.read_text().splitlines()
        except OSError:
            return None
        busy = total = 0
        for line in lines:
            name, *fields = line.split()
            if not (name.startswith("cpu") and name != "cpu") or (cpus is not None and name not in cpus):
                continue
            ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
            total += sum(ticks)
            busy += sum(ticks) - ticks[3] - ticks[4]
        return (busy, total) if total else None

    before = sample()
    if before is None:
        return None
    time.sleep(window)
    after = sample()
    if after is None or after[1] <= before[1]:
        return None
    share = (after[0] - before[0]) / (after[1] - before[1])
    return share * (len(cpus) if cpus is not None else os.cpu_count() or 1)


def check_threads(spec: str, option: str = "train.threads") -> str:
    """``spec`` as ``choose_threads`` takes it (``auto`` or a positive integer as text, spaces and case aside), or a
    ``ConfigError`` naming ``option``: ``" Auto "`` -> ``"auto"``; ``"0"``, ``"-1"``, ``"abc"`` -> error."""
    text = str(spec).strip().lower()
    if text != "auto" and not (text.isdigit() and int(text) > 0):
        raise ConfigError(f"{option} must be auto or a positive integer; got {spec!r}")
    return text


def choose_threads(
    spec: str,
    *,
    option: str = "train.threads",
    deterministic_cpu: bool = False,
    environ: Mapping[str, str] | None = None,
    cpus: int | None = None,
    load: float | None = None,
    ceiling: int | None = None,
) -> ThreadChoice:
    """The intra-op thread count for ``option`` (``train.threads``, ``--threads``): ``"auto"`` or a positive integer
    as text, else a ``ConfigError`` (``check_threads``).

    ``N``: N. ``auto``, in order: ``OMP_NUM_THREADS`` when set (torchrun sets 1 for several processes); with
    ``deterministic_cpu`` (``train.deterministic`` on a CPU device) 1, because a count that follows the load would
    let two runs of one config compute with different splits of their matmuls, and so differ in the last bits;
    else the idle cores, ``cpus − round(busy)``, shared among this machine's training processes (torchrun's
    ``LOCAL_WORLD_SIZE``) and capped at ``ceiling`` (torch's default, the physical cores), at least 1. ``busy`` is
    ``load`` when given, else what ``busy_cores`` measures now, else (no ``/proc/stat``) the 1-minute load average.
    Example: 2 CPUs with 0.6 busy -> 1 thread; with 0.2 busy -> 2.
    """
    env = os.environ if environ is None else environ
    spec = check_threads(spec, option)
    if spec != "auto":
        return ThreadChoice(int(spec), option)
    if env.get("OMP_NUM_THREADS", "").isdigit() and int(env["OMP_NUM_THREADS"]) > 0:
        return ThreadChoice(int(env["OMP_NUM_THREADS"]), "OMP_NUM_THREADS")
    if deterministic_cpu:
        return ThreadChoice(1, "train.deterministic on a CPU: a count that does not follow the load; set train.threads")
    cpus = usable_cpus() if cpus is None else cpus
    measured = None if load is not None else busy_cores()
    if measured is not None:
        busy, how = measured, f"{measured:.1f} busy now"
    else:
        busy = load_average() if load is None else load
        how = f"load average {busy:.1f}"
    idle = max(1, cpus - round(busy))
    processes = int(env.get("LOCAL_WORLD_SIZE", "1") or 1)
    count = max(1, idle // max(1, processes))
    if ceiling is not None:
        count = min(count, ceiling)
    shared = f", shared by {processes} processes" if processes > 1 else ""
    return ThreadChoice(count, f"one per idle core: {cpus} CPUs, {how}{shared}")
