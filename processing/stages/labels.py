"""LabelsStage: run the configured labelers; a labeler's failure is recorded, never fatal."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from crawler.errors import MediaError
from processing.labelers import LABELERS, Labeler
from processing.stages.base import ERROR_MAX_CHARS, Resources, Stage
from processing.vision.models import pick_device
from processing.work import Work

log = logging.getLogger(__name__)


class LabelsStage(Stage):
    """Each labeler writes ``item.labels[name] = {"model": ..., <output>}`` and
    ``item.models[name]``. One that fails (at setup or on one video) writes
    ``{"model": ..., "error": ...}`` and ``item.errors["labels.<name>"]``; the others run and
    the item does not fail. Counters: one outcome per video, and ``<labeler>/ok`` or
    ``<labeler>/error`` per labeler run.
    """

    name = "labels"
    resources = Resources(num_cpus=1, num_gpus=1)
    error_code = "labels_error"

    def __init__(
        self,
        *,
        labelers: Sequence[str],
        options: dict[str, dict[str, Any]] | None = None,
        device: str = "cpu",
    ):
        if isinstance(labelers, str):
            labelers = [n.strip() for n in labelers.split(",") if n.strip()]
        unknown = [n for n in labelers if n not in LABELERS]
        if unknown:
            raise ValueError(f"unknown labelers {unknown}; known: {sorted(LABELERS)}")
        if len(set(labelers)) != len(labelers):
            raise ValueError(f"labelers listed twice: {list(labelers)}")
        options = options or {}
        stray = [n for n in options if n not in labelers]
        if stray:
            raise ValueError(f"options given for labelers that are not enabled: {stray}")
        self.device = device
        self.labelers: list[Labeler] = []
        for n in labelers:
            try:
                self.labelers.append(LABELERS[n](**options.get(n, {})))
            except TypeError as exc:
                raise ValueError(f"bad options for labeler {n!r}: {exc}") from exc
        self.broken: dict[str, str] = {}  # labeler name -> setup error
        self.ready = False

    @classmethod
    def from_config(cls, cfg, **overrides) -> LabelsStage:
        device = cfg.device
        names = list(cfg.labelers)
        options: dict[str, dict[str, Any]] = {}
        if "clip_tags" in names:
            options["clip_tags"] = {"model": cfg.clip_model, "device": device}
            if cfg.clip_tags_vocabulary:
                options["clip_tags"]["vocabulary"] = list(cfg.clip_tags_vocabulary)
        if "caption" in names:
            options["caption"] = {"model": cfg.caption_model, "device": device}
        if "transcript" in names:
            options["transcript"] = {"model": cfg.asr_model, "device": device}
        return cls(**{"labelers": names, "options": options, "device": device} | overrides)

    def setup(self) -> None:
        if self.ready:
            return
        if self.device == "auto":  # decided here, where the stage runs (the model actor)
            self.device = pick_device("auto")
        for labeler in self.labelers:
            if labeler.device == "auto":
                labeler.device = self.device
            try:
                labeler.setup()
            except Exception as exc:  # noqa: BLE001 - a missing model disables one labeler only
                self.broken[labeler.name] = f"setup_failed: {type(exc).__name__}: {exc}"[:ERROR_MAX_CHARS]
                log.warning("labeler %s disabled: %s", labeler.name, self.broken[labeler.name])
        self.ready = True

    def process_batch(self, works: list[Work]) -> list[Work]:
        self.setup()
        return super().process_batch(works)

    def process_one(self, work: Work) -> None:
        if not work.has_frames:
            raise MediaError("no_frames", "nothing to label")
        for labeler in self.labelers:
            self.run_labeler(labeler, work)

    def run_labeler(self, labeler: Labeler, work: Work) -> None:
        item = work.item
        error = self.broken.get(labeler.name)
        if error is None:
            try:
                output = labeler.label(work)
                item.labels[labeler.name] = {"model": labeler.model, **output}
                item.models[labeler.name] = labeler.model
                self.stats.count(f"{labeler.name}/ok")
                return
            except Exception as exc:  # noqa: BLE001 - one labeler must not sink the others
                error = f"labeler_error: {type(exc).__name__}: {exc}"[:ERROR_MAX_CHARS]
        item.labels[labeler.name] = {"model": labeler.model, "error": error}
        item.errors[f"labels.{labeler.name}"] = error
        self.stats.count(f"{labeler.name}/error")
