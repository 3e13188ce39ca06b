"""A HuggingFace folder's chat template and named special tokens, read for ``lm-import`` and written for ``lm-export``.

Read (``read_hf_chat``), as transformers loads them: the template from ``chat_template.jinja`` (newer transformers
writes it), else from ``tokenizer_config.json``'s ``chat_template`` (a string, or a list of named templates of which
the ``default`` one is kept); the special tokens by role (``bos_token``, ``eos_token``, …) from
``tokenizer_config.json``, overridden by ``special_tokens_map.json`` unless the config lists
``added_tokens_decoder`` (as transformers does); a role is a string or an added token's ``{"content": …}``. Only
the ``default`` template travels (a note names the others), and a template that does not compile is kept as it is,
with a note (a chat request then fails with the template's error).

Written (``named_for_export``, ``write_chat_template``): the tokenizer's roles as they were imported (a tokenizer
without any keeps the first special token as BOS and EOS), and its template as ``chat_template.jinja``, which
transformers' ``AutoTokenizer`` reads back for ``apply_chat_template``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cs336_lm.errors import ChatTemplateError, InteropError
from cs336_lm.fileio import atomic_write
from cs336_lm.generation.chat_template import check_template
from cs336_lm.interop.hf_folder import read_json_object, show
from cs336_lm.tokenizer import Tokenizer
from cs336_lm.tokenizer.files import CHAT_TEMPLATE_FILE, TOKEN_ROLES

TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"
OTHER_TEMPLATES_DIR = "additional_chat_templates"


def read_hf_chat(directory: Path) -> tuple[str | None, dict[str, str], list[str]]:
    """``(chat template or None, {role: token}, notes)`` of the folder ``directory`` (see the module docstring)."""
    config_path = directory / TOKENIZER_CONFIG
    config = read_json_object(config_path) if config_path.is_file() else {}
    template, notes = _template(directory, config, config_path)
    named: dict[str, str] = {}
    map_path = directory / SPECIAL_TOKENS_MAP
    sources = [(config, config_path)]
    if map_path.is_file() and "added_tokens_decoder" not in config:  # transformers reads it in that case only
        sources.append((read_json_object(map_path), map_path))
    for source, path in sources:
        for role in TOKEN_ROLES:
            token = _token(source.get(role), f"{path}: {role}")
            if token is not None:
                named[role] = token
    if template is not None:
        try:
            check_template(template)
        except ChatTemplateError as e:
            notes.append(f"{e}; it is kept as it is, and chat requests will fail until it is fixed")
    return template, named, notes


def _template(directory: Path, config: dict[str, Any], config_path: Path) -> tuple[str | None, list[str]]:
    notes = []
    if (directory / OTHER_TEMPLATES_DIR).is_dir():
        notes.append(f"the templates in {OTHER_TEMPLATES_DIR}/ are not kept: only the default chat template travels")
    jinja_path = directory / CHAT_TEMPLATE_FILE
    if jinja_path.is_file():
        try:
            return jinja_path.read_bytes().decode("utf-8"), notes
        except UnicodeDecodeError:
            raise InteropError(f"{jinja_path} is not UTF-8 text") from None
    value = config.get("chat_template")
    if value is None or isinstance(value, str):
        return value, notes
    named: dict[str, str] = {}
    for entry in value if isinstance(value, list) and value else [None]:
        name, text = (entry.get("name"), entry.get("template")) if isinstance(entry, dict) else (None, None)
        if not isinstance(name, str) or not isinstance(text, str):
            raise InteropError(
                f"{config_path}: chat_template must be a string or a list of {{name, template}}, got {show(value)}"
            )
        named[name] = text
    others = sorted(k for k in named if k != "default")
    if others:
        notes.append(f"{config_path}: only the default chat template is kept, not {', '.join(others)}")
    return named.get("default"), notes


def _token(value: Any, where: str) -> str | None:
    """A role's token: ``"<s>"``, ``{"content": "<s>", …}`` (an added token) or null."""
    content = value.get("content") if isinstance(value, dict) else value
    if content is None:
        return None
    if not isinstance(content, str) or not content:
        raise InteropError(f"{where} must be a token (a non-empty string), got {show(value)}")
    return content


def named_for_export(tok: Tokenizer) -> dict[str, Any]:
    """``tokenizer_config.json``'s special-token fields for ``tok``: its roles and the other special tokens."""
    named: dict[str, Any] = dict(tok.named_tokens)
    if not named and tok.special_tokens:
        named = {"bos_token": tok.special_tokens[0], "eos_token": tok.special_tokens[0]}
    others = [t for t in tok.special_tokens if t not in named.values()]
    if others:
        named["additional_special_tokens"] = others
    return named


def write_chat_template(tok: Tokenizer, directory: Path) -> list[str]:
    """Write ``tok``'s template as ``chat_template.jinja`` in ``directory``; the names of the files written."""
    if tok.chat_template is None:
        return []
    with atomic_write(directory / CHAT_TEMPLATE_FILE, "w", encoding="utf-8", newline="") as f:
        f.write(tok.chat_template)
    return [CHAT_TEMPLATE_FILE]
