"""The language model's batch input (prompts) checked before a job starts; free of torch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rnnpipe.io import check_text_column

if TYPE_CHECKING:
    pass


PROMPT_COLUMN = "prompt"  # what a served or batch language model reads


def check_prompts_input(raw_config: dict[str, Any], path: str | Path, fmt: str = "auto", saved: Any = None) -> None:
    check_text_column(path, fmt, [PROMPT_COLUMN])
