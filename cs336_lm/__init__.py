"""cs336_lm: from raw text to a trained language model, written from scratch on PyTorch.

Layers, top to bottom: ``cli`` (entry points) → ``training`` / ``generation`` → ``data`` / ``tokenizer``
→ ``optim`` → ``nn`` (modules over ``nn.functional``) → ``kernels`` (Triton on CUDA). See docs/ and README.md.
"""

__version__ = "0.1.0"
