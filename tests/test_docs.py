"""Every shell example in README.md and docs/*.md runs, against a small stand-in for what ``make demo`` leaves.

How the docs mark their examples (the convention this test holds them to):

- A fenced block tagged ``bash`` or ``sh`` is commands: every line that is not blank or a comment is one (a line
  ending in ``\\`` continues on the next). A block tagged ``console`` is a transcript: lines starting with ``$ `` are
  commands, the rest their output (shown, not compared). ``text``, ``python``, ``yaml`` and the like never run here
  (the README's Python example runs in tests/test_readme.py). An untagged block may hold no line that starts like
  a command (``$ ``, ``lm-…``, ``make``, ``python``, …): tag it ``console`` or ``text``.
- A block that cannot run as it is says why on the line right above its fence, ``<!-- needs: KIND -->``, with a
  KIND from ``NEEDS``: ``gpu``, ``download`` and ``minutes`` are skipped with that reason; ``server`` runs against
  an ``lm-serve`` the test starts; ``ctrl-c`` (a server, which runs until stopped) is started, stopped with SIGINT
  once it prints the address it serves at, and must exit 0 then.

The stand-in, built once per session in a temporary directory: the shipped ``configs/`` (``demo.yaml`` shrunk to a
one-layer model of context 64 trained 2 steps; its ``optim`` section as shipped), ``scripts/`` (a link), and what
the demo pipeline writes, at a small size: ``data/demo/`` (a 0.1 MB story corpus, a 300-token tokenizer, the token
files) and ``runs/demo/`` (that model, 2 checkpoints). Each page runs in a fresh copy of it, its blocks in order,
as a reader goes through it (two pages at a time); each command in ``bash`` with the console scripts and ``python``
of this interpreter first on ``PATH``, and must exit 0. ``ADJUSTMENTS`` keeps the commands small, explicitly.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_TAGS = {"bash", "sh", "console"}
NEEDS = {
    "gpu": "needs NVIDIA GPUs (scripts/gpu_check.sh runs the GPU checks on a lent GPU)",
    "download": "downloads from the internet, which no test reaches (tests/test_demo.py runs the recipes against a "
    "local stand-in for the hub)",
    "minutes": "runs for minutes: make demo (tests/test_demo.py runs its steps at a small size), the test suite "
    "itself, or a benchmark",
    "server": "talks to lm-serve at 127.0.0.1:8000: run against one the test starts on the small run",
    "ctrl-c": "a server that runs until stopped: started, then stopped with SIGINT once it prints its address",
}
# (pattern, replacement, why): applied to every command that runs, in this order
ADJUSTMENTS = [
    (r"^(lm-train(?:\s.*)?)$", r"\1 train.max_steps=2", "two training steps: the last value of a key wins"),
    (r"(--size-mb )[0-9.]+", r"\g<1>0.05", "a 50 KB corpus"),
    (r"^(lm-serve(?:\s.*)?)$", r"\1 --port 0", "any free port, said on its first line"),
    (r"^curl ", "curl --fail-with-body ", "an HTTP error status fails the command"),
]
API_KEY = "docs-test-key"
TINY_MODEL = {"vocab_size": 300, "context_length": 64, "d_model": 32, "num_layers": 1, "num_heads": 2, "d_ff": 64}
TINY_TRAIN = {"max_steps": 2, "batch_size": 4, "eval_every": 1, "eval_batches": 1, "log_every": 1, "ckpt_every": 1,
              "keep_last": 2, "device": "cpu", "threads": "1"}  # fmt: skip
TIMEOUT = 240


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    tag: str
    needs: str | None
    text: str

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"

    def commands(self) -> list[str]:
        """The commands, continuation lines joined and comments dropped; ``console`` output lines are skipped."""
        commands, pending = [], None
        for raw in self.text.splitlines():
            line = raw.rstrip()
            if pending is None:
                if self.tag == "console":
                    if not line.startswith("$ "):
                        continue
                    line = line[2:]
                line = strip_comment(line).strip()
                if not line:
                    continue
                pending = ""
            else:
                line = strip_comment(line).strip()
            if line.endswith("\\"):
                pending += line[:-1].rstrip() + " "
            else:
                commands.append(pending + line)
                pending = None
        assert pending is None, f"{self.name}: the last command ends in a backslash"
        return commands


def strip_comment(line: str) -> str:
    """``lm-serve runs/demo   # then open …`` -> ``lm-serve runs/demo   ``; a ``#`` inside quotes stays."""
    quote, escaped = None, False
    for i, c in enumerate(line):
        if escaped:
            escaped = False
        elif c == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


