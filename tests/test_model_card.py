"""A model card per registered version: generated from the run, shown as the version's
description, logged in the run, and its reproduce recipe (the run's config.toml) loads back
into the very settings the run logged."""

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from rnnpipe import kinds
from rnnpipe.config import flatten, load_config


@pytest.mark.parametrize("name", ["stocks", "monitor", "reviews", "lm"])
def test_every_registered_version_has_a_model_card_read_off_its_run(models, name):
    client = MlflowClient()
    model_name, version = models[name]
    mv = client.get_model_version(model_name, version)
    card = mv.description
    run = client.get_run(mv.run_id)
    assert card.startswith(f"# {model_name} v{version}")
    for section in ("## Intended use", "## Data", "## Metrics on the test part", "## Training", "## Reproduce"):
        assert section in card, section
    assert run.data.tags["data_fingerprint"] in card
    alias = f"**Alias at registration: `{run.data.tags['gate']}`.** "
    assert alias in card and card.split(alias)[1][0].isupper()  # the gate's reason, as a sentence
    cfg = _config(name, run)
    metric = kinds.load(kinds.get(name).gate)(cfg)["metric"]
    value = run.data.metrics[metric]
    assert f"| {metric[len('test_') :]} | **{value:.5g}**" in card  # the gate's score, the model's figure
    table = card.split("## Metrics on the test part")[1].split("\n## ")[0]
    assert table.count("**") == 2  # only the gate's row is bold, not every score (nor counts such as tp)
    logged = Path(client.download_artifacts(mv.run_id, f"model_card/{model_name}-v{version}.md")).read_text()
    assert logged == card


def _config(name: str, run):
    """The run's settings, read back from its config.toml (the card's reproduce recipe)."""
    path = MlflowClient().download_artifacts(run.info.run_id, "config.toml")
    cfg = load_config(kinds.get(name).config_class(), path=path)
    as_params = {k: json.dumps(v) if isinstance(v, (list, dict)) else str(v) for k, v in flatten(cfg).items()}
    assert as_params.items() <= run.data.params.items()  # the very settings the run logged
    assert set(run.data.params) - set(as_params) <= {"kind"}  # (the pyfunc's model_config)
    return cfg


def test_a_card_says_where_the_model_loses_to_a_baseline(models):
    client = MlflowClient()
    model_name, version = models["stocks"]
    mv = client.get_model_version(model_name, version)
    metrics = client.get_run(mv.run_id).data.metrics
    card = mv.description
    section = card.split("## Where it does not beat its baselines")[1].split("##")[0]
    losses = [b for b in ("naive", "ridge") if metrics[f"{b}_test_mae"] < metrics["test_mae"]]
    for b in losses:
        assert f"`mae`: {metrics['test_mae']:.5g} vs {b} {metrics[f'{b}_test_mae']:.5g}" in section
    if not losses and metrics.get("gbm_test_mae", float("inf")) >= metrics["test_mae"]:
        assert "beats or ties every baseline" in section or "`mae`" not in section


def test_a_baseline_versions_card_says_whose_training_it_shows(models):
    """A version that is a baseline (its run's model lost) was not trained: the card's training
    section must say that its figures are the recurrent model's."""
    from types import SimpleNamespace

    from rnnpipe.model_card import model_card

    client = MlflowClient()
    model_name, version = models["stocks"]
    run_id = client.get_model_version(model_name, version).run_id
    metrics = client.get_run(run_id).data.metrics
    decision = SimpleNamespace(model_name=model_name, version="99", alias="challenger", reason="lost to nothing")
    gated = {"test_mae": metrics["naive_test_mae"]}  # what the registration passes: the baseline's score
    card = model_card(run_id, decision, gated, "test_mae", {"naive": "naive_test_mae"}, False, baseline_of="naive")
    header = next(line for line in card.splitlines() if line.startswith("| score | model |"))
    row = next(line for line in card.splitlines() if line.startswith("| mae |"))
    cells = dict(zip(*([c.strip() for c in line.strip("|").split("|")] for line in (header, row))))
    assert cells["rnn"] == f"{metrics['test_mae']:.5g}"  # the recurrent model's own MAE, not the baseline's
    training = card.split("## Training")[1].split("## Reproduce")[0]
    assert "The `naive` baseline is not trained" in training
    assert training.index("recurrent model") < training.index("- best_epoch")
    assert f"| mae | **{metrics['naive_test_mae']:.5g}**" in card  # the baseline's own figure in bold
