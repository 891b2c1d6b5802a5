"""Pipeline configuration: nested dataclasses, a TOML file, and `key=value` overrides.

One name per setting everywhere: the TOML key `[model] hidden_size`, the CLI override
`--set model.hidden_size=128` and the MLflow param `model.hidden_size` are the same string.

This module holds the machinery every kind's settings share (loading, overrides, checks,
TOML) and the sections more than one kind uses (`ModelConfig`, `TrainConfig`,
`ClassifierRegisterConfig`); each kind's own settings live beside it: `forecast_config`,
`monitor_config`, `reviews_config`, `lm_config`, and `schedule_config` for `rnnpipe schedule`.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rnnpipe.errors import ConfigError


@dataclass
class ModelConfig:
    CHOICES: ClassVar = {
        "cell": {"rnn", "lstm", "gru"},
        "pooling": {"last", "mean", "max", "attention"},
        "highway": {"none", "linear"},
        "recipe": {"residual", "joint"},
    }
    POSITIVE: ClassVar = ("hidden_size", "num_layers")

    cell: str = "lstm"  # rnn | lstm | gru
    hidden_size: int = 64  # units of each recurrent layer
    num_layers: int = 2  # stacked recurrent layers
    dropout: float = 0.2  # between layers and before the output
    bidirectional: bool = False  # also read the window backwards (classifiers)
    pooling: str = "last"  # last | mean | max | attention
    # how the recurrent part learns beside the linear part (forecasters): residual (the linear
    # part keeps its closed-form fit, fixed; the recurrent output, scaled to the spread of the
    # linear part's training residuals, learns what it leaves) | joint (both start from zero
    # and train together, as LSTNet)
    recipe: str = "residual"
    # under the residual recipe, the linear part's learning rate as a multiple of train.lr
    # (0: kept fixed at its closed-form fit)
    linear_lr_mult: float = 0.0
    # forecasters: the recurrent part's decoder also reads the linear part's forecast of each
    # step and the step's place in the horizon, so it corrects the linear forecast where it
    # errs (stacking). Default chosen on validation over every bundled series (docs:
    # decisions/recipe.md)
    stacked: bool = True

    def encoder(self) -> dict[str, Any]:
        """The recurrent encoder's settings, as every kind's model takes them."""
        keys = ("cell", "hidden_size", "num_layers", "dropout", "bidirectional", "pooling")
        return {k: getattr(self, k) for k in keys}

    # forecasters: the recurrent encoder reads the last N steps of the window (0: all of it;
    # the linear part always reads all): long windows (a week of half-hours) train in minutes
    encoder_lookback: int = 0
    # none | linear: a linear part on the window beside the recurrent output, trained jointly
    # (forecasters: an autoregressive "highway" on the window; window classifiers: a wide part
    # on its summary statistics). The linear part fitted alone is the candidate to beat, so the
    # model never ends worse on validation. Default chosen on validation over every bundled
    # set (docs: decisions/highway.md)
    highway: str = "linear"
    # forecasters only (stocks, the monitor's channel forecaster): also forecast these
    # quantiles of each step, trained with the pinball loss beside the point forecast (which
    # stays the mean head); [] for point forecasts only. The outermost pair gives the
    # interval whose coverage is reported (0.1 and 0.9: test_coverage_80)
    quantiles: list[float] = field(default_factory=lambda: [0.1, 0.5, 0.9])

    def check(self, section: str) -> None:
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"{section}.dropout={self.dropout}: must be in [0, 1)")
        q = self.quantiles
        if any(not 0 < v < 1 for v in q) or list(q) != sorted(set(q)):
            raise ConfigError(f"{section}.quantiles={q}: distinct levels in (0, 1), in increasing order")
        if len(q) == 1:
            raise ConfigError(f"{section}.quantiles={q}: give at least two levels (an interval), or []")


@dataclass
class TrainConfig:
    CHOICES: ClassVar = {"lr_schedule": {"cosine", "plateau", "none"}, "precision": {"auto", "bf16", "fp32"}}
    POSITIVE: ClassVar = ("epochs", "batch_size", "patience")
    epochs: int = 30  # at most; early stopping on val (patience) usually ends sooner
    batch_size: int = 256  # windows (texts, stream rows) per step
    lr: float = 1e-3  # AdamW's learning rate at the start of the schedule
    weight_decay: float = 1e-2  # AdamW's decoupled weight decay
    clip_grad_norm: float = 1.0  # gradients rescaled to at most this norm (0: off)
    lr_schedule: str = "cosine"  # cosine | plateau | none
    patience: int = 5  # epochs without val improvement before stopping
    device: str = "auto"  # auto (cuda, mps, cpu) | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto (bf16 on CUDA) | bf16 | fp32
    seed: int = 42  # torch, numpy and the shuffling; logged as the run's tag `seed`
    # reshuffle the training windows every epoch; false keeps them in order (batch for batch
    # comparable runs, e.g. a streamed run against the same data in memory)
    shuffle: bool = True
    # CPU threads of torch: auto (the cores this process may use, its share in a sweep,
    # backtest or batch worker) | a number; the number used is the run's tag `torch_threads`
    threads: str = "auto"

    def check(self, section: str) -> None:
        from rnnpipe.threads import parse

        parse(self.threads)


@dataclass
class ClassifierRegisterConfig:
    experiment: str = "monitor"
    model_name: str = "monitor-classifier"
    metric: str = "test_f1_onset"  # higher is better
    baseline_margin: float = 0.0  # champion only if metric >= best baseline x (1 - margin)


@dataclass
class DriftConfig:
    """Thresholds of the drift report of every batch job (`rnnpipe.drift`), saved with the
    model's reference profile."""

    psi_warn: float = 0.1  # a feature's population stability index from which the report says warn
    psi_drift: float = 0.25  # ... and drift
    missing_warn: float = 0.05  # a rise in the share of missing values from which it says warn
    missing_drift: float = 0.2  # ... and drift
    min_rows: int = 100  # a feature with fewer values in the batch is reported, not judged
    # a PSI counts only when the shift is also beyond sampling noise: the KS test's (numbers) or
    # the chi-square test's (classes) p-value below this; small samples alone give PSI ~0.1-0.2
    max_p: float = 0.01
    # the thresholds start above how far the training data's own parts stray from it: the
    # largest PSI of one of this many consecutive parts against the whole, less sampling noise
    # (a season, a calm year, one patient's records); 0 judges against the thresholds alone
    blocks: int = 10
    # realised accuracy (labelled rows, --actuals): worse than the registered test score by more
    # than this share of it is `degraded`
    accuracy_margin: float = 0.1

    def check(self, section: str) -> None:
        if not 0 < self.psi_warn <= self.psi_drift:
            raise ConfigError(f"{section}.psi_warn={self.psi_warn}, psi_drift={self.psi_drift}: need 0 < warn <= drift")
        if not 0 < self.missing_warn <= self.missing_drift <= 1:
            raise ConfigError(
                f"{section}.missing_warn={self.missing_warn}, missing_drift={self.missing_drift}: "
                "need 0 < warn <= drift <= 1"
            )
        if self.min_rows < 1:
            raise ConfigError(f"{section}.min_rows={self.min_rows}: must be at least 1")
        if self.blocks < 0 or self.blocks == 1:
            raise ConfigError(f"{section}.blocks={self.blocks}: must be 0 (off) or at least 2")
        if not 0 < self.max_p <= 1:
            raise ConfigError(f"{section}.max_p={self.max_p}: must be in (0, 1]")
        if self.accuracy_margin < 0:
            raise ConfigError(f"{section}.accuracy_margin={self.accuracy_margin}: must be at least 0")


