"""The time axis of a run's figures, defined once: the iteration for a run whose rows are optimizer steps
(trained by lcaflow, or recorded at every step), the optimizer step for a run whose rows are segments
between kept thetas (checkpoint files, or a recording with every=k: lca.h5's attrs["steps"]).

Tables index time two ways: an iteration t (a row of the LCA, the segment from theta_t to theta_t+1) or a
theta t (a point: the loss at theta_t, a cumulative sum after t iterations). On the step axis a theta is
at its step, steps[t], and an iteration at the end of its segment, steps[t + 1]; on the iteration axis
both stay t, so those figures are drawn as before, byte for byte."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from ..storage import open_lca


@dataclass(frozen=True)
class TimeAxis:
    steps: tuple[int, ...] | None = None  # the training step of each theta (T + 1); None: theta t is step t

    @classmethod
    def of(cls, lca_path) -> TimeAxis:
        """The time axis of the run whose lca.h5 this is."""
        with open_lca(lca_path) as f:
            steps = f.attrs.get("steps")
        return cls(tuple(json.loads(steps)) if steps is not None else None)

    @property
    def label(self) -> str:
        return "iteration" if self.steps is None else "optimizer step"

    def thetas(self, t):
        """Where theta t (a point of the trajectory) is drawn."""
        return t if self.steps is None else np.asarray(self.steps)[np.asarray(t, dtype=int)]

    def iterations(self, t):
        """Where iteration t (a segment) is drawn: at its end on the step axis."""
        return t if self.steps is None else np.asarray(self.steps)[np.asarray(t, dtype=int) + 1]

    def limits(self, ordinary: tuple, pad: float = 0.0) -> tuple:
        """The x limits of iterations' data: `ordinary` on the iteration axis, the end of the first segment to
        the end of the last otherwise (widened by `pad` of that span on each side)."""
        if self.steps is None:
            return ordinary
        lo, hi = (self.steps[1], self.steps[-1]) if len(self.steps) > 2 else (self.steps[0], self.steps[-1])
        return lo - pad * (hi - lo), hi + pad * (hi - lo)

    def name(self, ax, note: str = "") -> None:
        """Label the x axis of `ax` (`note`: what on it, e.g. " (end of window)")."""
        ax.set_xlabel(self.label + note)

    def columns(self, ax) -> None:
        """Tick the x axis of an image whose column t is iteration t: on the step axis each tick says the step
        at the end of its column's segment (on the iteration axis the column index, as matplotlib ticks it)."""
        if self.steps is not None:
            from matplotlib.ticker import FuncFormatter, MaxNLocator

            ends = self.steps[1:]
            ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{ends[int(x)]}" if 0 <= x < len(ends) and x == int(x) else ""))


ITERATIONS = TimeAxis()  # the axis of a run without steps, and of a figure drawn without its lca.h5
