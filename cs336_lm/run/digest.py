"""The digest a checkpoint carries of its own contents, so that damage no file format check sees is caught on load.

``torch.load`` reads a checkpoint's zip archive without checking the CRC-32 stored with each entry: a few bytes
flipped inside a tensor's data load as slightly different weights, and nothing says so. Every checkpoint therefore
holds ``"digest": "sha256:<64 hex digits>"``, the SHA-256 of a canonical walk over everything else in it, and every
load recomputes it from what was read.

The walk (``content_digest``) feeds the hash, depth first and in the dict's own order (which ``torch.save`` and
``torch.load`` preserve), a tagged, length-prefixed record of each value, so no two different contents give the
same byte stream::

    dict      b"dict <n>\\n" then each key and value
    list/tuple b"seq <n>\\n" then each item          (one tag: pickling keeps the kind, only the values matter)
    tensor    b"tensor <dtype> <shape>\\n" then its raw bytes (the elements in row-major order, viewed as uint8,
              so bf16 and every other dtype hash exactly)
    str       b"str <byte length>\\n" then its UTF-8 bytes (lone surrogates kept, as pickle keeps them)
    bool / int / float / None / torch.dtype / torch.device: one line each (floats as ``float.hex``: exact)

Example: ``{"iteration": 3}`` is hashed as ``b"dict 1\\nstr 9\\niterationint 3\\n"``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

ALGORITHM = "sha256"


def content_digest(obj: Any) -> str:
    """``"sha256:<hex>"`` of the canonical walk of ``obj`` (see the module docstring)."""
    h = hashlib.sha256()
    _feed(h, obj)
    return f"{ALGORITHM}:{h.hexdigest()}"


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        h.update(f"tensor {obj.dtype} {tuple(obj.shape)}\n".encode())
        h.update(tensor_bytes(obj))
    elif isinstance(obj, dict):
        h.update(f"dict {len(obj)}\n".encode())
        for key, value in obj.items():
            _feed(h, key)
            _feed(h, value)
    elif isinstance(obj, list | tuple):
        h.update(f"seq {len(obj)}\n".encode())
        for item in obj:
            _feed(h, item)
    elif isinstance(obj, str):
        data = obj.encode("utf-8", "surrogatepass")
        h.update(f"str {len(data)}\n".encode())
        h.update(data)
    elif isinstance(obj, bool):  # before int: True is an int too
        h.update(f"bool {obj}\n".encode())
    elif isinstance(obj, int):
        h.update(f"int {obj}\n".encode())
    elif isinstance(obj, float):
        h.update(f"float {obj.hex()}\n".encode())
    elif obj is None:
        h.update(b"none\n")
    elif isinstance(obj, torch.dtype | torch.device):
        h.update(f"{type(obj).__name__} {obj}\n".encode())
    else:
        raise TypeError(f"cannot digest a {type(obj).__name__}; checkpoints hold tensors and plain Python data")


def tensor_bytes(t: torch.Tensor) -> memoryview:
    """The elements of ``t`` in row-major order as raw bytes (a copy only when ``t`` is not contiguous on the CPU).

    Example: ``torch.tensor([1.0], dtype=torch.bfloat16)`` -> ``b"\\x80\\x3f"`` (little-endian 0x3f80).
    """
    flat = t.detach().cpu().resolve_conj().resolve_neg().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().data
