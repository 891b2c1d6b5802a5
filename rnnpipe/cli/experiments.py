"""Many trainings at once: `rnnpipe sweep`, `rnnpipe backtest` and `rnnpipe tune`."""

from __future__ import annotations

import os

import click

from rnnpipe import kinds
from rnnpipe.cli import (
    Registered,
    _config,
    _echo_registration,
    _plan,
    _preload,
    _run_link,
    cli,
    config_options,
    runner_options,
    user_errors,
)


@cli.command()
@click.argument("pipeline", type=Registered(kinds.names))
@config_options
@click.option(
    "--grid",
    "grid",
    multiple=True,
    metavar="KEY=V1,V2",
    help="A swept setting and its values, e.g. --grid model.cell=lstm,gru (repeatable).",
)
@click.option(
    "--random",
    "random_n",
    type=click.IntRange(min=0),
    default=0,
    help="Draw N combinations of the grid at random instead of all of them.",
)
@runner_options("trial")
@click.option(
    "--threads-per-trial",
    "threads",
    type=click.IntRange(min=0),
    default=0,
    help="torch threads in each trial (default: cores / workers).",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Retries of a failed trial (not for bad config or data).",
)
@click.option(
    "--per-series",
    is_flag=True,
    help="One model per series (ticker, patient), each with its own sweep, best and registered model.",
)
@click.option("--split-gpus", is_flag=True, help="Put trial i on GPU i mod (number of GPUs).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --random.")
@user_errors
def sweep(
    pipeline,
    config_path,
    overrides,
    grid,
    random_n,
    runner,
    address,
    workers,
    threads,
    retries,
    per_series,
    split_gpus,
    seed,
):
    """Train one model per trial of PIPELINE in parallel; pick the best on validation (never on
    test) and register it through the champion gate.

    MLflow shows one parent run with a nested run per trial, and the summary table and plot
    under the parent's `sweep/` artefacts. A trial that fails is reported as failed; the sweep
    fails only if every trial does.

    \b
    Examples:
      rnnpipe sweep stocks --grid model.cell=lstm,gru --grid model.hidden_size=64,128
      rnnpipe sweep stocks --grid model.cell=lstm,gru --runner dask --address tcp://10.0.0.5:8786
      rnnpipe sweep reviews --grid embed.freeze=true,false --grid model.pooling=max,attention --random 4
      rnnpipe sweep stocks --per-series --grid window.lookback=30,60
    """
    from rnnpipe.config import to_dict
    from rnnpipe.sweep import make_trials, parse_grid, trial_config

    cfg = _config(pipeline, config_path, overrides)
    kinds.load(kinds.get(pipeline).ingest)(cfg)  # a bad file fails here; each trial reads the data itself
    space = parse_grid(list(grid))
    trials = make_trials(space, random_n, seed)
    for params in trials:  # a misspelt key or a bad value fails here, before any trial runs
        trial_config(pipeline, to_dict(cfg), params)
    n = len(trials)
    if per_series:  # times the number of series, known only once the data is read
        n = max(n, os.cpu_count() or 1)
    workers, threads = _plan(runner, address, n, workers, threads)
    from rnnpipe.flows.api import flow_api  # light: started before the heavy imports

    with flow_api() as ready:
        from rnnpipe.flows.sweep import sweep as sweep_flow
        from rnnpipe.flows.sweep import task_runner

        flow = sweep_flow.with_options(task_runner=task_runner(runner, workers, address))
        ready()
        out = flow(
            pipeline, to_dict(cfg), space, random_n, seed, workers, threads, retries, per_series, split_gpus, runner
        )
    click.echo("")
    click.echo(
        f"{out['trials']} trials, {out['failed']} failed; best trial {out['best_trial']} "
        f"{out['best_params']} (val loss {out['best_val_loss']:.5f})"
    )
    for d in out["registered"].values():
        click.echo(f"{d['model_name']} v{d['version']} -> {d['alias']}: {d['reason']}")
    click.echo(f"MLflow parent run {out['parent_run_id']}: {_run_link(out['parent_run_id'])}")


