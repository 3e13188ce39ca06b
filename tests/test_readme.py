"""The README's Python example runs as shown (in a temporary directory holding a small run's tokenizer)."""

import re
from pathlib import Path

from cs336_lm.tokenizer import Tokenizer, train_bpe

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_readme_python_example_runs(tmp_path, monkeypatch):
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert blocks, "the README shows no Python example"
    corpus = tmp_path / "tales.txt"
    corpus.write_text("Once upon a time there was a cat.\n<|endoftext|>\nThe dog ran home.\n" * 20, encoding="utf-8")
    vocab, merges = train_bpe(corpus, 300, ["<|endoftext|>"])
    Tokenizer(vocab, merges, ["<|endoftext|>"]).save(tmp_path / "runs" / "demo" / "tokenizer")
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        namespace: dict = {}
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["tok"].decode(namespace["ids"]) == "Once upon a time"
    assert namespace["model"].context_length == 256
