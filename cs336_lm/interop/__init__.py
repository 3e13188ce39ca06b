"""Interoperation with HuggingFace: our model as a ``LlamaForCausalLM`` in memory (``hf_llama``), our tokenizer as
``tokenizer.json`` and back (``hf_tokenizer``), whole runs exported as HF folders (``export``) and HF Llama folders
imported as runs (``import_``), and the layer-by-layer comparison of the two (``compare``). docs/interop.md."""
