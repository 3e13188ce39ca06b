"""Byte-level BPE: pre-tokenization, training (``train_bpe``) and the ``Tokenizer`` (encode/decode/files)."""