def check_series_name(d: Any, section: str) -> None:
    """Without a series column the file is one series: it is named `series_name`, or after
    the file (its name without the extension)."""
    if not d.series_col and not d.series_name:
        d.series_name = Path(d.path.rstrip("/")).stem or "series"
    if not d.series_col and d.series:
        raise ConfigError(
            f"{section}.series={d.series}: there is no {section}.series_col, so the file "
            "is one series; leave series empty"
        )


def check_pattern(pattern: str, key: str) -> None:
    """A tokenizer regex must compile."""
    import re

    try:
        re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"{key}={pattern!r}: not a valid regex: {exc}") from None


def check_sections(cfg: Any) -> None:
    """Each section's own rules: values among its CHOICES, POSITIVE fields at least 1, and its
    `check(section_name)` if it has one."""
    for section in dataclasses.fields(cfg):
        sub = getattr(cfg, section.name)
        for key, allowed in getattr(sub, "CHOICES", {}).items():
            value = getattr(sub, key)
            if value not in allowed:
                raise ConfigError(f"{section.name}.{key}={value!r}: expected one of {', '.join(sorted(allowed))}")
        for key in getattr(sub, "POSITIVE", ()):
            if getattr(sub, key) < 1:
                raise ConfigError(f"{section.name}.{key}={getattr(sub, key)}: must be at least 1")
        if hasattr(sub, "check"):
            sub.check(section.name)


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
    if origin in (list, list):
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
    otherwise the bare text; a list of bare words (`[naive, autoets]`) is a list of them."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        if text.startswith("[") and text.endswith("]"):
            return [_parse_value(item.strip()) for item in text[1:-1].split(",") if item.strip()]
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


