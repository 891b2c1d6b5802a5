"""A model card per registered version, generated from its MLflow run (never written by hand).

`model_card` reads what the run recorded (params, tags, metrics, the data summary
`data/split.json`) and the gate's decision, and writes Markdown in the sections of Mitchell
et al. (2019), "Model Cards for Model Reporting", as far as a run can fill them: intended use,
data (source, fingerprint, period, split sizes), metrics against every baseline (with the
paired-bootstrap interval where the kind computes one), interval calibration, where the model
does not beat its baselines, training (settings, hardware, library versions) and how to
reproduce it. `rnnpipe.steps.register_model` logs it as `model_card/<name>-v<N>.md` and makes
it the version's description in the MLflow UI.
"""

from __future__ import annotations

import json
import math
import platform
from typing import Any

# what each kind is for and not for: the only words of a card that are not read off the run
INTENDED_USE = {
    "stocks": (
        "Forecasts each series' next `window.horizon` values, with quantile bands, from its last "
        "`window.lookback` steps (and calendar and known-in-advance inputs where configured). For "
        "planning and monitoring figures that a persistence or statistical forecast would otherwise "
        "give; not investment advice: on prices, expect it to tie with the naive forecast at best."
    ),
    "monitor": (
        "Early warning on patient-monitoring readings: the risk of an event within the next "
        "`window.horizon` steps, and an alert above a threshold chosen on validation. A decision "
        "aid to prioritise attention, not a diagnostic device; judged on onset windows, where a "
        "warning matters."
    ),
    "reviews": (
        "Sentiment of short English review texts (the classes of its training labels), with class "
        "probabilities and a note where the answer is a guess (no known word, empty text). Texts "
        "far from the training domain are flagged by the batch jobs' drift report."
    ),
    "lm": (
        "A word- or character-level language model of review texts: next-token probabilities "
        "(perplexity) and sampled continuations of a prompt. For pretraining and demonstration; "
        "its text is not checked for facts or safety."
    ),
}
LOWER_IS_BETTER = ("mae", "rmse", "mase", "mape", "smape", "pinball", "perplexity", "bits_per_char", "loss")
INTERVALS = ("coverage_80", "interval_width", "pinball")
SETTINGS = ("data.", "window.", "model.", "train.", "text.", "embed.", "stream.", "resample.", "register.metric")


