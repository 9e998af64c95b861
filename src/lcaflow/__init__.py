"""Loss Change Allocation (Lan et al., NeurIPS 2019) as a reproducible workflow.

For your own training loop and notebooks:

- `lcaflow.TrajectoryRecorder(path, model)`: record theta_t after every optimizer step, then point
  `runs.<run>.trajectory` at the file (docs/own-model.md).
- `lcaflow.open_run("results/runs/<run>")`: read a run's LCA, groups, classes and grounding (docs/notebook.md).
- `lcaflow.open_runs([...])`: several runs lined up by group, class and iteration (docs/notebook.md).
"""

import importlib

__version__ = "0.1.0"
# The public names, imported on first use: `import lcaflow` stays light (no torch) for the workflow's quick stages.
_LAZY = {"TrajectoryRecorder": ".trajectory", "open_run": ".reader", "open_runs": ".reader"}
__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'lcaflow' has no attribute {name!r}")


def __dir__():  # tab completion lists the lazy names too
    return sorted({*globals(), *_LAZY})
