"""``lm-perplexity``: the windowed loss equals a naive per-token loss computed here, one forward per token.

The naive reference gives token ``j`` exactly the left context the windows promise (stride 1: the ``context``
tokens before it; stride = context: the tokens since the start of its block) and runs the model on that alone.
Bits per byte divide by the UTF-8 bytes of the scored tokens; a ``.txt`` and its ``.npy`` give the same numbers;
``--all-checkpoints`` gives a row per checkpoint that ``lm-plot`` draws.
"""

import json
import math

import numpy as np
import pytest
import torch

from cs336_lm.cli.perplexity import main as perplexity_main
from cs336_lm.data import write_tokens
from cs336_lm.evaluation import evaluate_ids, evaluate_run, load_eval_data
from cs336_lm.nn import TransformerLM
from cs336_lm.run import RunDir, load_run
from cs336_lm.tokenizer import Tokenizer, train_bpe
from cs336_lm.training.plot import load_curves, make_figure

TEXT = (
    "Once upon a time there was a little cat. The cat liked to play with a red ball in the garden.<|endoftext|>"
    "One day, Tom and his dog went to the park. They saw a big tree and a small bird. Ünïcödé 🙂!\n"
) * 3
SHAPE = {"context_length": 32, "d_model": 32, "num_layers": 2, "num_heads": 2, "d_ff": 64, "rope_theta": 10000.0}


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    pass


@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> Tokenizer:
    path = tmp_path_factory.mktemp("text") / "train.txt"
    path.write_text(TEXT * 4, encoding="utf-8")
    vocab, merges = train_bpe(path, 330, ["<|endoftext|>"])
    return Tokenizer(vocab, merges, ["<|endoftext|>"])


def make_run(root, tok, steps=(5,), metrics=True):
    """A run with a random model per checkpoint step (seeded by the step) and a metrics.jsonl with token counts."""
    run = RunDir(root).create()
    tok.save(run.tokenizer_dir)
    config = {**SHAPE, "vocab_size": tok.vocab_size}
    for step in steps:
        torch.manual_seed(step)
        run.save_checkpoint(TransformerLM(**config), None, step, None, config={"model": {**config, "preset": None}})
    if metrics:
        lines = [json.dumps({"step": s, "tokens": s * 1000, "loss": 5.0}) for s in steps]
        run.metrics_file.write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def data(tmp_path, tok):
    (tmp_path / "valid.txt").write_text(TEXT, encoding="utf-8")
    write_tokens(tmp_path / "valid.npy", tok.encode(TEXT), tok.vocab_size)
    return tmp_path / "valid.txt", tmp_path / "valid.npy"


def naive_loss(model, ids, context, stride) -> float:
    """Σ −ln p(ids[j] | its context), the context built token by token (stride 1 or stride == context)."""
    last = len(ids) - 1
    total = 0.0
    for j in range(1, last + 1):
        if stride == 1:
            start = max(0, j - context)
        else:
            start = ((j - 1) // context) * context
            if start + context > last:  # the last block ends at the last token, as much context as fits
                start = max(0, last - context)
        with torch.inference_mode():
            logits = model(torch.tensor([ids[start:j]]))[0, -1].double()
        total += float(torch.logsumexp(logits, 0) - logits[ids[j]])
    return total


@pytest.mark.parametrize(("context", "stride"), [(32, 1), (32, 32), (7, 1), (7, 7)])
def test_windowed_loss_equals_naive(tok, tmp_path, context, stride):
    model = load_run(make_run(tmp_path / "run", tok), "cpu").model
    ids = tok.encode(TEXT)
    assert len(ids) > 2 * context
    loss_sum, count = evaluate_ids(model, np.asarray(ids), context, stride, batch_size=3)
    assert count == len(ids) - 1
    assert loss_sum == pytest.approx(naive_loss(model, ids, context, stride), rel=1e-5)


def test_report_numbers(tok, tmp_path, data):
    run = make_run(tmp_path / "run", tok)
    [result] = evaluate_run(run, data[0], context=16, stride=8, device="cpu")
    ids = tok.encode(TEXT)
    model = load_run(run, "cpu").model
    loss_sum, count = evaluate_ids(model, np.asarray(ids), 16, 8)
    scored_bytes = len(TEXT.encode("utf-8")) - len(tok.vocab[ids[0]])
    assert (result.tokens, result.bytes, result.step, result.train_tokens) == (count, scored_bytes, 5, 5000)
    assert result.loss == pytest.approx(loss_sum / count)
    assert result.perplexity == pytest.approx(math.exp(loss_sum / count))
    assert result.bits_per_byte == pytest.approx(loss_sum / math.log(2) / scored_bytes)
    [from_npy] = evaluate_run(run, data[1], context=16, stride=8, device="cpu")
    assert (from_npy.loss_sum, from_npy.tokens, from_npy.bytes) == (result.loss_sum, result.tokens, result.bytes)


def test_no_training_happens(tok, tmp_path, data):
    model = load_run(make_run(tmp_path / "run", tok), "cpu").model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    evaluate_ids(model, np.asarray(tok.encode(TEXT)), 32, 16)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_load_eval_data(tok, data):
    ids, n_bytes = load_eval_data(data[1], tok)
    assert ids.tolist() == tok.encode(TEXT) and n_bytes == sum(len(tok.vocab[i]) for i in ids[1:].tolist())


def test_all_checkpoints_and_plot(tok, tmp_path, data, capsys):
    run = make_run(tmp_path / "run", tok, steps=(1, 2, 3))
    out = tmp_path / "run" / "eval-valid.jsonl"
    args = [str(run), "--data", str(data[1]), "--all-checkpoints", "--out", str(out), "--device", "cpu"]
    assert perplexity_main(args) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith(f"{data[1]}: ") and "context 32, stride 32" in table[0]
    assert [line.split()[1] for line in table[2:]] == ["1", "2", "3"]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3] and [r["tokens"] for r in records] == [1000, 2000, 3000]
    for r in records:  # each row is that checkpoint evaluated on its own
        [alone] = evaluate_run(r["checkpoint"], data[1], device="cpu")
        assert r["eval_loss"] == pytest.approx(alone.loss) and r["eval_bpb"] == pytest.approx(alone.bits_per_byte)
    curves = load_curves(out)
    assert (
        curves.name == "run/eval-valid" and curves.eval_steps == [1, 2, 3] and curves.eval_tokens == [1000, 2000, 3000]
    )
    fig = make_figure([load_curves(run), curves])
    assert [line.get_label() for line in fig.axes[0].lines] == ["run train", "run/eval-valid eval"]


