"""The search space of `rnnpipe tune`: a table of config keys and ranges, written as strings
(`"int 16 256 log"`, `"float 0.0 0.5"`, `"choice lstm gru"`), each checked against the
kind's settings before any trial runs."""

from __future__ import annotations

import copy
import difflib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnpipe import kinds
from rnnpipe.config import flatten, from_dict, to_dict
from rnnpipe.errors import ConfigError


@dataclass(frozen=True)
class Param:
    """One dimension of the search space: a config key and its range or choices."""

    key: str
    kind: str  # int | float | choice
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial) -> Any:
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log)
        return trial.suggest_categorical(self.key, list(self.choices))

    def spec(self) -> str:
        if self.kind == "choice":
            return "choice " + " ".join(str(c) for c in self.choices)
        return f"{self.kind} {self.low:g} {self.high:g}" + (" log" if self.log else "")


def _number(text: str, key: str, spec: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"tune.space: {key} = {spec!r}: {text!r} is not a number") from None


def parse_param(key: str, spec: Any) -> Param:
    """`"int 16 256 log"`, `"float 0.0 0.5"`, `"choice lstm gru"` -> a Param (types unchecked)."""
    words = str(spec).split()
    usage = '(expected "int LOW HIGH [log]", "float LOW HIGH [log]" or "choice A B ...")'
    if not words or words[0] not in ("int", "float", "choice"):
        raise ConfigError(f"tune.space: {key} = {spec!r} {usage}")
    if words[0] == "choice":
        if len(words) < 2:
            raise ConfigError(f"tune.space: {key} = {spec!r}: a choice needs at least one value")
        from rnnpipe.config import _parse_value

        return Param(key, "choice", choices=tuple(_parse_value(w) for w in words[1:]))
    log = words[-1] == "log"
    bounds = words[1:-1] if log else words[1:]
    if len(bounds) != 2:
        raise ConfigError(f"tune.space: {key} = {spec!r} {usage}")
    low, high = (_number(b, key, spec) for b in bounds)
    if words[0] == "int" and not (low.is_integer() and high.is_integer()):
        raise ConfigError(f"tune.space: {key} = {spec!r}: an int range needs whole numbers")
    if not low < high:
        raise ConfigError(f"tune.space: {key} = {spec!r}: LOW must be below HIGH")
    if log and low <= 0:
        raise ConfigError(f"tune.space: {key} = {spec!r}: a log range must be above 0")
    return Param(key, words[0], low, high, log)


def parse_space(kind: str, space: dict[str, Any], base: dict[str, Any] | None = None) -> list[Param]:
    """The space checked against the kind's settings: every key exists, an int key gets an int
    range, a float key a float range, and every bound and choice is a valid setting (so a trial
    never fails on a value the space itself allowed)."""
    cls = kinds.get(kind).config_class()
    base = base or to_dict(cls())
    defaults = flatten(from_dict(cls, base))
    if not space:
        raise ConfigError("tune.space is empty: give at least one key to search")
    params = []
    for key, spec in space.items():
        if key not in defaults:
            close = difflib.get_close_matches(key, list(defaults), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"tune.space: unknown config key {key!r} for {kind}{hint}")
        p = parse_param(key, spec)
        current = defaults[key]
        if p.kind in ("int", "float") and (isinstance(current, bool) or not isinstance(current, (int, float))):
            raise ConfigError(f"tune.space: {key} holds {current!r}, not a number: use choice")
        if p.kind == "float" and isinstance(current, int):
            raise ConfigError(f"tune.space: {key} is an integer setting: use int, not float")
        values = (int(p.low), int(p.high)) if p.kind == "int" else (p.low, p.high) if p.kind == "float" else p.choices
        for value in values:
            try:
                with_value(cls, base, {key: value})
            except ConfigError as exc:
                raise ConfigError(f"tune.space: {key} = {spec!r}: {value!r} is not a valid setting ({exc})") from None
        params.append(p)
    return params


def with_value(cls: type, base: dict[str, Any], values: dict[str, Any]):
    """The validated settings: `base` (a config as a dict) with `values` set by key."""
    data = copy.deepcopy(base)
    for key, value in values.items():
        *sections, name = key.split(".")
        node = data
        for section in sections:
            node = node[section]
        node[name] = value
    return from_dict(cls, data).validate()


def default_space(kind: str) -> dict[str, str]:
    return dict(getattr(kinds.get(kind).config_class(), "TUNE_SPACE", {}))


def read_space(path: str | Path) -> dict[str, str] | None:
    """The `[tune.space]` table of a TOML file (a `--config` or `--space` file), or None."""
    from rnnpipe.settings import resolve_config_path

    try:
        data = tomllib.loads(resolve_config_path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    tune = data.get("tune", {})
    if not isinstance(tune, dict) or not isinstance(tune.get("space", {}), dict):
        raise ConfigError(f'{path}: [tune.space] must be a table of KEY = "int|float|choice ..."')
    extra = set(tune) - {"space"}
    if extra:
        raise ConfigError(f"{path}: unknown key tune.{sorted(extra)[0]} (known: tune.space)")
    return dict(tune["space"]) if "space" in tune else None
