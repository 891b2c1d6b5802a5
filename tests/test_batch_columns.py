"""Batch prediction keeps every input column beside the predictions, also when a labelled
file's columns are named like the model's outputs."""

import pandas as pd

from rnnpipe.batch_jobs import predict_to_file
from rnnpipe.io import open_dataset


def classify(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "label": ["great" if "good" in t else "other" for t in df["text"]],
            "prob_great": [0.9 if "good" in t else 0.2 for t in df["text"]],
        }
    )


def test_a_labelled_file_keeps_its_label_as_input_label(tmp_path):
    src = tmp_path / "labelled.csv"
    pd.DataFrame(
        {
            "id": [1, 2, 3],
            "text": ["good tea", "bad tea", "good"],
            "label": ["great", "great", "other"],
            "model_name": ["x", "y", "z"],
        }
    ).to_csv(src, index=False)
    dataset, _ = open_dataset(src)
    out = tmp_path / "scored.parquet"
    predict_to_file(classify, ["text"], {"model_name": "reviews-sentiment"}, dataset, out)
    got = pd.read_parquet(out)
    assert list(got.columns) == ["id", "input_label", "input_model_name", "label", "prob_great", "model_name"]
    assert got["input_label"].tolist() == ["great", "great", "other"]
    assert got["label"].tolist() == ["great", "other", "great"]
    assert (got["model_name"] == "reviews-sentiment").all() and got["input_model_name"].tolist() == ["x", "y", "z"]
