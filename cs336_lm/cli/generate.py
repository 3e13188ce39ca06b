"""``lm-generate``: sample text from a trained run, streaming it to stdout as it is produced.

    lm-generate runs/tinystories --prompt "Once upon a time" --max-new-tokens 200 --temperature 0.8 --top-p 0.95

Loads the run's latest checkpoint (or the checkpoint file given) with its tokenizer and config, prints the
prompt followed by the generated text, and reports tokens/s and why generation stopped (a special token such
as ``<|endoftext|>``, ``--max-new-tokens``, or the model's context length) on stderr. Sample ``i`` of
``--num-samples`` uses seed ``S + i``, so streamed samples and a ``--no-stream`` batch print the same text.
"""

import argparse
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from cs336_lm.cli import run_main
from cs336_lm.errors import GenerationError
from cs336_lm.generation.generate import FinishReason, check_prompts, generate, generate_batch
from cs336_lm.generation.sampling import validate_sampling
from cs336_lm.generation.stream import TokenTextStream
from cs336_lm.run import LoadedRun, load_run

SEEDS = range(-(2**63), 2**64)  # what torch.Generator.manual_seed accepts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lm-generate",
        description="Generate text from a trained run directory (its latest checkpoint) or a checkpoint file.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("run", type=Path, help="run directory (train.out_dir) or a checkpoints/step_*.pt file")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", default=argparse.SUPPRESS, help="prompt text")
    source.add_argument("--prompt-file", type=Path, default=argparse.SUPPRESS, help="UTF-8 file holding the prompt")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="most tokens to generate per sample")
    parser.add_argument("--temperature", type=float, default=1.0, help="softmax temperature; 0 = greedy (argmax)")
    parser.add_argument("--top-k", type=int, default=None, help="sample only among the k most likely tokens")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus sampling: smallest set with mass >= p")
    parser.add_argument("--seed", type=int, default=None, help="random seed (sample i uses seed+i); random if unset")
    parser.add_argument("--num-samples", type=int, default=1, help="number of samples for the prompt")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available, else CPU), cpu, cuda, cuda:N, mps")
    parser.add_argument(
        "--no-stream", action="store_true", help="generate all samples as one batch and print them at the end"
    )
    return parser


def read_prompt(args: argparse.Namespace) -> str:
    """The prompt text from ``--prompt`` or ``--prompt-file``; an empty prompt is an error."""
    if hasattr(args, "prompt"):
        text, where = args.prompt, "--prompt"
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:  # bytes that are not UTF-8 arrive from argv as lone surrogates U+DC80-DCFF
            bad = ord(text[e.start])
            what = f"byte 0x{bad - 0xDC00:02x}" if 0xDC80 <= bad <= 0xDCFF else f"lone surrogate U+{bad:04X}"
            raise GenerationError(f"--prompt is not UTF-8 text (invalid {what} at character {e.start})") from None
    else:
        path = args.prompt_file
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise GenerationError(f"--prompt-file {path} is not UTF-8 text (byte {e.start})") from None
        where = f"--prompt-file {path}"
    if not text:
        raise GenerationError(f"{where} is empty: give the text to continue")
    return text


def check_args(args: argparse.Namespace) -> None:
    """Reject invalid numbers before the model is loaded."""
    validate_sampling(args.temperature, args.top_k, args.top_p)
    if args.max_new_tokens < 1:
        raise GenerationError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.num_samples < 1:
        raise GenerationError(f"--num-samples must be >= 1, got {args.num_samples}")
    if args.seed is not None and (args.seed not in SEEDS or args.seed + args.num_samples - 1 not in SEEDS):
        raise GenerationError(f"--seed must fit in 64 bits, as must seed + --num-samples - 1; got {args.seed}")


