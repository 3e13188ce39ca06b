"""Our byte-level BPE as HuggingFace tokenizer files, and HuggingFace tokenizer files read back as ours.

Written (``write_hf_tokenizer``): ``tokenizer.json``, built with the ``tokenizers`` library — a BPE model over our
vocabulary in GPT-2's byte-to-unicode form and our merges in rank order, GPT-2's byte-level pre-tokenizer (the
same regex as ours), the byte-level decoder, our special tokens as special added tokens at their ids, and
``ignore_merges`` (a pre-token that is itself a token maps straight to it, as in our ``Tokenizer`` and tiktoken);
``tokenizer_config.json`` (``PreTrainedTokenizerFast``, no clean-up of spaces on decoding) and
``special_tokens_map.json`` (the special tokens by role: as imported, else the first special token as BOS and EOS,
e.g. ``<|endoftext|>``), and the chat template (``hf_chat``).

Read (``read_hf_tokenizer``): ``tokenizer.json`` when present, else GPT-2-style ``vocab.json`` + ``merges.txt``
(special tokens from ``tokenizer_config.json``, ``special_tokens_map.json``, ``added_tokens.json``), and the chat
template with the special tokens by role (``hf_chat``). Anything that
would make HuggingFace encode differently from ours is refused with an ``InteropError`` naming the field: a
normalizer, a pre-tokenizer other than plain byte-level, byte fallback, subword prefixes or suffixes, dropout,
added tokens that are not special, tokens not in byte-level form, merges out of creation order (a merge using a
token no earlier merge made), a token no merge makes, or — without ``ignore_merges`` — a token its own merges do
not reach. A post-processor that adds tokens (a BOS) is reported as a note: ours encodes without it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeGuard

from cs336_lm.errors import InteropError, TokenizerError
from cs336_lm.fileio import atomic_write
from cs336_lm.interop.hf_chat import (
    SPECIAL_TOKENS_MAP,
    TOKENIZER_CONFIG,
    named_for_export,
    read_hf_chat,
    write_chat_template,
)
from cs336_lm.interop.hf_folder import read_json_object, show
from cs336_lm.tokenizer import Tokenizer
from cs336_lm.tokenizer import files as gpt2_files
from cs336_lm.tokenizer.files import text_to_token, token_to_text

TOKENIZER_JSON = "tokenizer.json"
ADDED_TOKENS = "added_tokens.json"
MISSING_TOKENIZERS = "writing tokenizer.json needs the tokenizers library: pip install 'cs336_lm[hf]'"


# ---------------------------------------------------------------------------------------------- writing


def write_hf_tokenizer(tok: Tokenizer, directory: str | Path, model_max_length: int) -> list[str]:
    """Write ``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json`` and (when ``tok`` has one)
    ``chat_template.jinja`` for ``tok`` into ``directory``; return the file names."""
    directory = Path(directory)
    special_ids = set(tok.special_token_ids.values())
    ordinary = {token_to_text(data): i for i, data in sorted(tok.vocab.items()) if i not in special_ids}
    if len(ordinary) != len(tok.vocab) - len(special_ids):
        raise InteropError("the tokenizer has two ids with the same bytes; tokenizer.json cannot hold both")
    clash = next((t for t in tok.special_tokens if t in ordinary), None)
    if clash is not None:
        raise InteropError(f"special token {clash!r} reads like an ordinary token's byte-level text in tokenizer.json")
    _build_tokenizer_json(tok, ordinary).save(str(directory / TOKENIZER_JSON))
    named = named_for_export(tok)
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False,
        "add_prefix_space": False,
        **named,
    }
    _write_json(directory / TOKENIZER_CONFIG, config)
    _write_json(directory / SPECIAL_TOKENS_MAP, named)
    return [TOKENIZER_JSON, TOKENIZER_CONFIG, SPECIAL_TOKENS_MAP, *write_chat_template(tok, directory)]


def _build_tokenizer_json(tok: Tokenizer, ordinary: dict[str, int]) -> Any:
    """The ``tokenizers.Tokenizer``: byte-level BPE, GPT-2 pre-tokenizer, special tokens at our ids."""
    try:
        from tokenizers import AddedToken, decoders, models, pre_tokenizers, processors
        from tokenizers import Tokenizer as HFTokenizer
    except ImportError:
        raise InteropError(MISSING_TOKENIZERS) from None
    # special tokens sit in the model's vocabulary too (as GPT-2's <|endoftext|> does), so adding them as special
    # tokens keeps their ids; added tokens are split off before the BPE model sees any text
    vocab = {**ordinary, **tok.special_token_ids}
    merges = [(token_to_text(a), token_to_text(b)) for a, b in tok.merges]
    bpe = models.BPE(vocab=vocab, merges=merges, byte_fallback=False, fuse_unk=False, ignore_merges=True)
    hf = HFTokenizer(bpe)
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.decoder = decoders.ByteLevel()
    hf.post_processor = processors.ByteLevel(trim_offsets=False)
    hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in tok.special_tokens])
    return hf


def _write_json(path: Path, data: Any) -> None:
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")


# ---------------------------------------------------------------------------------------------- reading


def read_hf_tokenizer(directory: str | Path) -> tuple[Tokenizer, list[str]]:
    """Our ``Tokenizer`` from a HuggingFace folder's tokenizer files, and notes for the user (see the module
    docstring); ``InteropError`` for anything it cannot represent."""
    directory = Path(directory)
    path = directory / TOKENIZER_JSON
    if path.is_file():
        vocab, merges, specials, notes, ignore_merges = _parse_tokenizer_json(path)
        where = str(path)
    elif (directory / gpt2_files.VOCAB_FILE).is_file() and (directory / gpt2_files.MERGES_FILE).is_file():
        vocab, merges, specials = _parse_vocab_merges(directory)
        notes, ignore_merges, where = [], False, str(directory / gpt2_files.VOCAB_FILE)
    else:
        raise InteropError(f"{directory} has no tokenizer: expected tokenizer.json, or vocab.json and merges.txt")
    template, named, chat_notes = read_hf_chat(directory)
    try:
        tok = Tokenizer(vocab, merges, specials, chat_template=template, named_tokens=named)
    except TokenizerError as e:
        raise InteropError(f"{where}: {e}") from None
    _check_merges(tok, where, ignore_merges)
    return tok, notes + chat_notes


def _parse_tokenizer_json(path: Path) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]], list[str], list[str], bool]:
    """``(vocab, merges, special tokens, notes, ignore_merges)`` of a ``tokenizer.json``, its pipeline checked."""
    data = read_json_object(path)
    model = _section(data, "model", path)
    _check_pipeline(data, model, path)
    specials = _added_tokens(data, path)
    vocab: dict[int, bytes] = {token_id: content.encode("utf-8") for content, token_id in specials.items()}
    for text, token_id in _section(model, "vocab", path, "model.").items():
        if text in specials:
            if specials[text] != token_id:
                raise InteropError(
                    f"{path}: special token {text!r} has id {specials[text]} in added_tokens, {show(token_id)} in "
                    "model.vocab"
                )
            continue
        token = text_to_token(text)
        if token is None or not _is_id(token_id):
            raise InteropError(f"{path}: model.vocab token {text!r} (id {show(token_id)}) is not in byte-level form")
        if token_id in vocab:
            raise InteropError(f"{path}: model.vocab uses id {token_id} twice")
        vocab[token_id] = token
    merges = [_merge_pair(m, k, path) for k, m in enumerate(_list(model, "merges", path, "model."))]
    notes = _post_processor_notes(data.get("post_processor"), path)
    ordered = sorted(specials, key=specials.__getitem__)
    return vocab, merges, ordered, notes, _flag(model, "ignore_merges", path)


def _section(data: dict, key: str, path: Path, prefix: str = "") -> dict:
    """``data[key]``, a JSON object; absent or null is an empty one."""
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InteropError(f"{path}: {prefix}{key} must be a JSON object, got {show(value)}")
    return value


def _list(data: dict, key: str, path: Path, prefix: str = "") -> list:
    """``data[key]``, a JSON list; absent or null is an empty one."""
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InteropError(f"{path}: {prefix}{key} must be a list, got {show(value)}")
    return value


def _flag(data: dict, key: str, path: Path, prefix: str = "model.") -> bool:
    """``data[key]``, ``true`` or ``false``; absent or null is false."""
    value = data.get(key)
    if value is not None and not isinstance(value, bool):
        raise InteropError(f"{path}: {prefix}{key} must be true or false, got {show(value)}")
    return bool(value)


def _added_tokens(data: dict, path: Path) -> dict[str, int]:
    """``added_tokens`` as ``{content: id}``: each special, plain (no stripping), with its own id."""
    specials: dict[str, int] = {}
    for k, added in enumerate(_list(data, "added_tokens", path)):
        if not isinstance(added, dict):
            raise InteropError(f"{path}: added_tokens[{k}] must be a JSON object, got {show(added)}")
        content, token_id = added.get("content"), added.get("id")
        if not isinstance(content, str) or not content or not _is_id(token_id):
            raise InteropError(f"{path}: added_tokens[{k}] needs a non-empty content and an id, got {show(added)}")
        if not added.get("special"):
            raise InteropError(f"{path}: added_tokens[{k}] {content!r} is not special; ours holds only special tokens")
        for flag in ("lstrip", "rstrip", "single_word"):
            if added.get(flag):
                raise InteropError(f"{path}: added_tokens[{k}] {content!r} has {flag}=true, which ours cannot do")
        if token_id in specials.values() or content in specials:
            raise InteropError(f"{path}: added_tokens[{k}] ({content!r}, id {token_id}) repeats a token or an id")
        specials[content] = token_id
    return specials


def _check_pipeline(data: dict, model: dict, path: Path) -> None:
    """Refuse a ``tokenizer.json`` whose normalizer, pre-tokenizer, model options or decoder differ from GPT-2's."""
    if model.get("type") != "BPE":
        raise InteropError(f"{path}: model.type is {show(model.get('type'))}; lm-import reads byte-level BPE only")
    if data.get("normalizer") is not None:
        normalizer = data["normalizer"]
        kind = normalizer.get("type") if isinstance(normalizer, dict) else normalizer
        raise InteropError(f"{path}: normalizer {show(kind)} is not supported (byte-level BPE reads text unnormalised)")
    pre = data.get("pre_tokenizer")
    if isinstance(pre, dict) and pre.get("type") == "Sequence":
        inner = pre.get("pretokenizers")
        pre = inner[0] if isinstance(inner, list) and len(inner) == 1 else pre
    plain = (
        isinstance(pre, dict)
        and pre.get("type") == "ByteLevel"
        and pre.get("add_prefix_space") in (None, False)
        and pre.get("use_regex", True) is True
    )
    if not plain:
        raise InteropError(
            f"{path}: pre_tokenizer {show(data.get('pre_tokenizer'), 120)} is not GPT-2's byte-level "
            "pre-tokenizer (ByteLevel, add_prefix_space=false, use_regex=true)"
        )
    for key in ("byte_fallback", "dropout"):
        if model.get(key):
            raise InteropError(f"{path}: model.{key}={show(model[key])} is not supported")
    for key in ("continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            raise InteropError(f"{path}: model.{key}={show(model[key])} is not supported by byte-level BPE")
    decoder = data.get("decoder")
    if decoder is not None and (not isinstance(decoder, dict) or decoder.get("type") != "ByteLevel"):
        kind = decoder.get("type") if isinstance(decoder, dict) else decoder
        raise InteropError(f"{path}: decoder {show(kind)} is not the byte-level decoder")


def _is_id(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _merge_pair(merge: Any, k: int, path: Path) -> tuple[bytes, bytes]:
    """``"Ġ t"`` or ``["Ġ", "t"]`` -> ``(b" ", b"t")``."""
    parts = merge.split(" ") if isinstance(merge, str) else merge if isinstance(merge, list) else []
    pair = [text_to_token(p) if isinstance(p, str) and p else None for p in parts] if len(parts) == 2 else []
    if len(pair) != 2 or pair[0] is None or pair[1] is None:
        raise InteropError(f"{path}: model.merges[{k}] {show(merge)} is not a pair of byte-level tokens")
    return pair[0], pair[1]


def _post_processor_notes(post: Any, path: Path) -> list[str]:
    """A note when the post-processor adds tokens (``TemplateProcessing`` with a BOS, say): ours does not."""
    if post is None:
        return []
    if not isinstance(post, dict):
        raise InteropError(f"{path}: post_processor must be a JSON object, got {show(post)}")
    if post.get("type") == "ByteLevel":
        return []
    if post.get("type") == "Sequence":
        return [n for p in _list(post, "processors", path, "post_processor.") for n in _post_processor_notes(p, path)]
    single: list = post["single"] if isinstance(post.get("single"), list) else []
    if post.get("type") == "TemplateProcessing" and all(isinstance(p, dict) and "Sequence" in p for p in single):
        return []
    added = [_special_piece(piece) for piece in single if isinstance(piece, dict) and "SpecialToken" in piece]
    what = f"adds {', '.join(added)} to every sequence" if added else "changes every sequence"
    kind = post.get("type")
    return [
        f"tokenizer.json's post_processor ({kind if isinstance(kind, str) else show(kind)}) {what}; ours encodes "
        "text without it"
    ]


def _special_piece(piece: dict) -> str:
    """The token a template's ``{"SpecialToken": {"id": "<s>", …}}`` piece adds."""
    special = piece["SpecialToken"]
    token = special.get("id") if isinstance(special, dict) else None
    return token if isinstance(token, str) else show(special)


def _parse_vocab_merges(directory: Path) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]], list[str]]:
    """GPT-2-style ``vocab.json`` + ``merges.txt``, special tokens from the side files."""
    specials = _listed_specials(directory)
    try:
        vocab = gpt2_files.read_vocab(directory / gpt2_files.VOCAB_FILE, specials)
        merges = gpt2_files.read_merges(directory / gpt2_files.MERGES_FILE)
    except TokenizerError as e:
        raise InteropError(str(e)) from None
    known = set(vocab.values())
    missing = [t for t in specials if t.encode("utf-8") not in known]
    if missing:
        raise InteropError(f"{directory}: special token {missing[0]!r} is not in vocab.json")
    return vocab, merges, specials