def model_card(
    run_id: str,
    decision: Any,
    metrics: dict[str, float],
    metric: str,
    baselines: dict[str, str],
    greater_is_better: bool,
    baseline_of: str = "",
) -> str:
    """The card of the version `decision` registered from run `run_id` (its `metrics`, its
    gate: `metric`, `baselines` name -> metric key)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    run = client.get_run(run_id)
    tags, params, logged = run.data.tags, run.data.params, run.data.metrics
    metrics = {**logged, **metrics}
    if baseline_of:  # the card's model is the baseline; the run's recurrent model becomes a column
        pre = f"{baseline_of}_"
        metrics = {  # the recurrent model's own scores: the run's (`metrics` holds the baseline's)
            **{f"rnn_{k}": v for k, v in logged.items() if k.startswith("test_")},
            **{k: v for k, v in metrics.items() if "_test_" in k and not k.startswith(pre)},
            **{k[len(pre) :]: v for k, v in metrics.items() if k.startswith(pre)},
        }
    kind = tags.get("pipeline", "")
    summary = _artifact_json(client, run_id, "data/split.json")
    lines = [
        f"# {decision.model_name} v{decision.version}" + (f" (the {baseline_of} baseline)" if baseline_of else ""),
        "",
        f"**Alias at registration: `{decision.alias}`.** {decision.reason[:1].upper()}{decision.reason[1:]}",
        "",
        "## Intended use",
        "",
        INTENDED_USE.get(kind, "See the pipeline's page in the documentation."),
    ]
    if baseline_of:
        lines += [
            "",
            f"This version is the `{baseline_of}` baseline of run `{run_id}`, registered because the "
            "recurrent model of that run lost to it; it takes the same input and gives the same columns.",
        ]
    lines += ["", "## Data", "", *_data(tags, params, summary)]
    lines += ["", "## Metrics on the test part", "", *_metrics(metrics, metric, baselines, greater_is_better)]
    calib = _intervals(metrics)
    if calib:
        lines += ["", "## Interval calibration", "", *calib]
    lines += ["", "## Where it does not beat its baselines", "", *_losses(metrics, baselines)]
    lines += ["", "## Training", "", *_training(tags, params, logged, baseline_of)]
    lines += ["", "## Reproduce", "", *_reproduce(kind, tags, run_id)]
    return "\n".join(lines) + "\n"


def _artifact_json(client: Any, run_id: str, path: str) -> Any:
    try:
        with open(client.download_artifacts(run_id, path)) as f:
            return json.load(f)
    except Exception:  # noqa: BLE001 - a card without the data summary still says the rest
        return None


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "n/a" if not math.isfinite(v) else f"{v:.5g}"
    return str(v)


def _data(tags: dict, params: dict, summary: Any) -> list[str]:
    out = [
        f"- source: `{tags.get('data_source', '?')}`",
        f"- fingerprint (sha256): `{tags.get('data_fingerprint', '?')}`",
    ]
    if isinstance(summary, dict):
        counts = summary.get("windows") or summary.get("counts")
        if counts:
            out.append(f"- split sizes: {json.dumps(counts)}")
        if summary.get("split"):
            out.append(f"- split: {summary['split']}")
        parts = summary.get("parts")
        if isinstance(parts, dict) and parts:
            out += ["", "| series | train | validation | test |", "|---|---|---|---|"]
            for series, p in list(parts.items())[:10]:
                cells = [
                    f"{p.get(f'{part}_rows', 0):,} rows, {p.get(f'{part}_from', '')} to {p.get(f'{part}_to', '')}"
                    for part in ("train", "val", "test")
                ]
                out.append(f"| {series} | " + " | ".join(cells) + " |")
            if len(parts) > 10:
                out.append(f"| ... and {len(parts) - 10} more series | | | |")
            out.append("")
    split = {k: v for k, v in params.items() if k.startswith("split.") and v not in ("", "None")}
    if split:
        out.append(f"- split settings: {', '.join(f'`{k}={v}`' for k, v in sorted(split.items()))}")
    return out


def _scores(metrics: dict[str, float]) -> list[str]:
    """The model's test scores (`test_<score>`, no per-series or per-class suffix)."""
    return sorted(k[len("test_") :] for k in metrics if k.startswith("test_") and "." not in k and "_vs_" not in k)


def _methods(metrics: dict[str, float], baselines: dict[str, str]) -> list[str]:
    """The baselines scored beside the model (`<name>_test_<score>`), the gate's first."""
    names = {k.split("_test_")[0] for k in metrics if "_test_" in k and "." not in k and not k.startswith("test_")}
    return sorted(names, key=lambda n: (n not in baselines, n))


def _metrics(metrics: dict[str, float], metric: str, baselines: dict[str, str], greater: bool) -> list[str]:
    methods = [m for m in _methods(metrics, baselines) if any(f"{m}_test_{s}" in metrics for s in _scores(metrics))]
    rows = [s for s in _scores(metrics) if any(f"{m}_test_{s}" in metrics for m in methods)]
    gate = f"`{metric}` ({'higher' if greater else 'lower'} is better) against " + (
        ", ".join(f"`{b}`" for b in baselines) or "no baseline"
    )
    out = [f"The gate compares {gate}; its row is in bold.", ""]
    if not rows:
        return out + [f"- `{k}`: {_fmt(v)}" for k, v in sorted(metrics.items()) if k.startswith("test_")][:30]
    out += ["| score | model | " + " | ".join(methods) + " |", "|---" * (len(methods) + 2) + "|"]
    gated = metric.removeprefix("test_")
    for s in rows:  # the row the gate decides on in bold, the rest (counts among them) plain
        mine = _fmt(metrics[f"test_{s}"])
        cells = [_fmt(metrics.get(f"{m}_test_{s}", float("nan"))) for m in methods]
        out.append(f"| {s} | {f'**{mine}**' if s == gated else mine} | " + " | ".join(cells) + " |")
    out += [
        "",
        "Every score per series and per method: the run's table `metrics/all.json` (where the kind writes one).",
    ]
    spread = sorted(k for k in metrics if k.endswith(("_ci_low", "_ci_high")) and "." not in k)
    for low in (k for k in spread if k.endswith("_ci_low")):
        name = low[: -len("_ci_low")]
        high = metrics.get(f"{name}_ci_high")
        out += [
            "",
            f"- `{name}`: {_fmt(metrics.get(name, float('nan')))}, 95% paired-bootstrap interval "
            f"[{_fmt(metrics[low])}, {_fmt(high)}]",
        ]
    return out


