"""``make demo``'s pipeline end to end at a tiny size, and the real-dataset recipe against a local server.

Both scripts run as a user runs them (``python scripts/…``), calling the real CLIs; only the sizes shrink:
a 100 KB corpus, a 300-token vocabulary and a one-layer model trained for a few dozen steps.
"""

import gzip
import importlib.util
import json
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cs336_lm.tinytales import EOT, iter_documents

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = [
    "model.context_length=64", "model.d_model=32", "model.num_layers=1", "model.num_heads=2", "model.d_ff=64",
    "train.batch_size=8", "train.max_steps=30", "train.eval_every=15", "train.eval_batches=2", "train.log_every=5",
    "train.ckpt_every=15", "optim.warmup_iters=4", "optim.lr=1e-2", "train.device=cpu", "train.dtype=fp32",
]  # fmt: skip


def run_script(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def records(run: Path) -> tuple[list[float], list[float]]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in lines if "loss" in r], [r["val_loss"] for r in lines if "val_loss" in r]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The demo pipeline at a tiny size, run twice (the second run must skip what is up to date)."""
    tmp = tmp_path_factory.mktemp("demo")
    args = ["--data-dir", str(tmp / "data"), "--run-dir", str(tmp / "run"), "--size-mb", "0.1", "--valid-mb", "0.02",
            "--vocab-size", "300", "--max-new-tokens", "24", "--prompt", "Once upon a time",
            "--config", str(ROOT / "configs" / "demo.yaml"), "--threads", "1", *TINY_MODEL]  # fmt: skip
    first = run_script("demo.py", *args, "--prompt", "One day", cwd=tmp)
    after_first = {name: (tmp / "run" / name).read_text() for name in ("metrics.jsonl", "samples.txt")}
    second = run_script("demo.py", *args, cwd=tmp)  # one prompt less: the stories are not part of the record
    return tmp, first.stdout, second.stdout, after_first


def test_demo_writes_every_artifact(demo_run):
    tmp, out, _, _ = demo_run
    data, run = tmp / "data", tmp / "run"
    for path in ("train.txt", "valid.txt", "tokenizer/vocab.json", "tokenizer/merges.txt", "train.npy", "val.npy"):
        assert (data / path).is_file(), path
    assert (data / "train.txt").read_text(encoding="utf-8").endswith(f"\n{EOT}\n")
    assert len(json.loads((data / "tokenizer" / "vocab.json").read_text(encoding="utf-8"))) == 300
    for path in ("config.yaml", "metrics.jsonl", "checkpoints/latest", "samples.txt", "loss.png"):
        assert (run / path).is_file(), path
    assert (run / "loss.png").read_bytes().startswith(b"\x89PNG")
    for n, title in enumerate(["Write the story corpus", "Train a BPE tokenizer", "Tokenize train and valid",
                               "Train the model", "Tell some stories", "Plot the loss curves"], start=1):  # fmt: skip
        assert f"[{n}/6] {title}" in out
    assert "$ lm-train --config" in out and "Done" in out


def test_demo_loss_goes_down(demo_run):
    tmp = demo_run[0]
    train, val = records(tmp / "run")
    assert len(train) >= 5 and len(val) >= 2
    assert train[-1] < train[0] - 1.0  # from ~ln(300) = 5.7 towards the corpus's entropy
    assert val[-1] < val[0]


def test_demo_generates_from_each_prompt(demo_run):
    samples = demo_run[3]["samples.txt"].split("\n\n---\n\n")
    assert len(samples) == 2
    assert "Once upon a time" in samples[0] and "One day" in samples[1]
    assert all(len(s) > len("Once upon a time") for s in samples)


def test_demo_second_run_skips_what_is_up_to_date(demo_run):
    tmp, _, second, after_first = demo_run
    assert second.count("(up to date") == 5  # corpus, tokenizer, two token files, training
    assert (tmp / "run" / "metrics.jsonl").read_text() == after_first["metrics.jsonl"]  # no retraining
    assert "Tell some stories" in second and (tmp / "run" / "loss.png").is_file()


def load_demo_module():
    spec = importlib.util.spec_from_file_location("demo_script", ROOT / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ledger_tracks_commands_inputs_and_completion(tmp_path):
    ledger_cls = load_demo_module().Ledger
    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_text("a")
    ledger = ledger_cls(tmp_path / "pipeline.json")
    assert not ledger.done("s", ["x"], [src], [out])
    ledger.record("s", ["x"], [src], finished=False)
    out.write_text("b")
    assert ledger.same("s", ["x"], [src]) and not ledger.done("s", ["x"], [src], [out])  # started, not finished
    ledger.record("s", ["x"], [src], finished=True)
    reread = ledger_cls(tmp_path / "pipeline.json")
    assert reread.done("s", ["x"], [src], [out])
    assert not reread.done("s", ["y"], [src], [out])  # other command
    src.write_text("changed")
    assert not reread.done("s", ["x"], [src], [out])  # other input
    src.write_text("a")
    out.unlink()
    assert not ledger_cls(tmp_path / "pipeline.json").done("s", ["x"], [src], [out])  # output gone


def test_thread_choice(monkeypatch):
    thread_env = load_demo_module().thread_env
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("cs336_lm.run.threads.usable_cpus", lambda: 16)
    for busy, threads in [(0.2, "16"), (3.6, "12"), (15.7, "1"), (40.0, "1")]:
        monkeypatch.setattr("cs336_lm.run.threads.busy_cores", lambda busy=busy: busy)
        env, why = thread_env("auto")
        assert env["OMP_NUM_THREADS"] == threads and f"16 CPUs, {busy:.1f} busy now" in why
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert thread_env("auto")[0]["OMP_NUM_THREADS"] == "3"
    assert thread_env("2")[0]["OMP_NUM_THREADS"] == "2"


def make_hub(root: Path) -> None:
    """Tiny stand-ins for the Hugging Face files, at the paths of the real URLs."""
    ts = root / "datasets" / "roneneldan" / "TinyStories" / "resolve" / "main"
    ts.mkdir(parents=True)
    (ts / "TinyStoriesV2-GPT4-train.txt").write_text("".join(iter_documents(60_000, seed=1)), encoding="utf-8")
    (ts / "TinyStoriesV2-GPT4-valid.txt").write_text("".join(iter_documents(10_000, seed=2)), encoding="utf-8")
    owt = root / "datasets" / "stanford-cs336" / "owt-sample" / "resolve" / "main"
    owt.mkdir(parents=True)
    (owt / "owt_train.txt.gz").write_bytes(gzip.compress("".join(iter_documents(40_000, seed=3)).encode()))
    (owt / "owt_valid.txt.gz").write_bytes(gzip.compress("".join(iter_documents(8_000, seed=4)).encode()))


@pytest.fixture
def hub(tmp_path):
    make_hub(tmp_path / "hub")
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path / "hub"))
    handler.log_message = lambda *a: None
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.mark.slow
def test_tinystories_recipe_end_to_end(hub, tmp_path):
    data, run = tmp_path / "data", tmp_path / "run"
    out = run_script("datasets.py", "tinystories", "--mirror", hub, "--data-dir", str(data), "--run-dir", str(run),
                     "--vocab-size", "300", *TINY_MODEL, cwd=ROOT).stdout  # fmt: skip
    assert (data / "TinyStoriesV2-GPT4-train.txt").read_text(encoding="utf-8").count(EOT) > 50
    sums = (data / "SHA256SUMS").read_text().splitlines()
    assert [line.split("  ")[1] for line in sums] == ["TinyStoriesV2-GPT4-train.txt", "TinyStoriesV2-GPT4-valid.txt"]
    assert (data / "tinystories" / "train.npy").is_file() and (data / "tinystories" / "val.npy").is_file()
    train, _ = records(run)
    assert train[-1] < train[0]
    assert "sha256" in out
    again = run_script("datasets.py", "tinystories", "--mirror", hub, "--data-dir", str(data), "--until", "tokenize",
                       "--vocab-size", "300", cwd=ROOT).stdout  # fmt: skip
    assert again.count("(up to date") == 3  # files verified against SHA256SUMS, nothing redone


def test_owt_recipe_downloads_and_decompresses(hub, tmp_path):
    data = tmp_path / "data"
    run_script("datasets.py", "owt", "--mirror", hub, "--data-dir", str(data), "--until", "tokenize",
               "--vocab-size", "300", cwd=ROOT)  # fmt: skip
    assert (data / "owt_train.txt").read_text(encoding="utf-8").count(EOT) > 30
    assert not (data / "owt_train.txt.gz").exists()  # archives are removed once decompressed
    assert (data / "owt" / "tokenizer" / "vocab.json").is_file() and (data / "owt" / "val.npy").is_file()


def test_recipe_reports_a_corrupt_download(hub, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "SHA256SUMS").write_text(f"{'0' * 64}  TinyStoriesV2-GPT4-train.txt\n")
    argv = [
        sys.executable,
        str(ROOT / "scripts" / "datasets.py"),
        "tinystories",
        "--mirror",
        hub,
        "--data-dir",
        str(data),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode != 0
    assert "checksum mismatch" in proc.stderr and "TinyStoriesV2-GPT4-train.txt" in proc.stderr
