"""Interoperation with HuggingFace ``transformers``: our model as a ``LlamaForCausalLM`` (``hf_llama``)."""
