"""``lm-serve`` itself: its help, its one-line errors, and SIGTERM on a real process (which finishes or aborts what
runs, with a final event for each stream, and exits 0)."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
import torch

from cs336_lm.cli.serve import main

from .conftest import write_run

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("serve") / "run")


@pytest.fixture(scope="module")
def long_run_dir(tmp_path_factory) -> Path:
    """A 4096-token context: a stream to its end takes seconds, so SIGTERM surely comes while it runs."""
    return write_run(tmp_path_factory.mktemp("serve") / "long", context_length=4096)


def test_help_shows_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for text in ("--host HOST", "(default: 127.0.0.1)", "--port PORT", "(default: 8000)", "--api-key", "--device",
                 "--max-batch-tokens", "(default: 512)", "--max-kv-tokens", "--max-queue", "(default: 256)",
                 "--tokenizer", "--shutdown-grace", "--max-body-bytes"):  # fmt: skip
        assert text in out, text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "70000"], "--port must be in 0..65535"),
        (["--max-queue", "0"], "--max-queue must be >= 1"),
        (["--max-batch-tokens", "-1"], "--max-batch-tokens must be >= 1"),
        (["--shutdown-grace", "-2"], "--shutdown-grace must be >= 0"),
        (["--api-key", " "], "--api-key is empty"),
        (["--device", "tpu"], "tpu"),
    ],
)
def test_bad_arguments_are_one_error_line_and_exit_2(run_dir, capsys, args, message):
    assert main([str(run_dir), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_threads_1_is_applied_while_serving_and_stated_under_the_serving_line(run_dir, capsys, monkeypatch):
    """The server is a stand-in that starts, notes torch's count and stops: no port is served."""
    seen = []

    class Server:
        def __init__(self, app, *, on_started, **settings):
            self.on_started = on_started

        def run(self, sockets):
            self.on_started()
            seen.append(torch.get_num_threads())
            for sock in sockets:
                sock.close()

    monkeypatch.setattr("cs336_lm.serve.make_server", Server)
    torch.set_num_threads(2)  # the module's fixture puts back its own count after the module
    try:
        assert main([str(run_dir), "--port", "0", "--device", "cpu", "--threads", "1"]) == 0
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("serving ") and err[1:] == ["torch CPU threads: 1 (--threads)", "lm-serve stopped"]


def test_a_run_that_cannot_be_loaded_is_one_error_line(tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "does not exist" in err[0]
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    assert "holds no checkpoint" in capsys.readouterr().err


def test_a_port_in_use_is_one_error_line(run_dir, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main([str(run_dir), "--port", str(port), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: cannot listen on 127.0.0.1:{port}")


class ServeProcess:
    """``lm-serve RUN --port 0 ARGS`` as a child process, its URL read from its startup line; always ended."""

    def __init__(self, run_dir: Path, *args: str):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        cmd = [sys.executable, "-m", "cs336_lm.cli.serve", str(run_dir), "--port", "0", "--device", "cpu", *args]
        self.proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
        self.stderr: list[str] = []
        self.url = None
        started = threading.Event()

        def read() -> None:
            for line in self.proc.stderr:
                self.stderr.append(line)
                if line.startswith("serving "):
                    self.url = line.split(" at ", 1)[1].split(": the page")[0]
                    started.set()
            started.set()

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        if not started.wait(60) or self.url is None:
            self.close()
            raise AssertionError(f"lm-serve did not start: {''.join(self.stderr)}")

    def close(self) -> int:
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError("lm-serve did not exit after SIGTERM") from None
        finally:
            self.reader.join(10)


def stream_events(url: str, max_tokens: int, sent_first: threading.Event, events: list[str]) -> None:
    body = {"prompt": "Hi", "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"continuous_usage_stats": True}}  # fmt: skip
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=60) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
                sent_first.set()


@pytest.mark.parametrize("grace", ["30", "0"])
def test_sigterm_ends_streams_with_a_final_event_and_exits_0(long_run_dir, grace):
    server = ServeProcess(long_run_dir, "--shutdown-grace", grace, "--max-kv-tokens", "8192", "--log-level", "warning")
    try:
        assert server.url.startswith("http://127.0.0.1:")  # loopback unless told otherwise
        events: list[str] = []
        first = threading.Event()
        max_tokens = 200 if grace == "30" else 4000
        client = threading.Thread(target=stream_events, args=(server.url, max_tokens, first, events))
        client.start()
        assert first.wait(30)
        server.proc.send_signal(signal.SIGTERM)
        client.join(60)
        assert not client.is_alive()
    finally:
        if server.proc.poll() is None:
            server.proc.send_signal(signal.SIGTERM)
        code = server.close()
    assert code == 0, "".join(server.stderr)
    assert events[-1] == "[DONE]"
    last = json.loads(events[-2])
    if grace == "30":  # the stream had time to finish
        assert last["choices"][0]["finish_reason"] == "length" and last["usage"]["completion_tokens"] == 200
    else:  # aborted at once, with an error event the OpenAI client raises
        assert last["error"]["code"] == "shutdown"
        assert json.loads(events[-3])["usage"]["completion_tokens"] < 4000
    assert "Traceback" not in "".join(server.stderr)
