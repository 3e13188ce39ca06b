"""Two CPU processes under torchrun (Gloo): DDP and FSDP2 against one process fed the same examples, resume,
only rank 0 writing, a failure on one rank, SIGTERM; plus the process-identity and helper functions on their own.

The equivalence reference is a plain in-process run with batch 2b whose ``next_batch`` concatenates the batches
rank 0 and rank 1 draw from their own samplers (``batch_generator(seed, 0)`` and ``(seed, 1)``), so both runs
see the same windows at every micro-step. The torchrun runs start together (module fixture) to overlap their
start-up on a busy machine.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cs336_lm.config import load_config
from cs336_lm.data import get_batch, iter_eval_batches, load_tokens, write_tokens
from cs336_lm.errors import ConfigError
from cs336_lm.nn import TransformerLM
from cs336_lm.nn.functional import cross_entropy
from cs336_lm.run import RunDir, read_checkpoint
from cs336_lm.tokenizer import Tokenizer
from cs336_lm.training import parallel
from cs336_lm.training.metrics import read_metrics
from cs336_lm.training.runtime import ProcessInfo, process_info, training_device
from cs336_lm.training.trainer import Trainer, batch_generator, train

HERE = Path(__file__).resolve().parent
WORKER = HERE / "distributed_worker.py"
DEBUG_CONFIG = HERE.parents[1] / "configs" / "debug.yaml"
B = 2  # micro-batch per rank
STEPS = 4
TIMEOUT_S = 240


def overrides(inputs: dict, out_dir: Path, extra: dict | None = None) -> list[str]:
    """A tiny fp32 run of STEPS steps with gradient accumulation and active clipping (grad_clip below the norm)."""
    values = {
        "data.train_path": inputs["train"],
        "data.val_path": inputs["val"],
        "data.tokenizer_dir": inputs["tokenizer"],
        "train.out_dir": out_dir,
        "model.vocab_size": 257,
        "model.context_length": 16,
        "model.d_model": 32,
        "model.num_heads": 2,
        "model.num_layers": 2,
        "model.d_ff": 64,
        "train.batch_size": B,
        "train.grad_accum_steps": 2,
        "train.max_steps": STEPS,
        "train.eval_every": 2,
        "train.eval_batches": 3,
        "train.log_every": 1,
        "train.ckpt_every": 2,
        "train.keep_last": 5,
        "train.device": "cpu",
        "train.threads": 1,
        "train.dtype": "fp32",
        "train.compile": "false",
        "optim.lr": 3e-3,
        "optim.warmup_iters": 1,
        "optim.grad_clip": 0.5,
        **(extra or {}),
    }
    return [f"{k}={v}" for k, v in values.items()]


def launch(inputs, out_dir, extra=None, worker_args=(), nproc=2) -> subprocess.Popen:
    """Create ``out_dir``, start ``torchrun --standalone`` (it picks a free rendezvous port) on the worker."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", str(WORKER)]
    cmd += [*worker_args, "lm-train", "--config", str(DEBUG_CONFIG), *overrides(inputs, out_dir, extra)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    out_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(cmd, env=env, cwd=out_dir.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    """Wait (bounded: a hang fails the test instead of the suite) and return (status, stdout, stderr)."""
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"torchrun did not finish in {TIMEOUT_S}s (hang?)\n{out}\n{err}")
    return proc.returncode, out, err


SENTENCES = [
    "The little fox jumped over the fence and ran into the green field.",
    "Mia baked bread with her grandfather, and the kitchen smelled warm.",
    "A small boat sailed across the lake while the ducks watched quietly.",
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """A byte-level tokenizer and train/val token files (module-wide: the torchrun runs share them)."""
    root = tmp_path_factory.mktemp("inputs")
    tok = Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|endoftext|>"])
    tok.save(root / "tokenizer")
    text = " ".join(SENTENCES[(i * 2) % 3] for i in range(60)) + "<|endoftext|>"
    write_tokens(root / "train.npy", tok.encode(text), tok.vocab_size)
    write_tokens(root / "val.npy", tok.encode(text[:600]), tok.vocab_size)
    return {"train": root / "train.npy", "val": root / "val.npy", "tokenizer": root / "tokenizer"}


@pytest.fixture(scope="module")
def runs(inputs, tmp_path_factory, request) -> dict[str, tuple[Path, int, str, str]]:
    """Every torchrun run, launched as early as it can be: name -> (out_dir, status, stdout, stderr).

    ``sigterm`` trains until its first metrics record is written, then torchrun itself gets SIGTERM. Once ``ddp``
    and ``fsdp`` finish, copies of them stopped at step 2 resume (``resumed``, ``fsdp_resumed``), and a DDP run
    starts from the one-process reference's step-2 checkpoint (``from_single``).
    """
    root = tmp_path_factory.mktemp("runs")
    endless = {"train.parallel": "ddp", "train.max_steps": 100000, "train.ckpt_every": 0, "train.eval_every": 0}
    ddp, fsdp = {"train.parallel": "ddp"}, {"train.parallel": "fsdp"}
    plans = {
        "ddp": (ddp, ()),
        "fsdp": (fsdp, ()),
        "setup_failure": (ddp, ("--fail-rank", "1", "--fail-at", "setup")),
        "step_failure": (ddp, ("--fail-rank", "1", "--fail-at", "step")),
        "sigterm": (endless, ()),
        "fp16_overflow": ({**ddp, "train.dtype": "fp16"}, ("--overflow-rank", "1", "--overflow-step", "2")),
        "fsdp_fp16_overflow": ({**fsdp, "train.dtype": "fp16"}, ("--overflow-rank", "1", "--overflow-step", "2")),
        "muon_ddp": ({**ddp, "optim.name": "muon"}, ()),
    }
    started = {name: (root / name, launch(inputs, root / name, extra, args)) for name, (extra, args) in plans.items()}
    reference = request.getfixturevalue("reference")  # trains in this process while the others start
    out_dir, proc = started["sigterm"]
    deadline = time.monotonic() + TIMEOUT_S
    while not read_metrics(out_dir / "metrics.jsonl") and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    done = {"ddp": (root / "ddp", *finish(started.pop("ddp")[1]))}
    started["resumed"] = (root / "resumed", launch(inputs, resume_copy(root / "ddp", root / "resumed"), ddp))
    from_single = {**ddp, "train.resume": reference / "checkpoints" / "step_00000002.pt", "train.max_steps": 3}
    started["from_single"] = (root / "from_single", launch(inputs, root / "from_single", from_single))
    done["fsdp"] = (root / "fsdp", *finish(started.pop("fsdp")[1]))
    copy = resume_copy(root / "fsdp", root / "fsdp_resumed")
    started["fsdp_resumed"] = (copy, launch(inputs, copy, fsdp))
    return done | {name: (out_dir, *finish(proc)) for name, (out_dir, proc) in started.items()}


def resume_copy(run: Path, copy: Path) -> Path:
    """``run`` copied to ``copy`` as if it had been stopped after its step-2 checkpoint."""
    shutil.copytree(run, copy)
    (copy / "checkpoints" / f"step_{STEPS:08d}.pt").unlink()
    (copy / "checkpoints" / "latest").write_text("step_00000002.pt\n")
    return copy


def params(checkpoint: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(checkpoint)["model"]


def assert_close(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=atol, msg=lambda m, k=key: f"{k}: {m}")


def reference_run(monkeypatch, inputs, out_dir, max_steps=STEPS, extra=None):
    """One process, batch 2B, fed rank 0's and rank 1's windows side by side at every micro-step."""

    def next_batch(self):
        samplers = self.__dict__.setdefault("rank_samplers", [batch_generator(self.cfg.train.seed, r) for r in (0, 1)])
        context = self.cfg.model.context_length
        parts = [get_batch(self.job.inputs.train_tokens, B, context, self.job.device, generator=g) for g in samplers]
        return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])

    monkeypatch.setattr(Trainer, "next_batch", next_batch)
    cfg = load_config(
        DEBUG_CONFIG,
        overrides(inputs, out_dir, {"train.batch_size": 2 * B, "train.max_steps": max_steps, **(extra or {})}),
    )
    return train(cfg)


# ---- torchrun runs ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
    """The one-process run with the combined batch (module-wide, like the runs it is compared with)."""
    with pytest.MonkeyPatch.context() as mp:
        torch.set_num_threads(1)
        result = reference_run(mp, inputs, tmp_path_factory.mktemp("reference") / "run")
    return result.out_dir


def test_muon_under_ddp_matches_one_process_fed_the_same_examples(runs, inputs, tmp_path):
    """The gradients arrive averaged, so every rank orthogonalizes the same momentum: one process's update."""
    out_dir, status, out, err = runs["muon_ddp"]
    assert status == 0, err
    assert "2 processes (gloo): DDP" in out and "optimizer muon, cosine schedule: muon (Muon) 14 tensors" in out
    with pytest.MonkeyPatch.context() as mp:
        torch.set_num_threads(1)
        reference = reference_run(mp, inputs, tmp_path / "muon", extra={"optim.name": "muon"}).out_dir
    assert_close(params(RunDir(out_dir).latest()), params(RunDir(reference).latest()), atol=1e-5)


@pytest.mark.parametrize("kind", ["ddp", "fsdp"])
def test_two_ranks_match_one_process_fed_the_same_examples(runs, reference, inputs, kind):
    out_dir, status, out, err = runs[kind]
    assert status == 0, err
    assert f"2 processes (gloo): {'DDP' if kind == 'ddp' else 'FSDP2'}" in out
    assert f"{STEPS * 2 * B * 2 * 16:,} tokens" in out  # global batch: micro-batch x accumulation x ranks x context
    final = params(RunDir(out_dir).latest())
    assert_close(final, params(RunDir(reference).latest()), atol=1e-6)
    # the logged loss is the mean over both ranks, the grad norm the global one (clipping was active)
    ours, theirs = read_metrics(out_dir / "metrics.jsonl"), read_metrics(reference / "metrics.jsonl")
    assert [r["step"] for r in ours] == [r["step"] for r in theirs]
    for a, b in zip(ours, theirs, strict=True):
        for key in ("loss", "grad_norm"):
            if key in b:
                assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (key, a, b)
    assert max(r["grad_norm"] for r in ours if "grad_norm" in r) > 0.5
    # evaluation is sharded (rank 0: batches 0 and 2, rank 1: batch 1 and a weight-0 repeat) and reduced
    assert ours[-1]["val_loss"] == pytest.approx(val_loss(final, inputs), rel=1e-6)


def val_loss(state: dict, inputs: dict) -> float:
    """Mean cross-entropy of the model in ``state`` over the run's 3 fixed validation batches of B windows."""
    model = TransformerLM(257, 16, 32, 2, 2, 64, 10000.0)
    model.load_state_dict(state)
    batches = iter_eval_batches(load_tokens(inputs["val"]), B, 16, 3, "cpu")
    with torch.no_grad():
        losses = [cross_entropy(model(x), y).item() for x, y in batches]
    return sum(losses) / len(losses)


def test_an_fp16_overflow_on_one_rank_is_skipped_on_every_rank(runs):
    """Only rank 1's (already reduced) gradients overflow at step 2: the all-reduced flag makes both skip it, so the
    replicas stay identical, and rank 0 logs and checkpoints the skip."""
    out_dir, status, out, err = runs["fp16_overflow"]
    assert status == 0, err
    weights = [torch.load(out_dir / f"params_rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    checkpoint = read_checkpoint(RunDir(out_dir).latest())
    for name, tensor in checkpoint["model"].items():
        assert torch.equal(weights[0][name], weights[1][name]) and torch.equal(weights[0][name], tensor), name
    assert checkpoint["loss_scaler"]["skipped_steps"] == 1 and checkpoint["loss_scaler"]["scale"] == 2.0**15
    records = [r for r in read_metrics(out_dir / "metrics.jsonl") if "loss" in r]
    assert [r["skipped_steps"] for r in records] == [0, 1, 1, 1]
    assert "fp16 autocast + dynamic loss scaling" in out


def test_an_fp16_overflow_in_one_fsdp_shard_is_skipped_on_every_rank(runs):
    """The same with FSDP2: rank 1's own gradient shard overflows; rank 0 (which logs) skips that step too."""
    out_dir, status, out, err = runs["fsdp_fp16_overflow"]
    assert status == 0, err
    assert "FSDP2" in out and "fp16 autocast + dynamic loss scaling" in out
    checkpoint = read_checkpoint(RunDir(out_dir).latest())
    assert checkpoint["loss_scaler"]["skipped_steps"] == 1 and checkpoint["loss_scaler"]["scale"] == 2.0**15
    assert all(torch.isfinite(tensor).all() for tensor in checkpoint["model"].values())
    records = [r for r in read_metrics(out_dir / "metrics.jsonl") if "loss" in r]
    assert [r["skipped_steps"] for r in records] == [0, 1, 1, 1] and "grad_norm" not in records[1]


def test_only_rank_0_writes_and_the_checkpoint_is_whole(runs):
    out_dir, status, out, err = runs["ddp"]
    assert status == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == ["checkpoints", "config.yaml", "metrics.jsonl", "tokenizer"]
    names = sorted(p.name for p in (out_dir / "checkpoints").iterdir())
    assert names == ["latest", "step_00000002.pt", "step_00000004.pt"]
    steps = [(r["step"], "loss" in r) for r in read_metrics(out_dir / "metrics.jsonl")]
    assert len(steps) == len(set(steps)) == STEPS + STEPS // 2  # one line per record, none from rank 1
    assert out.count("finished 4 steps") == 1 and out.count("step 1/4 | loss") == 1
    state = read_checkpoint(RunDir(out_dir).latest())
    assert not any(k.startswith("module.") for k in state["model"])
    samplers = state["rng"]["data_by_rank"]
    assert sorted(samplers) == [0, 1] and samplers[0] != samplers[1] and state["rng"]["data"] == samplers[0]


def test_fsdp_checkpoint_has_whole_tensors_in_the_single_process_format(runs, reference):
    fsdp = read_checkpoint(RunDir(runs["fsdp"][0]).latest())
    plain = read_checkpoint(RunDir(reference).latest())
    assert {k: v.shape for k, v in fsdp["model"].items()} == {k: v.shape for k, v in plain["model"].items()}
    assert fsdp["optimizer"]["param_groups"] == plain["optimizer"]["param_groups"]
    for i, moments in plain["optimizer"]["state"].items():
        for key, value in moments.items():
            torch.testing.assert_close(fsdp["optimizer"]["state"][i][key], value, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", ["ddp", "fsdp"])
def test_resume_on_two_ranks_is_bitwise(runs, kind):
    """From the step-2 checkpoint to step 4 == the uninterrupted run (each rank's sampler and the moments restored,
    for FSDP re-sharded from the whole tensors in the checkpoint)."""
    out_dir, status, _, err = runs[kind]
    assert status == 0, err
    resumed, status, out, err = runs["resumed" if kind == "ddp" else "fsdp_resumed"]
    assert status == 0, err
    assert f"resuming from {resumed / 'checkpoints' / 'step_00000002.pt'} at step 2" in out
    final, again = read_checkpoint(RunDir(out_dir).latest()), read_checkpoint(RunDir(resumed).latest())
    assert all(torch.equal(again["model"][key], value) for key, value in final["model"].items())
    for i, moments in final["optimizer"]["state"].items():
        for key, value in moments.items():
            theirs = again["optimizer"]["state"][i][key]
            assert torch.equal(theirs, value) if isinstance(value, torch.Tensor) else theirs == value, (i, key)


def test_checkpoints_cross_world_sizes(runs, inputs, tmp_path, capsys):
    """A one-process checkpoint continues on two ranks, a DDP one in one process; samplers are re-derived."""
    note = "each rank samples afresh from (seed, rank, step=2)"
    out_dir, status, out, err = runs["from_single"]
    assert status == 0, err
    assert note in out and read_checkpoint(RunDir(out_dir).latest())["iteration"] == 3
    start = runs["ddp"][0] / "checkpoints" / "step_00000002.pt"
    cfg = load_config(DEBUG_CONFIG, overrides(inputs, tmp_path / "one", {"train.resume": start, "train.max_steps": 3}))
    result = train(cfg)
    assert result.step == 3 and note in capsys.readouterr().out


def test_a_setup_failure_on_one_rank_ends_both_with_one_message(runs):
    out_dir, status, _, err = runs["setup_failure"]
    assert status != 0
    messages = [line for line in err.splitlines() if "error:" in line and "/nonexistent/train.npy" in line]
    assert len(messages) == 1 and "rank 1 failed: data.train_path /nonexistent/train.npy does not exist" in messages[0]
    assert not (out_dir / "config.yaml").exists() and RunDir(out_dir).latest() is None


def test_a_failure_in_a_step_on_one_rank_ends_both(runs):
    _, status, _, err = runs["step_failure"]
    assert status != 0
    assert err.count("error: injected failure on this rank") == 1
    assert "error: rank 0 lost contact with another rank" in err  # rank 0 does not hang in the all-reduce


def test_sigterm_to_torchrun_stops_every_rank_after_the_same_step(runs):
    out_dir, _, out, err = runs["sigterm"]
    assert "received SIGTERM: stopped after step" in out, err
    assert "exitcode" not in err  # torchrun reports no failed worker: each rank finished its step and exited 0
    state = read_checkpoint(RunDir(out_dir).latest())
    logged = [r["step"] for r in read_metrics(out_dir / "metrics.jsonl") if "loss" in r]
    assert state["iteration"] == logged[-1] >= 1
    assert sorted(state["rng"]["data_by_rank"]) == [0, 1]


# ---- process identity and helpers in one process ------------------------------------------------------------


def test_process_info_reads_torchrun_environment():
    env = {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}
    info = process_info("ddp", env)
    assert info == ProcessInfo(rank=3, world_size=4, local_rank=1, distributed=True) and not info.is_main
    assert process_info("fsdp", {"WORLD_SIZE": "1", "RANK": "0"}).distributed  # torchrun --nproc_per_node 1
    assert process_info("none", {"WORLD_SIZE": "1", "RANK": "0"}) == ProcessInfo()
    with pytest.raises(ConfigError, match="RANK=4 does not fit WORLD_SIZE=2"):
        process_info("ddp", {"WORLD_SIZE": "2", "RANK": "4"})
    with pytest.raises(ConfigError, match="RANK is not set"):
        process_info("ddp", {"WORLD_SIZE": "2"})


def test_ddp_without_torchrun_warns_and_trains_as_one_process():
    with pytest.warns(UserWarning, match="WORLD_SIZE is unset"):
        assert process_info("ddp", {}) == ProcessInfo()


def test_several_processes_refuse_one_fixed_gpu():
    proc = ProcessInfo(rank=1, world_size=2, local_rank=1, distributed=True)
    with pytest.raises(ConfigError, match="would put them all on one GPU"):
        training_device("cuda:0", proc)
    assert training_device("cpu", proc) == torch.device("cpu")


def test_helpers_are_plain_operations_without_a_process_group():
    assert not parallel.active()
    assert parallel.all_gather({"a": 1}) == [{"a": 1}]
    t = torch.tensor([1.0, 2.0])
    assert parallel.all_reduce_sum(t) is t and t.tolist() == [1.0, 2.0]
    parallel.agree_on_setup(None, ProcessInfo())
    model = torch.nn.Linear(3, 2)
    assert parallel.wrap(model, "ddp", torch.device("cpu")) is model
    with parallel.gradient_sync(model, enabled=False):
        pass


def test_clip_grad_norm_without_shards_is_the_global_norm():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
    a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([4.0])
    norm = parallel.clip_grad_norm([a, b], max_norm=1.0)
    assert norm.item() == pytest.approx(5.0)
    torch.testing.assert_close(torch.cat([a.grad, b.grad]), torch.tensor([0.6, 0.0, 0.8]) * 5 / (5 + 1e-6))


@pytest.fixture
def one_rank_group(tmp_path):
    """A one-process Gloo group in this process (destroyed afterwards, so later tests run without one)."""
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        yield
    finally:
        parallel.destroy_process_group()


@pytest.mark.parametrize("kind", ["ddp", "fsdp"])
def test_gradient_sync_skips_the_reduction_on_non_final_micro_steps(one_rank_group, kind):
    torch.manual_seed(0)
    model = TransformerLM(257, 16, 32, 2, 2, 64, 10000.0)
    wrapped = parallel.wrap(model, kind, torch.device("cpu"))
    x = torch.randint(0, 257, (2, 16))
    with parallel.gradient_sync(wrapped, enabled=False):
        if kind == "ddp":
            assert not wrapped.require_backward_grad_sync  # inside DDP's no_sync()
        wrapped(x).sum().backward()
    if kind == "fsdp":  # unsynchronised gradients stay in FSDP's unsharded buffers, not yet in .grad
        assert all(p.grad is None for p in model.parameters())
    with parallel.gradient_sync(wrapped, enabled=True):
        wrapped(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    # both micro-steps' gradients arrive: twice one backward's (a plain model as the reference)
    torch.manual_seed(0)
    plain = TransformerLM(257, 16, 32, 2, 2, 64, 10000.0)
    plain(x).sum().backward()
    for (name, p), q in zip(model.named_parameters(), plain.parameters(), strict=True):
        grad = p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad
        torch.testing.assert_close(grad, 2 * q.grad, msg=lambda m, n=name: f"{n}: {m}")
