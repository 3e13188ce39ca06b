"""The model's fields reach HuggingFace through one table: every field of ``ModelArgs`` is in ``HF_FIELDS`` (as the
``LlamaConfig`` field it is, or None where HF has none), and export then import gives the same args back."""

import dataclasses

import pytest

from cs336_lm.interop.hf_folder import llama_model_config
from cs336_lm.interop.hf_llama import HF_FIELDS, hf_problem, llama_config
from cs336_lm.nn import PRESETS, ModelArgs, TransformerLM


def test_every_model_field_says_what_it_is_in_hf():
    fields = {f.name for f in dataclasses.fields(ModelArgs)}
    missing = sorted(fields - HF_FIELDS.keys())
    assert not missing, f"HF_FIELDS does not say what these ModelArgs fields map to (an HF key or None): {missing}"
    assert not HF_FIELDS.keys() - fields, "HF_FIELDS names fields ModelArgs does not have"


@pytest.mark.parametrize(
    "switches", [{}, {"tie_embeddings": True}, {"qk_norm": True}, {"qk_norm": True, "tie_embeddings": True}], ids=str
)
@pytest.mark.parametrize("preset", ["debug", "tinystories-17m-gqa"])
def test_export_then_import_gives_the_same_args(preset, switches, tmp_path):
    args = PRESETS[preset].replace(context_length=128, **switches)
    model = TransformerLM.from_args(args, device="meta")
    back, tied = llama_model_config(llama_config(model), tmp_path / "config.json")
    architecture = {k: v for k, v in args.architecture().items()}
    assert back.architecture() == architecture and tied == args.tie_embeddings
    assert model.args == args and TransformerLM.from_args(model.args, device="meta").args == args


def test_every_switch_without_an_hf_field_is_refused_or_an_architecture():
    # a field HF has no key for either chooses the architecture (qk_norm), only runs ours (attention, kernels), or
    # has a default that export requires (hf_problem names it): nothing is silently dropped on the way out
    defaults = {f.name: f.default for f in dataclasses.fields(ModelArgs)}
    for name in (k for k, hf in HF_FIELDS.items() if hf is None and k not in ("qk_norm", "attention", "kernels")):
        other = {"norm": "post", "position": "nope", "ffn": "silu", "logit_softcap": 30.0}[name]
        assert other != defaults[name]
        assert f"model.{name}=" in (hf_problem(PRESETS["debug"].replace(**{name: other})) or ""), name
