"""FramesStage: sample frames over the whole video with PyAV, a JPEG thumbnail, a short audio track.

Streams are opened through ``processing.vision.decode.open_video_stream``: single-threaded
decoding (the PyAV teardown hang) and the pixel cap (``too_large``) live there.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from pathlib import Path

import numpy as np

from crawler import locations
from crawler.errors import MediaError  # noqa: F401  (re-exported for callers)
from processing.vision.decode import DecodeError, VideoSource, open_video_stream
from processing.stages.base import Resources, Stage
from processing.work import Work

log = logging.getLogger(__name__)


class ReferenceSkip:
    """Switches a decoder between every frame (near the next target time) and reference frames only.

    Decoding runs a few frames ahead of what comes out (B-frame reordering) and, while only
    reference frames are decoded, what comes out jumps ``gap`` seconds at a time; every frame is
    decoded again from ``2 * gap + 4 frames`` before a target, so the first frame at or after it
    is decoded (a pass with and without skipping keeps the same frames: tests/processing/stages/
    test_frames_scenes.py).
    """

    def __init__(self, stream):
        self.ctx = stream.codec_context
        self.frame = 1.0 / float(stream.average_rate or stream.guessed_rate or 25)
        self.gap, self.prev, self.mode = self.frame, None, "DEFAULT"

    def update(self, t: float, target: float | None, every_frame: bool = False) -> None:
        """After a frame at ``t`` s came out, before ``target`` (None: no target left)."""
        if self.prev is not None and t > self.prev:
            self.gap = max(self.gap, t - self.prev)
        self.prev = t
        near = every_frame or (target is not None and t >= target - 2 * self.gap - 4 * self.frame)
        mode = "DEFAULT" if near else "NONREF"
        if mode != self.mode:
            self.ctx.skip_frame = self.mode = mode


class FramesStage(Stage):
    """Decode ``frames_per_video`` frames spread over the whole video (one pass, or seek + decode).

    With ``scenes`` (the run's ScenesStage, given by ``from_config``) one sequential pass keeps
    the frame at each target time and pushes every decoded frame to the scenes' detector, whose
    cuts go on the item for the scenes step (``ScenesStage.record``): the video is decoded once,
    not twice. Without, each target is sought and decoded up to.

    Frames are scaled so their short side is ``frame_size`` (aspect kept; cropping is the
    embedder's business) and stacked as (N, H, W, 3) uint8 RGB. Unseekable files fall back to
    one sequential pass that keeps evenly spaced frames. Audio (mono 16 kHz float32, first
    ``audio_seconds``) goes to ``work.audio`` when the file has an audio track. An unexpected
    decoder error fails the video as ``undecodable``.
    """

    name = "frames"
    resources = Resources(num_cpus=1)
    error_code = "undecodable"

    def __init__(
        self,
        *,
        frames_per_video: int,
        frame_size: int = 224,
        thumbnail_dir: str | Path | None = None,
        thumbnail_width: int = 320,
        audio_seconds: float = 30.0,
        audio_rate: int = 16000,
        max_decode_seconds: float = 60.0,
        forward_seconds: float = 3.0,
        max_pixels: int = 7680 * 4320,
        scenes=None,
    ):
        if not isinstance(frames_per_video, int) or frames_per_video < 1:
            raise ValueError(f"frames_per_video must be a positive integer, got {frames_per_video!r}")
        if not isinstance(frame_size, int) or frame_size < 16:
            raise ValueError(f"frame_size must be an integer >= 16, got {frame_size!r}")
        if not isinstance(thumbnail_width, int) or thumbnail_width < 16:
            raise ValueError(f"thumbnail_width must be an integer >= 16, got {thumbnail_width!r}")
        if audio_seconds < 0:
            raise ValueError(f"audio_seconds must be >= 0 (0 disables audio), got {audio_seconds!r}")
        if not isinstance(audio_rate, int) or audio_rate < 8000:
            raise ValueError(f"audio_rate must be an integer >= 8000, got {audio_rate!r}")
        if max_decode_seconds <= 0:
            raise ValueError(f"max_decode_seconds must be > 0, got {max_decode_seconds!r}")
        if not isinstance(max_pixels, int) or max_pixels < 1:
            raise ValueError(f"max_pixels must be a positive integer, got {max_pixels!r}")
        self.frames_per_video = frames_per_video
        self.frame_size = frame_size
        # a folder, or a bucket prefix (s3://, gs://) when no disk is shared with the readers
        self.thumbnail_dir = (str(thumbnail_dir).rstrip("/") if locations.is_remote(str(thumbnail_dir))
                              else Path(thumbnail_dir)) if thumbnail_dir else None  # fmt: skip
        self.thumbnail_width = thumbnail_width
        self.audio_seconds = float(audio_seconds)
        self.audio_rate = audio_rate
        self.max_decode_seconds = float(max_decode_seconds)
        self.forward_seconds = float(forward_seconds)
        self.max_pixels = max_pixels
        self.scenes = scenes  # a ScenesStage whose detector scores this stage's decode pass, or None

    @classmethod
    def from_config(cls, cfg, **overrides) -> FramesStage:
        from processing.labelers import LABELERS

        # the audio track is decoded only when a configured labeler listens to it (30-50 ms a video)
        audio = any(getattr(LABELERS.get(name), "needs_audio", False) for name in cfg.labelers)
        return cls(**{"frames_per_video": cfg.frames_per_video, "thumbnail_dir": cfg.thumbnail_dir,
                      "max_pixels": cfg.max_pixels, "audio_seconds": 30.0 if audio else 0.0,
                      "scenes": cls._scenes_of(cfg)} | overrides)  # fmt: skip

    @staticmethod
    def _scenes_of(cfg):
        """The run's scenes stage when it is a ScenesStage (it can score this stage's decode pass:
        one decode a video instead of two), else None (a replaced scenes step decodes on its own)."""
        from processing.pipeline import load_stage_class
        from processing.stages.scenes import ScenesStage

        target = (getattr(cfg, "stages", None) or {}).get("scenes")
        cls = load_stage_class(target) if target else None
        return cls.from_config(cfg) if cls is not None and issubclass(cls, ScenesStage) else None

    def setup(self) -> None:
        import av

        av.logging.set_level(av.logging.PANIC)  # corrupt input is reported on the item
        if isinstance(self.thumbnail_dir, Path):
            self.thumbnail_dir.mkdir(parents=True, exist_ok=True)

    # -- one video --------------------------------------------------------------------------
    def process_one(self, work: Work) -> None:
        import av

        source = VideoSource(work.item.path)  # a path or an object URI
        with source:
            try:
                container = source.open()
            except av.error.FFmpegError as exc:
                raise DecodeError("undecodable", f"{type(exc).__name__}: {exc}"[:300]) from exc
            if not container.streams.video:
                raise DecodeError("no_video_stream", source.name)
            stream = open_video_stream(container, self.max_pixels)
            duration = self._duration(container, stream, work.item.duration)
            frames: list[tuple[float, np.ndarray]] = []
            detector = None
            if duration and self.scenes is not None:
                frames, detector = self._one_pass(container, stream, duration)
            elif duration:
                frames = self._seek_sample(container, stream, self._targets(duration))
            if len(frames) < min(self.frames_per_video, 2) or not duration:
                frames, detector = self._sequential_sample(source.open())
        if not frames:
            raise DecodeError("no_frames", "no decodable video frame")
        work.frame_times = [round(t, 3) for t, _ in frames]
        images = [self._resize(img) for _, img in frames]
        h, w = images[0].shape[:2]  # a mid-stream resolution change: bring all to the first size
        images = [img if img.shape[:2] == (h, w) else self._fit(img, w, h) for img in images]
        work.frames = np.stack(images)
        self._thumbnail(work, frames[len(frames) // 2][1])
        if self.audio_seconds > 0:
            audio = self._audio(source)
            if audio is not None:
                work.audio, work.audio_rate = audio, self.audio_rate
        if detector is not None and detector.frames:
            self.scenes.record(work, *detector.result())  # the scenes step finds them there

    def _check_size(self, frame) -> None:
        """A frame bigger than the stream said (a mid-stream change): refused as well."""
        if frame.width * frame.height > self.max_pixels:
            raise DecodeError("too_large", f"{frame.width}x{frame.height} frame, over MEDIA_MAX_PIXELS="
                                           f"{self.max_pixels}")  # fmt: skip

    @staticmethod
    def _duration(container, stream, hint: float | None) -> float | None:
        if stream.duration and stream.time_base:
            value = float(stream.duration * stream.time_base)
        elif container.duration:
            value = container.duration / 1_000_000
        else:
            value = hint or 0.0
        return value if value and math.isfinite(value) and value > 0 else None

    def _targets(self, duration: float) -> list[float]:
        n = self.frames_per_video
        return [(i + 0.5) * duration / n for i in range(n)]

    def _one_pass(self, container, stream, duration: float) -> tuple[list[tuple[float, np.ndarray]], object]:
        """One sequential decode that keeps, for each target time, the first frame at or after it
        and pushes every frame to the scenes' detector; ``(frames, detector)``.

        One decode instead of two (seek sampling decodes most of a short video anyway: x264's GOPs
        last several seconds). With ``scenes.reference_frames_only`` the decoder skips the frames
        no other frame references (FFmpeg's ``skip_frame=nonref``: B-frames, ~45% of an x264
        stream's frames, ~30% of the decode) except just before each target, so the sampled frames
        are the same; the scenes are scored on the decoded frames. The pass ends once both are done;
        targets still missing when the detector's budget is spent are sought.
        """
        import av

        targets = self._targets(duration)
        start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        # the scenes' budget capped at this stage's, so that the pass plus the seeks after it stay
        # within two budgets (one step's deadline, PROCESSING_STEP_TIMEOUT: 120 s a video)
        detector = self.scenes.detector(container, stream, self.max_decode_seconds)
        skipping = ReferenceSkip(stream) if self.scenes.reference_frames_only else None
        out: list[tuple[float, np.ndarray]] = []
        i, detecting, last, exhausted = 0, True, None, False
        deadline = time.monotonic() + self.max_decode_seconds
        try:
            for frame in container.decode(stream):
                if detecting:
                    detecting = detector.push(frame)
                last = frame
                t = (frame.time - start) if frame.time is not None else None
                if skipping is not None and t is not None:
                    skipping.update(t, targets[i] if i < len(targets) else None)
                if i < len(targets) and (t is None or t >= targets[i] - 1e-3):
                    t = targets[i] if t is None else t
                    while i < len(targets) and t >= targets[i] - 1e-3:
                        i += 1
                    if not out or abs(out[-1][0] - t) >= 1e-6:
                        out.append((t, self._to_rgb(frame)))
                    last = None
                if i >= len(targets) and not detecting:
                    break
                if not detecting and time.monotonic() > deadline:
                    break
            else:
                exhausted = True
        except av.error.FFmpegError:
            exhausted = True  # a truncated tail: keep what decoded
        if i < len(targets):
            if exhausted and last is not None and last.time is not None:
                out.append((last.time - start, self._to_rgb(last)))  # targets past the end: the last frame
            elif not exhausted:
                if skipping is not None:
                    skipping.update(0.0, None, every_frame=True)
                out += self._seek_sample(container, stream, targets[i:])
        return out, detector

    def _seek_sample(self, container, stream, targets: list[float]) -> list[tuple[float, np.ndarray]]:
        """For each target time: seek to the keyframe before it and decode up to the target.

        When the next target is less than ``forward_seconds`` ahead, decoding simply goes on
        (re-seeking would decode the same GOP again: x264's GOPs last several seconds).
        """
        import av

        out: list[tuple[float, np.ndarray]] = []
        start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        deadline = time.monotonic() + self.max_decode_seconds
        frames = None
        last = -math.inf
        for target in targets:
            try:
                if frames is None or target - last > self.forward_seconds:
                    container.seek(int((start + target) / stream.time_base), stream=stream, backward=True)
                    frames = container.decode(stream)
                chosen = None
                for frame in frames:
                    chosen = frame
                    if frame.time is None or frame.time - start >= target - 1e-3:
                        break
                    if time.monotonic() > deadline:
                        break
            except (av.error.FFmpegError, ValueError, OverflowError):
                return out  # unseekable: the caller falls back to a sequential pass
            if chosen is None:
                frames = None  # ran off the end: seek again for the next target
                continue
            t = (chosen.time - start) if chosen.time is not None else target
            last = t
            if out and abs(out[-1][0] - t) < 1e-6:
                continue  # the seek landed on the same frame (short or sparse video)
            out.append((t, self._to_rgb(chosen)))
            if time.monotonic() > deadline:
                break
        return out

    def _to_rgb(self, frame) -> np.ndarray:
        """RGB at frame_size short side, scaled by swscale while converting."""
        self._check_size(frame)
        w, h = frame.width, frame.height
        scale = min(1.0, self.frame_size / max(1, min(w, h)))
        return frame.to_ndarray(
            format="rgb24", width=max(2, round(w * scale)), height=max(2, round(h * scale)),
            interpolation="AREA",
        )

    def _sequential_sample(self, container) -> tuple[list[tuple[float, np.ndarray]], object]:
        """One pass, keeping a stride-doubling reservoir of frames (unknown length, endless streams);
        ``(frames, the scenes' detector on the same pass or None)``."""
        import av

        n = self.frames_per_video
        kept: list[tuple[float, np.ndarray]] = []
        stride, index = 1, 0
        deadline = time.monotonic() + self.max_decode_seconds
        detector = None
        try:
            stream = open_video_stream(container, self.max_pixels)
            rate = float(stream.average_rate or stream.guessed_rate or 25)
            detector = self.scenes.detector(container, stream, self.max_decode_seconds) if self.scenes else None
            for frame in container.decode(stream):
                if detector is not None and detector.complete:
                    detector.push(frame)
                if index % stride == 0:
                    t = frame.time if frame.time is not None else index / rate  # raw streams: no pts
                    kept.append((float(t), self._to_rgb(frame)))
                    if len(kept) >= 2 * n:
                        kept = kept[::2]
                        stride *= 2
                index += 1
                if time.monotonic() > deadline:
                    break
        except av.error.FFmpegError:
            pass  # a truncated tail: keep what decoded
        finally:
            container.close()
        if len(kept) > n:
            picks = np.linspace(0, len(kept) - 1, n).round().astype(int)
            kept = [kept[i] for i in picks]
        return kept, detector

    def _resize(self, img: np.ndarray) -> np.ndarray:
        import cv2

        h, w = img.shape[:2]
        scale = self.frame_size / min(h, w)
        if abs(scale - 1.0) < 1e-6:
            return img
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        return cv2.resize(img, size, interpolation=interp)

    @staticmethod
    def _fit(img: np.ndarray, width: int, height: int) -> np.ndarray:
        import cv2

        return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)

    def _thumbnail(self, work: Work, img: np.ndarray) -> None:
        if not self.thumbnail_dir or not work.item.video_id:
            return
        from PIL import Image

        h, w = img.shape[:2]
        width = min(self.thumbnail_width, w)
        height = max(1, round(h * width / w))
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in work.item.video_id)[:128]
        name = f"{safe.lstrip('.') or 'video'}.jpg"  # ids are sha256 hex
        thumb = Image.fromarray(img).resize((width, height), Image.BILINEAR)
        if isinstance(self.thumbnail_dir, Path):
            target = str(self.thumbnail_dir / name)
            thumb.save(target, "JPEG", quality=85)
        else:
            target = f"{self.thumbnail_dir}/{name}"
            with locations.open_output(target) as out:  # one PUT when closed
                thumb.save(out, "JPEG", quality=85)
        work.item.thumbnail_path = target

    def _audio(self, source: VideoSource) -> np.ndarray | None:
        """Mono float32 at audio_rate, first audio_seconds; None without (decodable) audio."""
        import av

        try:
            with source, source.open() as container:
                if not container.streams.audio:
                    return None
                stream = container.streams.audio[0]
                stream.codec_context.thread_type = "NONE"  # stops mid-stream too (see above)
                stream.codec_context.thread_count = 1
                # out in chunks of 1 s (not one per decoded frame): ~half the cost of the per-frame arrays
                resampler = av.AudioResampler(format="flt", layout="mono", rate=self.audio_rate,
                                              frame_size=self.audio_rate)  # fmt: skip
                limit = int(self.audio_seconds * self.audio_rate)
                chunks, total = [], 0
                for frame in itertools.chain(container.decode(stream), [None]):  # None: the last chunk
                    for out in resampler.resample(frame):
                        chunk = out.to_ndarray().reshape(-1)
                        chunks.append(chunk)
                        total += len(chunk)
                    if total >= limit:
                        break
                if not chunks:
                    return None
                return np.concatenate(chunks)[:limit].astype(np.float32)
        except (av.error.FFmpegError, ValueError, MediaError):
            return None  # audio is optional: a broken track is not a failed video