def _listed_specials(directory: Path) -> list[str]:
    """Special tokens named in ``tokenizer_config.json`` (``added_tokens_decoder``, ``*_token``),
    ``special_tokens_map.json`` and ``added_tokens.json`` (``{token: id}``), in order of first mention."""
    config_path = directory / TOKENIZER_CONFIG
    config = _read_optional_json(config_path)
    named = _read_optional_json(directory / SPECIAL_TOKENS_MAP)
    decoder = _section(config, "added_tokens_decoder", config_path)
    mentioned: list[Any] = [e for e in decoder.values() if _is_special_entry(e)]
    for source in (config, named):
        for key, value in source.items():
            if key.endswith("_token"):
                mentioned.append(value)
            elif key == "additional_special_tokens" and isinstance(value, list):
                mentioned.extend(value)
    mentioned.extend(_read_optional_json(directory / ADDED_TOKENS))
    contents = [m.get("content") if isinstance(m, dict) else m for m in mentioned]
    return list(dict.fromkeys(c for c in contents if isinstance(c, str) and c))


def _is_special_entry(entry: Any) -> bool:
    return isinstance(entry, dict) and bool(entry.get("special"))


def _read_optional_json(path: Path) -> dict:
    return read_json_object(path) if path.is_file() else {}


def _check_merges(tok: Tokenizer, where: str, ignore_merges: bool) -> None:
    """Merges in creation order, every multi-byte token made by a merge, and (without ``ignore_merges``) every
    token reached by BPE of its own bytes: then HuggingFace's BPE and ours choose the same merges."""
    made = {bytes([b]) for b in range(256)}
    for r, (a, b) in enumerate(tok.merges):
        unmade = next((t for t in (a, b) if t not in made), None)
        if unmade is not None:
            raise InteropError(f"{where}: merge {r} ({a!r}, {b!r}) uses {unmade!r} before any merge makes it")
        made.add(a + b)
    specials = set(tok.special_token_ids.values())
    orphan = next((i for i, t in sorted(tok.vocab.items()) if i not in specials and t not in made), None)
    if orphan is not None:
        raise InteropError(
            f"{where}: token {tok.vocab[orphan]!r} (id {orphan}) comes from no merge and is not a special token"
        )
    if not ignore_merges:
        ids = {t: i for i, t in tok.vocab.items() if i not in specials}
        for data, token_id in ids.items():
            if len(data) > 1 and tok.bpe(data) != (token_id,):
                raise InteropError(
                    f"{where}: token {data!r} (id {token_id}) is not reached by BPE of its own bytes and the file "
                    "does not set model.ignore_merges; ours (like tiktoken) maps such a pre-token straight to it"
                )
