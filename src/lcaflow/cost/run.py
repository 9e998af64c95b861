"""A run's costs in one object: what the cost plan reports and what each of its jobs requests."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ..paths import ResultPaths
from ..spec import RunSpec
from . import calibration, disk, memory, time
from .size import RunSize


@dataclass(frozen=True)
class RunCost:
    spec: RunSpec
    lca: dict  # the lca section (speed settings included: a calibration depends on them)
    threads: int
    results: str
    device: str  # where the run's jobs compute: "cpu" or "cuda"

    @functools.cached_property
    def data_path(self) -> str:
        return ResultPaths(self.results).data(self.spec.data_key)

    @functools.cached_property
    def size(self) -> RunSize | None:
        """The run's size; its example groups as its trajectory records them where it exists (else their bound)."""
        size = RunSize.of(self.spec, self.data_path)
        return None if size is None else size.with_recorded_groups(ResultPaths(self.results).run(self.spec.name).trajectory)

    @functools.cached_property
    def calibration(self) -> dict | None:
        """The cached calibration of the run's model on this machine and device, if one was made."""
        import torch

        if self.size is None:
            return None
        cache = ResultPaths(self.results).calibration_dir
        return calibration.cached(self.spec, self.lca, self.threads, self.size, torch.device(self.device), cache, self.data_path)

    def calibrate(self) -> dict:
        """Time the run's model now (or read the cache): the plan's calibration."""
        import torch

        cache = ResultPaths(self.results).calibration_dir
        found = calibration.calibrate(self.spec, self.lca, self.threads, self.size, torch.device(self.device), cache, self.data_path)
        self.__dict__["calibration"] = found
        self.__dict__.pop("seconds", None)
        return found

    @property
    def rates(self) -> time.Rates:
        if self.calibration is not None:
            return time.Rates.calibrated(self.calibration)
        return time.Rates.from_flops(self.size, self.threads, self.device == "cuda")

    @functools.cached_property
    def seconds(self) -> dict | None:
        """Seconds of one job of each kind (time.job_seconds); None while the run's size is unknown."""
        return None if self.size is None else time.job_seconds(self.spec, self.size, self.lca, self.rates)

    def runtime(self, kind: str, attempt: int = 1, chunk: int | None = None) -> str:
        """The runtime a job requests: "train", "gradients" (of job `chunk`), "assemble", "analysis", "figure"."""
        seconds = None if self.seconds is None else self.seconds[kind]
        if isinstance(seconds, list):
            seconds = seconds[chunk] if chunk is not None else max(seconds)
        return f"{time.request_minutes(seconds, attempt)}m"

    def mem_mb(self, kind: str, attempt: int = 1) -> int:
        """The memory a job requests: "train", "gradients", "analysis" (the analyses, heat maps, animation and
        assembly), "figure"."""
        per_kind = {
            "train": lambda: memory.train_mem_mb(self.size),
            "gradients": lambda: memory.gradient_mem_mb(self.size, self.lca),
            "analysis": lambda: memory.analysis_mem_mb(self.size, self.spec.run["iterations"]),
            "figure": lambda: memory.BASE_MEM_MB,
        }
        return per_kind[kind]() * attempt

    def files(self) -> dict[str, int]:
        """{path under results_dir: predicted bytes} of every file of the run."""
        return {path: n for _, path, n in self._files}

    def disk_need(self) -> dict[str, int]:
        """Bytes the whole run takes at its peak, by kind of file (empty while its size is unknown): the need
        that train and adopt_trajectory check against the free space before they start."""
        return disk.by_kind(self._files)

    @functools.cached_property
    def _files(self) -> list:
        return disk.run_files(self.spec, self.size, self.lca, "") if self.size is not None else []
