"""Pipeline configuration: nested dataclasses, a TOML file, and `key=value` overrides.

One name per setting everywhere: the TOML key `[model] hidden_size`, the CLI override
`--set model.hidden_size=128` and the MLflow param `model.hidden_size` are the same string.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnpipe.errors import ConfigError


@dataclass
class DataConfig:
    path: str = "data/stocks.parquet"  # file, folder or partitioned dataset (CSV or Parquet)
    format: str = "auto"  # auto | csv | parquet
    timestamp_col: str = "Date"
    series_col: str = "Ticker"
    target_col: str = "Close"
    features: list[str] = field(default_factory=list)  # extra numeric input columns
    series: list[str] = field(default_factory=lambda: ["AAPL", "IBM", "MSFT"])  # [] = all
    nan_policy: str = "error"  # error | ffill | drop


@dataclass
class SplitConfig:
    train: float = 0.70  # fractions of each series, in time order; test gets the rest
    val: float = 0.15
    val_start: str = ""  # cut dates (ISO); when both are set they replace the fractions
    test_start: str = ""


@dataclass
class WindowConfig:
    lookback: int = 60
    horizon: int = 1
    target: str = "log_return"  # level | diff | log_return (relative to the last observed value)
    scaler: str = "standard"  # standard | minmax | robust, fitted per series on train only


@dataclass
class ModelConfig:
    cell: str = "lstm"  # rnn | lstm | gru
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.2
    bidirectional: bool = False
    pooling: str = "last"  # last | mean | attention


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-2
    clip_grad_norm: float = 1.0
    lr_schedule: str = "cosine"  # cosine | plateau | none
    patience: int = 5  # epochs without val improvement before stopping
    device: str = "auto"  # auto (cuda, mps, cpu) | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto (bf16 on CUDA) | bf16 | fp32
    seed: int = 42


@dataclass
class RegisterConfig:
    experiment: str = "stocks"
    model_name: str = "stocks-forecaster"
    metric: str = "test_mae"  # lower is better
    naive_margin: float = 0.05  # champion only if metric <= naive * (1 + margin)


@dataclass
class ForecastConfig:
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    register: RegisterConfig = field(default_factory=RegisterConfig)

    def validate(self) -> "ForecastConfig":
        choices = {
            "data.format": (self.data.format, {"auto", "csv", "parquet"}),
            "data.nan_policy": (self.data.nan_policy, {"error", "ffill", "drop"}),
            "window.target": (self.window.target, {"level", "diff", "log_return"}),
            "window.scaler": (self.window.scaler, {"standard", "minmax", "robust"}),
            "model.cell": (self.model.cell, {"rnn", "lstm", "gru"}),
            "model.pooling": (self.model.pooling, {"last", "mean", "attention"}),
            "train.lr_schedule": (self.train.lr_schedule, {"cosine", "plateau", "none"}),
            "train.precision": (self.train.precision, {"auto", "bf16", "fp32"}),
        }
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise ConfigError(f"{key}={value!r}: expected one of {', '.join(sorted(allowed))}")
        positive = {
            "window.lookback": self.window.lookback,
            "window.horizon": self.window.horizon,
            "model.hidden_size": self.model.hidden_size,
            "model.num_layers": self.model.num_layers,
            "train.epochs": self.train.epochs,
            "train.batch_size": self.train.batch_size,
            "train.patience": self.train.patience,
        }
        for key, value in positive.items():
            if value < 1:
                raise ConfigError(f"{key}={value}: must be at least 1")
        if not 0 <= self.model.dropout < 1:
            raise ConfigError(f"model.dropout={self.model.dropout}: must be in [0, 1)")
        if bool(self.split.val_start) != bool(self.split.test_start):
            raise ConfigError("split.val_start and split.test_start must be given together")
        if not self.split.val_start:
            if not (0 < self.split.train < 1 and 0 < self.split.val < 1
                    and self.split.train + self.split.val < 1):
                raise ConfigError(
                    f"split.train={self.split.train}, split.val={self.split.val}: each must be in "
                    "(0, 1) and their sum below 1 (the test part gets the rest)")
        return self


# --- generic machinery (works for any dataclass tree) -------------------------------------

def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def flatten(cfg: Any) -> dict[str, Any]:
    """{"model.hidden_size": 64, ...}: the MLflow params of a run."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            out[prefix] = value

    walk("", to_dict(cfg))
    return out


def from_dict(cls: type, data: dict[str, Any], _prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        key = f"{_prefix}{sorted(unknown)[0]}"
        raise ConfigError(f"unknown config key {key!r} (known: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{_prefix}{name} is a section; give keys like {_prefix}{name}.KEY")
            kwargs[name] = from_dict(hint, value, f"{_prefix}{name}.")
        else:
            kwargs[name] = _coerce(f"{_prefix}{name}", value, hint)
    return cls(**kwargs)


def _coerce(key: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (list, typing.List):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint) or (str,)
        return [_coerce(key, v, item) for v in value]
    if origin in (typing.Union, types.UnionType):
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in {"true", "1", "yes", "on"}:
            return True
        if str(value).lower() in {"false", "0", "no", "off"}:
            return False
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            number = hint(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}") from None
        if hint is int and isinstance(value, float) and value != int(value):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return number
    if hint is str:
        return str(value)
    return value


def _parse_value(text: str) -> Any:
    """A `--set` value as TOML would read it (numbers, booleans, lists, quoted strings),
    otherwise the bare text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. model.hidden_size=128")
        parts = key.strip().split(".")
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is not a section")
        node[parts[-1]] = _parse_value(text.strip())
    return data


def load_config(cls: type, path: str | Path | None = None, overrides: list[str] | None = None):
    """Defaults, then the TOML file, then the `key=value` overrides; validated."""
    data: dict[str, Any] = to_dict(cls())
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            file_data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from None
        _merge(data, file_data)
    apply_overrides(data, overrides or [])
    cfg = from_dict(cls, data)
    return cfg.validate() if hasattr(cfg, "validate") else cfg


def _merge(base: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def to_toml(cfg: Any) -> str:
    """The config as a TOML file a user can edit and pass back with --config."""
    lines: list[str] = []
    for section, values in to_dict(cfg).items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
