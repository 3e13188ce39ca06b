"""Chat templates through ``lm-import`` and ``lm-export``: a ChatML folder's template and special-token roles land in
the run's ``tokenizer/``, and its export renders, in transformers' own ``apply_chat_template``, the text that ours
renders (and that the original folder renders), with the same token ids."""

import json
import shutil

import pytest

from cs336_lm.errors import InteropError
from cs336_lm.generation.chat_template import render_chat
from cs336_lm.interop.export import export_run
from cs336_lm.interop.import_ import import_hf
from cs336_lm.tokenizer import Tokenizer, train_bpe

from .conftest import fixture_path, tiny_run

CHATML_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
OTHER = "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}"
MESSAGES = [
    [{"role": "user", "content": "Tell me a story."}],
    [
        {"role": "system", "content": "You tell short stories."},
        {"role": "user", "content": "Once upon a time?"},
        {"role": "assistant", "content": "There was a cat."},
        {"role": "user", "content": "And then — «encore»?"},
    ],
]


@pytest.fixture(scope="module")
def chatml_folder(tmp_path_factory):
    """An exported tiny run given a ChatML template (in ``tokenizer_config.json``) and ``<|im_end|>`` as EOS."""
    vocab, merges = train_bpe(fixture_path("tinystories_sample.txt"), 400, CHATML_SPECIALS)
    root = tmp_path_factory.mktemp("chatml")
    run = tiny_run(root / "run", Tokenizer(vocab, merges, CHATML_SPECIALS))
    export_run(run, root / "hf")
    edit_config(root / "hf", chat_template=CHATML, eos_token="<|im_end|>")
    edit_config(root / "hf", "special_tokens_map.json", eos_token="<|im_end|>")
    return root / "hf"


def edit_config(folder, name="tokenizer_config.json", **fields):
    path = folder / name
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}), encoding="utf-8")


def auto_tokenizer(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def test_import_keeps_the_template_and_the_roles(chatml_folder, tmp_path):
    import_hf(chatml_folder, tmp_path / "run")
    tok = Tokenizer.from_directory(tmp_path / "run" / "tokenizer")
    assert tok.chat_template == CHATML
    assert tok.named_tokens == {"bos_token": "<|endoftext|>", "eos_token": "<|im_end|>"}
    assert (tmp_path / "run" / "tokenizer" / "chat_template.jinja").read_text(encoding="utf-8") == CHATML


@pytest.mark.parametrize("messages", MESSAGES)
def test_the_export_of_the_import_renders_what_transformers_renders(chatml_folder, tmp_path, messages):
    import_hf(chatml_folder, tmp_path / "run")
    export_run(tmp_path / "run", tmp_path / "back")
    assert (tmp_path / "back" / "chat_template.jinja").read_text(encoding="utf-8") == CHATML
    original, back = auto_tokenizer(chatml_folder), auto_tokenizer(tmp_path / "back")
    assert back.eos_token == "<|im_end|>" and back.chat_template == CHATML
    tok = Tokenizer.from_directory(tmp_path / "run" / "tokenizer")
    ours = render_chat(tok.chat_template, messages, named_tokens=tok.named_tokens)
    assert ours == original.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert ours == back.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = back.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)
    assert tok.encode(ours) == list(ids)
    assert tok.encode(ours).count(tok.special_token_ids["<|im_end|>"]) == len(messages)


def test_a_chat_template_jinja_file_wins_over_the_config(chatml_folder, tmp_path):
    folder = shutil.copytree(chatml_folder, tmp_path / "hf")
    (folder / "chat_template.jinja").write_text(OTHER, encoding="utf-8")
    import_hf(folder, tmp_path / "run")
    tok = Tokenizer.from_directory(tmp_path / "run" / "tokenizer")
    assert tok.chat_template == OTHER == auto_tokenizer(folder).chat_template
    text = render_chat(tok.chat_template, MESSAGES[1], named_tokens=tok.named_tokens)
    assert text == auto_tokenizer(folder).apply_chat_template(MESSAGES[1], tokenize=False)


def test_named_templates_keep_the_default_with_a_note(chatml_folder, tmp_path):
    folder = shutil.copytree(chatml_folder, tmp_path / "hf")
    edit_config(folder, chat_template=[{"name": "default", "template": CHATML}, {"name": "tool_use", "template": "x"}])
    result = import_hf(folder, tmp_path / "run")
    assert Tokenizer.from_directory(tmp_path / "run" / "tokenizer").chat_template == CHATML
    assert any("only the default chat template is kept, not tool_use" in note for note in result.notes)


def test_a_folder_without_a_template_gives_a_run_without_one(chatml_folder, tmp_path):
    folder = shutil.copytree(chatml_folder, tmp_path / "hf")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    del config["chat_template"]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    import_hf(folder, tmp_path / "run")
    assert not (tmp_path / "run" / "tokenizer" / "chat_template.jinja").exists()
    export_run(tmp_path / "run", tmp_path / "back")
    assert not (tmp_path / "back" / "chat_template.jinja").exists()


def test_the_roles_are_read_where_transformers_reads_them(chatml_folder, tmp_path):
    folder = shutil.copytree(chatml_folder, tmp_path / "hf")
    edit_config(folder, "special_tokens_map.json", eos_token={"content": "<|im_start|>", "lstrip": False})
    import_hf(folder, tmp_path / "run")  # no added_tokens_decoder in the config: the map wins
    assert Tokenizer.from_directory(tmp_path / "run" / "tokenizer").named_tokens["eos_token"] == "<|im_start|>"
    assert auto_tokenizer(folder).eos_token == "<|im_start|>"
    decoder = {str(i): {"content": t, "special": True} for i, t in enumerate(CHATML_SPECIALS, start=256)}
    edit_config(folder, added_tokens_decoder=decoder)
    import_hf(folder, tmp_path / "run2")  # with one: the config wins
    assert Tokenizer.from_directory(tmp_path / "run2" / "tokenizer").named_tokens["eos_token"] == "<|im_end|>"


def test_a_template_that_does_not_compile_is_kept_with_a_note(chatml_folder, tmp_path):
    folder = shutil.copytree(chatml_folder, tmp_path / "hf")
    edit_config(folder, chat_template="{% for %}")
    result = import_hf(folder, tmp_path / "run")
    assert Tokenizer.from_directory(tmp_path / "run" / "tokenizer").chat_template == "{% for %}"
    assert any("not valid Jinja2" in note for note in result.notes)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"chat_template": 3}, "chat_template must be a string or a list"),
        ({"chat_template": [{"name": "default"}]}, "chat_template must be a string or a list"),
        ({"chat_template": ["{{ x }}"]}, "chat_template must be a string or a list"),
        ({"chat_template": []}, "chat_template must be a string or a list"),
        ({"eos_token": 7}, "eos_token must be a token"),
    ],
)
def test_malformed_chat_fields_are_refused(chatml_folder, tmp_path, fields, message):
    folder = shutil.copytree(chatml_folder, tmp_path / "hf")
    edit_config(folder, **fields)
    with pytest.raises(InteropError, match=message):
        import_hf(folder, tmp_path / "run")
    assert not (tmp_path / "run").exists()
