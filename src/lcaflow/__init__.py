"""Loss Change Allocation (Lan et al., NeurIPS 2019) as a reproducible workflow.

For your own training loop and notebooks:

- `lcaflow.TrajectoryRecorder(path, model)`: record theta_t after every optimizer step, then point
  `runs.<run>.trajectory` at the file (docs/own-model.md).
- `lcaflow.open_run("results/runs/<run>")`: read a run's LCA, groups, classes and grounding (docs/notebook.md).
"""

__version__ = "0.1.0"
__all__ = ["TrajectoryRecorder", "open_run"]


def __getattr__(name):  # lazy: `import lcaflow` stays light (no torch) for the workflow's quick stages
    if name == "TrajectoryRecorder":
        from .trajectory import TrajectoryRecorder

        return TrajectoryRecorder
    if name == "open_run":
        from .reader import open_run

        return open_run
    raise AttributeError(f"module 'lcaflow' has no attribute {name!r}")
