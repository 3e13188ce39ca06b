"""Chat templates rendered by ``render_chat`` against transformers' ``apply_chat_template`` (the reference): the same
template, messages and special tokens give the same text, and a template's failures are ``ChatTemplateError``."""

import pytest

from cs336_lm.errors import ChatTemplateError
from cs336_lm.generation.chat_template import DEFAULT_CHAT_TEMPLATE, render_chat

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

NAMED = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}

# ChatML, with a default system message when the conversation has none
CHATML = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are helpful.<|im_end|>\n{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Llama-2 style: a BOS per turn, the system message folded into the first user turn, strict alternation
INST = """{% if messages[0]['role'] == 'system' %}
    {% set system = '<<SYS>>\\n' + messages[0]['content'] + '\\n<</SYS>>\\n\\n' %}
    {% set turns = messages[1:] %}
{% else %}
    {% set system = '' %}
    {% set turns = messages %}
{% endif %}
{% for message in turns %}
    {% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{ raise_exception('roles must alternate user/assistant/user/...') }}
    {% endif %}
    {% if message['role'] == 'user' %}
        {{ bos_token + '[INST] ' + (system if loop.first else '') + message['content'] | trim + ' [/INST]' }}
    {% else %}
        {{ ' ' + message['content'] | trim + ' ' + eos_token }}
    {% endif %}
{% endfor %}"""
# the environment's extras: namespace, loop controls, tojson with options, {% generation %}, a name field
EXTRAS = """{%- set ns = namespace(users=0) -%}
{%- for message in messages -%}
    {%- if message.role == 'user' %}{% set ns.users = ns.users + 1 %}{% endif -%}
    {%- if message.content == 'skip me' %}{% continue %}{% endif -%}
    {{ message.role }}{% if message.name is defined %}({{ message.name }}){% endif %}: {{ message|tojson(sort_keys=1) }}
    {% if message.role == 'assistant' %}{% generation %}[{{ message.content }}]{% endgeneration %}{% endif %}
{% endfor -%}
users={{ ns.users }} {{ {'k': 'é<&>'} | tojson(indent=2) }} {{ dict(a=1) | tojson }}
{%- if add_generation_prompt %}>{% endif %}"""

CONVERSATIONS = [
    [{"role": "user", "content": "Hello"}],
    [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "How are you?"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "  Name a colour.  "},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": 'Another, with an émoji 🎨 and <tags> & "quotes"?'},
    ],
    [
        {"role": "user", "content": "line one\nline two\n\n", "name": "ann"},
        {"role": "assistant", "content": "skip me"},
        {"role": "user", "content": ""},
    ],
    [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}],  # INST refuses it
]


def reference(template: str, messages: list[dict], add_generation_prompt: bool = True) -> str:
    hf = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizers.Tokenizer(tokenizers.models.BPE()), **NAMED, chat_template=template
    )
    return hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


@pytest.mark.parametrize(
    "template", [CHATML, INST, EXTRAS, DEFAULT_CHAT_TEMPLATE], ids=["chatml", "inst", "extras", "default"]
)
@pytest.mark.parametrize("conversation", range(len(CONVERSATIONS)))
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_the_text_equals_transformers(template, conversation, add_generation_prompt):
    messages = CONVERSATIONS[conversation]
    try:
        expected = reference(template, messages, add_generation_prompt)
    except Exception as e:  # transformers' template refused them: ours must too
        assert "alternate" in str(e)
        with pytest.raises(ChatTemplateError, match="alternate"):
            render_chat(template, messages, named_tokens=NAMED, add_generation_prompt=add_generation_prompt)
        return
    ours = render_chat(template, messages, named_tokens=NAMED, add_generation_prompt=add_generation_prompt)
    assert ours == expected


def test_the_refused_conversations_were_exercised():
    with pytest.raises(ChatTemplateError, match="the chat template refused the messages: roles must alternate"):
        render_chat(INST, CONVERSATIONS[4], named_tokens=NAMED)


def test_none_fields_are_dropped_as_transformers_does():
    messages = [{"role": "user", "content": "hi", "name": None}]
    assert render_chat(EXTRAS, messages, named_tokens=NAMED) == reference(EXTRAS, messages)
    assert "(None)" not in render_chat(EXTRAS, messages, named_tokens=NAMED)


def test_the_default_template_reads_as_plain_text():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert render_chat(None, messages) == "System: Be brief.\n\nUser: Hi\n\nAssistant:"
    assert render_chat(None, messages, add_generation_prompt=False) == "System: Be brief.\n\nUser: Hi\n\n"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{% for %}", "not valid Jinja2 (line 1"),
        ("{{ raise_exception('no system messages') }}", "refused the messages: no system messages"),
        ("{{ undefined_thing.attribute }}", "refused the messages: 'undefined_thing' is undefined"),
        ("{% set ns = namespace(_secret=1) %}", "may not start with '_'"),
        ("{{ messages.append(1) }}", "refused the messages"),  # the immutable sandbox
        ("{{ messages[0]['content'] + 1 }}", "failed on the messages"),
    ],
)
def test_a_template_that_fails_is_a_chat_template_error(template, message):
    with pytest.raises(ChatTemplateError, match=message.replace("(", r"\(")):
        render_chat(template, [{"role": "user", "content": "x"}])
