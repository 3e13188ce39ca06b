"""The ``make demo`` pipeline: from nothing to a trained model that tells stories, with the project's own CLIs.

Six steps, each a real command a user could type (they are printed before they run):

1. ``lm-demo-corpus`` writes the tinytales story corpus (``train.txt``, ``valid.txt``) into the data directory;
2. ``lm-train-bpe`` trains a byte-level BPE tokenizer on it;
3. ``lm-tokenize`` turns both splits into ``.npy`` token files;
4. ``lm-train --config configs/demo.yaml`` trains a small Transformer (GPU when there is one, else CPU);
5. ``lm-generate`` tells a few stories from prompts;
6. ``lm-plot`` draws the loss curves into ``RUN_DIR/loss.png``.

Steps whose inputs and command have not changed since the last run are skipped (their record lives in
``DATA_DIR/pipeline.json``), so running the demo again only regenerates the stories and the plot.
Arguments after the options (``key=value``) are passed to ``lm-train`` as config overrides; the test suite
uses them to run the whole pipeline on a tiny model in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = {
    "lm-demo-corpus": "demo_corpus",
    "lm-train-bpe": "train_bpe",
    "lm-tokenize": "tokenize",
    "lm-train": "train",
    "lm-generate": "generate",
    "lm-plot": "plot",
}
PROMPTS = ("Once upon a time, there was a little", "One day, Tom and his dog went to the", '"Can I help you?" asked')
LEDGER = "pipeline.json"


def section(title: str, number: int | None = None, total: int = 6) -> None:
    """Print a step header, e.g. ``===== [2/6] Train a BPE tokenizer =====``."""
    line = f" [{number}/{total}] {title} " if number else f" {title} "
    print(f"\n{line:=^100}", flush=True)


def run_cli(command: str, args: list[str], capture: bool = False, env: dict[str, str] | None = None) -> str:
    """Run one of the project's commands in a fresh Python process, echoing it first like a shell would.

    The command runs as ``python -c "from cs336_lm.cli.<module> import main; …"`` so it does not depend on
    the console scripts being on PATH. Exits the pipeline with the command's status when it fails. On Ctrl-C
    the command (which saw the same signal) is left to finish cleanly — lm-train saves a checkpoint first.
    """
    print("$ " + " ".join([command, *(_quote(a) for a in args)]), flush=True)
    code = f"import sys; from cs336_lm.cli.{COMMANDS[command]} import main; sys.exit(main(sys.argv[1:]))"
    stdout = subprocess.PIPE if capture else None
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=stdout, text=True, env=env)
    try:
        out, _ = proc.communicate()
    except KeyboardInterrupt:
        proc.wait()
        sys.exit(f"demo: interrupted during {command}; run the demo again to continue")
    if capture and out:
        print(out, end="", flush=True)
    if proc.returncode != 0:
        sys.exit(f"demo: {command} failed with exit status {proc.returncode}")
    return out or ""


def _quote(arg: str) -> str:
    return f"'{arg}'" if any(c in arg for c in " <>|\"'!;&") else arg


def thread_env(threads: str) -> tuple[dict[str, str], str]:
    """Environment for the commands, and why: ``OMP_NUM_THREADS`` sets torch's CPU threads.

    ``auto`` keeps an ``OMP_NUM_THREADS`` the user set, and otherwise gives torch one thread per idle core, by
    ``lm-train``'s own rule (``cs336_lm.run.threads.choose_threads``: the usable CPUs minus those other work
    keeps busy right now, at least one). On a shared machine the threads of one matmul wait for each other
    whenever one is descheduled: on the 2-core development machine at load 3, two threads trained at
    350–1,500 tokens/s and one thread at 5,500–6,200.
    """
    env = dict(os.environ)
    if threads != "auto":
        env["OMP_NUM_THREADS"] = threads
        return env, f"{threads} (--threads)"
    if "OMP_NUM_THREADS" in env:
        return env, f"{env['OMP_NUM_THREADS']} (OMP_NUM_THREADS)"
    from cs336_lm.run.threads import choose_threads

    choice = choose_threads("auto", environ={})
    env["OMP_NUM_THREADS"] = str(choice.count)
    return env, choice.describe()


class Ledger:
    """Which steps ran, with which command and on which inputs (size and mtime of each file), and finished."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.steps = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            self.steps = {}

    @staticmethod
    def _entry(argv: list[str], inputs: list[Path]) -> dict:
        files = sorted(p for path in inputs for p in ([path] if path.is_file() else sorted(path.rglob("*"))))
        return {"argv": argv, "inputs": {str(p): [p.stat().st_size, p.stat().st_mtime_ns] for p in files}}

    def same(self, name: str, argv: list[str], inputs: list[Path]) -> bool:
        """Did ``name`` last start with this command on these inputs (finished or not)?"""
        entry = self.steps.get(name, {})
        return {k: entry.get(k) for k in ("argv", "inputs")} == self._entry(argv, inputs)

    def done(self, name: str, argv: list[str], inputs: list[Path], outputs: list[Path]) -> bool:
        finished = self.steps.get(name, {}).get("finished", False)
        return finished and self.same(name, argv, inputs) and all(p.exists() for p in outputs)

    def record(self, name: str, argv: list[str], inputs: list[Path], finished: bool) -> None:
        self.steps[name] = {**self._entry(argv, inputs), "finished": finished}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.steps, indent=1), encoding="utf-8")


