"""The monitor's steps (`rnnpipe.steps`): ingest -> resample and window -> train the
early-warning classifier -> evaluate against the baselines -> (the channel forecaster, as a
child run) -> register."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, ClassVar

from rnnpipe.pipelines.monitor.config import MonitorConfig
from rnnpipe.steps import Context, Evaluated, TrainingSteps, open_run, run_status

log = logging.getLogger(__name__)


def _streamed(prepared) -> bool:
    from rnnpipe.pipelines.monitor.streaming import StreamedMonitor

    return isinstance(prepared, StreamedMonitor)


class MonitorSteps(TrainingSteps):
    kind: ClassVar[str] = "monitor"

    def ingest(self, cfg: MonitorConfig, ctx: Context):
        """The readings, or for streamed training (`data.streaming`) the shards they lie in."""
        from rnnpipe.pipelines.monitor.data import Shards, load_monitor_data

        data = load_monitor_data(cfg)
        if isinstance(data, Shards):
            log.info(
                "streamed training: %d readings of %d patients in %d shards of %s",
                len(data),
                len(data.series),
                len(data.files),
                data.source,
            )
        else:
            log.info(
                "read %d readings of %d patients from %s (sha256 %s)",
                len(data),
                len(data.series),
                data.source,
                data.fingerprint[:12],
            )
        return data

    def prepare(self, data, cfg: MonitorConfig, ctx: Context):
        """Grid, split, scaling and windows; for a streamed data set, one pass over its shards
        (checks and exact window counts) and the scaler fitted on a sample of training patients,
        followed shard by shard in a progress display."""
        from rnnpipe.pipelines.monitor.artefact import prepare_monitor
        from rnnpipe.pipelines.monitor.data import Shards

        on_shard = None
        if isinstance(data, Shards):
            on_shard = ctx.artifacts.progress("monitor-shards", f"{len(data.files)} shards of {data.source}")
        p = prepare_monitor(data, cfg, on_shard)
        rows = [{"part": k, **v} for k, v in p.counts().items()]
        ctx.artifacts.table("monitor-windows", rows, f"split: {p.split_kind}")
        log.info("split %s; windows %s", p.split_kind, p.counts())
        if _streamed(p):
            s = p.sample
            log.info(
                "scaler and baselines fitted on %d of %d training patients (%d readings, data.stream_sample_rows=%d)",
                s["patients"],
                s["of_patients"],
                s["readings"],
                cfg.data.stream_sample_rows,
            )
        return p

    def data_summary(self, data, prepared) -> dict[str, Any]:
        out = {"patients": prepared.patients, "split": prepared.split_kind, "windows": prepared.counts()}
        if _streamed(prepared):
            out["streamed"] = {"shards": len(data.files), "fitting_sample": prepared.sample}
        return out

    def build(self, cfg: MonitorConfig, prepared, state, run_id: str, ctx: Context):
        from rnnpipe.pipelines.monitor.artefact import MonitorPipeline
        from rnnpipe.registry import Run

        if _streamed(prepared):
            s = prepared.sample
            Run(run_id).set_tags(
                {
                    "streamed": f"{len(prepared.shards.files)} shards; scaler and baselines fitted on "
                    f"{s['patients']} of {s['of_patients']} training patients"
                }
            )
        return MonitorPipeline(cfg, prepared.preprocessor)

    def loss(self, cfg: MonitorConfig, prepared):
        from rnnpipe.pipelines.monitor.artefact import classification_loss

        return classification_loss(cfg, prepared)

    def evaluate(self, pipeline, prepared, result, run_id: str, ctx: Context) -> Evaluated:
        """Model and baselines on test (all and onset windows), thresholds chosen on validation
        (this sets `pipeline.threshold`)."""
        from rnnpipe.evaluation import plot_comparison
        from rnnpipe.pipelines.monitor.artefact import comparison_table, evaluate_monitor
        from rnnpipe.pipelines.monitor.evaluation import plot_confusion
        from rnnpipe.registry import Run

        run = Run(run_id)
        metrics = evaluate_monitor(pipeline, prepared)
        run.log_metrics(metrics)
        table = comparison_table(metrics)
        run.log_dict(table, "metrics/comparison.json")
        run.log_figure(plot_comparison(table), "plots/test_model_vs_baselines.png")
        run.log_figure(plot_confusion(metrics, "test", "", "test, all windows"), "plots/confusion_test.png")
        run.log_figure(
            plot_confusion(metrics, "test", "_onset", "test, onset windows"), "plots/confusion_test_onset.png"
        )
        best = max(table[1:], key=lambda r: r["f1_onset"])
        standing = (
            f"onset F1 {metrics['test_f1_onset']:.3f} vs best baseline {best['method']} {best['f1_onset']:.3f}: "
            + (
                "beats every baseline"
                if metrics["test_f1_onset"] > best["f1_onset"]
                else "does not beat the best baseline"
            )
        )
        run.set_tags({"vs_baselines": standing, "mlflow.note.content": standing, "split": prepared.split_kind})
        ctx.artifacts.table("monitor-test-comparison", table, standing)
        log.info(standing)
        return Evaluated(metrics)

    def profile(self, cfg: MonitorConfig, data, prepared, pipeline, evaluation: Evaluated):
        """The reference of drift reports: the training part's readings on the grid (a seeded
        sample) and the risk of every validation window. Read block by block
        (`train_readings`, `chunks`), so a streamed data set is profiled shard by shard."""
        import numpy as np

        from rnnpipe.drift import SAMPLE_ROWS, profile, sample

        channels, rng = cfg.data.channels, np.random.default_rng(0)
        # every block kept at one rate (from the windows counted while preparing), so a large
        # shard is not under-represented; then one sample of the rest
        rate = min(1.0, 2 * SAMPLE_ROWS / max(prepared.counts()["train"]["windows"], 1))
        blocks, steps = [np.zeros((0, len(channels)))], 0
        for r in prepared.train_readings():
            steps += len(r)
            blocks.append(r if rate == 1.0 else r[rng.random(len(r)) < rate])
        train = sample(np.concatenate(blocks), SAMPLE_ROWS)
        features = {c: train[:, j] for j, c in enumerate(channels)}
        risk = [pipeline.risk(ch.inputs, ch.ends) for ch in prepared.chunks("val")]
        risk = np.concatenate(risk) if risk else np.zeros(0)
        meta = {"train_steps": steps, "val_windows": len(risk), "streamed": _streamed(prepared)}
        return profile(features, {"risk": risk}, cfg.drift, meta=meta)

    def side_runs(self, cfg: MonitorConfig, data, prepared, run_id: str, ctx: Context) -> dict[str, Any]:
        """The optional channel forecaster, as a child run of the monitor run."""
        from rnnpipe.registry import Run

        if not cfg.forecast.enabled:
            return {}
        if _streamed(prepared):
            log.warning(
                "the %s forecaster is not trained on a streamed data set (it needs the whole grid in "
                "memory); set forecast.enabled=false to silence this",
                cfg.forecast.channel,
            )
            Run(run_id).set_tags({"forecast": "skipped: streamed data set"})
            return {}
        return forecast_channel(cfg, prepared, self.data_summary(data, prepared), run_id, ctx)

    def example(self, cfg: MonitorConfig, data, prepared):
        return prepared.example

    def headline(self, cfg, pipeline, evaluation: Evaluated, side) -> dict[str, Any]:
        m = evaluation.metrics
        return {
            "threshold": pipeline.threshold,
            **{k: v for k, v in m.items() if k.endswith("test_f1_onset") or k.endswith("test_f1")},
            **{f"forecast_{k}": side[k] for k in ("test_mae", "naive_test_mae", "ridge_test_mae") if k in side},
        }


def forecast_channel(cfg: MonitorConfig, prepared, data_summary, parent_run_id: str, ctx: Context) -> dict[str, float]:
    """Train and score the channel forecaster in a child run of `parent_run_id`: its metrics."""
    from rnnpipe.pipelines.forecast.artefact import ForecastPipeline
    from rnnpipe.pipelines.monitor.channel_forecast import prepare_channel_forecast
    from rnnpipe.steps import train_model

    fc, fp = ctx.do("prepare-forecast", prepare_channel_forecast, prepared, cfg)
    log.info("%s forecaster windows: %s", cfg.forecast.channel, fp.counts())
    child_ctx = dataclasses.replace(
        ctx,
        resume=False,
        parent_run_id=parent_run_id,
        run_name=f"{ctx.run_name or 'monitor'}-{cfg.forecast.channel}-forecaster",
    )
    args = (fc, "monitor-forecaster", prepared.fingerprint, str(prepared.source), data_summary, child_ctx)
    child, checkpoint = ctx.do("start-run", open_run, *args, io=True)
    with run_status(child, ctx.killed):
        pipeline = ForecastPipeline(fc, fp.preprocessor)
        train, val = fp.windows("train"), fp.windows("val")
        ctx.do("train", train_model, pipeline.model, train, val, fc, child, checkpoint, child_ctx)
        channel = cfg.forecast.channel
        return ctx.do("evaluate-forecast", evaluate_forecast, pipeline, fp, child, parent_run_id, channel)


def evaluate_forecast(pipeline, prepared, run_id: str, parent_run_id: str, channel: str) -> dict[str, float]:
    """The channel forecaster against the last value, ridge and the statistical models; the
    summary also on the parent run (`forecast_test_mae`, `forecast_autoets_test_mae`, ...)."""
    from rnnpipe.pipelines.monitor.channel_forecast import evaluate_channel_forecast
    from rnnpipe.registry import Run

    ev = evaluate_channel_forecast(pipeline, prepared)
    m = ev.metrics
    run = Run(run_id)
    run.log_metrics(m)
    for path, fig in ev.figures().items():
        run.log_figure(fig, path)
    standing = (
        f"{channel} forecast test MAE {m['test_mae']:.3f} vs last value {m['naive_test_mae']:.3f} "
        f"and ridge {m['ridge_test_mae']:.3f}: "
        + ("beats both" if m["test_mae"] < min(m["naive_test_mae"], m["ridge_test_mae"]) else "does not beat both")
    )
    run.set_tags(
        {"mlflow.note.content": "\n\n".join(filter(None, [standing, ev.interval_standing()])), "vs_baselines": standing}
    )
    scores = ("test_mae", "test_rmse", "test_mase", "test_mae_last_step", "test_pinball", "test_coverage_80")
    keys = [
        k
        for name in ["", *ev.names()]
        for k in (
            *(f"{name + '_' if name else ''}{s}" for s in (*scores, "test_interval_width")),
            *([f"test_mae_vs_{name}"] if name else []),
        )
    ]
    Run(parent_run_id).log_metrics({f"forecast_{k}": m[k] for k in keys if k in m})
    Run(parent_run_id).set_tags({"forecast_run_id": run_id, "forecast_vs_baselines": standing})
    log.info(standing)
    return m
