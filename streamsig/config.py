"""One way to load and save a config: the :class:`Config` mixin of every frozen ``*Config`` dataclass.

A config class is a frozen dataclass that also inherits :class:`Config`; it
then has ``to_dict()`` (JSON-safe: tuples become lists, infinite floats None),
``from_dict(d)`` (the inverse; unknown keys and wrong types are one-line
errors naming the key), ``load(path)`` (a TOML file, or JSON by suffix, of the
same keys; errors name the file and line) and ``from_env(env)`` (``STREAMSIG_<FIELD>``
variables, for the settings a deployment sets in its environment).

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Demo(Config):
...     size: float = 1.0
...     names: tuple[str, ...] = ("a",)
>>> Demo.from_dict({"size": 2.5, "names": ["x", "y"]})
Demo(size=2.5, names=('x', 'y'))
>>> Demo.from_dict(Demo(size=3.0).to_dict()) == Demo(size=3.0)
True
>>> Demo.from_env({"STREAMSIG_SIZE": "4.5"}).size
4.5
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from streamsig.errors import DataError

C = TypeVar("C", bound="Config")

ENV_PREFIX = "STREAMSIG_"


class KeyValueError(ValueError):
    """A bad value for one key (``key`` names it)."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        super().__init__(f"key {key!r}: {reason}")


def _kind(f: dataclasses.Field) -> tuple[str, str | None]:
    """(kind, element kind) of a field: int, float, str, bool, tuple or any."""
    d = f.default
    t = str(f.type).replace("typing.", "").replace("Optional[", "").replace(" | None", "")
    if t.startswith("tuple"):
        el = re.match(r"tuple\[(\w+)", t)
        return "tuple", el.group(1) if el else None
    for k in ("bool", "int", "float", "str"):
        if re.match(rf"{k}\b", t):
            return k, None
    if t.startswith("Literal"):
        return "str", None
    if d is not dataclasses.MISSING and d is not None and type(d) in (bool, int, float, str):
        return type(d).__name__, None
    return "any", None


_WHAT = {"int": "integers", "float": "numbers", "str": "strings", "bool": "booleans"}


def _scalar(key: str, kind: str, v: Any) -> Any:
    if kind == "any" or v is None:
        return v
    if kind == "bool":
        if not isinstance(v, bool):
            raise KeyValueError(key, f"expected true or false, got {type(v).__name__}")
        return v
    if isinstance(v, bool):
        raise KeyValueError(key, "booleans are not accepted")
    if kind == "int":
        if not isinstance(v, int):
            raise KeyValueError(key, f"expected an integer, got {type(v).__name__}")
        return v
    if kind == "float":
        if not isinstance(v, (int, float)):
            raise KeyValueError(key, f"expected a number, got {type(v).__name__}")
        return v  # an integer stays one: to_dict gives back what was read
    if kind == "str" and not isinstance(v, str):
        raise KeyValueError(key, f"expected a string, got {type(v).__name__}")
    return v


def _value(f: dataclasses.Field, v: Any) -> Any:
    kind, el = _kind(f)
    if v is None and kind == "float" and isinstance(f.default, float) and math.isinf(f.default):
        return f.default  # to_dict writes an infinite limit as None
    if kind != "tuple" or v is None:
        return _scalar(f.name, kind, v)
    if not isinstance(v, (list, tuple)):
        raise KeyValueError(f.name, f"expected a list of {_WHAT.get(el or '', 'values')}")
    try:
        return tuple(_scalar(f.name, el or "any", x) for x in v)
    except KeyValueError:
        raise KeyValueError(f.name, f"expected a list of {_WHAT.get(el or '', 'values')}") from None


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class Config:
    """Mixin of the config dataclasses: one ``to_dict``/``from_dict``, one file loader, one env reader."""

    #: keys ``from_dict`` drops without complaint (e.g. a description written beside the fields)
    ignore_keys: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def _fields(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain JSON-safe values (tuples as lists, infinite limits as None)."""
        return {k: _plain(getattr(self, k)) for k in self._fields()}

    @classmethod
    def from_dict(cls: type[C], d: Mapping[str, Any]) -> C:
        """The config :meth:`to_dict` (or a TOML/JSON table of its fields) describes.

        Unknown keys and values of the wrong type raise :class:`KeyValueError`
        (a ``ValueError``) naming the key; invalid values raise the class's own error.
        """
        fs = cls._fields()
        extra = [k for k in d if k not in fs and k not in cls.ignore_keys]
        if extra:
            close = difflib.get_close_matches(extra[0], fs, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(fs)}"
            err = KeyValueError(extra[0], "")
            err.args = (f"unknown {cls.__name__} keys: {sorted(extra)} ({hint})",)
            err.hint = hint  # type: ignore[attr-defined]
            raise err
        return cls(**{k: _value(fs[k], v) for k, v in d.items() if k in fs})

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        """Read a TOML file (JSON if it ends in ``.json``) of this config's fields.

        Errors are one :class:`~streamsig.errors.DataError` line: ``file:line: reason``.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DataError(path, None, f"cannot read: {exc.strerror or exc}") from None
        try:
            raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise DataError(path, None, f"invalid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}") from None
        if not isinstance(raw, dict):
            raise DataError(path, None, "expected a table of keys")

        def where(key: str) -> int | None:
            m = re.search(rf"^\s*\"?{re.escape(key)}\"?\s*[=:]", text, flags=re.M)
            return text.count("\n", 0, m.start()) + 1 if m else None

        try:
            return cls.from_dict(raw)
        except KeyValueError as exc:
            hint = getattr(exc, "hint", None)
            msg = f"unknown key {exc.key!r} ({hint})" if hint else str(exc)
            raise DataError(path, where(exc.key), msg) from None
        except (ValueError, TypeError) as exc:
            key, sep, why = str(exc).partition(":")
            if sep and key in cls._fields():
                raise DataError(path, where(key), f"key {key!r}:{why}") from None
            raise DataError(path, None, str(exc)) from None

    @classmethod
    def from_env(cls: type[C], env: Mapping[str, str] | None = None, prefix: str = ENV_PREFIX,
                 **overrides: Any) -> C:
        """The defaults with ``<prefix><FIELD>`` variables applied, then ``overrides``.

        An empty variable of an optional field means None.
        """
        env = os.environ if env is None else env
        kw: dict[str, Any] = {}
        for name, f in cls._fields().items():
            var = prefix + name.upper()
            raw = env.get(var)
            if raw is None or name in overrides:
                continue
            kind, el = _kind(f)
            try:
                kw[name] = parse_text(raw, kind, el, optional=f.default is None)
            except ValueError:
                raise ValueError(f"{var}={raw!r} is not a valid {name}") from None
        kw.update(overrides)
        return cls(**kw)


def parse_text(raw: str, kind: str, el: str | None = None, optional: bool = False) -> Any:
    """A setting written as text (an environment variable) as a value of ``kind``."""
    if optional and raw == "":
        return None
    if kind == "bool":
        low = raw.strip().lower()
        if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise ValueError(raw)
        return low in ("1", "true", "yes", "on")
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    if kind == "tuple":
        return tuple(parse_text(x.strip(), el or "str") for x in raw.split(",") if x.strip())
    return raw
