"""Byte-level BPE: pre-tokenization, training (``train_bpe``), the ``Tokenizer`` (encode/decode/files) and its
``tiktoken.Encoding`` where that encodes exactly as it does (``to_tiktoken``)."""

from cs336_lm.tokenizer.tiktoken_backend import to_tiktoken
from cs336_lm.tokenizer.tokenizer import Tokenizer
from cs336_lm.tokenizer.train_bpe import train_bpe

__all__ = ["Tokenizer", "to_tiktoken", "train_bpe"]
