"""Stage logging: progress lines with rate and ETA, and one-line errors for user mistakes."""

from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager

from .errors import LCAError

log = logging.getLogger("lcaflow")


def setup_logging(log_path: str | None = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", handlers=handlers, force=True)


class Progress:
    """Logs `done/total`, rate and ETA at most every `every_s` seconds (and at the end)."""

    def __init__(self, label: str, total: int, every_s: float = 10.0):
        self.label, self.total, self.every_s = label, total, every_s
        self.start = self.last = time.perf_counter()
        self.done = 0

    def update(self, done: int, extra: str = "") -> None:
        self.done = done
        now = time.perf_counter()
        if now - self.last < self.every_s and done < self.total:
            return
        self.last = now
        elapsed = now - self.start
        rate = done / elapsed if elapsed > 0 else float("inf")
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        log.info(f"{self.label}: {done}/{self.total} iterations, {rate:.2f} it/s, ETA {eta:.0f} s {extra}".rstrip())


@contextmanager
def stage(name: str, log_path: str | None = None):
    """Run a stage: progress to the log file; a user error ends it with one line and exit status 1."""
    setup_logging(log_path)
    log.info(f"stage {name} started")
    try:
        yield
    except LCAError as err:
        log.error(f"ERROR: {err}")
        sys.exit(1)
    log.info(f"stage {name} finished")
