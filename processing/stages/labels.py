"""LabelsStage: run the configured labelers; a labeler's failure is recorded, never fatal."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from processing.labelers import LABELERS, Labeler
from processing.stages.base import Resources, Stage, Work

log = logging.getLogger(__name__)


class LabelsStage(Stage):
    """Each labeler writes ``item.labels[name] = {"model": ..., <output>}`` and
    ``item.models[name]``. One that fails (at setup or on one video) writes
    ``{"model": ..., "error": ...}`` and ``item.errors["labels.<name>"]``; the others run and
    the item does not fail.
    """

    name = "labels"

    def __init__(
        self,
        *,
        labelers: Sequence[str] = ("imagenet", "ocr", "nsfw", "faces", "speech"),
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
        self.counts: dict[str, int] = {}

    @property
    def resources(self) -> Resources:  # type: ignore[override]
        return Resources(num_cpus=1, num_gpus=1 if self.device.startswith("cuda") else 0)

    @classmethod
    def from_config(cls, cfg) -> LabelsStage:
        device = "cuda" if cfg.num_gpus > 0 else "cpu"
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
        return cls(labelers=names, options=options, device=device)

    def setup(self) -> None:
        if self.ready:
            return
        for labeler in self.labelers:
            try:
                labeler.setup()
            except Exception as exc:  # noqa: BLE001 - a missing model disables one labeler only
                self.broken[labeler.name] = f"setup_failed: {type(exc).__name__}: {exc}"[:300]
                log.warning("labeler %s disabled: %s", labeler.name, self.broken[labeler.name])
        self.ready = True

    def _count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def process_batch(self, works: list[Work]) -> list[Work]:
        self.setup()
        for work in works:
            if work.skip:
                continue
            if work.frames is None or len(work.frames) == 0:
                work.item.fail(self.name, "no_frames", "nothing to label")
                self._count("no_frames")
                continue
            for labeler in self.labelers:
                self.run_one(labeler, work)
        return works

    def run_one(self, labeler: Labeler, work: Work) -> None:
        item = work.item
        error = self.broken.get(labeler.name)
        if error is None:
            try:
                output = labeler.label(work)
                item.labels[labeler.name] = {"model": labeler.model, **output}
                item.models[labeler.name] = labeler.model
                self._count(f"{labeler.name}/ok")
                return
            except Exception as exc:  # noqa: BLE001 - one labeler must not sink the others
                error = f"labeler_error: {type(exc).__name__}: {exc}"[:300]
        item.labels[labeler.name] = {"model": labeler.model, "error": error}
        item.errors[f"labels.{labeler.name}"] = error
        self._count(f"{labeler.name}/error")
