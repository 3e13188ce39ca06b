"""``lm-generate``: sample text from a trained run, one prompt streamed to stdout or a file of prompts to JSONL.

    lm-generate runs/tinystories --prompt "Once upon a time" --max-new-tokens 200 --temperature 0.8 --top-p 0.95
    lm-generate runs/tinystories --prompts-file prompts.jsonl --out completions.jsonl

Loads the run's latest checkpoint (or the checkpoint file given) with its tokenizer and config and decodes with
the engine (``cs336_lm.engine``: paged KV cache, continuous batching). One prompt: prints the prompt followed by
the generated text as it is produced, and reports tokens/s and why generation stopped on stderr. Sample ``i`` of
``--num-samples`` uses seed ``S + i``, so streamed samples and a ``--no-stream`` batch print the same text. A
prompts file: every prompt (and sample) decodes together, and one JSON line per completion is written. torch's CPU
threads follow ``--threads`` (``auto``: one per idle core, ``cs336_lm.run.threads``), stated on stderr.
"""

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from cs336_lm.cli import HelpFormatter, add_threads_option, check_output_apart, cpu_threads, run_main
from cs336_lm.engine import Engine, SamplingParams
from cs336_lm.errors import GenerationError
from cs336_lm.fileio import atomic_write
from cs336_lm.generation import prompt_problem
from cs336_lm.generation.prompts import read_prompts
from cs336_lm.generation.sampling import validate_sampling
from cs336_lm.run import LoadedRun, load_run
from cs336_lm.run.threads import ThreadChoice

