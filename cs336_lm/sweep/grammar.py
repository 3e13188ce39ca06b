"""The sweep grammar: ``key=value`` arguments → fixed overrides, grid axes and search ranges; grid points; trial names.

``key=value`` sets one value for every trial. A comma list is a grid axis: ``optim.lr=1e-3,3e-3,1e-2
train.batch_size=8,32`` is the product, six points, the first axis varying slowest (as Hydra's multirun). A range is
a search axis for ``--trials N``: ``loguniform(LOW,HIGH)`` and ``uniform(LOW,HIGH)`` (floats), ``int(LOW,HIGH)`` (both
ends included) and ``choice(A,B,…)``; in a search, a comma list is a ``choice`` too. Values are read as YAML scalars,
as ``lm-train``'s overrides are (``1e-3`` a float, ``true`` a bool, ``null`` None); a value in brackets or quotes
(``[1,2]``, ``"a,b"``) is one value, never an axis.

``trial_name(values)`` names a point's run directory after its swept values, e.g. ``{"optim.lr": 0.001,
"train.batch_size": 8}`` → ``lr=0.001,batch_size=8``: keys shortened to their last part where that stays unambiguous,
floats in their shortest exact form, anything outside ``[A-Za-z0-9._+-]`` replaced and marked with a short hash, so
that two different points never share a name and one point always gets the same name.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass
from typing import Any

import yaml

from cs336_lm.errors import ConfigError

RANGE_RE = re.compile(r"^(loguniform|uniform|int|choice)\((.*)\)$", re.DOTALL)
SAFE_RE = re.compile(r"[^A-Za-z0-9._+-]")
MAX_NAME = 120  # characters of a trial's directory name before it is shortened with a hash

Scalar = bool | int | float | str | None


@dataclass(frozen=True)
class Axis:
    """One swept key: ``kind`` is ``grid`` (its ``values``), ``choice`` (``values``), ``uniform``, ``loguniform`` or
    ``int`` (``low``/``high``). ``text`` is the argument as given, for messages and the stored spec."""

    key: str
    kind: str
    values: tuple[Scalar, ...] = ()
    low: float = 0.0
    high: float = 0.0
    text: str = ""

    @property
    def is_range(self) -> bool:
        return self.kind in ("uniform", "loguniform", "int", "choice")

    def corners(self) -> tuple[Scalar, ...]:
        """The values to validate before anything runs: every listed value, or both ends of a range."""
        if self.kind in ("grid", "choice"):
            return self.values
        if self.kind == "int":
            return (int(self.low), int(self.high))
        return (self.low, self.high)


@dataclass(frozen=True)
class Arguments:
    """What the ``key=value`` arguments of ``lm-sweep`` say: the ``fixed`` overrides (``key=value`` strings, as
    ``lm-train`` takes them) and the ``axes`` in the order given."""

    fixed: tuple[str, ...]
    axes: tuple[Axis, ...]

    @property
    def is_search(self) -> bool:
        """A range anywhere makes the whole sweep a search (its comma lists become choices)."""
        return any(a.is_range for a in self.axes)


def parse_arguments(items: list[str] | tuple[str, ...]) -> Arguments:
    """``["optim.lr=1e-3,1e-2", "train.max_steps=300"]`` → one grid axis ``optim.lr`` (0.001, 0.01) and the fixed
    override ``train.max_steps=300``. A key given twice takes its later value (as ``lm-train``'s overrides do). A
    malformed item is a ``ConfigError`` naming it."""
    given: dict[str, Axis | str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"argument {item!r} must look like section.key=value (e.g. optim.lr=1e-3)")
        given.pop(key, None)  # a key given again wins, as in lm-train's overrides, and takes the later place
        given[key] = parse_axis(key, value) or f"{key}={value}"
    fixed = [g for g in given.values() if isinstance(g, str)]
    axes = [g for g in given.values() if isinstance(g, Axis)]
    return Arguments(tuple(fixed), tuple(axes))


def parse_axis(key: str, value: str) -> Axis | None:
    """The axis that ``key=value`` describes, or None when ``value`` is one plain value."""
    text = f"{key}={value}"
    stripped = value.strip()
    match = RANGE_RE.match(stripped)
    if match:
        return _parse_range(key, match[1], match[2], text)
    if stripped[:1] in "[{\"'" or "," not in stripped:
        return None
    parts = stripped.split(",")
    if any(not p.strip() for p in parts):
        raise ConfigError(f"malformed axis {text!r}: an empty value between commas")
    values = tuple(parse_scalar(p, text) for p in parts)
    if len(set(map(_identity, values))) != len(values):
        raise ConfigError(f"malformed axis {text!r}: a value is listed twice")
    return Axis(key, "grid", values, text=text)


def _parse_range(key: str, kind: str, inner: str, text: str) -> Axis:
    parts = [p.strip() for p in inner.split(",")]
    if kind == "choice":
        if len(parts) < 2 or any(not p for p in parts):
            raise ConfigError(f"malformed range {text!r}: expected choice(A,B,…) with at least two values")
        values = tuple(parse_scalar(p, text) for p in parts)
        if len(set(map(_identity, values))) != len(values):
            raise ConfigError(f"malformed range {text!r}: a value is listed twice")
        return Axis(key, "choice", values, text=text)
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"malformed range {text!r}: expected {kind}(LOW,HIGH)")
    low, high = (_number(p, text, integer=kind == "int") for p in parts)
    if not low < high:
        raise ConfigError(f"malformed range {text!r}: LOW must be below HIGH")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"malformed range {text!r}: loguniform needs LOW > 0")
    return Axis(key, kind, low=low, high=high, text=text)


def _number(text: str, where: str, integer: bool) -> float:
    value = parse_scalar(text, where)
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or not math.isfinite(float(value)):  # type: ignore[arg-type]
        kind = "an integer" if integer else "a finite number"
        raise ConfigError(f"malformed range {where!r}: {text!r} is not {kind}")
    return float(value)  # type: ignore[arg-type]


def parse_scalar(text: str, where: str) -> Scalar:
    """``"1e-3"`` → 0.001, ``"8"`` → 8, ``"true"`` → True, ``"muon"`` → ``"muon"``: YAML's reading of one value
    (with YAML 1.2's floats: ``1e-3`` without a dot is a float, not a string)."""
    text = text.strip()
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"malformed value {text!r} in {where!r}") from None
    if isinstance(value, str) and _FLOAT_RE.match(text):
        value = float(text)
    if not isinstance(value, bool | int | float | str | type(None)):
        raise ConfigError(f"malformed value {text!r} in {where!r}: one value, not a list or mapping")
    return value


_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _identity(value: Scalar) -> tuple[str, Scalar]:
    """A key that tells ``1`` from ``1.0`` and ``True`` (Python's set would merge them)."""
    return (type(value).__name__, value)


def format_value(value: Scalar) -> str:
    """A value as an override writes it, read back to the same value: ``0.001``, ``8``, ``true``, ``null``, ``muon``;
    a string that would read as something else is quoted (``"1"``, ``"true"``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        try:
            plain = parse_scalar(value, value) == value and bool(value.strip()) and "," not in value
        except ConfigError:
            plain = False
        return value if plain else json.dumps(value)  # "1" (a string) must not read back as 1
    return str(value)


def grid_points(axes: tuple[Axis, ...] | list[Axis]) -> list[dict[str, Scalar]]:
    """Every combination of the grid axes' values, the first axis varying slowest: ``a=1,2 b=x,y`` →
    ``[{a:1,b:x}, {a:1,b:y}, {a:2,b:x}, {a:2,b:y}]``. No axes: one point, ``[{}]``."""
    keys = [a.key for a in axes]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(a.values for a in axes))]


def overrides_for(values: dict[str, Any]) -> list[str]:
    """``{"optim.lr": 0.001}`` → ``["optim.lr=0.001"]``."""
    return [f"{k}={format_value(v)}" for k, v in values.items()]


def trial_name(values: dict[str, Any]) -> str:
    """The run directory name of a point (see the module docstring); ``{}`` → ``base``."""
    if not values:
        return "base"
    short = _short_keys(list(values))
    parts = []
    for key, value in values.items():
        text = format_value(value)
        safe = SAFE_RE.sub("_", text)
        if safe != text or not safe or safe.startswith("."):
            safe = f"{safe}~{_digest(text)}"
        parts.append(f"{short[key]}={safe}")
    name = ",".join(parts)
    if len(name) > MAX_NAME:
        name = f"{name[: MAX_NAME - 9]}~{_digest(name)}"
    return name


def _short_keys(keys: list[str]) -> dict[str, str]:
    """Each dotted key by its shortest tail that no other key shares: ``optim.lr`` → ``lr``; ``model.norm`` beside
    ``train.norm`` stays whole."""
    short = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            tail = ".".join(parts[-n:])
            if not any(other != key and (other == tail or other.endswith("." + tail)) for other in keys):
                break
        short[key] = tail
    return short


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
