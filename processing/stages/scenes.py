"""ScenesStage: scene cuts from FFmpeg's scene score (a PyAV filter graph), recorded as ``item.scenes``."""

from __future__ import annotations

import time

from crawler.errors import MediaError
from processing.stages.base import Resources, Stage
from processing.vision.decode import VideoSource, open_video_stream
from processing.work import Work


def scenes_from_cuts(cuts: list[float], duration: float, min_seconds: float = 0.0) -> list[dict[str, float]]:
    """``[{"start", "end"}, ...]`` covering ``[0, duration]``, cut at ``cuts`` (seconds).

    A scene shorter than ``min_seconds`` is merged into the one before it (the first one into
    the next), as PySceneDetect's ``min_scene_len`` does, so a flash does not make two cuts.
    """
    bounds = [0.0]
    for cut in sorted(c for c in cuts if 0.0 < c < duration):
        if cut - bounds[-1] >= min_seconds:
            bounds.append(cut)
    if len(bounds) > 1 and duration - bounds[-1] < min_seconds:
        bounds.pop()  # a last scene too short: it belongs to the one before
    bounds.append(duration)
    return [{"start": round(a, 3), "end": round(b, 3)} for a, b in zip(bounds, bounds[1:])]


class ScenesStage(Stage):
    """Scene cuts from FFmpeg's ``select='gt(scene,T)'`` filter over one sequential decode.

    The decode is FramesStage's when the run's scenes step is a ScenesStage: its ``from_config``
    builds one with this step's settings, its one pass samples the frames and pushes every
    decoded frame to a ``SceneDetector``, and this step then finds ``item.scenes`` on the item,
    by this model, and only counts them: one decode a video, not two.
    Alone (``detect``), it decodes the file itself, without the loop filter (~15% faster).

    Decoded frames go through ``buffer -> select -> buffersink`` (frames wider than
    ``analysis_width`` scaled to it first: scoring a 720p frame costs less than scaling it); the
    frames the filter lets through start a new scene. FFmpeg's scene score (0..1) compares each
    frame with the one before; ``threshold`` 0.3 finds hard cuts (FFmpeg's documentation suggests
    0.3-0.5). With ``reference_frames_only`` (default) only the frames other frames reference are
    decoded and scored (FFmpeg's ``skip_frame=nonref``, ~30% less decode): a cut the encoder
    coded as a reference frame (x264's scene-cut keyframes) is found on its frame, one on a
    B-frame on the next reference frame (up to 3 frames late on the test clips). Times are
    seconds from the start of the file, as ``ffmpeg -ss`` counts them, so ``export --clips``
    cuts where this stage saw the cut. ``item.scenes`` always covers the whole video;
    ``item.models["scenes"]`` names the detector and threshold.

    Scene detection never fails a video: a file the stage cannot read keeps ``scenes == []`` and
    gets ``item.errors["scenes"]`` (outcome: the reason code); a decode that runs past
    ``max_decode_seconds`` keeps the cuts found so far, ends the last scene at the video's end and
    records ``partial`` the same way. Outcomes: ``ok``, ``partial``, a reason code; the counter
    ``cuts`` adds up the cuts found.
    """

    name = "scenes"
    resources = Resources(num_cpus=1)
    error_code = "scenes_error"

    def __init__(self, *, threshold: float = 0.3, min_scene_seconds: float = 0.5, analysis_width: int = 1920,
                 max_decode_seconds: float = 120.0, max_pixels: int = 7680 * 4320,
                 reference_frames_only: bool = True):  # fmt: skip
        if not isinstance(threshold, (int, float)) or not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be a number in (0, 1) (FFmpeg's scene score), got {threshold!r}")
        if not isinstance(min_scene_seconds, (int, float)) or min_scene_seconds < 0:
            raise ValueError(f"min_scene_seconds must be a number >= 0, got {min_scene_seconds!r}")
        if not isinstance(analysis_width, int) or analysis_width < 16:
            raise ValueError(f"analysis_width must be an integer >= 16, got {analysis_width!r}")
        if not isinstance(max_decode_seconds, (int, float)) or max_decode_seconds <= 0:
            raise ValueError(f"max_decode_seconds must be > 0, got {max_decode_seconds!r}")
        self.threshold = float(threshold)
        self.min_scene_seconds = float(min_scene_seconds)
        self.analysis_width = analysis_width
        self.max_decode_seconds = float(max_decode_seconds)
        if not isinstance(max_pixels, int) or max_pixels < 1:
            raise ValueError(f"max_pixels must be a positive integer, got {max_pixels!r}")
        self.max_pixels = max_pixels
        self.reference_frames_only = bool(reference_frames_only)
        self.model = f"ffmpeg-scene:{self.threshold:g}"

    @classmethod
    def from_config(cls, cfg, **overrides) -> ScenesStage:
        return cls(**{"threshold": cfg.scenes_threshold, "min_scene_seconds": cfg.scenes_min_seconds,
                      "max_pixels": cfg.max_pixels} | overrides)  # fmt: skip

    def setup(self) -> None:
        import av

        av.logging.set_level(av.logging.PANIC)  # corrupt input is reported on the item

    def process_one(self, work: Work) -> str:
        item = work.item
        if item.models.get(self.name) == self.model and item.scenes:
            outcome = self._recorded_outcome(item)  # found on FramesStage's decode pass (one decode)
        else:
            try:
                cuts, end, complete = self.detect(item.path)
            except MediaError as exc:
                item.errors[self.name] = f"{exc.code}: {exc.message}" if exc.message else exc.code
                return exc.code
            outcome = self.record(work, cuts, end, complete)
        if item.scenes:
            self.stats.count("cuts", len(item.scenes) - 1)
        return outcome

    def record(self, work: Work, cuts: list[float], end: float, complete: bool) -> str:
        """Put what ``detect`` (or a ``SceneDetector`` on another stage's pass) found on the item;
        the outcome (``ok``, ``partial``, ``no_frames``). Counts nothing: ``process_one`` does."""
        item = work.item
        duration = end if complete and end else max(end or 0.0, item.duration or 0.0)
        if duration <= 0:
            item.errors[self.name] = "no_frames: no decodable video frame"
            return "no_frames"
        item.scenes = scenes_from_cuts(cuts, duration, self.min_scene_seconds)
        item.models[self.name] = self.model
        if not complete:
            item.errors[self.name] = f"partial: cuts searched in the first {end:.1f} s only"
            return "partial"
        return "ok"

    def _recorded_outcome(self, item) -> str:
        return (item.errors.get(self.name) or "ok").split(":")[0]

    def detector(self, container, stream, max_seconds: float | None = None) -> SceneDetector:
        """A ``SceneDetector`` with this stage's settings for ``stream`` (opened by
        ``open_video_stream``), to push another pass's decoded frames into; its budget
        (``max_decode_seconds``, or less: ``max_seconds``) starts now."""
        budget = min(self.max_decode_seconds, max_seconds or self.max_decode_seconds)
        return SceneDetector(container, stream, self.threshold, self.analysis_width, budget)

    def detect(self, path: str) -> tuple[list[float], float, bool]:
        """``(cut times, end of the last frame, whether the whole video was decoded)``, seconds.

        ``path``: a local path or an object URI (``processing.vision.decode.VideoSource``).
        """
        import av

        source = VideoSource(path)
        try:
            container = source.open()
        except av.error.FFmpegError as exc:
            source.close()
            raise MediaError("undecodable", f"{type(exc).__name__}: {exc}"[:300]) from exc
        try:
            stream = open_video_stream(container, self.max_pixels)
            stream.codec_context.options = {"skip_loop_filter": "all"}  # the score does not need it: ~15% less
            if self.reference_frames_only:
                stream.codec_context.skip_frame = "NONREF"  # B-frames: ~45% of x264's frames, ~30% of the decode
            detector = self.detector(container, stream)
            try:
                for frame in container.decode(stream):
                    if not detector.push(frame):
                        break
            except av.error.FFmpegError:
                pass  # a truncated tail: the scenes of what decoded
            if detector.frames == 0:
                raise MediaError("no_frames", "no decodable video frame")
        finally:
            source.close()
        return detector.result()


class SceneDetector:
    """FFmpeg's scene score over one decode pass: ``push`` every decoded frame, then ``result()``.

    Each frame goes through ``buffer -> [scale to analysis_width] -> select='gt(scene,T)' ->
    buffersink`` (scaling inside the graph: PyAV's ``reformat`` makes a new frame a call, 3x the
    cost); the frames the filter lets through start a new scene. Times are seconds from the start
    of the file (``container.start_time``), as ``ffmpeg -ss`` counts them.
    """

    def __init__(self, container, stream, threshold: float, analysis_width: int, max_seconds: float):
        self.threshold, self.analysis_width = threshold, analysis_width
        self.time_base = stream.time_base
        self.origin = container.start_time / 1_000_000 if container.start_time is not None else 0.0
        self.rate = float(stream.average_rate or stream.guessed_rate or 25)
        self.deadline = time.monotonic() + max_seconds
        self.graph = self.size = None
        self.cuts: list[float] = []
        self.end, self.frames, self.complete = 0.0, 0, True

    def push(self, frame) -> bool:
        """Score one frame (in decode order); False once the time budget is spent (stop pushing)."""
        t = frame.time if frame.time is not None else self.frames / self.rate  # raw streams: no pts
        if frame.pts is None:
            frame.pts = round(t / self.time_base)
        if self.graph is None or self.size != (frame.width, frame.height, frame.format.name):
            self.graph = self._graph(frame)  # a mid-stream change of size: a new graph
            self.size = (frame.width, frame.height, frame.format.name)
        self.graph.push(frame)
        for out in self._pull(self.graph):
            self.cuts.append(float(out.pts * self.time_base) - self.origin)
        self.end = max(self.end, t - self.origin + 1.0 / self.rate)
        self.frames += 1
        if time.monotonic() > self.deadline:
            self.complete = False
        return self.complete

    def result(self) -> tuple[list[float], float, bool]:
        """``(cut times, end of the last frame, whether every frame was scored)``, seconds."""
        return self.cuts, self.end, self.complete

    def _graph(self, frame):
        """``buffer -> [scale] -> format=yuv420p -> select='gt(scene,T)' -> buffersink`` for decoded
        frames of this size and format; frames wider than ``analysis_width`` are scaled to it."""
        import av

        graph = av.filter.Graph()
        src = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                               time_base=self.time_base)  # fmt: skip
        if frame.width > self.analysis_width:
            width = self.analysis_width // 2 * 2
            height = max(2, round(frame.height * width / max(1, frame.width) / 2) * 2)
            scale = graph.add("scale", f"{width}:{height}:flags=fast_bilinear")
        else:
            scale = graph.add("null")
        fmt = graph.add("format", "yuv420p")
        select = graph.add("select", f"gt(scene\\,{self.threshold})")
        sink = graph.add("buffersink")
        src.link_to(scale)
        scale.link_to(fmt)
        fmt.link_to(select)
        select.link_to(sink)
        graph.configure()
        return graph

    @staticmethod
    def _pull(graph):
        import av

        while True:
            try:
                yield graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return