@cli.command()
@click.argument("pipeline", type=Registered(kinds.backtest_names))
@config_options
@click.option("--folds", type=click.IntRange(min=1), default=None, help="Folds (default: backtest.folds, 5).")
@click.option(
    "--step",
    type=click.IntRange(min=1),
    default=None,
    help="Rows of each fold's test block, e.g. trading days (default: backtest.step, 60).",
)
@click.option(
    "--refit",
    type=click.Choice(["every", "once"]),
    default=None,
    help="every: train a model per fold; once: fold 1's model serves every fold (default: backtest.refit).",
)
@runner_options("fold")
@user_errors
def backtest(pipeline, config_path, overrides, folds, step, refit, runner, address, workers):
    """Rolling-origin backtest of PIPELINE: fold k trains on every row before its origin and
    forecasts the next STEP rows with the configured horizon; the model, naive (with empirical
    quantiles), ridge, gradient boosting and the statistical baselines are scored per fold and
    overall.

    MLflow shows one parent run (tag backtest=true; metrics backtest_mae, backtest_mase,
    naive_backtest_mae, ...) with a nested run per fold (tag backtest_fold=K), the table
    backtest/folds.json and the plot backtest/mae_by_fold.png. Nothing is registered.

    \b
    Examples:
      rnnpipe backtest stocks
      rnnpipe backtest stocks --folds 10 --step 20 --refit once
      rnnpipe backtest stocks --runner dask --workers 2
    """
    from rnnpipe.config import to_dict

    extra = [f"backtest.{k}={v}" for k, v in (("folds", folds), ("step", step), ("refit", refit)) if v is not None]
    cfg = _config(pipeline, config_path, [*overrides, *extra])
    _preload(pipeline, cfg)
    n = cfg.backtest.folds if cfg.backtest.refit == "every" else 1
    workers, threads = _plan(runner, address, n, workers, 0)
    from rnnpipe.flows.api import flow_api  # light: started before the heavy imports

    with flow_api() as ready:
        from rnnpipe.flows.sweep import task_runner

        flow = kinds.load(kinds.get(pipeline).backtest)
        ready()
        out = flow.with_options(task_runner=task_runner(runner, workers, address))(
            to_dict(cfg), workers, threads, runner
        )
    click.echo("")
    rows = out["folds"]
    cols = [c for c in rows[0] if c.endswith("_mae") or c in ("fold", "origin", "model_coverage_80")]
    click.echo("  ".join(f"{c:>14}" for c in cols))
    for r in rows:
        click.echo("  ".join(f"{r[c]:>14.4f}" if isinstance(r[c], float) else f"{r[c]!s:>14}" for c in cols))
    click.echo(out["standing"])
    click.echo(
        f"MLflow parent run {out['parent_run_id']} in experiment {out['experiment']}: {_run_link(out['parent_run_id'])}"
    )