class Pipeline:
    """The six steps over one data directory and one run directory."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.data, self.run = args.data_dir, args.run_dir
        self.tokenizer = self.data / "tokenizer"
        self.ledger = Ledger(self.data / LEDGER)
        self.timings: dict[str, float] = {}
        self.env, threads = thread_env(args.threads)
        print(f"torch CPU threads: {threads}")

    def step(self, number, name, title, command, cli_args, inputs=(), outputs=(), before=None) -> None:
        """Run one command unless the ledger says it already finished with the same command and inputs."""
        t0 = time.perf_counter()
        section(title, number)
        inputs, outputs = list(inputs), list(outputs)
        if self.ledger.done(name, cli_args, inputs, outputs):
            print(f"(up to date: {', '.join(map(str, outputs))} — skipped)")
        else:
            if before is not None:
                before(self.ledger.same(name, cli_args, inputs))
            self.ledger.record(name, cli_args, inputs, finished=False)
            run_cli(command, cli_args, env=self.env)
            self.ledger.record(name, cli_args, inputs, finished=True)
        self.timings[title] = self.timings.get(title, 0.0) + time.perf_counter() - t0

    def corpus(self) -> None:
        a, data = self.args, self.data
        cli_args = ["--size-mb", str(a.size_mb), "--valid-mb", str(a.valid_mb), "--seed", str(a.seed)]
        cli_args += ["--out", str(data)]
        self.step(1, "corpus", "Write the story corpus", "lm-demo-corpus", cli_args,
                  outputs=[data / "train.txt", data / "valid.txt"])  # fmt: skip
        with open(data / "train.txt", encoding="utf-8") as f:
            first = f.read(3000).split("<|endoftext|>")[0].strip()
        print("\nThe first story of the corpus:\n\n    " + first.replace("\n", "\n    "))

    def bpe(self) -> None:
        train_txt = self.data / "train.txt"
        cli_args = [str(train_txt), "--vocab-size", str(self.args.vocab_size), "--special-token", "<|endoftext|>",
                    "--out", str(self.tokenizer)]  # fmt: skip
        self.step(2, "bpe", "Train a BPE tokenizer", "lm-train-bpe", cli_args,
                  inputs=[train_txt], outputs=[self.tokenizer / "vocab.json"])  # fmt: skip

    def tokenize(self) -> None:
        for split, npy in (("train", "train.npy"), ("valid", "val.npy")):
            text = self.data / f"{split}.txt"
            cli_args = ["--tokenizer", str(self.tokenizer), str(text), "--out", str(self.data / npy)]
            self.step(3, f"tokenize-{split}", "Tokenize train and valid", "lm-tokenize", cli_args,
                      inputs=[self.tokenizer, text], outputs=[self.data / npy])  # fmt: skip

    def train(self) -> None:
        d, a = self.data, self.args
        cli_args = ["--config", a.config, f"data.train_path={d / 'train.npy'}", f"data.val_path={d / 'val.npy'}",
                    f"data.tokenizer_dir={self.tokenizer}", f"model.vocab_size={a.vocab_size}",
                    f"train.out_dir={self.run}", *a.overrides]  # fmt: skip
        self.step(4, "train", "Train the model", "lm-train", cli_args,
                  inputs=[d / "train.npy", d / "val.npy", self.tokenizer, Path(a.config)],
                  outputs=[self.run / "checkpoints" / "latest"], before=self._prepare_run)  # fmt: skip

    def _prepare_run(self, same_settings: bool) -> None:
        """Before training: keep an interrupted run with the same settings (lm-train resumes it), clear a stale one."""
        if not self.run.exists() or same_settings:
            return
        if "train" not in self.ledger.steps:
            sys.exit(f"demo: {self.run} exists but was not made by this pipeline; remove it or pass --run-dir")
        print(f"(the data or settings changed since {self.run} was trained: starting a fresh run)")
        shutil.rmtree(self.run)

    def generate(self) -> None:
        """One story per prompt from the latest checkpoint, also saved to ``RUN_DIR/samples.txt``."""
        t0 = time.perf_counter()
        section("Tell some stories", 5)
        samples = []
        for i, prompt in enumerate(self.args.prompt or PROMPTS):
            cli_args = [str(self.run), "--prompt", prompt, "--max-new-tokens", str(self.args.max_new_tokens),
                        "--temperature", "0.7", "--top-p", "0.95", "--seed", str(i)]  # fmt: skip
            samples.append(run_cli("lm-generate", cli_args, capture=True, env=self.env).strip())
            print()
        (self.run / "samples.txt").write_text("\n\n---\n\n".join(samples) + "\n", encoding="utf-8")
        self.timings["Tell some stories"] = time.perf_counter() - t0

    def plot(self) -> None:
        t0 = time.perf_counter()
        section("Plot the loss curves", 6)
        run_cli("lm-plot", [str(self.run), "--out", str(self.run / "loss.png"), "--title", "make demo"], env=self.env)
        self.timings["Plot the loss curves"] = time.perf_counter() - t0

    def summary(self, total: float) -> None:
        section("Done")
        for title, seconds in self.timings.items():
            print(f"  {title:<28} {seconds:7.1f} s")
        print(f"  {'total':<28} {total:7.1f} s")
        print(f"\ndata: {self.data}/ (train.txt, valid.txt, tokenizer/, train.npy, val.npy)")
        print(f"run:  {self.run}/ (config.yaml, metrics.jsonl, checkpoints/, samples.txt, loss.png)")
        print(f"next: lm-generate {self.run} --prompt 'Once upon a time'   |   lm-plot {self.run} --out loss.png")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="The whole journey on the tinytales corpus: corpus, tokenizer, tokens, training, stories, plot.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data-dir", type=Path, default=Path("data/demo"), help="corpus, tokenizer and token files")
    p.add_argument("--run-dir", type=Path, default=Path("runs/demo"), help="training run directory")
    p.add_argument("--config", default="configs/demo.yaml", help="lm-train config")
    p.add_argument("--size-mb", type=float, default=5.0, help="training corpus size (MB)")
    p.add_argument("--valid-mb", type=float, default=0.2, help="validation corpus size (MB)")
    p.add_argument("--seed", type=int, default=0, help="corpus seed")
    p.add_argument("--vocab-size", type=int, default=2048, help="BPE vocabulary size (bytes + specials + merges)")
    p.add_argument(
        "--prompt", action="append", default=None, help="generation prompt, repeatable; None: three story openings"
    )
    p.add_argument("--max-new-tokens", type=int, default=120, help="tokens generated per prompt")
    p.add_argument(
        "--threads",
        default="auto",
        help="torch CPU threads (OMP_NUM_THREADS); auto: one per idle core",
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="lm-train config overrides")
    return p


def main(argv: list[str] | None = None) -> int:
    start = time.perf_counter()
    pipeline = Pipeline(build_parser().parse_intermixed_args(argv))
    pipeline.corpus()
    pipeline.bpe()
    pipeline.tokenize()
    pipeline.train()
    pipeline.generate()
    pipeline.plot()
    pipeline.summary(time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
