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
    """One sequential decode through FFmpeg's ``select='gt(scene,T)'`` filter on small frames.

    Every decoded frame is scaled to ``analysis_width`` (one reused swscale context) and pushed
    through a filter graph ``buffer -> select -> buffersink``; the frames the filter lets
    through start a new scene. FFmpeg's scene score (0..1) compares each frame with the one
    before; ``threshold`` 0.3 finds hard cuts (FFmpeg's documentation suggests 0.3-0.5). Times
    are seconds from the start of the file, as ``ffmpeg -ss`` counts them, so ``export --clips``
    cuts where this stage saw the cut. Frames are decoded without the loop filter (the score
    does not need it; ~10% faster). ``item.scenes`` always covers the whole video; ``item.models
    ["scenes"]`` names the detector and threshold.

    Scene detection never fails a video: a file the stage cannot read keeps ``scenes == []`` and
    gets ``item.errors["scenes"]`` (outcome: the reason code); a decode that runs past
    ``max_decode_seconds`` keeps the cuts found so far, ends the last scene at the video's end and
    records ``partial`` the same way. Outcomes: ``ok``, ``partial``, a reason code; the counter
    ``cuts`` adds up the cuts found.
    """

    name = "scenes"
    resources = Resources(num_cpus=1)
    error_code = "scenes_error"

    def __init__(self, *, threshold: float = 0.3, min_scene_seconds: float = 0.5, analysis_width: int = 160,
                 max_decode_seconds: float = 120.0, max_pixels: int = 7680 * 4320):  # fmt: skip
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
        try:
            cuts, end, complete = self.detect(item.path)
        except MediaError as exc:
            item.errors[self.name] = f"{exc.code}: {exc.message}" if exc.message else exc.code
            return exc.code
        duration = end if complete and end else max(end or 0.0, item.duration or 0.0)
        if duration <= 0:
            item.errors[self.name] = "no_frames: no decodable video frame"
            return "no_frames"
        item.scenes = scenes_from_cuts(cuts, duration, self.min_scene_seconds)
        item.models[self.name] = self.model
        self.stats.count("cuts", len(item.scenes) - 1)
        if not complete:
            item.errors[self.name] = f"partial: cuts searched in the first {end:.1f} s only"
            return "partial"
        return "ok"

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
        cuts: list[float] = []
        end, complete = 0.0, True
        deadline = time.monotonic() + self.max_decode_seconds
        try:
            stream = open_video_stream(container, self.max_pixels)
            stream.codec_context.options = {"skip_loop_filter": "all"}
            origin = container.start_time / 1_000_000 if container.start_time is not None else 0.0
            rate = float(stream.average_rate or stream.guessed_rate or 25)
            graph = size = None
            scaler = av.video.reformatter.VideoReformatter()  # one swscale context, reused: 7x faster
            index = 0
            try:
                for frame in container.decode(stream):
                    t = frame.time if frame.time is not None else index / rate  # raw streams: no pts
                    if graph is None:
                        graph, size = self._graph(frame, stream.time_base)
                    small = scaler.reformat(frame, width=size[0], height=size[1], format="yuv420p",
                                            interpolation="FAST_BILINEAR")  # fmt: skip
                    small.pts, small.time_base = round(t / stream.time_base), stream.time_base
                    graph.push(small)
                    for out in self._pull(graph):
                        cuts.append(float(out.pts * stream.time_base) - origin)
                    end = max(end, t - origin + 1.0 / rate)
                    index += 1
                    if time.monotonic() > deadline:
                        complete = False
                        break
            except av.error.FFmpegError:
                pass  # a truncated tail: the scenes of what decoded
            if index == 0:
                raise MediaError("no_frames", "no decodable video frame")
        finally:
            source.close()
        return cuts, end, complete

    def _graph(self, frame, time_base):
        """``buffer -> select='gt(scene,T)' -> buffersink`` for frames scaled to the analysis size."""
        import av

        width = min(self.analysis_width, frame.width) // 2 * 2 or 2
        height = max(2, round(frame.height * width / max(1, frame.width) / 2) * 2)
        graph = av.filter.Graph()
        src = graph.add_buffer(width=width, height=height, format="yuv420p", time_base=time_base)
        select = graph.add("select", f"gt(scene\\,{self.threshold})")
        sink = graph.add("buffersink")
        src.link_to(select)
        select.link_to(sink)
        graph.configure()
        return graph, (width, height)

    @staticmethod
    def _pull(graph):
        import av

        while True:
            try:
                yield graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return
