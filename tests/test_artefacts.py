"""The written contracts (`rnnpipe.artefact`): every kind's fitted pipeline conforms to
`Artefact` and round-trips through save and load with its format version; artefacts saved
before formats were versioned still load and predict as they did; a newer format or another
kind is refused with the reason."""

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from rnnpipe import artefact, kinds
from rnnpipe.batch_input import WHOLE_INPUT
from rnnpipe.errors import ModelError

SAVED = Path(__file__).resolve().parent / "saved_models"


def same_frame(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    for col in want.columns:
        if pd.api.types.is_float_dtype(want[col]):
            np.testing.assert_allclose(got[col].astype(float), want[col], rtol=1e-5, err_msg=col)
        else:
            assert got[col].astype(str).fillna("").tolist() == want[col].astype(str).fillna("").tolist(), col


@pytest.mark.parametrize("kind", ["forecast", "monitor"])
def test_artefacts_saved_before_format_versions_load_and_predict_as_they_did(kind, tmp_path):
    """Saved by the code of before this contract (tests/saved_models/make.py); no format.json."""
    path = shutil.copytree(SAVED / kind, tmp_path / kind)
    assert not (path / artefact.FORMAT_FILE).exists() and artefact.check(path, kind) == 0
    pipe = kinds.artefact_class(kind).load(path)
    assert isinstance(pipe, artefact.Artefact)
    got = pipe.predict(pd.read_csv(SAVED / f"{kind}_input.csv"))
    same_frame(pd.read_csv(pd.io.common.StringIO(got.to_csv(index=False))), pd.read_csv(SAVED / f"{kind}_output.csv"))
    # saved again by today's code: marked, and the same predictions
    again = type(pipe).load(pipe.save(tmp_path / "again"))
    assert (
        json.loads((tmp_path / "again" / artefact.FORMAT_FILE).read_text())["format_version"] == artefact.FORMAT_VERSION
    )
    pd.testing.assert_frame_equal(again.predict(pd.read_csv(SAVED / f"{kind}_input.csv")), got)


def test_a_newer_format_or_another_kind_is_refused_with_the_reason(tmp_path):
    path = shutil.copytree(SAVED / "forecast", tmp_path / "f")
    (path / artefact.FORMAT_FILE).write_text(
        json.dumps({"kind": "forecast", "format_version": 99, "rnnpipe_version": "9.0"})
    )
    with pytest.raises(ModelError, match=r"saved in artefact format 99 by rnnpipe 9\.0; .* upgrade rnnpipe"):
        kinds.artefact_class("forecast").load(path)
    artefact.mark(path, "forecast")
    with pytest.raises(ModelError, match="holds a 'forecast' artefact, not a 'monitor' one"):
        kinds.artefact_class("monitor").load(path)
    (path / artefact.FORMAT_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="not a readable artefact format file"):
        kinds.artefact_class("forecast").load(path)


@pytest.mark.slow
@pytest.mark.parametrize("name", kinds.names())
def test_every_kind_conforms_to_the_artefact_contract(name, models, tmp_path):
    """What the registry, batch jobs and the server rely on, checked for each kind's fitted
    pipeline as the flow registered it."""
    model_name, version = models[name]
    pyfunc = mlflow.pyfunc.load_model(f"models:/{model_name}/{version}")
    pipe, example = pyfunc.unwrap_python_model().pipeline, pyfunc.input_example
    kind = kinds.get(name)
    assert isinstance(pipe, artefact.Artefact) and type(pipe) is kind.pipeline_class()
    assert type(pipe).KIND == kind.artefact and kinds.artefact_class(kind.artefact) is type(pipe)
    # the batch spec names columns the input has, and a grouping column among them (or none)
    columns, group = pipe.batch_spec(list(example.columns))
    assert columns and set(columns) <= set(example.columns), (columns, list(example.columns))
    assert group is None or group == WHOLE_INPUT or group in columns, group
    # save -> load: the format marked, the same predictions
    path = pipe.save(tmp_path / "saved")
    assert artefact.check(path, kind.artefact) == artefact.FORMAT_VERSION
    loaded = type(pipe).load(path)
    pd.testing.assert_frame_equal(loaded.predict(example), pipe.predict(example))
    # a reference profile logged with the model names what `drift_values` gives for raw input
    profile = pyfunc.unwrap_python_model().profile
    if profile is not None:
        features, predictions, *_ = pipe.drift_values(example[columns], pipe.predict(example))
        assert set(features) == set(profile["features"]) and set(predictions) == set(profile["predictions"])


def test_prepared_data_of_every_kind_offers_what_the_flow_reads(stocks):
    from rnnpipe.config import load_config
    from rnnpipe.features.splits import chronological_split
    from rnnpipe.pipelines.forecast.config import ForecastConfig
    from rnnpipe.pipelines.forecast.prepare import ForecastPrepared, prepare
    from rnnpipe.pipelines.lm.prepare import LMPrepared
    from rnnpipe.pipelines.monitor.artefact import MonitorPrepared
    from rnnpipe.pipelines.monitor.streaming import StreamedMonitor
    from rnnpipe.pipelines.reviews.prepare import ReviewsPrepared
    from rnnpipe.series import to_series_frame

    frame = to_series_frame(
        stocks[stocks.Ticker == "IBM"].tail(300), timestamp_col="Date", series_col="Ticker", value_cols=["Close"]
    )
    cfg = load_config(ForecastConfig, overrides=["data.series=[]", "window.lookback=20"])
    p = prepare(frame, chronological_split(frame, 0.7, 0.15), cfg)
    assert isinstance(p, artefact.PreparedData) and p.fingerprint == frame.fingerprint and sum(p.counts().values())
    for cls in (ForecastPrepared, MonitorPrepared, StreamedMonitor, ReviewsPrepared, LMPrepared):
        fields = getattr(cls, "__dataclass_fields__", {})
        missing = [
            m for m in ("preprocessor", "fingerprint", "source", "counts") if not (hasattr(cls, m) or m in fields)
        ]
        assert not missing, (cls.__name__, missing)
