"""A conversation as prompt text: a run's chat template rendered exactly as transformers' ``apply_chat_template``.

A chat template is Jinja2 source that turns ``messages`` (``[{"role": "user", "content": "Hi"}, …]``) into the
text the model was trained on. Templates come from strangers (a model folder), so they run in Jinja2's immutable
sandbox, with the environment transformers gives them: ``trim_blocks`` and ``lstrip_blocks``; the loop controls
(``break``, ``continue``) and the ``{% generation %}`` block (rendered as its body); a ``tojson`` filter that keeps
non-ASCII characters and takes ``indent``, ``separators`` and ``sort_keys``; the globals ``raise_exception(msg)``
(the template refuses the conversation), ``strftime_now(fmt)``, ``dict`` and a ``namespace`` that refuses names
beginning with ``_``; and as variables ``messages`` (each message without its ``None`` fields),
``add_generation_prompt``, ``tools`` and ``documents`` (None) and the tokenizer's special tokens by role
(``bos_token``, ``eos_token``, … ``Tokenizer.named_tokens``). The same template and messages give the same text
here and in transformers (``tests/generation/test_chat_template.py`` compares them).

A run whose tokenizer has no template is rendered with ``DEFAULT_CHAT_TEMPLATE``, plain text a base model can
continue, and its replies end at ``DEFAULT_STOP``:

>>> render_chat(None, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
'System: Be brief.\\n\\nUser: Hi\\n\\nAssistant:'
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.sandbox
import jinja2.utils

from cs336_lm.errors import ChatTemplateError

DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] | capitalize }}: {{ message['content'] }}\n\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
"""``Role: content`` paragraphs, then ``Assistant:`` to answer after."""
DEFAULT_STOP = ("\n\nUser:",)
"""Where a reply under the default template ends (besides the special tokens): the model starts the next turn."""


def render_chat(
    template: str | None,
    messages: Sequence[Mapping[str, Any]],
    *,
    named_tokens: Mapping[str, str] | None = None,
    add_generation_prompt: bool = True,
) -> str:
    """The prompt text of ``messages`` under ``template`` (None: ``DEFAULT_CHAT_TEMPLATE``); see the module docstring.

    A template that fails (``raise_exception``, a syntax error, an unsafe operation, any error while it runs) is a
    ``ChatTemplateError`` with its message.
    """
    compiled = _compile(DEFAULT_CHAT_TEMPLATE if template is None else template)
    plain = [{key: value for key, value in message.items() if value is not None} for message in messages]
    try:
        return compiled.render(
            messages=plain,
            tools=None,
            documents=None,
            add_generation_prompt=add_generation_prompt,
            **dict(named_tokens or {}),
        )
    except jinja2.TemplateError as e:
        raise ChatTemplateError(f"the chat template refused the messages: {e.message or type(e).__name__}") from None
    except Exception as e:  # the template's own code failed (a TypeError on a value it did not expect, …)
        raise ChatTemplateError(f"the chat template failed on the messages ({type(e).__name__}: {e})") from None


def check_template(template: str) -> None:
    """Raise ``ChatTemplateError`` when ``template`` is not valid Jinja2 for the chat environment."""
    _compile(template)


@functools.lru_cache(maxsize=16)
def _compile(template: str) -> jinja2.Template:
    try:
        return _environment().from_string(template)
    except jinja2.TemplateSyntaxError as e:
        raise ChatTemplateError(f"the chat template is not valid Jinja2 (line {e.lineno}: {e.message})") from None


@functools.cache
def _environment() -> jinja2.sandbox.ImmutableSandboxedEnvironment:
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationBlock, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals.update(raise_exception=_raise, strftime_now=_strftime_now, dict=_make_dict, namespace=_Namespace)
    return env


def _raise(message: str) -> None:
    raise jinja2.TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None, sort_keys=False) -> str:
    """JSON as ``json.dumps`` writes it (Jinja2's own ``tojson`` escapes ``<``, ``>``, ``&`` and ``'`` for HTML)."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


def _make_dict(*args: Any, **kwargs: Any) -> dict:
    return dict(*args, **kwargs)


class _Namespace(jinja2.utils.Namespace):
    """``namespace(count=0)`` for state across loop iterations; names starting with ``_`` are refused, so a template
    cannot reach Python's internals through one."""

    def __init__(*args: Any, **kwargs: Any) -> None:  # the first argument is self, as in Jinja2's own Namespace
        self, values = args[0], dict(*args[1:], **kwargs)
        for name in values:
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, values)

    def __setitem__(self, name: str, value: Any) -> None:
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"a namespace attribute may not start with '_': {name!r}")


class _GenerationBlock(jinja2.ext.Extension):
    """``{% generation %}…{% endgeneration %}`` (transformers marks the assistant's part of a turn with it for its
    training masks): rendered as its body."""

    tags = {"generation"}  # noqa: RUF012 (Jinja2 declares it so)

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller: Any) -> str:
        return caller()
