"""The one shape of a processing stage: checked config, ``setup()``, a per-video ``process_one``.

A stage checks its configuration in ``__init__`` (bad config raises ``ValueError`` with a
precise message), is built by the runtime with ``from_config(cfg)``, loads heavy things
(models, indexes) once in ``setup()``, and writes the work of ONE video in
``process_one(work) -> outcome``. The base's ``process_batch`` owns the loop: it skips works
that are already decided (failed, duplicate, rejected), times and counts every call, and
records a failure on the item instead of letting it out: a ``MediaError`` with its code, any
other exception as ``error_code``. So bad media never raises out of a stage and every outcome
is counted. A stage that must see the whole batch at once (one batched model call) overrides
``process_batch`` and still counts into ``self.stats``.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar, Iterator

from crawler.errors import MediaError
from processing.work import Work

ERROR_MAX_CHARS = 300  # what is kept of an unexpected exception's message on the item


@dataclass(frozen=True)
class Resources:
    """What one actor of a stage asks Ray for.

    ``num_gpus`` is taken only when the run has GPUs (``ProcessingConfig.num_gpus > 0``);
    on a CPU-only run every actor asks for CPUs alone.
    """

    num_cpus: float = 1.0
    num_gpus: float = 0.0


class StageStats:
    """A stage's counters since they were last taken: outcomes, videos processed, seconds."""

    def __init__(self):
        self.counts: dict[str, int] = {}
        self.videos, self.seconds = 0, 0.0

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    @contextmanager
    def timer(self, videos: int = 1) -> Iterator[None]:
        """Time the block as the work of ``videos`` videos."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start
            self.videos += videos

    def take(self) -> dict[str, float]:
        """The counters as one dict (``videos`` and ``seconds`` included), then start again."""
        out: dict[str, float] = dict(self.counts)
        if self.videos:
            out["videos"] = self.videos
            out["seconds"] = round(self.seconds, 6)
        self.counts, self.videos, self.seconds = {}, 0, 0.0
        return out


class Stage(ABC):
    """Base class of every processing stage (see the module docstring)."""

    name: ClassVar[str] = "stage"
    resources: ClassVar[Resources] = Resources()
    error_code: ClassVar[str] = "stage_error"  # the outcome of an unexpected exception

    @classmethod
    def from_config(cls, cfg, **overrides) -> Stage:
        """The stage as the workers build it from ``cfg`` (a ``ProcessingConfig``: stages do not
        import it, it imports them); ``overrides`` replace constructor arguments."""
        return cls(**overrides)

    @property
    def stats(self) -> StageStats:
        """This stage's counters (taken by the actor after each batch)."""
        if "_stats" not in self.__dict__:
            self._stats = StageStats()
        return self._stats

    def setup(self) -> None:
        """Load models / indexes. Called once per actor before the first batch."""

    def process_batch(self, works: list[Work]) -> list[Work]:
        """Each undecided work through ``process_one``, timed and counted; the same works back."""
        for work in works:
            if work.skip:
                continue
            with self.stats.timer():
                outcome = self.run_one(work)
            self.stats.count(outcome)
        return works

    def run_one(self, work: Work) -> str:
        """``process_one`` with its failure recorded on the item; returns the outcome code."""
        try:
            return self.process_one(work) or "ok"
        except MediaError as exc:
            work.item.fail(self.name, exc.code, exc.message or None)
            return exc.code
        except Exception as exc:  # noqa: BLE001 - bad media never raises out of a stage
            work.item.fail(self.name, self.error_code, f"{type(exc).__name__}: {exc}"[:ERROR_MAX_CHARS])
            return self.error_code

    @abstractmethod
    def process_one(self, work: Work) -> str | None:
        """Do this stage's work on one video; return an outcome code (None means ``ok``).

        Raise ``MediaError(code, message)`` for a video that cannot be processed.
        """

    def teardown(self) -> None:
        """Release resources (flush indexes to disk...)."""
