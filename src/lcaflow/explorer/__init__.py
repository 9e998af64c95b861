"""Interactive explorers: one self-contained HTML page per run (`run_explorer`) and per experiment
(`experiment_explorer`), drawn with Vega-Lite (built with Altair, the libraries inlined from
vl-convert-python: the `explorer` extra) from a run's reductions and tables. docs/explorer.md."""

from ..errors import LCAError

try:
    import altair  # noqa: F401
    import vl_convert  # noqa: F401
except ImportError as err:
    raise LCAError(
        f"the explorer needs the `explorer` extra ({err.name} is not installed): pip install -e '.[explorer]' (install.sh does)"
    ) from err

from .experiment import experiment_explorer  # noqa: E402
from .run import run_explorer  # noqa: E402

__all__ = ["experiment_explorer", "run_explorer"]
