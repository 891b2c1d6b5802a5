import pytest

from rnnpipe.config import flatten, load_config, to_toml
from rnnpipe.errors import ConfigError
from rnnpipe.pipelines.forecast.config import ForecastConfig


def test_overrides_are_typed_by_the_field():
    cfg = load_config(
        ForecastConfig,
        overrides=[
            "model.hidden_size=128",
            "model.bidirectional=true",
            "data.series=AAPL,IBM",
            'data.features=["Volume"]',
            "train.lr=3e-4",
            "split.val_start=2010-01-01",
            "split.test_start=2011-06-01",
        ],
    )
    assert cfg.model.hidden_size == 128 and cfg.model.bidirectional is True
    assert cfg.data.series == ["AAPL", "IBM"] and cfg.data.features == ["Volume"]
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.split.val_start == "2010-01-01"


def test_param_names_match_config_keys():
    flat = flatten(ForecastConfig())
    assert flat["model.hidden_size"] == 64
    assert flat["window.lookback"] == 60
    assert flat["register.model_name"] == "stocks-forecaster"


@pytest.mark.parametrize(
    "override, words",
    [
        ("model.hiden_size=3", "unknown config key 'model.hiden_size'"),
        ("model.hidden_size=abc", "model.hidden_size: expected int"),
        ("model.cell=transformer", "model.cell='transformer'"),
        ("model.bidirectional=maybe", "expected true or false"),
        ("split.train=0.9", "sum below 1"),
        ("window.lookback=0", "window.lookback=0: must be at least 1"),
        ("model.dropout=1.5", "model.dropout=1.5: must be in [0, 1)"),
        ("split.val_start=2010-01-01", "must be given together"),
        ("nonsense", "expected KEY=VALUE"),
    ],
)
def test_bad_settings_are_named(override, words):
    with pytest.raises(ConfigError, match=None) as err:
        load_config(ForecastConfig, overrides=[override])
    assert words in str(err.value)


def test_toml_round_trip(tmp_path):
    cfg = load_config(ForecastConfig, overrides=["model.cell=gru", "data.series=[]"])
    path = tmp_path / "c.toml"
    path.write_text(to_toml(cfg))
    assert load_config(ForecastConfig, path) == cfg


def test_missing_config_file_is_a_user_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found.*bundled configs: electricity-day-ahead, "):
        load_config(ForecastConfig, tmp_path / "nope.toml")


def test_a_bundled_config_is_found_by_name_from_any_folder(tmp_path, monkeypatch):
    """`--config configs/weather-day-ahead.toml` (as the docs write it), `weather-day-ahead.toml`
    or `weather-day-ahead` from a folder without configs/: the installed config; a file of the
    user's own at that path wins."""
    monkeypatch.chdir(tmp_path)
    for given in ("configs/weather-day-ahead.toml", "weather-day-ahead.toml", "weather-day-ahead"):
        cfg = load_config(ForecastConfig, given)
        assert (cfg.data.target_col, cfg.window.horizon, cfg.register.model_name) == ("temp", 24, "weather-forecaster")
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "weather-day-ahead.toml").write_text("[window]\nhorizon = 6\n")
    assert load_config(ForecastConfig, "configs/weather-day-ahead.toml").window.horizon == 6
    with pytest.raises(ConfigError, match="config file not found: weather-day-behind"):
        load_config(ForecastConfig, "weather-day-behind")


