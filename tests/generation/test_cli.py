"""``lm-generate`` end to end on tiny run directories: output, streaming == batch, finish reasons, each error."""

import json
import shutil
import subprocess
import sys

import pytest
import torch

from cs336_lm.cli.generate import main
from cs336_lm.engine import generate
from cs336_lm.nn import PRESETS, TransformerLM
from cs336_lm.run import RunDir, load_run
from cs336_lm.tokenizer import Tokenizer

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]
EOT = "<|endoftext|>"


def write_run(root, tokenizer: Tokenizer, steps=(3,), seed=0, edit=None):
    """A run directory in the trainer's layout: tokenizer/, checkpoints/step_*.pt + latest, config in each."""
    model_cfg = {**PRESETS["debug"], "vocab_size": tokenizer.vocab_size, "preset": "debug"}
    torch.manual_seed(seed)
    model = TransformerLM(**{k: v for k, v in model_cfg.items() if k != "preset"})
    if edit is not None:
        edit(model)
    tokenizer.save(root / "tokenizer")
    run, keep = RunDir(root), None
    for step in steps:
        run.save_checkpoint(model, None, step, keep, config={"model": model_cfg, "train": {"out_dir": str(root)}})
    return model


def byte_tokenizer() -> Tokenizer:
    return Tokenizer({i: bytes([i]) for i in range(256)}, [], [EOT])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    write_run(root, byte_tokenizer())
    return root


