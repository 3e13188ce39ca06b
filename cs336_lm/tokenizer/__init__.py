"""Byte-level BPE: pre-tokenization, training (``train_bpe``) and the ``Tokenizer`` (encode/decode/files)."""

from cs336_lm.tokenizer.tokenizer import Tokenizer
from cs336_lm.tokenizer.train_bpe import train_bpe

__all__ = ["Tokenizer", "train_bpe"]