def test_bundled_sample_defaults_give_way_to_a_users_own_file():
    """With another data.path the three bundled tickers, the bundled reviews test file and its
    id column no longer apply, unless the user sets them; the bundled run keeps them."""
    from rnnpipe.pipelines.lm.config import LMConfig
    from rnnpipe.pipelines.monitor.config import MonitorConfig
    from rnnpipe.pipelines.reviews.config import ReviewsConfig

    assert load_config(ForecastConfig).data.series == ["AAPL", "IBM", "MSFT"]
    own = load_config(ForecastConfig, overrides=["data.path=prices.csv", "data.series_col=symbol"])
    assert own.data.series == [] and own.data.series_name == ""
    kept = load_config(ForecastConfig, overrides=["data.path=prices.csv", "data.series=[KITE]"])
    assert kept.data.series == ["KITE"]
    one = load_config(ForecastConfig, overrides=["data.path=dir/heart.csv", 'data.series_col=""'])
    assert one.data.series_name == "heart"
    with pytest.raises(ConfigError, match="no data.series_col"):
        load_config(ForecastConfig, overrides=["data.path=x.csv", 'data.series_col=""', "data.series=[a]"])
    reviews = load_config(ReviewsConfig, overrides=["data.path=mine.jsonl"])
    assert reviews.data.test_path == "" and reviews.data.id_col == ""
    assert load_config(ReviewsConfig).data.test_path.endswith("data/reviews_test.parquet")  # the installed file
    # a language model of one's own texts is tested on them
    assert load_config(LMConfig, overrides=["data.path=unlabelled.parquet"]).data.test_path == ""
    assert load_config(LMConfig).data.test_path.endswith("data/reviews_test.parquet")
    monitor = load_config(MonitorConfig, overrides=["data.path=v.csv", "data.channels=hr,spo2", "data.event=hr > 120"])
    assert monitor.forecast.channel == "hr" and monitor.data.duplicates == "error"


def test_a_language_model_given_replaces_the_bundled_vectors(tmp_path):
    """pretrain.model brings its own embedding: the default bundled vectors give way, from an
    override or a TOML file, unless the user also names a vector file (then the clash is named)."""
    from rnnpipe.pipelines.reviews.config import BUNDLED_VECTORS, ReviewsConfig
    from rnnpipe.settings import bundled_file

    assert load_config(ReviewsConfig).embed.path == str(bundled_file(BUNDLED_VECTORS))
    assert load_config(ReviewsConfig).embed.freeze
    lm = load_config(ReviewsConfig, overrides=["pretrain.model=reviews-lm@champion"])
    assert (lm.embed.path, lm.embed.freeze, lm.embed.extend_vocab) == ("", False, False)
    path = tmp_path / "c.toml"
    path.write_text('[pretrain]\nmodel = "reviews-lm/3"\n')
    assert load_config(ReviewsConfig, path).embed.path == ""
    with pytest.raises(ConfigError, match="does not go with pretrain.enabled or embed.path='v.txt'"):
        load_config(ReviewsConfig, overrides=["pretrain.model=reviews-lm", "embed.path=v.txt"])
    assert load_config(ReviewsConfig, overrides=['pretrain.model=""']).embed.path == str(bundled_file(BUNDLED_VECTORS))


def test_an_unknown_key_in_a_config_file_names_the_file(tmp_path):
    from rnnpipe.config import load_config
    from rnnpipe.errors import ConfigError
    from rnnpipe.pipelines.forecast.config import ForecastConfig

    path = tmp_path / "mine.toml"
    path.write_text("[model]\nhiden_size = 3\n")
    with pytest.raises(ConfigError, match=r"mine\.toml: unknown config key 'model\.hiden_size'"):
        load_config(ForecastConfig, path)


def test_files_kept_for_later_name_the_users_files_absolutely(tmp_path, monkeypatch):
    """A run's config.toml, a study's best settings and a scheduled deployment are read later,
    from anywhere: their files are the ones the user meant from where they were."""
    from rnnpipe.config import with_absolute_paths
    from rnnpipe.pipelines.reviews.config import ReviewsConfig

    monkeypatch.chdir(tmp_path)
    cfg = load_config(ReviewsConfig, overrides=["data.path=mine.csv", "pretrain.path=sub/more.jsonl"])
    kept = with_absolute_paths(cfg)
    assert kept.data.path == str(tmp_path / "mine.csv") and kept.pretrain.path == str(tmp_path / "sub" / "more.jsonl")
    assert kept.data.test_path == "" and kept.embed.path == cfg.embed.path  # unset stays unset; bundled stays
    assert cfg.data.path == "mine.csv"  # a copy: the run's own settings are as given
    assert f'path = "{tmp_path / "mine.csv"}"' in to_toml(kept)
