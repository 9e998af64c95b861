"""What the figures drawn from the analysis tables share: reading a table's JSON, and writing numbers and
p-values into titles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def read_json(path) -> dict:
    return json.loads(Path(path).read_text())


def num(value, spec: str = ".3g", suffix: str = "") -> str:
    """A number for a title; 'n/a' where the analysis could not measure it (null in its JSON)."""
    return "n/a" if value is None or not np.isfinite(value) else f"{value:{spec}}{suffix}"


def fmt_p(p) -> str:
    return "n/a" if p is None or not np.isfinite(p) else f"{p:.2g}"


def sampled_note(source: str | None) -> str:
    """A title's note when its numbers come from the stored sample of the parameters (lca.store: sampled)."""
    return f"\n(from {source})" if source and "sample" in source else ""