SEEDS = range(-(2**63), 2**64)  # what torch.Generator.manual_seed accepts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lm-generate",
        description="Generate text from a trained run directory (its latest checkpoint) or a checkpoint file.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("run", type=Path, help="run directory (train.out_dir) or a checkpoints/step_*.pt file")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", default=argparse.SUPPRESS, help="prompt text")
    source.add_argument("--prompt-file", type=Path, default=argparse.SUPPRESS, help="UTF-8 file holding the prompt")
    source.add_argument(
        "--prompts-file",
        type=Path,
        default=argparse.SUPPRESS,
        help='many prompts: one per line, or JSONL ({"prompt": …, per-prompt settings}) when named *.jsonl',
    )
    parser.add_argument("--max-new-tokens", type=int, default=256, help="most tokens to generate per sample")
    parser.add_argument("--temperature", type=float, default=1.0, help="softmax temperature; 0 = greedy (argmax)")
    parser.add_argument(
        "--top-k", type=int, default=None, help="sample only among the k most likely tokens (default: all)"
    )
    parser.add_argument(
        "--top-p", type=float, default=None, help="nucleus sampling: smallest set with mass >= p (default: off)"
    )
    parser.add_argument(
        "--repetition-penalty", type=float, default=1.0, help="> 1 discourages tokens already in prompt or output"
    )
    parser.add_argument(
        "--stop", action="append", default=[], metavar="TEXT", help="end a sample at this text (repeatable)"
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (sample i uses seed+i); random if unset")
    parser.add_argument("--num-samples", type=int, default=1, help="number of samples per prompt")
    parser.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N, mps")
    add_threads_option(parser)
    parser.add_argument("--tokenizer", type=Path, default=None, help="tokenizer directory (default: RUN/tokenizer)")
    parser.add_argument("--out", type=Path, default=None, help="with --prompts-file: JSONL file (default: stdout)")
    parser.add_argument(
        "--no-stream", action="store_true", help="generate all samples as one batch and print them at the end"
    )
    return parser


def read_prompt(args: argparse.Namespace) -> str:
    """The prompt text from ``--prompt`` or ``--prompt-file``; an empty prompt is an error."""
    if hasattr(args, "prompt"):
        text, where = check_utf8(args.prompt, "--prompt"), "--prompt"
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


def check_utf8(text: str, option: str) -> str:
    """``text`` itself when it is valid UTF-8; bytes that are not arrive from argv as lone surrogates U+DC80–DCFF."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        bad = ord(text[e.start])
        what = f"byte 0x{bad - 0xDC00:02x}" if 0xDC80 <= bad <= 0xDCFF else f"lone surrogate U+{bad:04X}"
        raise GenerationError(f"{option} is not UTF-8 text (invalid {what} at character {e.start})") from None
    return text


def check_args(args: argparse.Namespace) -> None:
    """Reject invalid numbers and texts before the model is loaded."""
    validate_sampling(args.temperature, args.top_k, args.top_p, args.repetition_penalty)
    if args.max_new_tokens < 1:
        raise GenerationError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if args.num_samples < 1:
        raise GenerationError(f"--num-samples must be >= 1, got {args.num_samples}")
    if any(not s for s in args.stop):
        raise GenerationError("--stop needs a non-empty text")
    for stop in args.stop:
        check_utf8(stop, "--stop")
    if args.out is not None and not hasattr(args, "prompts_file"):
        raise GenerationError("--out goes with --prompts-file (one prompt is printed to stdout)")
    if args.seed is not None and (args.seed not in SEEDS or args.seed + args.num_samples - 1 not in SEEDS):
        raise GenerationError(f"--seed must fit in 64 bits, as must seed + --num-samples - 1; got {args.seed}")


def describe_finish(reason: str, loaded: LoadedRun, params: SamplingParams, stop: int | str | None = None) -> str:
    """Why a sample ended; for a stop, which one (``stop``: the stop id or the --stop text, when known)."""
    if reason == "stop":
        if isinstance(stop, str):
            return f"stopped at the --stop text {stop!r}"
        names = loaded.tokenizer.special_tokens if stop is None else [loaded.tokenizer.decode([stop])]
        specials = f"a special token ({', '.join(names)})"
        return f"stopped at {specials} or a --stop text" if params.stop and stop is None else f"stopped at {specials}"
    if reason == "context":
        return f"stopped at the model's context length ({loaded.model.context_length} tokens)"
    return f"stopped after --max-new-tokens {params.max_new_tokens}"


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    check_output_apart(args.out, args.run, getattr(args, "prompts_file", None), args.tokenizer)
    specs = read_prompts(args.prompts_file) if hasattr(args, "prompts_file") else None
    prompt = read_prompt(args) if specs is None else ""
    with cpu_threads(args.threads) as threads:
        return _generate(args, specs, prompt, threads)


def _generate(args: argparse.Namespace, specs, prompt: str, threads: ThreadChoice) -> int:
    """Load the run, check every prompt, state what runs where (stderr), then decode and report tokens/s."""
    loaded = load_run(args.run, args.device, args.tokenizer)
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    params = SamplingParams(
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        stop=tuple(args.stop),
        repetition_penalty=args.repetition_penalty,
        seed=seed,
        stop_ids=tuple(loaded.tokenizer.special_token_ids.values()),
    )
    # every prompt is checked before anything is printed
    planned = _plan_file(loaded, specs, params, args) if specs is not None else None
    prompt_ids = _prompt_ids(loaded, prompt) if specs is None else []
    device = loaded.model.lm_head.weight.device
    print(f"{loaded.checkpoint} (iteration {loaded.iteration}) on {device}, seed {seed}", file=sys.stderr)
    print(f"torch CPU threads: {threads.describe()}", file=sys.stderr)
    engine = Engine(loaded.model, tokenizer=loaded.tokenizer)
    start = time.perf_counter()
    if planned is not None:
        total = _write_completions(engine, specs, planned, args)
    else:
        run = _print_batch if args.no_stream else _print_streams
        total = run(engine, loaded, prompt, prompt_ids, args.num_samples, params)
    seconds = time.perf_counter() - start
    print(f"{total} tokens in {seconds:.2f} s: {total / max(seconds, 1e-9):.1f} tokens/s", file=sys.stderr)
    return 0


def _prompt_ids(loaded: LoadedRun, prompt: str, where: str = "trim --prompt/--prompt-file") -> list[int]:
    ids = loaded.tokenizer.encode(prompt)
    problem = prompt_problem(ids, loaded.model.context_length, loaded.model.vocab_size)
    if problem is not None:
        raise GenerationError(problem[1] + (f" ({where})" if problem[0] == "context_length_exceeded" else ""))
    return ids


def _header(i: int, n: int) -> None:
    """``=== sample 2/3 ===`` before each of several samples, a blank line between them."""
    if n > 1:
        print(f"=== sample {i + 1}/{n} ===" if i == 0 else f"\n=== sample {i + 1}/{n} ===", flush=True)


def _print_streams(
    engine: Engine, loaded: LoadedRun, prompt: str, prompt_ids: list[int], n: int, params: SamplingParams
) -> int:
    """Each sample in turn, its text written to stdout as the engine releases it."""
    total = 0
    for i in range(n):
        _header(i, n)
        sys.stdout.write(prompt)
        sys.stdout.flush()
        engine.add_request(prompt_ids, replace(params, seed=(params.seed or 0) + i))
        count, reason, stop = 0, "length", None
        while engine.has_unfinished:
            for event in engine.step():
                count += event.token is not None
                sys.stdout.write(event.text)
                sys.stdout.flush()
                if event.error is not None:
                    raise event.error
                if event.finish_reason:
                    reason, stop = event.finish_reason, event.stop_reason
        print(flush=True)
        _report(i, n, count, describe_finish(reason, loaded, params, stop))
        total += count
    return total


def _print_batch(
    engine: Engine, loaded: LoadedRun, prompt: str, prompt_ids: list[int], n: int, params: SamplingParams
) -> int:
    """All samples decoded together (sample i seeded ``seed + i``), printed when every one has finished."""
    samples = [replace(params, seed=(params.seed or 0) + i) for i in range(n)]
    completions = engine.generate([prompt_ids] * n, samples, progress=True)
    for i, done in enumerate(completions):
        _header(i, n)
        print(prompt + (done.text or ""), flush=True)
        _report(i, n, len(done.tokens), describe_finish(done.finish_reason, loaded, params, done.stop_reason))
    return sum(len(done.tokens) for done in completions)


def _plan_file(loaded: LoadedRun, specs, params: SamplingParams, args: argparse.Namespace):
    """``(prompt ids, SamplingParams)`` of every prompt and sample of the file: line j's sample i is seeded
    ``seed + j·N + i`` (N = ``--num-samples``), or from the line's own ``seed``."""
    n, planned = args.num_samples, []
    for j, spec in enumerate(specs):
        where = f"{args.prompts_file}:{spec.line}"
        overrides = dict(spec.settings)
        if "stop" in overrides:
            overrides["stop"] = tuple(overrides["stop"])
        base = overrides.pop("seed", None)
        base = (params.seed or 0) + j * n if base is None else base
        try:
            line_params = replace(params, **overrides)
        except GenerationError as e:
            raise GenerationError(f"{where}: {e}") from None
        ids = _prompt_ids(loaded, spec.text, where=where)
        planned += [(ids, replace(line_params, seed=base + i)) for i in range(n)]
    return planned


def _write_completions(engine: Engine, specs, planned, args: argparse.Namespace) -> int:
    """Every prompt of the file (and sample) through the engine at once; one JSON line each, in file order."""
    n = args.num_samples
    completions = engine.generate([ids for ids, _ in planned], [p for _, p in planned], progress=True)
    lines = []
    for k, done in enumerate(completions):
        spec = specs[k // n]
        record = {"prompt": spec.text, "text": done.text, "tokens": done.tokens, "finish_reason": done.finish_reason}
        if n > 1:
            record["sample"] = k % n
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    if args.out is None:
        sys.stdout.writelines(lines)
        sys.stdout.flush()
    else:
        with atomic_write(args.out, "w", encoding="utf-8") as f:
            f.writelines(lines)
        print(f"wrote {len(lines)} completions to {args.out}", file=sys.stderr)
    return sum(len(done.tokens) for done in completions)


def _report(i: int, n: int, count: int, finish: str) -> None:
    name = f"sample {i + 1}/{n}: " if n > 1 else ""
    print(f"{name}{count} tokens, {finish}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(lambda: _main(argv))  # stdout closed early (piped into `head`): exit 1 quietly


if __name__ == "__main__":
    sys.exit(main())
