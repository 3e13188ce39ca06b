"""Byte-level BPE: pre-tokenization, training (``train_bpe``) and the ``Tokenizer`` (encode/decode/files)."""

from cs336_lm.tokenizer.tokenizer import Tokenizer

__all__ = ["Tokenizer"]
