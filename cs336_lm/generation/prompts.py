"""Files of prompts for batch generation: one prompt per line, or JSON Lines with per-prompt settings.

A ``.jsonl`` file holds one JSON object per line: ``{"prompt": "Once upon a time", "max_new_tokens": 40,
"temperature": 0.8, "top_k": 50, "top_p": 0.95, "seed": 3, "stop": ["\\n\\n"], "repetition_penalty": 1.1}``;
only ``prompt`` is required, the other keys override the command line's settings for that prompt. Any other file
is read as plain text with one prompt per line (blank lines are skipped; a prompt cannot hold a newline there).
Every problem names the file and the line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cs336_lm.errors import GenerationError

SETTINGS: dict[str, type | tuple[type, ...]] = {
    "max_new_tokens": int,
    "temperature": (int, float),
    "top_k": (int, type(None)),
    "top_p": (int, float, type(None)),
    "seed": (int, type(None)),
    "stop": list,
    "repetition_penalty": (int, float),
}


@dataclass
class PromptSpec:
    """One prompt of a file, its 1-based line number and the settings its line overrides."""

    text: str
    line: int
    settings: dict[str, Any] = field(default_factory=dict)


def read_prompts(path: str | os.PathLike) -> list[PromptSpec]:
    """The prompts of ``path`` (see the module docstring); an empty file is an error."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise GenerationError(f"--prompts-file {path}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise GenerationError(f"--prompts-file {path} is not UTF-8 text (byte {e.start})") from None
    lines = text.splitlines()
    specs = _jsonl(path, lines) if path.suffix == ".jsonl" else _plain(lines)
    if not specs:
        raise GenerationError(f"--prompts-file {path} holds no prompt")
    return specs


def _plain(lines: list[str]) -> list[PromptSpec]:
    return [PromptSpec(line, n) for n, line in enumerate(lines, start=1) if line.strip()]


def _jsonl(path: Path, lines: list[str]) -> list[PromptSpec]:
    specs = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise GenerationError(f"{where}: not JSON ({e.msg})") from None
        if not isinstance(record, dict):
            raise GenerationError(f'{where}: expected a JSON object with a "prompt", got {type(record).__name__}')
        prompt = record.pop("prompt", None)
        if not isinstance(prompt, str) or not prompt:
            raise GenerationError(f'{where}: "prompt" must be a non-empty string')
        for key, value in record.items():
            if key not in SETTINGS:
                raise GenerationError(f"{where}: unknown key {key!r} (known: prompt, {', '.join(SETTINGS)})")
            expected = SETTINGS[key]
            if isinstance(value, bool) or not isinstance(value, expected):
                raise GenerationError(f"{where}: {key} has the wrong type ({type(value).__name__})")
        if not all(isinstance(s, str) for s in record.get("stop", [])):
            raise GenerationError(f"{where}: stop must be a list of strings")
        specs.append(PromptSpec(prompt, n, record))
    return specs
