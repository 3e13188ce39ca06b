"""Tokenizer files in GPT-2's format: ``vocab.json``, ``merges.txt`` and our ``special_tokens.json``.

GPT-2 stores byte strings as printable text: every byte maps to one Unicode character by GPT-2's
byte-to-unicode table (printable Latin-1 bytes map to themselves; the other 68 bytes — controls, space,
``0x7f``–``0xa0``, ``0xad`` — map to ``chr(256 + k)`` in byte order, so space is ``"Ġ"`` and newline is ``"Ċ"``).
``vocab.json`` maps each token's text to its id; ``merges.txt`` holds one merge per line, ``"Ġ t"``, in rank
order, optionally after a ``#version`` line; ``special_tokens.json`` is a JSON list of strings. Everything
is JSON or plain text, so a tokenizer from a stranger is safe to load (no pickle). Readers raise
``TokenizerError`` naming the file and the line or entry at fault.

Two optional files carry a chat model's conversation format beside them, in HuggingFace's own forms:
``chat_template.jinja`` (the Jinja2 chat template, verbatim) and ``special_tokens_map.json`` (the special tokens a
template reads by role, ``{"bos_token": "<s>", "eos_token": "</s>"}``). They live in the tokenizer directory so that
every command that copies a tokenizer copies them too.
"""

import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path

from cs336_lm.errors import TokenizerError
from cs336_lm.fileio import atomic_write

VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
SPECIAL_TOKENS_FILE = "special_tokens.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
NAMED_TOKENS_FILE = "special_tokens_map.json"
TOKEN_ROLES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
"""The roles a special token can have (HuggingFace's names); a chat template sees each as a variable."""
MERGES_HEADER = "#version: 0.2"


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> character table: ``{33: "!", …, 32: "Ġ", 10: "Ċ"}``, a bijection on 256 bytes.

    Bytes that print as themselves (``!``…``~``, ``¡``…``¬``, ``®``…``ÿ``) keep their Latin-1 character;
    the remaining 68 bytes, in increasing order, take ``chr(256)``, ``chr(257)``, … (space = 32 -> ``chr(288)``).
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


@functools.cache
def unicode_to_bytes() -> dict[str, int]:
    """The inverse of :func:`bytes_to_unicode`: ``{"Ġ": 32, "!": 33, …}``."""
    return {c: b for b, c in bytes_to_unicode().items()}


@functools.cache
def _translation_tables() -> tuple[dict[int, str], dict[int, str | None]]:
    """``str.translate`` tables: Latin-1 character of a byte -> its GPT-2 character, and back.

    The way back deletes the Latin-1 characters that are not GPT-2 characters (space, controls, ``0xad``…),
    so a text holding one comes out shorter, which :func:`text_to_token` detects.
    """
    forward = {b: c for b, c in bytes_to_unicode().items()}
    backward: dict[int, str | None] = {ord(c): chr(b) for b, c in bytes_to_unicode().items()}
    for b in range(256):
        backward.setdefault(b, None)
    return forward, backward


def token_to_text(token: bytes) -> str:
    """A token's bytes in GPT-2's printable form: ``b" the"`` -> ``"Ġthe"``, ``b"\\n"`` -> ``"Ċ"``."""
    return token.decode("latin-1").translate(_translation_tables()[0])


def text_to_token(text: str) -> bytes | None:
    """The inverse of :func:`token_to_text`, or ``None`` when ``text`` has a character outside the table."""
    latin = text.translate(_translation_tables()[1])
    if len(latin) != len(text):
        return None
    try:
        return latin.encode("latin-1")
    except UnicodeEncodeError:  # a character above U+00FF that is not a GPT-2 character
        return None


def read_vocab(path: str | os.PathLike, special_tokens: Sequence[str] = ()) -> dict[int, bytes]:
    """Read ``vocab.json`` (``{"Ġthe": 262, …}``) into ``{262: b" the", …}``.

    An entry that is one of ``special_tokens`` written literally (e.g. ``"<|end of text|>"`` with a raw space)
    is taken as that string's UTF-8 bytes. Ids must be distinct non-negative integers.
    """
    data = _read_json(path)
    if not isinstance(data, dict) or not data:
        raise TokenizerError(f"{path}: expected a non-empty JSON object mapping token text to id")
    specials = set(special_tokens)
    vocab: dict[int, bytes] = {}
    for text, token_id in data.items():
        if not isinstance(token_id, int) or isinstance(token_id, bool) or token_id < 0:
            raise TokenizerError(f"{path}: token {text!r} has id {token_id!r}; ids must be non-negative integers")
        if token_id in vocab:
            raise TokenizerError(f"{path}: id {token_id} is used by two tokens")
        token = text_to_token(text)
        if token is None:
            if text not in specials:
                raise TokenizerError(f"{path}: token {text!r} is not in GPT-2's byte-to-unicode form")
            token = text.encode("utf-8")
        vocab[token_id] = token
    return vocab


