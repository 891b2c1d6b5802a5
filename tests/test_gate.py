"""The champion gate: nothing is promoted on evidence that cannot judge it."""

import math

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from rnnpipe.gate import GATE_RULES, degenerate_value, judge, register_and_gate
from rnnpipe.registry import Run, configure_tracking

F1 = dict(greater_is_better=True, degenerate=0.0)


def test_undefined_metric_never_passes():
    for value in (float("nan"), None, math.inf):
        v = judge("test_f1_onset", value, {"logreg": 0.4}, **F1)
        assert not v.promoted and v.rule == "undefined-metric" and "[undefined-metric]" in v.reason


def test_undefined_baseline_never_passes():
    v = judge("test_f1_onset", 0.6, {"logreg": 0.4, "rule": float("nan")}, **F1)
    assert not v.promoted and v.rule == "undefined-baseline" and "rule baseline" in v.reason


def test_a_tie_at_the_degenerate_value_does_not_promote():
    v = judge("test_f1_onset", 0.0, {"majority": 0.0, "rule": 0.0, "logreg": 0.0}, **F1)
    assert not v.promoted and v.rule == "degenerate"
    assert "no baseline" not in v.reason and "ties the majority baseline" in v.reason
    # the same holds with no baseline at all, and for ROC-AUC at chance
    assert judge("test_f1", 0.0, {}, **F1).rule == "degenerate"
    assert degenerate_value("test_roc_auc_onset", True) == 0.5 and degenerate_value("test_mae", False) is None
    assert judge("test_roc_auc", 0.5, {}, greater_is_better=True, degenerate=0.5).rule == "degenerate"


def test_no_baseline_is_said_only_when_none_was_scored():
    with_zero = judge("test_mae", 1.0, {"naive": 0.0}, margin=0.05)
    assert with_zero.rule == "baseline" and "no baseline" not in with_zero.reason
    first = judge("test_mae", 1.0, {})
    assert first.promoted and first.rule == "first" and "no baseline was scored" in first.reason


def test_baseline_margin_and_wording():
    lose = judge("test_mae", 1.10, {"naive": 1.0}, margin=0.05)
    assert not lose.promoted and lose.rule == "baseline" and "loses to the naive baseline" in lose.reason
    assert lose.reason.endswith("by 10.0%, more than the allowed 5.0%")
    # with no margin (the default) there is no allowance to speak of
    assert judge("test_mae", 1.10, {"naive": 1.0}).reason.endswith("loses to the naive baseline (1.0000) by 10.0%")
    within = judge("test_mae", 1.0001, {"naive": 1.0}, margin=0.05)
    assert within.promoted and "within the 5.0% margin of the naive baseline" in within.reason
    assert "loses" not in within.reason
    beat = judge("test_f1_onset", 0.5, {"logreg": 0.45, "rule": 0.39}, **F1)
    assert beat.promoted and "beats the logreg baseline" in beat.reason


def test_champion_rules():
    assert judge("test_mae", 0.9, {"naive": 1.0}, champion=("3", 0.8)).rule == "champion"
    assert not judge("test_mae", 0.9, {"naive": 1.0}, champion=("3", 0.8)).promoted
    assert judge("test_mae", 0.7, {"naive": 1.0}, champion=("3", 0.8)).promoted
    undefined = judge("test_mae", 0.9, {"naive": 1.0}, champion=("3", float("nan")))
    assert undefined.promoted and undefined.rule == "champion-undefined"
    assert set(GATE_RULES) >= {"undefined-metric", "degenerate", "baseline", "first", "champion"}
    other = judge(
        "test_mae",
        0.5,
        {"naive": 1.0},
        champion=("3", 2.8),
        other_data="bundled:stocks.parquet, this run on /home/me/prices.csv",
    )
    assert not other.promoted and other.rule == "other-data"
    assert "champion v3 was trained on bundled:stocks.parquet, this run on /home/me/prices.csv" in other.reason
    # no champion yet: nothing to compare with, the first is promoted on whatever data
    assert judge("test_mae", 0.5, {"naive": 1.0}, other_data="x").rule == "first"


def test_a_champion_of_other_data_is_not_compared_with(tracking):
    """A lower MAE on another data set (one series at ~200 $ against three tickers) does
    not take the champion; the same data does, wherever the bundled file is installed."""

    def register(value, source, name="gate-data"):
        run = Run.start("gate-tests", tags={"data_source": source})
        run.log_metrics({"test_mae": value, "naive_test_mae": 9.0})
        return register_and_gate(
            run,
            f"runs:/{run.id}/model",
            name,
            {"test_mae": value, "naive_test_mae": 9.0},
            "test_mae",
            {"naive": "naive_test_mae"},
        )

    from rnnpipe.settings import bundled_dir

    bundled = register(2.81, str(bundled_dir() / "stocks.parquet"))
    assert bundled.promoted
    tags = tracking.get_model_version("gate-data", bundled.version).tags
    assert tags["data_source"] == "bundled:stocks.parquet"
    own = register(1.59, "/home/me/prices.csv")
    assert own.alias == "challenger" and own.rule == "other-data" and "bundled:stocks.parquet" in own.reason
    assert str(tracking.get_model_version_by_alias("gate-data", "champion").version) == bundled.version
    again = register(2.7, f"{bundled_dir()}/../data/./stocks.parquet")  # the same file, spelt otherwise
    assert again.promoted and again.rule == "champion"


