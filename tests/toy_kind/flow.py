"""The toy kind's training flow: thin Prefect over the library part, with the shared tasks
every shipped flow uses (start the MLflow run, register behind the gate)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from rnnpipe.config import from_dict, to_dict
from rnnpipe.registry import Run, configure_tracking, gate_spec
from rnnpipe.tasks.common import register, run_status, start_run
from toy_kind import ToyConfig, fit_and_score, load_values


@flow(name="train-toy")
def train_toy(config: dict[str, Any] | None = None, resume: bool = False) -> dict[str, Any]:
    cfg = from_dict(ToyConfig, config or to_dict(ToyConfig())).validate()
    configure_tracking()
    frame = load_values(cfg)
    fingerprint = str(pd_hash(frame))
    run_id, _ = start_run(cfg, "toy", fingerprint, cfg.data.path, {"rows": len(frame)}, resume)
    with run_status(run_id):
        model, metrics = fit_and_score(cfg, frame)
        Run(run_id).log_metrics(metrics)
        decision = register(model, frame.head(5), metrics, run_id, cfg.register.model_name, **gate_spec("toy", cfg))
    return {
        "model_name": decision.model_name,
        "version": decision.version,
        "alias": decision.alias,
        "reason": decision.reason,
        "run_id": run_id,
        "experiment": cfg.register.experiment,
    }


def pd_hash(frame) -> str:
    import hashlib

    import pandas as pd

    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()