def _intervals(metrics: dict[str, float]) -> list[str]:
    present = [s for s in INTERVALS if f"test_{s}" in metrics]
    if not present:
        return []
    other = "rnn" if any(k.startswith("rnn_test_") for k in metrics) else "naive"  # a baseline's card: the rnn
    out = [f"| score | model | {other} |", "|---|---|---|"]
    for s in present:
        out.append(f"| {s} | {_fmt(metrics[f'test_{s}'])} | {_fmt(metrics.get(f'{other}_test_{s}', float('nan')))} |")
    if "test_coverage_80" in metrics:
        out += ["", f"The 80% band held {metrics['test_coverage_80']:.1%} of the test values (0.80 is calibrated)."]
    return out


def _losses(metrics: dict[str, float], baselines: dict[str, str]) -> list[str]:
    out = []
    for s in _scores(metrics):
        lower = any(word in s for word in LOWER_IS_BETTER)
        higher = any(word in s for word in ("f1", "accuracy", "auc", "precision", "recall"))
        if not (lower or higher) or "interval_width" in s:
            continue
        mine = metrics[f"test_{s}"]
        for m in _methods(metrics, baselines):
            theirs = metrics.get(f"{m}_test_{s}")
            if theirs is None or not (math.isfinite(mine) and math.isfinite(theirs)):
                continue
            if (lower and theirs < mine) or (not lower and theirs > mine):
                gap = f" ({abs(mine / theirs - 1):.3%} {'worse' if lower else 'lower'})" if theirs else ""
                out.append(f"- `{s}`: {_fmt(mine)} vs {m} {_fmt(theirs)}{gap}")
    return out or ["It beats or ties every baseline scored, on every test score above."]


def _training(tags: dict, params: dict, logged: dict, baseline_of: str = "") -> list[str]:
    out = []
    if baseline_of:  # the figures below are the recurrent model's, not this version's
        out += [
            f"The `{baseline_of}` baseline is not trained by gradient descent: whatever it fits, it fits on "
            "the run's training part, with the data and window settings below. The run's recurrent model, "
            "which lost to it, trained as follows:",
            "",
        ]
    for key in ("best_epoch", "epochs_run", "best_val_loss", "initial_val_loss", "train_samples_per_s"):
        if key in logged:
            out.append(f"- {key}: {_fmt(logged[key])}")
    if tags.get("training_note"):
        out.append(f"- note: {tags['training_note']}")
    hardware = [tags.get(k) for k in ("device", "precision") if tags.get(k)]
    threads = f", {tags['torch_threads']} torch threads" if tags.get("torch_threads") else ""
    out.append(f"- hardware: {' / '.join(hardware) or '?'}{threads}; {platform.machine()} {platform.system()}")
    versions = sorted((k[len("version.") :], v) for k, v in tags.items() if k.startswith("version."))
    if versions:
        out.append("- libraries: " + ", ".join(f"{k} {v}" for k, v in versions))
    settings = {k: v for k, v in params.items() if k.startswith(SETTINGS)}
    if settings:
        out += ["", "| setting | value |", "|---|---|"]
        out += [f"| `{k}` | `{v}` |" for k, v in sorted(settings.items())]
    return out


def _reproduce(kind: str, tags: dict, run_id: str) -> list[str]:
    commit = tags.get("git_commit", "")
    commit = "" if commit in ("", "unknown") else commit
    return [
        "The run keeps its settings as `config.toml` (and as params); with the same data (fingerprint",
        f"above), seed (`{tags.get('seed', '?')}`) and library versions, this trains the model again:",
        "",
        "```console",
        *([f"git checkout {commit}"] if commit else []),
        f"mlflow artifacts download -r {run_id} -a config.toml -d .",
        f"rnnpipe train {kind or 'KIND'} --config config.toml",
        "```",
        "",
        f"MLflow run `{run_id}` holds the params, the per-epoch curves, every test score "
        "(`metrics/all.json` where the kind writes one) and the plots.",
    ]