FENCE = re.compile(r"^( *)```(\S*)\n(.*?)^\1```[ \t]*$", flags=re.DOTALL | re.MULTILINE)  # also inside a list item
MARKER = re.compile(r"^\s*<!--\s*needs:\s*(\S+)\s*-->\s*$")


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    found = []
    for m in FENCE.finditer(text):
        indent, tag, body = m.groups()
        before = text[: m.start()]
        marker = MARKER.match(before.splitlines()[-1] if before else "")  # on the line above the fence
        body = "".join(line.removeprefix(indent) for line in body.splitlines(keepends=True))
        found.append(Block(page, before.count("\n") + 1, tag, marker.group(1) if marker else None, body))
    return found


SHELL_BLOCKS = [b for page in PAGES for b in blocks(page) if b.tag in SHELL_TAGS]


def adjust(command: str) -> str:
    for pattern, replacement, _ in ADJUSTMENTS:
        command = re.sub(pattern, replacement, command).strip()
    return command


# ---------------------------------------------------------------------------------------------------------------
# the stand-in for a checkout after `make demo`


def build_standin(root: Path) -> None:
    """configs/, scripts/, data/demo/ and runs/demo/ as described at the top, through the commands' own ``main``."""
    import torch

    from cs336_lm.cli import demo_corpus, tokenize, train, train_bpe

    shutil.copytree(REPO / "configs", root / "configs")
    demo = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text(encoding="utf-8"))
    demo["model"].update(TINY_MODEL)
    demo["train"].update(TINY_TRAIN)
    demo["optim"]["warmup_iters"] = 1
    (root / "configs" / "demo.yaml").write_text(yaml.safe_dump(demo, sort_keys=False), encoding="utf-8")
    (root / "scripts").symlink_to(REPO / "scripts")
    data = root / "data" / "demo"
    threads = torch.get_num_threads()
    cwd = Path.cwd()
    os.chdir(root)  # the commands take the paths a user types
    try:
        assert demo_corpus.main(["--size-mb", "0.1", "--valid-mb", "0.02", "--out", "data/demo"]) == 0
        assert train_bpe.main(["data/demo/train.txt", "--vocab-size", "300", "--out", "data/demo/tokenizer"]) == 0
        for split, npy in (("train", "train.npy"), ("valid", "val.npy")):
            args = ["--tokenizer", "data/demo/tokenizer", f"data/demo/{split}.txt", "--out", f"data/demo/{npy}"]
            assert tokenize.main([*args, "--num-workers", "1"]) == 0
        assert train.main(["--config", "configs/demo.yaml"]) == 0
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)
    assert (data / "val.npy").is_file() and (root / "runs" / "demo" / "checkpoints" / "latest").is_file()


@pytest.fixture(scope="module")
def standin(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("after-make-demo")
    build_standin(root)
    return root


@pytest.fixture(scope="module")
def environment(tmp_path_factory) -> dict[str, str]:
    """This interpreter as ``python``/``python3`` and its console scripts first on PATH; one torch thread; offline."""
    shims = tmp_path_factory.mktemp("bin")
    for name in ("python", "python3"):  # a script, not a link: a venv's python must be started by its own path
        (shims / name).write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        (shims / name).chmod(0o755)
    path = os.pathsep.join([str(shims), sysconfig.get_path("scripts"), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "KEY": API_KEY}  # fmt: skip


class Process:
    """A command started in the background whose output is collected by a thread."""

    def __init__(self, command: str, cwd: Path, env: dict[str, str]):
        self.proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=cwd, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, pattern: str, timeout: float = TIMEOUT) -> re.Match:
        """The first output line matching ``pattern``; fails when the process ends or the time is up without one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ended = not self.reader.is_alive()  # read before the lines: all of them are in then
            for line in list(self.lines):
                if m := re.search(pattern, line):
                    return m
            if ended:
                break
            time.sleep(0.1)
        raise AssertionError(f"no line matching {pattern!r} within {timeout:.0f} s:\n{self.output()}")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def output(self) -> str:
        return "".join(self.lines)[-4000:]


@pytest.fixture(scope="module")
def server(standin, environment):
    """``lm-serve runs/demo`` on a free loopback port with an API key: its address, ``127.0.0.1:PORT``."""
    env = {**environment, "LM_SERVE_API_KEY": API_KEY}
    served = Process("lm-serve runs/demo --port 0", standin, env)
    try:
        address = served.wait_for(r"http://(127\.0\.0\.1:\d+)").group(1)
        yield address
    finally:
        served.stop(signal.SIGTERM)


# ---------------------------------------------------------------------------------------------------------------
# the tests


def why_skipped(block: Block) -> str | None:
    if block.needs in ("gpu", "download", "minutes"):
        return NEEDS[block.needs]
    if block.needs == "server" and shutil.which("curl") is None:
        return "needs curl, which is not installed"
    return None


def run_block(block: Block, cwd: Path, env: dict[str, str], address: str | None) -> str | None:
    """Run the block's commands in ``cwd``; the failure, or None."""
    for command in map(adjust, block.commands()):
        if address:
            command = command.replace("127.0.0.1:8000", address)
        if block.needs == "ctrl-c":
            started = Process(command, cwd, env)
            try:
                started.wait_for(r"http://")  # the address it serves at: it is up
            except AssertionError as e:
                started.stop(signal.SIGKILL)
                return f"`{command}`: {e}"
            if started.proc.poll() is not None:
                return f"`{command}` ended by itself:\n{started.output()}"
            if started.stop() != 0:
                return f"`{command}` did not end cleanly on SIGINT:\n{started.output()}"
            continue
        proc = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT, check=False)  # fmt: skip
        if proc.returncode != 0:
            return f"`{command}` exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return None