@cli.command()
@click.argument("pipeline", type=Registered(kinds.names))
@config_options
@click.option(
    "--trials",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Finished trials the study should hold (a resumed study counts its own).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=0,
    help="Start no trial after this many seconds (running ones finish); 0: no limit.",
)
@click.option(
    "--study",
    "study_name",
    default="",
    metavar="NAME",
    help="The study's name: an existing one resumes (same space), keeping every finished trial. "
    "Default: PIPELINE-tune, or MODEL_NAME-tune for a model of another name (own data: "
    "sales-forecaster-tune); a study is measured on one data set.",
)
@click.option(
    "--space",
    "space_path",
    type=click.Path(dir_okay=False),
    help="TOML file whose [tune.space] table replaces the default search space (see the docs' tuning page).",
)
@click.option(
    "--pruner",
    type=click.Choice(["median", "halving", "none"]),
    default="median",
    show_default=True,
    help="Stop trials whose validation loss is behind: median, successive halving, or none.",
)
@click.option(
    "--storage",
    default="",
    metavar="URL",
    help="The study storage, an RDB URL every worker reaches (default: a SQLite file beside the MLflow store).",
)
@runner_options("trial")
@user_errors
def tune(
    pipeline,
    config_path,
    overrides,
    trials,
    timeout,
    study_name,
    space_path,
    pruner,
    storage,
    runner,
    address,
    workers,
):
    """Search PIPELINE's settings with Optuna (a seeded TPE sampler), stopping trials whose
    validation loss is behind (the pruner), in parallel on a process pool or Dask; then retrain
    the best settings with the same seed and judge them through the champion gate.

    The objective is the kind's gate metric on validation (val_mae, val_f1_onset,
    val_macro_f1, val_perplexity): the test split chooses nothing. The search space is the
    kind's default, or the [tune.space] table of --config or --space. The best settings are
    written as TOML beside the study (`rnnpipe train PIPELINE --config FILE` reproduces them).

    MLflow shows one parent run per invocation (the optimisation history, parameter
    importances and parallel coordinates under tune/) with a nested run per trial, tagged
    tune_state (COMPLETE, PRUNED, FAIL), and the retrained model's run.

    \b
    Examples:
      rnnpipe tune stocks --trials 30
      rnnpipe tune monitor --trials 30 --runner dask --workers 2
      rnnpipe tune reviews --space space.toml --timeout 3600
      rnnpipe tune stocks --config configs/glucose-forecast.toml --study glucose --trials 30
      rnnpipe tune stocks --config configs/glucose-forecast.toml --study glucose --trials 40  # 10 more
    """
    import importlib.util

    if importlib.util.find_spec("optuna") is None:
        raise click.UsageError("rnnpipe tune needs the tune extra (Optuna): pip install 'rnnpipe[tune]'")
    from rnnpipe import settings
    from rnnpipe.config import to_dict
    from rnnpipe.tune import existing_study, study_spec
    from rnnpipe.tune_space import default_space, parse_space, read_space

    cfg = _config(pipeline, config_path, overrides, skip=("tune",))
    space = (read_space(space_path) if space_path else None) or (read_space(config_path) if config_path else None)
    space = space or default_space(pipeline)
    parse_space(pipeline, space, to_dict(cfg))  # an unknown key or a bad range fails here, before any worker
    _preload(pipeline, cfg)
    bundled_name = kinds.get(pipeline).config_class()().register.model_name
    own = cfg.register.model_name if cfg.register.model_name != bundled_name else pipeline
    name = study_name or f"{own}-tune"  # a model of its own (own data) gets a study of its own
    spec = study_spec(pipeline, cfg, name, space, pruner, storage)
    existing_study(spec)  # a study of this name with another space fails here
    best_path = settings.mlruns_dir() / "tune" / f"{name}.best.toml"
    workers, threads = _plan(runner, address, trials, workers, 0)
    from rnnpipe.flows.api import flow_api  # light: started before the heavy imports

    with flow_api() as ready:
        from rnnpipe.flows.sweep import task_runner
        from rnnpipe.flows.tune import tune as tune_flow

        flow = tune_flow.with_options(task_runner=task_runner(runner, workers, address))
        ready()
        out = flow(pipeline, to_dict(cfg), vars(spec), trials, timeout, workers, threads, runner, str(best_path))
    click.echo("")
    counts = ", ".join(f"{v} {k.lower()}" for k, v in sorted(out["counts"].items()))
    click.echo(f"study {out['study']} ({out['storage']}): {counts}; {out['epochs_trained']} epochs trained this time")
    click.echo(f"best trial {out['best_trial']}: {out['metric']} = {out['best_value']:.5g} with {out['best_params']}")
    if out["base_value"] == out["base_value"]:  # the starting settings were trial 0 of this study
        click.echo(f"the settings the study started from (trial 0): {out['metric']} = {out['base_value']:.5g}")
    click.echo(f"best settings: {out['best_config']}  (rnnpipe train {pipeline} --config {out['best_config']})")
    _echo_registration(out["retrained"], said=False)
    click.echo(f"MLflow parent run {out['parent_run_id']}: {_run_link(out['parent_run_id'])}")
