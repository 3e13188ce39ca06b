"""vLLM's ``POST /tokenize`` and ``POST /detokenize``: a prompt to the served tokenizer's ids, and ids back to text.

Clients count a prompt's tokens against the context (``max_model_len``) before they ask for a completion, or turn
ids into text, with these; the shapes are vLLM's, so a client written for vLLM works unchanged:

    POST /tokenize    {"prompt": "Hi there", "add_special_tokens": true, "return_token_strs": true, "model": …}
                  ->  {"count": 2, "max_model_len": 512, "tokens": [17250, 612], "token_strs": ["Hi", "Ġthere"]}
    POST /detokenize  {"tokens": [17250, 612], "model": …}  ->  {"prompt": "Hi there"}

(ids of GPT-2's tokenizer). The ids are those ``/v1/completions`` gives the same prompt, whose
``usage.prompt_tokens`` equals ``count``: special tokens written in the text become their ids, and a prompt longer
than the context is counted, not refused. Nothing is added around the text: our tokenizers have no
beginning-of-text token, so ``add_special_tokens`` changes nothing (as for GPT-2's tokenizer under vLLM).
``token_strs`` (only when asked for) writes each token as transformers' ``convert_ids_to_tokens`` does for a
byte-level BPE: its bytes in GPT-2's printable form, a special token as itself. The schemas are as strict as the
completions one (a wrong type or an unknown field is 400, another model's name 404); an id outside the vocabulary
is 400 ``invalid_token``.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from cs336_lm.errors import ServeError
from cs336_lm.serve import http_errors
from cs336_lm.serve.completions import ModelInfo
from cs336_lm.tokenizer.files import token_to_text


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class TokenizeRequest(_Strict):
    """The body of ``POST /tokenize`` (vLLM's ``TokenizeCompletionRequest``)."""

    model: str | None = None
    """The served model's name; omitted: the served model."""
    prompt: str
    add_special_tokens: bool = True
    """vLLM's switch for a tokenizer's beginning/end tokens; ours add none, so either value gives the same ids."""
    return_token_strs: bool | None = False
    """Also answer ``token_strs``: each token's text as ``convert_ids_to_tokens`` writes it."""


class DetokenizeRequest(_Strict):
    """The body of ``POST /detokenize`` (vLLM's ``DetokenizeRequest``)."""

    model: str | None = None
    tokens: list[int]


Body = TypeVar("Body", TokenizeRequest, DetokenizeRequest)

# each body's required field: its name, the body's content in words, and the field's type in words
REQUIRED = {
    TokenizeRequest: ("prompt", "a prompt", "a string"),
    DetokenizeRequest: ("tokens", "a list of tokens", "a list of token ids"),
}


def parse(schema: type[Body], raw: bytes) -> Body:
    """The request in a body of JSON, whatever its ``Content-Type``; a mismatch as ``http_errors`` words it for
    completions, except where those words name what a completion's prompt may be."""
    try:
        return schema.model_validate_json(raw)
    except ValidationError as e:
        error = http_errors.from_validation(e.errors())
    field, content, kind = REQUIRED[schema]
    if error.code == "invalid_type" and error.param is None:
        error = ServeError(f"the request body must be a JSON object with {content}", 400, code="invalid_type")
    elif error.code == "invalid_type" and error.param == field:
        error = ServeError(f"{field} must be {kind}", 400, param=field, code="invalid_type")
    raise error


def _check_model(name: str | None, info: ModelInfo) -> None:
    if name is not None and name != info.name:
        raise ServeError(f"the model {name!r} does not exist; this server serves {info.name!r}", 404,
                         param="model", code="model_not_found")  # fmt: skip


def tokenize(raw: bytes, info: ModelInfo) -> dict[str, Any]:
    """The answer to ``POST /tokenize`` with body ``raw`` (see the module docstring)."""
    body = parse(TokenizeRequest, raw)
    _check_model(body.model, info)
    ids = info.tokenizer.encode(body.prompt)
    strs = token_strings(ids, info) if body.return_token_strs else None
    return {"count": len(ids), "max_model_len": info.context_length, "tokens": ids, "token_strs": strs}


def detokenize(raw: bytes, info: ModelInfo) -> dict[str, Any]:
    """The answer to ``POST /detokenize`` with body ``raw``: the ids' bytes decoded as UTF-8, an invalid sequence
    (half a character) becoming U+FFFD, as ``Tokenizer.decode`` and ``lm-generate`` do."""
    body = parse(DetokenizeRequest, raw)
    _check_model(body.model, info)
    tokenizer = info.tokenizer
    bad = next((i for i in body.tokens if i not in tokenizer.vocab), None)
    if bad is not None:
        raise ServeError(f"tokens has token id {bad} outside the vocabulary (size {tokenizer.vocab_size})", 400,
                         param="tokens", code="invalid_token")  # fmt: skip
    return {"prompt": tokenizer.decode(body.tokens)}


def token_strings(ids: list[int], info: ModelInfo) -> list[str]:
    """``[17250, 612, 50256]`` -> ``["Hi", "Ġthere", "<|endoftext|>"]`` with GPT-2's tokenizer."""
    vocab, specials = info.tokenizer.vocab, {i: s for s, i in info.tokenizer.special_token_ids.items()}
    return [specials[i] if i in specials else token_to_text(vocab[i]) for i in ids]
