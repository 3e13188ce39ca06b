"""The model's fields reach HuggingFace through one table: every field of ``ModelArgs`` is in ``HF_FIELDS`` (as the
``LlamaConfig`` field it is, or None where HF has none), and export then import gives the same args back."""

import dataclasses

import pytest

from cs336_lm.interop.hf_folder import llama_model_config
from cs336_lm.interop.hf_llama import HF_FIELDS, llama_config
from cs336_lm.nn import PRESETS, ModelArgs, TransformerLM


def test_every_model_field_says_what_it_is_in_hf():
    fields = {f.name for f in dataclasses.fields(ModelArgs)}
    missing = sorted(fields - HF_FIELDS.keys())
    assert not missing, f"HF_FIELDS does not say what these ModelArgs fields map to (an HF key or None): {missing}"
    assert not HF_FIELDS.keys() - fields, "HF_FIELDS names fields ModelArgs does not have"


@pytest.mark.parametrize("preset", ["debug", "tinystories-17m-gqa"])
def test_export_then_import_gives_the_same_args(preset, tmp_path):
    args = PRESETS[preset].replace(context_length=128)
    model = TransformerLM.from_args(args, device="meta")
    back, tied = llama_model_config(llama_config(model), tmp_path / "config.json")
    architecture = {k: v for k, v in args.architecture().items()}
    assert back.architecture() == architecture and not tied
    assert model.args == args and TransformerLM.from_args(model.args, device="meta").args == args