def load_config(
    cls: type, path: str | Path | None = None, overrides: list[str] | None = None, skip: tuple[str, ...] = ()
):
    """Defaults, then the TOML file (without its tables named in `skip`, e.g. `[tune]`, read by
    the command that owns them), then the `key=value` overrides; validated."""
    data: dict[str, Any] = to_dict(cls())
    file_data: dict[str, Any] = {}
    if path is not None:
        from rnnpipe.settings import bundled_configs, resolve_config_path

        p = resolve_config_path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p} (bundled configs: {', '.join(bundled_configs())})")
        try:
            file_data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from None
        file_data = {k: v for k, v in file_data.items() if k not in skip}
        _merge(data, file_data)
        try:  # a setting of the file that does not exist is named with the file
            from_dict(cls, data)
        except ConfigError as exc:
            raise ConfigError(f"{p}: {exc}") from None
    apply_overrides(data, overrides or [])
    given = _keys(file_data) | {o.partition("=")[0].strip() for o in overrides or []}
    sample_defaults(cls, data, given)
    replaced_defaults(cls, data, given)
    own_data_name(cls, data, given)
    bundled_defaults(cls, data, given)
    cfg = from_dict(cls, data)
    return cfg.validate() if hasattr(cfg, "validate") else cfg


def sample_defaults(cls: type, data: dict[str, Any], given: set[str]) -> None:
    """A section whose `path` is not its default (the bundled sample) drops the defaults that
    describe that sample only (its SAMPLE_ONLY keys, e.g. the three tickers of
    data/stocks.parquet), unless the user gave them: a user's own file works with the obvious
    column mapping alone."""
    defaults = cls()
    for f in dataclasses.fields(cls):
        section = getattr(defaults, f.name)
        sample = getattr(section, "SAMPLE_ONLY", {})
        values = data.get(f.name)
        if not sample or not isinstance(values, dict) or values.get("path") == section.path:
            continue
        for key, value in sample.items():
            if f"{f.name}.{key}" not in given:
                values[key] = value


def own_data_name(cls: type, data: dict[str, Any], given: set[str]) -> None:
    """A model trained on data other than the bundled sample gets a name of its own, unless
    the user gave one: `register.model_name` with the sample's part (`stocks` of
    `stocks-forecaster`) replaced by the data file's (`prices-forecaster` for prices.csv).
    Its test metric is not comparable with the bundled model's, so it must not compete for
    that model's champion (the registry's gate refuses that too: rule `other-data`). Its runs
    go to an experiment of the same name (unless `register.experiment` is given), so MLflow's
    run table never ranks them beside the bundled sample's."""
    defaults = cls()
    register, data_section = getattr(defaults, "register", None), getattr(defaults, "data", None)
    if register is None or not hasattr(data_section, "path") or "register.model_name" in given:
        return
    path = str(data.get("data", {}).get("path") or "")
    if not path or path == data_section.path or data.get("register", {}).get("model_name") != register.model_name:
        return
    stem = Path(path.rstrip("/")).name.split(".")[0]
    slug = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-") or "data"
    kind = register.model_name.split("-", 1)[1] if "-" in register.model_name else register.model_name
    data["register"]["model_name"] = f"{slug}-{kind}"
    if "register.experiment" not in given and data["register"].get("experiment") == register.experiment:
        data["register"]["experiment"] = data["register"]["model_name"]


def bundled_defaults(cls: type, data: dict[str, Any], given: set[str]) -> None:
    """A default that names a bundled file (`data/stocks.parquet`) and that the user left
    alone becomes the installed file's absolute path: it never means a file of that name in
    the user's folder (a path the user gives is read from where the user is)."""
    from rnnpipe.settings import bundled_file

    defaults = to_dict(cls())
    for section, values in defaults.items():
        if not isinstance(values, dict) or not isinstance(data.get(section), dict):
            continue
        for key, default in values.items():
            if (
                isinstance(default, str)
                and f"{section}.{key}" not in given
                and data[section].get(key) == default
                and (found := bundled_file(default))
            ):
                data[section][key] = str(found)


def replaced_defaults(cls: type, data: dict[str, Any], given: set[str]) -> None:
    """A setting the user gives that brings what some defaults provide (its class's REPLACES:
    `pretrain.model`, a language model that gives the embedding) turns those defaults off
    (the bundled word vectors), unless the user gave them too: then `validate` names the clash."""
    for key, replaced in getattr(cls, "REPLACES", {}).items():
        section, name = key.split(".")
        if key not in given or not data.get(section, {}).get(name):
            continue
        for other, value in replaced.items():
            if other not in given:
                part, field_name = other.split(".")
                data[part][field_name] = value


def _keys(data: dict[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for k, v in data.items():
        out |= _keys(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}"}
    return out


def _merge(base: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def with_absolute_paths(cfg: Any) -> Any:
    """A copy of `cfg` whose files (every `path` or `*_path` setting that is set) are named
    absolutely, as the user meant them from the folder they are in: what a file kept for later
    must hold to mean the same files from anywhere (a run's `config.toml`, a study's best
    settings, a scheduled deployment)."""
    import copy

    from rnnpipe.settings import resolve_data_path

    out = copy.deepcopy(cfg)
    for section in vars(out).values():
        if not dataclasses.is_dataclass(section):
            continue
        for key, value in vars(section).items():
            if (key == "path" or key.endswith("_path")) and isinstance(value, str) and value:
                setattr(section, key, str(resolve_data_path(value).absolute()))
    return out


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