def read_merges(path: str | os.PathLike) -> list[tuple[bytes, bytes]]:
    """Read ``merges.txt`` (``"Ġ t"`` per line, rank order) into ``[(b" ", b"t"), …]``.

    A first line starting with ``#version`` is skipped, as are blank lines; any other line must hold
    exactly two tokens separated by one space.
    """
    lines = _read_text(path).split("\n")
    merges = []
    for lineno, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        if not line or (lineno == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        pair = [text_to_token(p) for p in parts]
        first, second = [*pair, None, None][:2]
        if len(parts) != 2 or not all(parts) or first is None or second is None:
            raise TokenizerError(f"{path}:{lineno}: expected two GPT-2 tokens separated by a space, got {line!r}")
        merges.append((first, second))
    return merges


def read_special_tokens(path: str | os.PathLike) -> list[str]:
    """Read ``special_tokens.json``: a JSON list of distinct non-empty strings, ``["<|endoftext|>"]``."""
    data = _read_json(path)
    if not isinstance(data, list) or not all(isinstance(t, str) and t for t in data):
        raise TokenizerError(f"{path}: expected a JSON list of non-empty strings, got {data!r:.80}")
    if len(set(data)) != len(data):
        raise TokenizerError(f"{path}: special tokens must be distinct")
    return data


def check_named_tokens(named: object, where: str) -> dict[str, str]:
    """``named`` as ``{role: token}`` when every key is one of ``TOKEN_ROLES`` and every value a non-empty string."""
    if not isinstance(named, dict):
        raise TokenizerError(f"{where}: expected a JSON object mapping roles to tokens, got {named!r:.80}")
    for role, token in named.items():
        if role not in TOKEN_ROLES:
            raise TokenizerError(f"{where}: unknown role {role!r} (expected one of {', '.join(TOKEN_ROLES)})")
        if not isinstance(token, str) or not token:
            raise TokenizerError(f"{where}: {role} must be a non-empty string, got {token!r:.80}")
    return dict(named)


def read_chat_files(directory: str | os.PathLike) -> tuple[str | None, dict[str, str]]:
    """``(chat template or None, {role: token})`` from ``chat_template.jinja`` and ``special_tokens_map.json`` in
    ``directory``; either file may be absent."""
    directory = Path(directory)
    template_path, named_path = directory / CHAT_TEMPLATE_FILE, directory / NAMED_TOKENS_FILE
    template = _read_text(template_path) if template_path.is_file() else None
    named = check_named_tokens(_read_json(named_path), str(named_path)) if named_path.is_file() else {}
    return template, named


def check_merges_cover_vocab(
    vocab: dict[int, bytes],
    merges: Sequence[tuple[bytes, bytes]],
    special_tokens: Sequence[str],
    vocab_path: str | os.PathLike,
    merges_path: str | os.PathLike,
) -> None:
    """Every multi-byte token that is not special must come from a merge; otherwise a file is truncated or mixed.

    Byte-level BPE builds its vocabulary as the 256 bytes + one token per merge (+ the special tokens), so a
    token no merge produces means ``merges.txt`` lost lines or belongs to another vocabulary.
    """
    produced = {a + b for a, b in merges}
    specials = {t.encode("utf-8") for t in special_tokens}
    orphans = [t for t in vocab.values() if len(t) > 1 and t not in produced and t not in specials]
    if orphans:
        raise TokenizerError(
            f"{vocab_path} has {len(orphans)} tokens that no merge in {merges_path} produces "
            f"(first: {token_to_text(orphans[0])!r}): merges.txt is truncated or from another tokenizer, "
            f"or the token is special and missing from {SPECIAL_TOKENS_FILE}"
        )


def write_tokenizer_files(
    directory: str | os.PathLike,
    vocab: dict[int, bytes],
    merges: Sequence[tuple[bytes, bytes]],
    special_tokens: Sequence[str],
    chat_template: str | None = None,
    named_tokens: dict[str, str] | None = None,
) -> Path:
    """Write ``vocab.json``, ``merges.txt`` and ``special_tokens.json`` into ``directory`` (created if needed), and
    ``chat_template.jinja`` and ``special_tokens_map.json`` when given.

    Each file is written atomically; other files in the directory are left alone.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab_json = {token_to_text(vocab[i]): i for i in sorted(vocab)}
    if len(vocab_json) != len(vocab):
        raise TokenizerError("cannot save a vocabulary in which two ids have the same bytes")
    with atomic_write(directory / VOCAB_FILE, "w", encoding="utf-8") as f:
        json.dump(vocab_json, f, ensure_ascii=False)
    with atomic_write(directory / MERGES_FILE, "w", encoding="utf-8") as f:
        f.write(MERGES_HEADER + "\n")
        f.writelines(f"{token_to_text(a)} {token_to_text(b)}\n" for a, b in merges)
    with atomic_write(directory / SPECIAL_TOKENS_FILE, "w", encoding="utf-8") as f:
        json.dump(list(special_tokens), f, ensure_ascii=False)
    if chat_template is not None:
        with atomic_write(directory / CHAT_TEMPLATE_FILE, "w", encoding="utf-8", newline="") as f:
            f.write(chat_template)
    if named_tokens:
        with atomic_write(directory / NAMED_TOKENS_FILE, "w", encoding="utf-8") as f:
            json.dump(named_tokens, f, ensure_ascii=False, indent=2)
    return directory


def _read_text(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.end == len(data) and e.reason == "unexpected end of data":
            raise TokenizerError(f"{path}: truncated (the file ends inside a UTF-8 character)") from None
        raise TokenizerError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _read_json(path: str | os.PathLike):
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise TokenizerError(f"{path}: malformed JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