def describe_finish(reason: FinishReason, loaded: LoadedRun, max_new_tokens: int) -> str:
    if reason == "stop":
        return f"stopped at a special token ({', '.join(loaded.tokenizer.special_tokens)})"
    if reason == "context":
        return f"stopped at the model's context length ({loaded.model.context_length} tokens)"
    return f"stopped after --max-new-tokens {max_new_tokens}"


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    prompt = read_prompt(args)
    loaded = load_run(args.run, args.device)
    prompt_ids = loaded.tokenizer.encode(prompt)
    if not prompt_ids:
        raise GenerationError("the prompt encodes to no tokens")
    try:
        check_prompts([prompt_ids], loaded.model.context_length, loaded.model.vocab_size)
    except GenerationError as e:
        raise GenerationError(f"{e} (trim --prompt/--prompt-file)") from None
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    device = loaded.model.lm_head.weight.device
    print(f"{loaded.checkpoint} (iteration {loaded.iteration}) on {device}, seed {seed}", file=sys.stderr)
    settings = {
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "stop_ids": set(loaded.tokenizer.special_token_ids.values()),
    }
    run = _print_batch if args.no_stream else _print_streams
    total, seconds = run(loaded, prompt, prompt_ids, args.num_samples, seed, settings)
    print(f"{total} tokens in {seconds:.2f} s: {total / max(seconds, 1e-9):.1f} tokens/s", file=sys.stderr)
    return 0


def _header(i: int, n: int) -> None:
    """``=== sample 2/3 ===`` before each of several samples, a blank line between them."""
    if n > 1:
        print(f"=== sample {i + 1}/{n} ===" if i == 0 else f"\n=== sample {i + 1}/{n} ===", flush=True)


def _print_streams(
    loaded: LoadedRun, prompt: str, prompt_ids: list[int], n: int, seed: int, settings: dict
) -> tuple[int, float]:
    """Each sample in turn, its text written to stdout token by token."""
    total, seconds = 0, 0.0
    for i in range(n):
        _header(i, n)
        sys.stdout.write(prompt)
        sys.stdout.flush()
        stream = TokenTextStream(loaded.tokenizer.vocab)
        count, start = 0, time.perf_counter()
        tokens = generate(loaded.model, prompt_ids, seed=seed + i, **settings)
        while True:
            try:
                token = next(tokens)
            except StopIteration as end:
                reason = end.value
                break
            count += 1
            sys.stdout.write(stream.feed(token))
            sys.stdout.flush()
        elapsed = time.perf_counter() - start
        print(stream.flush(), flush=True)
        _report(i, n, count, describe_finish(reason, loaded, settings["max_new_tokens"]))
        total, seconds = total + count, seconds + elapsed
    return total, seconds


def _print_batch(
    loaded: LoadedRun, prompt: str, prompt_ids: list[int], n: int, seed: int, settings: dict
) -> tuple[int, float]:
    """All samples as one batch (row i seeded ``seed + i``), printed when every row has finished."""
    start = time.perf_counter()
    rows = generate_batch(loaded.model, [prompt_ids] * n, seed=seed, **settings)
    tokens: list[list[int]] = [[] for _ in range(n)]
    with tqdm(total=settings["max_new_tokens"], desc="generating", unit="step", disable=None, leave=False) as bar:
        while True:
            try:
                step = next(rows)
            except StopIteration as end:
                reasons = end.value
                break
            for row, token in zip(tokens, step, strict=True):
                if token is not None:
                    row.append(token)
            bar.update()
    elapsed = time.perf_counter() - start
    for i, row in enumerate(tokens):
        _header(i, n)
        print(prompt + loaded.tokenizer.decode(row), flush=True)
        _report(i, n, len(row), describe_finish(reasons[i], loaded, settings["max_new_tokens"]))
    return sum(len(row) for row in tokens), elapsed


def _report(i: int, n: int, count: int, finish: str) -> None:
    name = f"sample {i + 1}/{n}: " if n > 1 else ""
    print(f"{name}{count} tokens, {finish}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(lambda: _main(argv))  # stdout closed early (piped into `head`): exit 1 quietly


if __name__ == "__main__":
    sys.exit(main())
