"""What ``GET /metrics`` reports, in Prometheus' text exposition format (version 0.0.4).

``Metrics`` holds the counters. Each has one writer, so no lock is needed: the engine thread counts tokens,
finished requests, and the peak of running requests; the HTTP thread counts answered requests by path and status.
The gauges (running and waiting requests, KV blocks) come from the snapshot of ``EngineStats`` the engine thread
publishes after every step. ``render`` writes them all:

    # HELP lm_requests_running Requests in the running batch.
    # TYPE lm_requests_running gauge
    lm_requests_running 3
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from cs336_lm.engine import EngineStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Metrics:
    """Counters since the server started (see the module docstring for who writes which)."""

    http_requests: Counter[tuple[str, int]] = field(default_factory=Counter)  # (path, status) -> count
    prompt_tokens: int = 0
    generation_tokens: int = 0
    finished: Counter[str] = field(default_factory=Counter)  # engine finish reason -> count
    running_peak: int = 0

    def render(self, stats: EngineStats, model: str) -> str:
        """The exposition text for the counters and the engine snapshot ``stats``."""
        out: list[str] = []
        _family(out, "lm_info", "gauge", "The served model (always 1).", [({"model": model}, 1)])
        requests = [({"path": p, "status": str(s)}, n) for (p, s), n in sorted(self.http_requests.items())]
        _family(out, "lm_http_requests_total", "counter", "HTTP requests answered, by path and status.", requests)
        # the engine thread may add a reason meanwhile: sorted() copies the items in one step under the GIL
        finished = [({"reason": r}, n) for r, n in sorted(self.finished.items())]
        _family(out, "lm_requests_finished_total", "counter", "Completion choices finished, by reason.", finished)
        for name, kind, text, value in (
            ("lm_prompt_tokens_total", "counter", "Prompt tokens admitted, once per choice.", self.prompt_tokens),
            ("lm_generation_tokens_total", "counter", "Tokens generated.", self.generation_tokens),
            ("lm_requests_running", "gauge", "Requests in the running batch.", stats.running),
            ("lm_requests_waiting", "gauge", "Requests waiting for a place in the batch.", stats.waiting),
            ("lm_requests_running_peak", "gauge", "Most requests run at once since start.", self.running_peak),
            ("lm_kv_blocks_used", "gauge", "KV-cache blocks held by requests.", stats.blocks_used),
            ("lm_kv_blocks_capacity", "gauge", "KV-cache blocks in the pool.", stats.blocks_used + stats.blocks_free),
            ("lm_kv_block_size", "gauge", "Tokens per KV-cache block.", stats.block_size),
            ("lm_preemptions_total", "counter", "Requests preempted to free KV blocks.", stats.preemptions),
            ("lm_engine_steps_total", "counter", "Engine steps (forwards) run.", stats.steps),
        ):
            _family(out, name, kind, text, [({}, value)])
        return "\n".join(out) + "\n"


def _family(out: list[str], name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], int]]) -> None:
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} {kind}")
    for labels, value in samples:
        label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        out.append(f"{name}{{{label_text}}} {value}" if label_text else f"{name} {value}")


def _escape(value: str) -> str:
    """Label values escape backslash, double quote and newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
