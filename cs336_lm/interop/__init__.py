"""Interoperation with HuggingFace: our model as a ``LlamaForCausalLM`` in memory (``hf_llama``), our tokenizer as
``tokenizer.json`` and back (``hf_tokenizer``), whole runs exported as HF folders (``export``) and HF Llama folders
imported as runs (``import_``, reading through ``hf_folder``, which checks every file of the folder before anything
is built from it), and the layer-by-layer comparison of the two (``compare``). docs/interop.md."""
