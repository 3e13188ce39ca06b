"""``tokenizer.json`` written from ours reads back as ours; files written by the ``tokenizers`` library read as ours.

The ``tokenizers`` library is the reference for what HuggingFace does with a file: a tokenizer.json that it
builds from GPT-2's vocab.json/merges.txt encodes like our GPT-2 tokenizer, and reads back to the same one.
"""

import json

import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, processors

from cs336_lm.errors import InteropError
from cs336_lm.interop.hf_tokenizer import read_hf_tokenizer, write_hf_tokenizer
from cs336_lm.tokenizer import Tokenizer

from .conftest import fixture_path


def same(a: Tokenizer, b: Tokenizer) -> bool:
    return (a.vocab, a.merges, a.special_tokens) == (b.vocab, b.merges, b.special_tokens)


def test_round_trip(tokenizer, tmp_path):
    files = write_hf_tokenizer(tokenizer, tmp_path, 64)
    assert files == ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
    back, notes = read_hf_tokenizer(tmp_path)
    assert same(back, tokenizer) and notes == []
    data = json.loads((tmp_path / "tokenizer.json").read_text())
    assert data["model"]["ignore_merges"] is True and data["normalizer"] is None
    assert [(t["id"], t["content"], t["special"]) for t in data["added_tokens"]] == [
        (0, "<|endoftext|>", True),
        (1, "<|pad|>", True),
    ]
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["eos_token"] == "<|endoftext|>" and config["clean_up_tokenization_spaces"] is False


def test_hf_library_encodes_like_ours(tokenizer, tmp_path):
    write_hf_tokenizer(tokenizer, tmp_path, 64)
    hf = HFTokenizer.from_file(str(tmp_path / "tokenizer.json"))
    text = fixture_path("german.txt").read_text(encoding="utf-8") + "<|pad|>x<|endoftext|> 日本 🙂  \n"
    assert hf.encode(text).ids == tokenizer.encode(text)
    assert hf.decode(tokenizer.encode(text), skip_special_tokens=False) == text


def gpt2_tokenizer_json(path, ignore_merges: bool):
    """GPT-2's tokenizer.json as the tokenizers library builds it from vocab.json and merges.txt."""
    bpe = models.BPE.from_file(str(fixture_path("gpt2_vocab.json")), str(fixture_path("gpt2_merges.txt")))
    hf = HFTokenizer(bpe)
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.post_processor = processors.ByteLevel(trim_offsets=False)
    hf.add_special_tokens(["<|endoftext|>"])
    hf.save(str(path / "tokenizer.json"))
    data = json.loads((path / "tokenizer.json").read_text())
    data["model"]["ignore_merges"] = ignore_merges
    (path / "tokenizer.json").write_text(json.dumps(data))
    return HFTokenizer.from_file(str(path / "tokenizer.json"))


@pytest.mark.parametrize("ignore_merges", [False, True])
def test_gpt2_tokenizer_json(tmp_path, ignore_merges):
    hf = gpt2_tokenizer_json(tmp_path, ignore_merges)
    ours, notes = read_hf_tokenizer(tmp_path)
    reference = Tokenizer.from_files(
        fixture_path("gpt2_vocab.json"), fixture_path("gpt2_merges.txt"), ["<|endoftext|>"]
    )
    assert same(ours, reference) and notes == []
    text = fixture_path("corpus.en").read_text(encoding="utf-8")[:20000] + "<|endoftext|>"
    assert hf.encode(text).ids == ours.encode(text)


def tiny_tokenizer_json(path, merges, ignore_merges, post_processor=None):
    """A tokenizer.json of the 256 bytes and ``merges``, with ``ignore_merges`` (and a post-processor) set."""
    tok = Tokenizer({i: bytes([i]) for i in range(256)} | {256 + k: a + b for k, (a, b) in enumerate(merges)}, merges)
    write_hf_tokenizer(tok, path, 16)
    data = json.loads((path / "tokenizer.json").read_text())
    data["model"]["ignore_merges"] = ignore_merges
    if post_processor is not None:
        data["post_processor"] = post_processor
    (path / "tokenizer.json").write_text(json.dumps(data))
    return tok


def test_unreachable_token_needs_ignore_merges(tmp_path):
    # bc is merged first, so BPE of "abc" stops at a + bc: the token abc is reached only by the whole-word rule
    merges = [(b"b", b"c"), (b"a", b"b"), (b"ab", b"c")]
    tok = tiny_tokenizer_json(tmp_path, merges, ignore_merges=True)
    assert same(read_hf_tokenizer(tmp_path)[0], tok)
    tiny_tokenizer_json(tmp_path, merges, ignore_merges=False)
    with pytest.raises(InteropError, match=r"b'abc' \(id 258\) is not reached by BPE of its own bytes"):
        read_hf_tokenizer(tmp_path)
    hf = HFTokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert hf.encode("abc").ids != tok.encode("abc")  # the reason: HF without ignore_merges splits it otherwise


def test_template_post_processor_is_a_note(tmp_path):
    template = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [],
        "special_tokens": {},
    }
    tiny_tokenizer_json(tmp_path, [(b"a", b"b")], ignore_merges=True, post_processor=template)
    _, notes = read_hf_tokenizer(tmp_path)
    assert notes == [
        "tokenizer.json's post_processor (TemplateProcessing) adds <s> to every sequence; ours encodes text without it"
    ]


def test_special_token_clashing_with_byte_level_text(tmp_path):
    vocab = {i: bytes([i]) for i in range(256)} | {256: b" a"}
    tok = Tokenizer(vocab, [(b" ", b"a")], ["Ġa"])  # the special's text is how " a" is written in tokenizer.json
    with pytest.raises(InteropError, match="reads like an ordinary token"):
        write_hf_tokenizer(tok, tmp_path, 16)
