"""The champion gate: a new version becomes `champion` only if it beats every gate baseline
and the current champion on the same data (`judge`, `GATE_RULES`), else `challenger`; the
decision is logged once and recorded on the version."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from rnnpipe import kinds
from rnnpipe.localstore import (  # ModelRef: also imported from here
    CHAMPION,
)
from rnnpipe.registry import BASELINE, CHALLENGER, Run

log = logging.getLogger(__name__)


def degenerate_value(metric: str, greater_is_better: bool) -> float | None:
    """The value of `metric` that a model reaches without learning anything: 0 for F1,
    precision and recall (it never finds an event), 0.5 for ROC-AUC (chance); None for errors
    (MAE, RMSE), which have no such value."""
    if not greater_is_better:
        return None
    return 0.5 if metric.endswith(("roc_auc", "roc_auc_onset")) else 0.0


def gate_spec(pipeline: str, cfg: Any) -> dict[str, Any]:
    """How a model of `pipeline` (`rnnpipe.kinds`) is judged for `champion`: the keyword
    arguments of `register_and_gate` after the metrics (the kind's own gate, plus the
    metric's degenerate value)."""
    spec = kinds.load(kinds.get(pipeline).gate)(cfg)
    return {**spec, "degenerate": degenerate_value(spec["metric"], spec["greater_is_better"])}


def _pct(share: float) -> str:
    """A share as a percentage with the digits that say something (0.007%, 4.2%)."""
    return f"{100 * share:.3f}%" if abs(share) < 0.01 else f"{100 * share:.1f}%"


def _defined(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


@dataclass
class Verdict:
    """What the gate decided and why: `rule` names the rule that decided (one of
    `GATE_RULES`), `reason` says it in a sentence that stays true after the alias moves."""

    promoted: bool
    rule: str
    reason: str


GATE_RULES = (
    "undefined-metric",
    "undefined-baseline",
    "degenerate",
    "other-data",
    "baseline",
    "first",
    "champion-undefined",
    "champion",
)


def judge(
    metric: str,
    value: float | None,
    baselines: dict[str, float | None],
    *,
    margin: float = 0.0,
    greater_is_better: bool = False,
    degenerate: float | None = None,
    champion: tuple[str, float | None] | None = None,
    other_data: str = "",
) -> Verdict:
    """The champion gate as a pure function, its rules in order:

    1. undefined-metric: a missing, NaN or infinite metric never passes;
    2. undefined-baseline: nor does a model judged against a baseline whose metric is
       undefined (the test data cannot judge either);
    3. degenerate: a metric no better than the value a model reaches without learning
       (`degenerate`, e.g. F1 = 0) never passes, even when every baseline ties it;
    4. other-data: a champion trained on other data or taking other input (`other_data` says
       how) is not compared with: the metrics of two data sets say nothing of which model
       is better, so the version does not compete for the alias (nor does a baseline of it);
    5. baseline: the metric must not lose to the best baseline by more than `margin`;
    6. first: with no champion yet, a model that passed 1-5 is promoted;
    7. champion-undefined: a champion without a defined metric is replaced;
    8. champion: otherwise the model must beat the champion (`(version, value)`).
    """
    worse = (lambda a, b: a < b) if greater_is_better else (lambda a, b: a > b)
    if not _defined(value):
        return Verdict(
            False,
            "undefined-metric",
            f"not promoted [undefined-metric]: {metric} is "
            f"{value} (undefined, e.g. no event in the test part), so the run cannot judge the model",
        )
    bad = [n for n, v in baselines.items() if not _defined(v)]
    if bad:
        return Verdict(
            False,
            "undefined-baseline",
            f"not promoted [undefined-baseline]: the {bad[0]} "
            f"baseline's {metric} is {baselines[bad[0]]} (undefined), so the run cannot judge "
            f"{metric}={value:.4f} against it",
        )
    if baselines:
        pick = max if greater_is_better else min
        name = pick(baselines, key=lambda n: baselines[n])
        base = float(baselines[name])
        if base == value:
            vs = f"ties the {name} baseline ({base:.4f})"
        elif not worse(value, base):
            gain = abs(value - base) / abs(base) if base else math.inf
            vs = f"beats the {name} baseline ({base:.4f}) by {_pct(gain)}"
        else:
            gap = abs(value - base) / abs(base) if base else math.inf
            vs = f"within the {100 * margin:.1f}% margin of the {name} baseline ({base:.4f}; {_pct(gap)} worse)"
    else:
        name, base, vs = None, None, "no baseline was scored"
    if degenerate is not None and not worse(degenerate, value):
        tie = f"; {vs}" if baselines else ""
        return Verdict(
            False,
            "degenerate",
            f"not promoted [degenerate]: {metric}={value:.4f} is no better "
            f"than {degenerate:g}, what a model reaches without learning anything{tie}",
        )
    if champion is not None and other_data:
        if base is not None and worse(value, base):
            share = abs(value - base) / abs(base) if base else math.inf
            vs = f"loses to the {name} baseline ({base:.4f}) by {_pct(share)}"
        return Verdict(
            False,
            "other-data",
            f"not promoted [other-data]: champion v{champion[0]} was trained on "
            f"{other_data}, so {metric}={value:.4f} cannot be compared with it; a model of other "
            f"data needs a name of its own (register.model_name; {vs})",
        )
    if base is not None:
        limit = base * (1 - margin) if greater_is_better else base * (1 + margin)
        if base == 0 and not greater_is_better:
            limit = 0.0
        if worse(value, limit):
            gap = abs(value - base) / abs(base) if base else math.inf
            return Verdict(
                False,
                "baseline",
                f"not promoted [baseline]: {metric}={value:.4f} loses to the "
                f"{name} baseline ({base:.4f}) by {_pct(gap)}"
                + (f", more than the allowed {100 * margin:.1f}%" if margin else ""),
            )
    if champion is None:
        return Verdict(
            True, "first", f"promoted [first]: the first version to pass the gate ({metric}={value:.4f}; {vs})"
        )
    version, champ = champion
    if not _defined(champ):
        return Verdict(
            True,
            "champion-undefined",
            f"promoted [champion-undefined]: champion v{version} has "
            f"no defined {metric} to compare with ({metric}={value:.4f}; {vs})",
        )
    better = value > champ if greater_is_better else value < champ
    if better:
        return Verdict(
            True, "champion", f"promoted [champion]: {metric}={value:.4f} beats champion v{version} ({champ:.4f}); {vs}"
        )
    return Verdict(
        False,
        "champion",
        f"not promoted [champion]: {metric}={value:.4f} does not beat champion v{version} ({champ:.4f}); {vs}",
    )


def _version_metric(client: MlflowClient, mv, metric: str) -> float | None:
    """A version's gate metric: its own tag (a baseline version's differs from its run's
    metric), else its run's."""
    tag = (mv.tags or {}).get(metric)
    if tag is not None:
        try:
            return float(tag)
        except ValueError:
            return None
    return client.get_run(mv.run_id).data.metrics.get(metric) if mv.run_id else None


def data_identity(client: MlflowClient, run_id: str, model_uri: str) -> dict[str, str]:
    """The data a version was trained and tested on (`settings.describe_source`: a bundled
    sample is named the same wherever rnnpipe is installed) and the input columns it reads."""
    from mlflow.models import get_model_info

    from rnnpipe.settings import describe_source, resolve_data_path

    data = client.get_run(run_id).data
    source = data.tags.get("data_source") or (
        resolve_data_path(data.params["data.path"]) if data.params.get("data.path") else ""
    )
    try:
        columns = (get_model_info(model_uri).metadata or {}).get("rnnpipe_input_columns") or []
    except (MlflowException, OSError):  # no logged model there: nothing to compare the input of
        columns = []
    return {
        "data_source": describe_source(source) if source else "",
        "input_columns": ", ".join("/".join(c) for c in columns),
    }


def other_data(new: dict[str, str], champion: dict[str, str]) -> str:
    """How the champion's data or input differs from the new version's ("" when the same,
    or when either is unknown: versions registered before rnnpipe recorded it)."""
    for key, what in (("data_source", "{}, this run on {}"), ("input_columns", "input ({}), this model reads ({})")):
        a, b = champion.get(key), new.get(key)
        if a and b and a != b:
            return what.format(a, b)
    return ""


@dataclass
class GateDecision:
    model_name: str
    version: str
    alias: str
    reason: str
    rule: str = ""
    champion: str = ""  # the version that holds `champion` after this registration ("" when none does)

    @property
    def promoted(self) -> bool:
        return self.alias == CHAMPION


def register_and_gate(
    run: Run,
    model_uri: str,
    model_name: str,
    metrics: dict[str, float],
    metric: str,
    baselines: dict[str, str],
    margin: float = 0.0,
    greater_is_better: bool = False,
    degenerate: float | None = None,
    baseline_of: str = "",
) -> GateDecision:
    """Register a new version and give it `champion` or `challenger` by `judge`'s rules
    (baselines: name -> metric key of that baseline on the same data). The reason, naming
    the rule that decided, is written to the run and the model version; the version's tags
    record the decision at registration (`gate_decision`), which stays true when the alias
    later moves.

    `baseline_of`: the version is that baseline itself (the run's model lost to it), with
    `metrics[metric]` the baseline's figure. It is judged against the champion alone (rules
    1, 3, 5-7), gets the `baseline` alias (`champion` too if it wins) and a `baseline` tag;
    the run's own tags keep the recurrent model's decision."""
    client = run.client
    try:
        client.get_registered_model(model_name)
    except MlflowException:
        client.create_registered_model(
            model_name,
            description="rnnpipe model; aliases champion (serving) and challenger (latest that did not pass the gate)",
        )
    mv = client.create_model_version(model_name, source=model_uri, run_id=run.id)
    value = metrics.get(metric)
    try:
        current = client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        current = None
    champion, identity, differs = None, data_identity(client, run.id, model_uri), ""
    if current is not None:
        champion = (str(current.version), _version_metric(client, current, metric))
        differs = other_data(identity, current.tags or {})
    judged = {} if baseline_of else {n: metrics.get(k) for n, k in baselines.items()}
    verdict = judge(
        metric,
        value,
        judged,
        margin=margin,
        greater_is_better=greater_is_better,
        degenerate=degenerate,
        champion=champion,
        other_data=differs,
    )
    alias, reason = (CHAMPION if verdict.promoted else CHALLENGER), verdict.reason
    if baseline_of:
        reason = f"the {baseline_of} baseline itself, registered because the run's model lost to it; " + reason.replace(
            "; no baseline was scored", ""
        ).replace(" (no baseline was scored)", "")
        client.set_registered_model_alias(model_name, BASELINE, mv.version)
        alias = CHAMPION if verdict.promoted else BASELINE
    client.set_registered_model_alias(model_name, alias, mv.version)
    client.update_model_version(model_name, mv.version, description=reason)
    tags = {
        "gate_decision": "promoted" if verdict.promoted else "not promoted",
        "gate_rule": verdict.rule,
        "gate_reason": reason,
        metric: repr(float(value)) if _defined(value) else str(value),
        **{k: v for k, v in identity.items() if v},
    }
    if baseline_of:
        tags["baseline"] = baseline_of
    for k, v in tags.items():
        client.set_model_version_tag(model_name, mv.version, k, v)
    if baseline_of:
        run.set_tags({"baseline_version": mv.version, "baseline_gate": alias})
    else:
        run.set_tags(
            {
                "gate": alias,
                "gate_rule": verdict.rule,
                "gate_reason": reason,
                "registered_model": model_name,
                "registered_version": mv.version,
            }
        )
    log.info("%s v%s -> %s: %s", model_name, mv.version, alias, reason)
    holder = str(mv.version) if verdict.promoted else (str(current.version) if current is not None else "")
    return GateDecision(model_name, str(mv.version), alias, reason, verdict.rule, holder)