def test_json_output(tok, tmp_path, data, capsys):
    run = make_run(tmp_path / "run", tok)
    assert perplexity_main([str(run), "--data", str(data[0]), "--json", "--context", "8", "--device", "cpu"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["step"] == 5 and record["context"] == 8 and record["stride"] == 8
    assert record["eval_tokens"] == len(tok.encode(TEXT)) - 1
    assert record["eval_ppl"] == pytest.approx(math.exp(record["eval_loss"]))


def test_threads_1_runs_and_is_stated_on_stderr_not_in_the_json(tok, tmp_path, data, capsys):
    run = make_run(tmp_path / "run", tok)
    args = [str(run), "--data", str(data[0]), "--json", "--context", "8", "--device", "cpu", "--threads", "1"]
    assert perplexity_main(args) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["context"] == 8
    assert captured.err == "torch CPU threads: 1 (--threads)\n"


def test_progress_bar(tok, tmp_path, capsys):
    model = load_run(make_run(tmp_path / "run", tok), "cpu").model
    evaluate_ids(model, np.asarray(tok.encode(TEXT)), 32, 32, progress=True)
    assert "eval" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "does not exist"),
        ("one_token", "holds 1 token(s); scoring needs at least 2"),
        ("not_utf8", "is not UTF-8 text"),
        ("out_of_vocab", "is outside vocab_size"),
        ("stride", "--stride must be between 1 and --context (8)"),
        ("context", "--context must be between 1 and the model's context length 32"),
        ("all_of_a_file", "--all-checkpoints needs a run directory"),
        ("negative", "--context must be >= 1"),
        ("threads", "--threads must be auto or a positive integer; got '0'"),
    ],
)
def test_bad_input(tok, tmp_path, data, capsys, case, message):
    run = make_run(tmp_path / "run", tok)
    args = [str(run), "--data", str(data[0]), "--device", "cpu"]
    if case == "missing":
        args[2] = str(tmp_path / "nothing.txt")
    elif case == "one_token":
        (tmp_path / "one.txt").write_text("a", encoding="utf-8")
        args[2] = str(tmp_path / "one.txt")
    elif case == "not_utf8":
        (tmp_path / "bad.txt").write_bytes(b"ab\xffcd")
        args[2] = str(tmp_path / "bad.txt")
    elif case == "out_of_vocab":
        np.save(tmp_path / "big.npy", np.array([1, 2, 5000], dtype=np.uint16))
        args[2] = str(tmp_path / "big.npy")
    elif case == "stride":
        args += ["--context", "8", "--stride", "9"]
    elif case == "context":
        args += ["--context", "33"]
    elif case == "all_of_a_file":
        args[0] = str(RunDir(run).latest())
        args.append("--all-checkpoints")
    elif case == "negative":
        args += ["--context", "0"]
    elif case == "threads":
        args += ["--threads", "0"]
    assert perplexity_main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
