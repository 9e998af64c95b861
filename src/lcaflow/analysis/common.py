"""What every analysis shares: opening lca.h5 (its chunk files checked), its layout, and saying where a
number comes from when it comes from a sample of the parameters."""

from __future__ import annotations

import h5py
import numpy as np

from ..errors import CorruptFileError
from ..layout import Layout
from ..storage import Matrix, open_lca

NO_CLASSES_REASON = "the run's loss has no classes (per-class LCA needs cross_entropy on class indices)"

__all__ = ["NO_CLASSES_REASON", "has_classes", "layout_of", "nanmean0", "open_lca", "source_of"]


def layout_of(f: h5py.File, path) -> Layout:
    try:
        return Layout.from_h5(f["layout"])
    except (KeyError, ValueError) as err:
        raise CorruptFileError(f"{path}: layout metadata incomplete ({err}); delete it and rerun assemble") from err


def nanmean0(x: np.ndarray):
    """Mean over axis 0 ignoring NaN; NaN (not a warning) where everything is NaN."""
    x = np.asarray(x, dtype=np.float64)
    n = np.isfinite(x).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.nansum(x, 0) / n, np.nan)


def has_classes(f: h5py.File) -> bool:
    """Whether a run's lca.h5 has per-class LCA (its loss has classes)."""
    return bool(f.attrs.get("per_class", True))


def source_of(m: Matrix, K: int) -> str:
    """Where numbers read from a stored matrix come from, for tables and captions."""
    if m.sampled:
        return f"a sample of {m.shape[1]:,} of the {K:,} parameters (lca.store: sampled)"
    return f"all {K:,} parameters"