@pytest.fixture(scope="module")
def failures(request, standin, environment, tmp_path_factory) -> dict[Block, str | None]:
    """Every selected block that runs, page by page, each page in its own copy of the stand-in and its blocks in
    order; two pages at a time (a command is mostly one process on one thread). ``{block: failure or None}``."""
    chosen = [
        item.callspec.params["block"]
        for item in request.session.items
        if getattr(item, "function", None) is test_shell_example_runs
    ]
    selected = [block for block in chosen if why_skipped(block) is None]
    pages = {block.page: [b for b in selected if b.page == block.page] for block in selected}
    address = request.getfixturevalue("server") if any(b.needs == "server" for b in selected) else None

    def run_page(page: Path) -> dict[Block, str | None]:
        cwd = tmp_path_factory.mktemp(page.stem)
        shutil.copytree(standin, cwd, symlinks=True, dirs_exist_ok=True)
        return {block: run_block(block, cwd, environment, address) for block in pages[page]}

    with ThreadPoolExecutor(max_workers=2) as pool:
        return {block: failure for result in pool.map(run_page, pages) for block, failure in result.items()}


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=lambda b: b.name)
def test_shell_example_runs(block, request):
    if reason := why_skipped(block):
        pytest.skip(reason)
    failure = request.getfixturevalue("failures")[block]
    assert failure is None, f"{block.name}: {failure}"


COMMAND_LIKE = re.compile(r"(\$ |lm-[a-z-]+ |make |python3? |torchrun |curl |pip )")


def test_every_example_is_classified():
    """Known markers only, on shell blocks; no command hidden in an untagged block; enough runs to mean something."""
    everything = [b for page in PAGES for b in blocks(page)]
    for b in everything:
        if b.needs is not None:
            assert b.needs in NEEDS, f"{b.name}: unknown <!-- needs: {b.needs} --> (known: {', '.join(NEEDS)})"
            assert b.tag in SHELL_TAGS, f"{b.name}: a needs marker on a {b.tag or 'untagged'} block"
        if b.tag == "":
            commands = [line for line in b.text.splitlines() if COMMAND_LIKE.match(line)]
            assert not commands, f"{b.name}: an untagged block with a command ({commands[0]!r}): tag it console or text"
        if b.tag in SHELL_TAGS:
            assert b.commands(), f"{b.name}: a {b.tag} block without a command"
    running = [c for b in SHELL_BLOCKS if b.needs not in ("gpu", "download", "minutes") for c in b.commands()]
    assert len(running) >= 20, running


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("lm-train --config configs/demo.yaml train.max_steps=2000 train.out_dir=runs/x",
         "lm-train --config configs/demo.yaml train.max_steps=2000 train.out_dir=runs/x train.max_steps=2"),
        ("lm-demo-corpus --size-mb 20 --out data/tales", "lm-demo-corpus --size-mb 0.05 --out data/tales"),
        ("lm-serve runs/demo", "lm-serve runs/demo --port 0"),
        ("curl -s http://x/v1/models", "curl --fail-with-body -s http://x/v1/models"),
        ("lm-train-bpe data/demo/train.txt --out tok", "lm-train-bpe data/demo/train.txt --out tok"),
        ("lm-generate runs/demo --prompt 'a # b'", "lm-generate runs/demo --prompt 'a # b'"),
    ],
)  # fmt: skip
def test_adjustments(command, expected):
    assert adjust(strip_comment(command)) == expected


def test_commands_are_read_as_a_shell_reads_them():
    text = "$ lm-perplexity runs/demo \\\n    --json   # one object\n{\n  \"step\": 2\n}\n$ echo '# kept'\n"
    block = Block(REPO / "x.md", 1, "console", None, text)
    assert block.commands() == ["lm-perplexity runs/demo --json", "echo '# kept'"]
    assert Block(REPO / "x.md", 1, "bash", None, "# a comment\n\nmake demo  # all\n").commands() == ["make demo"]