@pytest.fixture(scope="module")
def tracking(home):
    configure_tracking()
    return MlflowClient()


def _register(metrics, name, **kw):
    run = Run.start("gate-tests")
    run.log_metrics({k: v for k, v in metrics.items() if math.isfinite(v)})
    spec = dict(
        metric="test_f1_onset",
        baselines={b: f"{b}_test_f1_onset" for b in ("majority", "rule", "logreg")},
        greater_is_better=True,
        degenerate=0.0,
    )
    spec.update(kw)
    return register_and_gate(run, f"runs:/{run.id}/model", name, metrics, **spec), run


def test_register_and_gate_refuses_the_model_that_can_never_alert(tracking):
    """The reported failure: no event in test, F1 0 for the model and all three baselines."""
    metrics = {
        "test_f1_onset": 0.0,
        "majority_test_f1_onset": 0.0,
        "rule_test_f1_onset": 0.0,
        "logreg_test_f1_onset": 0.0,
    }
    decision, run = _register(metrics, "gate-degenerate")
    assert decision.alias == "challenger" and decision.rule == "degenerate"
    assert "no baseline" not in decision.reason
    with pytest.raises(MlflowException):
        tracking.get_model_version_by_alias("gate-degenerate", "champion")
    tags = tracking.get_model_version("gate-degenerate", decision.version).tags
    assert tags["gate_decision"] == "not promoted" and tags["gate_rule"] == "degenerate"
    assert tracking.get_run(run.id).data.tags["gate_rule"] == "degenerate"


def test_register_and_gate_refuses_nan_and_missing_metrics(tracking):
    nan = {
        "test_f1_onset": float("nan"),
        "majority_test_f1_onset": 0.0,
        "rule_test_f1_onset": 0.3,
        "logreg_test_f1_onset": 0.4,
    }
    assert _register(nan, "gate-nan")[0].rule == "undefined-metric"
    missing = {k: v for k, v in nan.items() if k != "test_f1_onset"}  # e.g. a sweep dropped it
    assert _register(missing, "gate-nan")[0].alias == "challenger"


def test_version_tags_stay_true_after_the_alias_moves(tracking):
    good = {"test_f1_onset": 0.5, "majority_test_f1_onset": 0.0, "rule_test_f1_onset": 0.3, "logreg_test_f1_onset": 0.4}
    first, _ = _register(good, "gate-moves")
    better, _ = _register({**good, "test_f1_onset": 0.6}, "gate-moves")
    assert first.promoted and better.promoted and better.rule == "champion"
    old = tracking.get_model_version("gate-moves", first.version)
    assert "gate" not in old.tags and old.tags["gate_decision"] == "promoted"  # at registration
    assert str(tracking.get_model_version_by_alias("gate-moves", "champion").version) == better.version


def test_a_baseline_that_wins_is_registered_as_a_servable_version(tracking):
    """The model lost to its baseline: the baseline itself is registered beside it, judged
    against the champion only, and its own figure (not its run's) is what later versions
    must beat."""
    lost = {"test_f1_onset": 0.3, "majority_test_f1_onset": 0.0, "rule_test_f1_onset": 0.2, "logreg_test_f1_onset": 0.4}
    decision, run = _register(lost, "gate-baseline")
    assert decision.alias == "challenger" and decision.rule == "baseline"
    base = register_and_gate(
        run,
        f"runs:/{run.id}/baseline",
        "gate-baseline",
        {"test_f1_onset": 0.4},
        "test_f1_onset",
        {"logreg": "logreg_test_f1_onset"},
        greater_is_better=True,
        degenerate=0.0,
        baseline_of="logreg",
    )
    assert base.alias == "champion" and base.rule == "first" and "logreg baseline itself" in base.reason
    for alias in ("champion", "baseline"):
        assert str(tracking.get_model_version_by_alias("gate-baseline", alias).version) == base.version
    tags = tracking.get_model_version("gate-baseline", base.version).tags
    assert tags["baseline"] == "logreg" and float(tags["test_f1_onset"]) == 0.4
    run_tags = tracking.get_run(run.id).data.tags
    assert run_tags["gate"] == "challenger" and run_tags["baseline_version"] == base.version
    # the champion's figure is its tag (0.4), not its run's test_f1_onset (0.3)
    not_enough, _ = _register({**lost, "test_f1_onset": 0.35, "logreg_test_f1_onset": 0.3}, "gate-baseline")
    assert not not_enough.promoted and not_enough.rule == "champion" and "(0.4000)" in not_enough.reason
    # a baseline that does not beat the champion keeps only the baseline alias
    better, run2 = _register({**lost, "test_f1_onset": 0.6, "logreg_test_f1_onset": 0.3}, "gate-baseline")
    again = register_and_gate(
        run2,
        f"runs:/{run2.id}/baseline",
        "gate-baseline",
        {"test_f1_onset": 0.3},
        "test_f1_onset",
        {},
        greater_is_better=True,
        degenerate=0.0,
        baseline_of="logreg",
    )
    assert better.promoted and again.alias == "baseline" and not again.promoted
    assert str(tracking.get_model_version_by_alias("gate-baseline", "champion").version) == better.version
