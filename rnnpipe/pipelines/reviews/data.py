"""The reviews batch input checked before a job starts; free of torch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rnnpipe.io import check_text_column

if TYPE_CHECKING:
    pass


TEXT_COLUMN = "text"  # what a served or batch reviews model reads (else its training text column)


def check_reviews_input(raw_config: dict[str, Any], path: str | Path, fmt: str = "auto", saved: Any = None) -> None:
    check_text_column(path, fmt, [TEXT_COLUMN, raw_config["data"]["text_col"]])
