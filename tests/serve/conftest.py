"""A tiny model and tokenizer, and real servers on free loopback ports, for the ``lm-serve`` tests.

The model is the ``debug`` preset (context 512) in float64, so that which requests share a batch never changes a
token and the server's texts can be compared exactly with the engine's offline output. ``LiveServer`` runs the
app under uvicorn in a thread (as ``lm-serve`` does, minus the signals) and always stops it; ``write_run`` puts
the same weights and tokenizer in a run directory for the tests that start ``lm-serve`` itself.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from cs336_lm.engine import Engine
from cs336_lm.nn import PRESETS, TransformerLM
from cs336_lm.run import RunDir
from cs336_lm.serve import create_app, listen, make_server
from cs336_lm.tokenizer import Tokenizer

SHAPE = {**PRESETS["debug"], "context_length": 512}
SPECIAL = "<|endoftext|>"
MODEL_NAME = "tiny"


def make_tokenizer() -> Tokenizer:
    """Bytes 0–255, 255 merges of printable pairs (ids 256–510) and ``<|endoftext|>`` (id 511): vocabulary 512."""
    printable = range(32, 127)
    pairs = [(a, b) for a in printable for b in printable][: SHAPE["vocab_size"] - 257]
    vocab = {i: bytes([i]) for i in range(256)} | {256 + i: bytes(p) for i, p in enumerate(pairs)}
    merges = [(bytes([a]), bytes([b])) for a, b in pairs]
    return Tokenizer(vocab, merges, [SPECIAL])


def make_model(dtype: torch.dtype = torch.float64, seed: int = 0) -> TransformerLM:
    torch.manual_seed(seed)
    return TransformerLM(**SHAPE, dtype=dtype).eval()


def write_run(root: Path, context_length: int = SHAPE["context_length"]) -> Path:
    """A run directory holding the float32 weights of ``make_model`` (with that context) and ``make_tokenizer``."""
    shape = {**SHAPE, "context_length": context_length}
    run = RunDir(root).create()
    make_tokenizer().save(run.tokenizer_dir)
    torch.manual_seed(0)
    model = TransformerLM(**shape)
    run.save_checkpoint(model, None, 0, None, config={"model": {**shape, "preset": None}})
    return root


class SlowEngine(Engine):
    """An engine whose every step takes at least ``delay`` seconds, so a test can act while a request runs."""

    delay = 0.01

    def step(self):
        time.sleep(self.delay)
        return super().step()


class LiveServer:
    """``create_app(engine, **options)`` served on a free loopback port in a thread; a context manager."""

    def __init__(self, engine: Engine, **options):
        options.setdefault("model_name", MODEL_NAME)
        self.app = create_app(engine, **options)
        self.engine_loop = self.app.state.engine_loop
        self.sock = listen("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = make_server(self.app, log_level="warning", grace=2.0)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()
        assert not self.thread.is_alive(), "the test server did not stop"
        assert not self.engine_loop._thread.is_alive(), "the engine thread did not stop"

    def metrics(self) -> dict[str, float]:
        """``/metrics`` as ``{"name{labels}": value}``."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def wait_idle(self, timeout: float = 10.0) -> dict[str, float]:
        """The metrics once no request runs or waits and no KV block is held (fails after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.metrics()
            if m["lm_requests_running"] == m["lm_requests_waiting"] == m["lm_kv_blocks_used"] == 0:
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"the server is still busy: {m}")
            time.sleep(0.05)


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    return make_tokenizer()


@pytest.fixture(scope="session")
def model() -> TransformerLM:
    return make_model()


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Tiny forwards run faster on one intra-op thread, above all on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def server(model, tokenizer):
    """One server for a module's tests (they measure its counters as differences)."""
    with LiveServer(Engine(model, tokenizer=tokenizer)) as live:
        yield live
