"""``lm-serve``: serve a trained run over HTTP with the OpenAI completions and chat protocols, and a page to try it.

    lm-serve runs/tinystories                       # http://127.0.0.1:8000: the page at /, the API under /v1
    lm-serve runs/tinystories --host 0.0.0.0 --port 8080 --api-key "$(cat key.txt)"

Loads the run's latest checkpoint (or the checkpoint file given) with its tokenizer, builds one engine (paged KV
cache, continuous batching) that every request shares, and serves it (``cs336_lm.serve``) until SIGTERM or
Ctrl-C, which let requests in flight finish for ``--shutdown-grace`` seconds, abort the rest, and exit 0. torch's
CPU threads follow ``--threads`` (``auto``: one per idle core at startup, ``cs336_lm.run.threads``).
docs/serving.md describes the endpoints, the errors and the page.
"""

import argparse
import ipaddress
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cs336_lm.cli import HelpFormatter, add_threads_option, cpu_threads, run_main
from cs336_lm.errors import LMError

if TYPE_CHECKING:
    from cs336_lm.run.threads import ThreadChoice

API_KEY_ENV = "LM_SERVE_API_KEY"


def build_parser() -> argparse.ArgumentParser:
    from cs336_lm.engine.engine import DEFAULT_MAX_BATCH_TOKENS

    parser = argparse.ArgumentParser(
        prog="lm-serve",
        description="Serve a trained run (its latest checkpoint) or a checkpoint file with an OpenAI-compatible "
        "API (/v1/completions, /v1/chat/completions on the run's chat template, /v1/models, /health, /metrics) and a "
        "page to try it at /.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("run", type=Path, help="run directory (train.out_dir) or a checkpoints/step_*.pt file")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (0: any free port)")
    parser.add_argument(
        "--api-key",
        default=None,
        help=f"require 'Authorization: Bearer KEY' under /v1 (default: ${API_KEY_ENV} if set, else no key)",
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N, mps")
    add_threads_option(parser)
    parser.add_argument("--tokenizer", type=Path, default=None, help="tokenizer directory (default: RUN/tokenizer)")
    parser.add_argument("--model-name", default=None, help="the model's name in the API (default: the run's name)")
    parser.add_argument(
        "--max-batch-tokens", type=int, default=DEFAULT_MAX_BATCH_TOKENS, help="most tokens in one engine forward"
    )
    parser.add_argument(
        "--max-kv-tokens", type=int, default=None, help="KV-cache pool size in tokens (default: 32 full contexts)"
    )
    parser.add_argument("--max-queue", type=int, default=256, help="most requests waiting for a place (then 503)")
    parser.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest request body (then 413)")
    parser.add_argument(
        "--shutdown-grace", type=float, default=10.0, help="seconds requests in flight get to finish on SIGTERM"
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--access-log", action="store_true", help="log every request")
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Reject invalid numbers before the model is loaded."""
    if not 0 <= args.port <= 65535:
        raise LMError(f"--port must be in 0..65535, got {args.port}")
    for name in ("max_batch_tokens", "max_kv_tokens", "max_queue", "max_body_bytes"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise LMError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if not args.shutdown_grace >= 0:
        raise LMError(f"--shutdown-grace must be >= 0 seconds, got {args.shutdown_grace}")
    if args.api_key is not None and not args.api_key.strip():
        raise LMError("--api-key is empty")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    args.api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None
    check_args(args)
    with cpu_threads(args.threads) as threads:
        return _serve(args, threads)


def _serve(args: argparse.Namespace, threads: "ThreadChoice") -> int:
    """Load the run, build the engine and the app, and serve until told to stop."""
    try:
        from cs336_lm.serve import create_app, listen, make_server
        from cs336_lm.serve.server import url_of
    except ImportError as e:
        raise LMError(f"lm-serve needs the serve extra (pip install 'cs336_lm[serve]'): {e}") from None
    from cs336_lm.engine import Engine
    from cs336_lm.run import load_run

    loaded = load_run(args.run, args.device, args.tokenizer)
    engine = Engine(
        loaded.model,
        max_batch_tokens=args.max_batch_tokens,
        max_kv_tokens=args.max_kv_tokens,
        tokenizer=loaded.tokenizer,
    )
    name = args.model_name or loaded.run_dir.root.resolve().name
    app = create_app(engine, model_name=name, api_key=args.api_key, max_queue=args.max_queue,
                     max_body_bytes=args.max_body_bytes)  # fmt: skip
    sock = listen(args.host, args.port)
    url = url_of(sock)
    device = loaded.model.lm_head.weight.device
    if not _is_loopback(args.host) and args.api_key is None:
        print(
            f"warning: listening on {args.host} without --api-key: anyone who can reach it can use it", file=sys.stderr
        )

    def started() -> None:
        print(
            f"serving {name} ({loaded.checkpoint}, iteration {loaded.iteration}, on {device}) at {url}: "
            f"the page at {url}/, the API at {url}/v1",
            file=sys.stderr,
            flush=True,
        )
        print(f"torch CPU threads: {threads.describe()}", file=sys.stderr, flush=True)

    server = make_server(
        app, grace=args.shutdown_grace, log_level=args.log_level, access_log=args.access_log, on_started=started
    )
    server.run(sockets=[sock])
    print("lm-serve stopped", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
