"""How many intra-op threads torch uses on the CPU: ``train.threads: auto | N``.

The threads of one CPU op (a matmul split into N parts) wait for each other at its end, so when another process
holds one of the cores, the part on that core finishes late and the whole op waits for it. On a shared machine
more threads than idle cores make a step slower, not faster: on the 2-core development machine at load 3, two
threads trained the demo at 350–1,500 tokens/s and one thread at 5,500–6,200 (docs/bench/demo.md). ``auto``
therefore gives each training process one thread per idle core, as ``make demo`` does (``scripts/demo.py``).

``choose_threads`` is a pure function of the setting and the machine's state, so each rule is tested on its own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ThreadChoice:
    """A thread count and why it was chosen, for the opening lines of a run."""

    count: int
    reason: str

    def describe(self) -> str:
        """E.g. ``1 (one per idle core: 2 CPUs, load average 1.3)``."""
        return f"{self.count} ({self.reason})"


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, as a container or ``taskset`` limits it), else the count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_average() -> float:
    """The 1-minute load average: runnable processes averaged over the last minute (0 where the OS has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def choose_threads(
    spec: str,
    *,
    deterministic_cpu: bool = False,
    environ: Mapping[str, str] | None = None,
    cpus: int | None = None,
    load: float | None = None,
    ceiling: int | None = None,
) -> ThreadChoice:
    """The intra-op thread count for ``train.threads`` (``"auto"`` or a positive integer as text).

    ``N``: N. ``auto``, in order: ``OMP_NUM_THREADS`` when set (torchrun sets 1 for several processes); with
    ``deterministic_cpu`` (``train.deterministic`` on a CPU device) 1, because a count that follows the load would
    let two runs of one config compute with different splits of their matmuls, and so differ in the last bits;
    else the idle cores, ``cpus − round(load)``, shared among this machine's training processes (torchrun's
    ``LOCAL_WORLD_SIZE``) and capped at ``ceiling`` (torch's default, the physical cores), at least 1. Example:
    2 CPUs at load 0.6 -> 1 thread; at load 0.2 -> 2.
    """
    env = os.environ if environ is None else environ
    if spec != "auto":
        return ThreadChoice(int(spec), "train.threads")
    if env.get("OMP_NUM_THREADS", "").isdigit() and int(env["OMP_NUM_THREADS"]) > 0:
        return ThreadChoice(int(env["OMP_NUM_THREADS"]), "OMP_NUM_THREADS")
    if deterministic_cpu:
        return ThreadChoice(1, "train.deterministic on a CPU: a count that does not follow the load; set train.threads")
    cpus = usable_cpus() if cpus is None else cpus
    load = load_average() if load is None else load
    idle = max(1, cpus - round(load))
    processes = int(env.get("LOCAL_WORLD_SIZE", "1") or 1)
    count = max(1, idle // max(1, processes))
    if ceiling is not None:
        count = min(count, ceiling)
    shared = f", shared by {processes} processes" if processes > 1 else ""
    return ThreadChoice(count, f"one per idle core: {cpus} CPUs, load average {load:.1f}{shared}")