def cli(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_prints_prompt_and_continuation_and_reports_speed(run_dir, capsys):
    rc, out, err = cli(capsys, run_dir, "--prompt", "Once upon", "--max-new-tokens", 12, "--temperature", 0)
    assert rc == 0
    loaded = load_run(run_dir, "cpu")
    tokens = list(generate(loaded.model, loaded.tokenizer.encode("Once upon"), 12, temperature=0, stop_ids={256}))
    assert out == "Once upon" + loaded.tokenizer.decode(tokens) + "\n"  # the engine's tokens are generate's
    assert "tokens/s" in err
    assert "--max-new-tokens 12" in err or "special token" in err


def test_seeded_samples_stream_and_batch_print_the_same_text(run_dir, capsys):
    args = (run_dir, "--prompt", "Hi", "--max-new-tokens", 15, "--num-samples", 3, "--seed", 7, "--top-k", 40)
    rc, streamed, err = cli(capsys, *args)
    assert rc == 0
    assert streamed.count("=== sample") == 3
    assert "sample 3/3" in err
    rc, batched, _ = cli(capsys, *args, "--no-stream")
    assert rc == 0
    assert batched == streamed
    rc, again, _ = cli(capsys, *args)
    assert again == streamed


def test_checkpoint_file_and_latest_pointer(tmp_path, capsys):
    model = write_run(tmp_path, byte_tokenizer(), steps=(2, 5))
    (tmp_path / "checkpoints" / "step_00000002.pt").write_bytes(b"")  # an older, broken file is never read
    loaded = load_run(tmp_path, "cpu")
    assert loaded.checkpoint.name == "step_00000005.pt" and loaded.iteration == 5
    assert torch.equal(loaded.model.lm_head.weight, model.lm_head.weight)
    args = ("--prompt", "abc", "--max-new-tokens", 5, "--temperature", 0)
    from_dir = cli(capsys, tmp_path, *args)
    from_file = cli(capsys, tmp_path / "checkpoints" / "step_00000005.pt", *args)
    assert from_dir[0] == from_file[0] == 0
    assert from_dir[1] == from_file[1]
    (tmp_path / "checkpoints" / "latest").unlink()  # without the pointer: the highest step
    assert load_run(tmp_path, "cpu").iteration == 5


def test_stops_at_end_of_text_and_says_so(tmp_path, capsys):
    vocab = {0: EOT.encode(), **{i + 1: bytes([i]) for i in range(256)}}
    tokenizer = Tokenizer(vocab, [], [EOT])
    assert tokenizer.special_token_ids[EOT] == 0

    def always_eot(model):  # zero final gain: every logit is 0 and greedy argmax picks id 0
        torch.nn.init.zeros_(model.ln_final.weight)

    write_run(tmp_path, tokenizer, edit=always_eot)
    rc, out, err = cli(capsys, tmp_path, "--prompt", "The end", "--temperature", 0)
    assert rc == 0
    assert out == "The end\n"
    assert "0 tokens, stopped at a special token (<|endoftext|>)" in err


def test_stops_at_the_context_length_and_says_so(run_dir, capsys):
    prompt = "x" * (PRESETS["debug"]["context_length"] - 2)
    rc, out, err = cli(capsys, run_dir, "--prompt", prompt, "--max-new-tokens", 50, "--temperature", 0)
    assert rc == 0
    assert out.startswith(prompt)
    assert "stopped at the model's context length (64 tokens)" in err


def test_prompt_file(run_dir, tmp_path, capsys):
    (tmp_path / "prompt.txt").write_text("Über 中文 😀", encoding="utf-8")
    rc, out, _ = cli(capsys, run_dir, "--prompt-file", tmp_path / "prompt.txt", "--max-new-tokens", 3, "--seed", 1)
    assert rc == 0
    assert out.startswith("Über 中文 😀")


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "(default: 256)" in capsys.readouterr().out


def test_subprocess_entry_point(run_dir):
    result = subprocess.run(
        [sys.executable, "-m", "cs336_lm.cli.generate", str(run_dir), "--prompt", "Hello", "--max-new-tokens", "4"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Hello")
    assert "tokens/s" in result.stderr


def test_threads_1_runs_and_is_stated_on_stderr(run_dir, capsys):
    rc, out, err = cli(capsys, run_dir, "--prompt", "Hi", "--max-new-tokens", 4, "--temperature", 0, "--threads", 1)
    assert rc == 0 and out.startswith("Hi") and "threads" not in out
    assert err.splitlines()[1] == "torch CPU threads: 1 (--threads)"  # under the opening line


def test_threads_auto_takes_the_rules_count_while_decoding(run_dir, capsys, monkeypatch):
    """Two CPUs, 1.2 of them busy with other work: one thread, applied to the decode steps and put back after."""
    from cs336_lm.engine import Engine
    from cs336_lm.run import threads as rule

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(rule, "usable_cpus", lambda: 2)
    monkeypatch.setattr(rule, "busy_cores", lambda: 1.2)
    seen, step = [], Engine.step
    monkeypatch.setattr(Engine, "step", lambda self: seen.append(torch.get_num_threads()) or step(self))
    torch.set_num_threads(2)  # torch's default here; the fixture puts back its own count after the test
    rc, _, err = cli(capsys, run_dir, "--prompt", "Hi", "--max-new-tokens", 3, "--temperature", 0)
    assert rc == 0 and "torch CPU threads: 1 (one per idle core: 2 CPUs, 1.2 busy now)" in err
    assert seen and set(seen) == {1} and torch.get_num_threads() == 2


@pytest.fixture(scope="module")
def broken_inputs(run_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("broken")
    (root / "empty.txt").write_text("")
    (root / "latin1.txt").write_bytes("café".encode("latin-1"))
    (root / "empty_run").mkdir()
    (root / "lonely").mkdir()
    shutil.copy(run_dir / "checkpoints" / "step_00000003.pt", root / "lonely" / "model.pt")
    (root / "torn" / "checkpoints").mkdir(parents=True)
    shutil.copytree(run_dir / "tokenizer", root / "torn" / "tokenizer")
    data = (run_dir / "checkpoints" / "step_00000003.pt").read_bytes()
    (root / "torn" / "checkpoints" / "step_00000001.pt").write_bytes(data[: len(data) // 2])
    return root


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}", "--prompt", "a"], "does not exist"),
        (["{broken}/empty_run", "--prompt", "a"], "holds no checkpoint"),
        (["{broken}/lonely/model.pt", "--prompt", "a"], "no tokenizer"),
        (["{broken}/torn", "--prompt", "a"], "not a readable checkpoint"),
        (["{run}", "--prompt", ""], "empty"),
        (["{run}", "--prompt-file", "{broken}/empty.txt"], "empty"),
        (["{run}", "--prompt-file", "{broken}/latin1.txt"], "not UTF-8"),
        (["{run}", "--prompt-file", "{broken}/nope.txt"], "nope.txt"),
        (["{run}", "--prompt", "a", "--top-p", "0"], "top_p"),
        (["{run}", "--prompt", "a", "--top-p", "1.5"], "top_p"),
        (["{run}", "--prompt", "a", "--temperature", "-0.5"], "temperature"),
        (["{run}", "--prompt", "a", "--top-k", "0"], "top_k"),
        (["{run}", "--prompt", "a", "--max-new-tokens", "0"], "max-new-tokens"),
        (["{run}", "--prompt", "a", "--num-samples", "0"], "num-samples"),
        (["{run}", "--prompt", "y" * 80], "context is 64"),
        (["{run}", "--prompt", "a", "--device", "gpu0"], "not a device"),
        (["{run}", "--prompt", "caf\udce9 au lait"], "--prompt is not UTF-8 text (invalid byte 0xe9 at character 3)"),
        (["{run}", "--prompt", "a", "--seed", str(2**64)], "--seed must fit in 64 bits"),
        (["{run}", "--prompt", "a", "--seed", str(2**64 - 2), "--num-samples", "3"], "--seed must fit in 64 bits"),
    ],
)
def test_errors_are_one_line_and_exit_2(run_dir, broken_inputs, tmp_path, capsys, args, message):
    values = {"run": run_dir, "broken": broken_inputs, "missing": tmp_path / "no_such_run"}
    rc, out, err = cli(capsys, *(a.format(**values) for a in args))
    assert rc == 2
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_cuda_requested_without_cuda(run_dir, capsys):
    rc, _, err = cli(capsys, run_dir, "--prompt", "a", "--device", "cuda")
    assert rc == 2 and "CUDA is not available" in err


def test_generates_from_a_run_of_the_trainer(tmp_path, capsys):
    from cs336_lm.cli.train import main as train_main
    from cs336_lm.data import write_tokens
    from cs336_lm.tinytales import write_corpus
    from cs336_lm.tokenizer import train_bpe

    write_corpus(tmp_path / "text.txt", 20_000, seed=0, progress=False)
    vocab, merges = train_bpe(tmp_path / "text.txt", 320, [EOT], num_workers=1)
    tokenizer = Tokenizer(vocab, merges, [EOT])
    tokenizer.save(tmp_path / "tokenizer")
    ids = tokenizer.encode((tmp_path / "text.txt").read_text(encoding="utf-8"))
    write_tokens(tmp_path / "train.npy", ids, tokenizer.vocab_size)
    run = tmp_path / "run"
    overrides = {
        "data.train_path": tmp_path / "train.npy",
        "data.val_path": tmp_path / "train.npy",
        "data.tokenizer_dir": tmp_path / "tokenizer",
        "train.out_dir": run,
        "train.device": "cpu",
        "model.vocab_size": tokenizer.vocab_size,
        "train.max_steps": 4,
        "train.eval_every": 4,
        "train.ckpt_every": 4,
        "train.log_every": 2,
    }
    args = ["--config", REPO / "configs" / "debug.yaml", *(f"{k}={v}" for k, v in overrides.items())]
    assert train_main([str(a) for a in args]) == 0
    capsys.readouterr()
    rc, out, err = cli(capsys, run, "--prompt", "Once upon a time", "--max-new-tokens", 20, "--seed", 0)
    assert rc == 0, err
    assert out.startswith("Once upon a time")
    assert "iteration 4" in err and "tokens/s" in err


def test_prompts_file_writes_one_json_line_per_completion_equal_to_single_runs(run_dir, tmp_path, capsys):
    (tmp_path / "p.txt").write_text("Once upon\n\nHello there\nabc\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    args = ("--max-new-tokens", 9, "--temperature", 0.9, "--seed", 5)
    rc, stdout, err = cli(capsys, run_dir, "--prompts-file", tmp_path / "p.txt", "--out", out, *args)
    assert rc == 0 and stdout == "" and "wrote 3 completions" in err
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["prompt"] for r in records] == ["Once upon", "Hello there", "abc"]
    for j, record in enumerate(records):  # line j alone, with its seed seed + j
        rc, single, _ = cli(capsys, run_dir, "--prompt", record["prompt"], *args[:4], "--seed", 5 + j)
        assert single == record["prompt"] + record["text"] + "\n"
        assert record["finish_reason"] in ("length", "stop") and len(record["tokens"]) <= 9


def test_jsonl_prompts_carry_their_own_settings(run_dir, tmp_path, capsys):
    lines = [{"prompt": "Hi", "max_new_tokens": 3, "seed": 1}, {"prompt": "Yo", "temperature": 0, "stop": ["q"]}]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    rc, stdout, _ = cli(
        capsys, run_dir, "--prompts-file", tmp_path / "p.jsonl", "--max-new-tokens", 6, "--num-samples", 2
    )
    assert rc == 0
    records = [json.loads(line) for line in stdout.splitlines()]
    assert [(r["prompt"], r["sample"]) for r in records] == [("Hi", 0), ("Hi", 1), ("Yo", 0), ("Yo", 1)]
    assert all(len(r["tokens"]) <= 3 for r in records[:2]) and records[2]["tokens"] == records[3]["tokens"]
    assert all("q" not in r["text"] for r in records[2:])


def test_stop_text_and_repetition_penalty_on_the_command_line(run_dir, capsys):
    rc, free, _ = cli(capsys, run_dir, "--prompt", "ab", "--max-new-tokens", 30, "--temperature", 0)
    text = free[2:-1]
    stop = text[6:8]
    rc, out, err = cli(capsys, run_dir, "--prompt", "ab", "--max-new-tokens", 30, "--temperature", 0, "--stop", stop)
    assert rc == 0 and out == "ab" + text[: text.index(stop)] + "\n" and "--stop text" in err
    rc, penalised, _ = cli(capsys, run_dir, "--prompt", "ab", "--max-new-tokens", 30, "--temperature", 0,
                           "--repetition-penalty", 3)  # fmt: skip
    assert rc == 0 and penalised != free


def test_a_checkpoint_moved_out_of_its_run_takes_tokenizer(run_dir, tmp_path, capsys):
    moved = tmp_path / "model.pt"
    shutil.copy(run_dir / "checkpoints" / "step_00000003.pt", moved)
    rc, _, err = cli(capsys, moved, "--prompt", "a", "--max-new-tokens", 2)
    assert rc == 2 and "no tokenizer" in err
    rc, out, _ = cli(capsys, moved, "--prompt", "a", "--max-new-tokens", 2, "--tokenizer", run_dir / "tokenizer")
    assert rc == 0 and out.startswith("a")


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"", "p.txt", "holds no prompt"),
        (b"\xff\xfe", "p.txt", "not UTF-8"),
        (b"{not json\n", "p.jsonl", "p.jsonl:1: not JSON"),
        (b"[1, 2]\n", "p.jsonl", "expected a JSON object"),
        (b'{"text": "x"}\n', "p.jsonl", '"prompt" must be'),
        (b'{"prompt": "x", "temprature": 1}\n', "p.jsonl", "unknown key 'temprature'"),
        (b'{"prompt": "x", "top_k": "5"}\n', "p.jsonl", "top_k has the wrong type"),
        (b'{"prompt": "x"}\n{"prompt": "y", "top_p": 0}\n', "p.jsonl", "p.jsonl:2: top_p"),
        (b'{"prompt": "' + b"z" * 80 + b'"}\n', "p.jsonl", "context is 64"),
    ],
)
def test_bad_prompts_files_are_one_line_errors(run_dir, tmp_path, capsys, content, name, message):
    (tmp_path / name).write_bytes(content)
    rc, out, err = cli(capsys, run_dir, "--prompts-file", tmp_path / name)
    assert rc == 2 and out == "" and err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err


def test_a_damaged_checkpoint_is_refused_naming_the_next_older_one(tmp_path, capsys, flip_tensor_bytes):
    write_run(tmp_path, byte_tokenizer(), steps=(2, 5))
    damaged = tmp_path / "checkpoints" / "step_00000005.pt"
    flip_tensor_bytes(damaged)
    rc, out, err = cli(capsys, tmp_path, "--prompt", "abc", "--max-new-tokens", 2)
    assert rc == 2 and out == ""
    assert err == (
        f"error: {damaged} is damaged: its contents differ from the SHA-256 digest saved with it; the run's next older "
        f"checkpoint is {tmp_path / 'checkpoints' / 'step_00000002.pt'}: give that\n"
    )
    rc, _, err = cli(capsys, damaged, "--prompt", "abc", "--max-new-tokens", 2)
    assert rc == 2 and err.startswith(f"error: {damaged} is damaged") and err.count("\n") == 1
    rc, out, _ = cli(capsys, tmp_path / "checkpoints" / "step_00000002.pt", "--prompt", "abc", "--max-new-tokens", 2)
    assert rc == 0 and out.startswith("abc")
