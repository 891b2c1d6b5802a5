"""Where every benchmark writes its figures: bench/results/<name>-<time>.json (git-ignored)."""

from __future__ import annotations

import json
import time
from pathlib import Path


def write_results(name: str, results: dict) -> Path:
    out = Path(__file__).resolve().parent / "results" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return out
