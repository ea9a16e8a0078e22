"""Scene clips: one file per scene (``item.scenes``) of each kept video, with a JSONL of clips.

Like video2dataset's clipping subsampler, without its off-by-a-few-frames copies: a scene that
starts on a keyframe and ends on one (or at the end of the video) is stream-copied (no quality
loss, no decode) by remuxing with PyAV exactly the packets whose presentation time lies in the
scene (``ffmpeg -c copy -t`` stops by decode time and would take the next shot's first frames
along); any other scene is re-encoded (``ffmpeg -ss START -i IN -t DUR``, H.264 CRF 18 + AAC,
frame-accurate), since a copy could only start at the keyframe before it. Keyframe times are
read from the packets (no decode). Every ffmpeg call runs with a timeout; a copy that fails (a
codec MP4 cannot hold) is re-encoded. ``clips/<video_id>-<scene:04d>.mp4`` and ``clips.jsonl``
(one line per clip: ``clip_id``, ``video_id``, ``scene``, ``start``, ``end``, ``duration`` as
measured in the written file, ``path``, ``mode`` ``copy`` or ``reencode``, ``size_bytes``) are
written into the export folder; clips an earlier export left there and this one did not write
again are deleted. The export may be a bucket prefix (processing/catalogue/output.py): each clip is
cut in a local temporary folder, then uploaded; a video kept in a bucket is copied into that folder
(streamed) while its clips are cut, since ffmpeg cuts from a file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable

from crawler import locations
from crawler.errors import MediaError
from processing.catalogue.output import Output
from processing.catalogue.shards import readable_size

CLIP_NAME = re.compile(r"^[0-9A-Za-z_.-]+-\d{4}\.mp4$")
REENCODE = ("-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
            "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2", "-c:a", "aac", "-b:a", "128k")  # fmt: skip


def keyframe_times(path: str | Path) -> list[float]:
    """Seconds (from the file's start, as ``ffmpeg -ss`` counts) of the video's keyframes."""
    import av

    with av.open(str(path), timeout=(10.0, 10.0)) as container:
        stream = container.streams.video[0]
        origin = container.start_time / 1_000_000 if container.start_time is not None else 0.0
        times = []
        for packet in container.demux(stream):
            if packet.is_keyframe and packet.pts is not None:
                times.append(float(packet.pts * stream.time_base) - origin)
        return sorted(times)


def media_duration(path: Path) -> float | None:
    """The duration of a written clip (its video stream), seconds."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if stream.duration is not None and stream.time_base:
                return round(float(stream.duration * stream.time_base), 3)
            return round(container.duration / 1_000_000, 3) if container.duration else None
    except (av.error.FFmpegError, IndexError):
        return None


class ClipWriter:
    """Cuts every selected video into its scenes; ``write(docs)`` reports what it wrote."""

    def __init__(self, out_dir: Output | str | Path, ffmpeg: str = "ffmpeg", timeout_s: float = 60.0,
                 timeout_per_second: float = 4.0):  # fmt: skip
        self.output = out_dir if isinstance(out_dir, Output) else Output(out_dir)
        self.clip_dir = self.output.location("clips")
        self.work: Path | None = None  # local folder for cutting (a bucket output or a bucket video)
        self.ffmpeg = ffmpeg
        self.timeout_s = timeout_s
        self.timeout_per_second = timeout_per_second

    def write(self, docs: Iterable[dict[str, Any]]) -> dict[str, Any]:
        if not self.output.remote:
            (self.output.dir / "clips").mkdir(parents=True, exist_ok=True)
        skipped: dict[str, int] = {}
        modes: dict[str, int] = {}
        written: set[str] = set()
        videos = 0
        with tempfile.TemporaryDirectory(prefix="clips-") as work, self.output.atomic("clips.jsonl", "w") as out:
            self.work = Path(work)
            for doc in docs:
                scenes = [s for s in doc.get("scenes") or [] if _scene(s)]
                if not scenes or readable_size(doc.get("path")) is None:
                    key = "no_scenes" if not scenes else "no_video_file"
                    skipped[key] = skipped.get(key, 0) + 1
                    continue
                try:
                    with self._local_video(doc["path"]) as video:
                        videos += 1
                        for clip in self._cut(doc, video, scenes, skipped):
                            out.write(json.dumps(clip, ensure_ascii=False, sort_keys=True) + "\n")
                            modes[clip["mode"]] = modes.get(clip["mode"], 0) + 1
                            written.add(f"{clip['clip_id']}.mp4")
                except MediaError as exc:  # a bucket's video that could not be fetched
                    skipped[f"video_{exc.code}"] = skipped.get(f"video_{exc.code}", 0) + 1
        for old in self.output.names("clips"):
            if CLIP_NAME.match(old) and old not in written:
                self.output.remove(f"clips/{old}")  # from an earlier export (a video since left out, or forgotten)
        return {"file": self.output.location("clips.jsonl"), "rows": len(written), "videos": videos,
                "clip_dir": self.clip_dir, "modes": dict(sorted(modes.items())),
                "skipped": dict(sorted(skipped.items()))}  # fmt: skip

    @contextmanager
    def _local_video(self, location: str):
        """A local file of the video: its own path, or a temporary copy of an object (streamed)."""
        local = locations.local_file(location)
        if local is not None:
            yield local
            return
        copy = self.work / f"source{Path(locations.name_of(location)).suffix or '.mp4'}"
        try:
            with locations.open_input(location) as src, open(copy, "wb") as dst:
                try:
                    shutil.copyfileobj(src, dst, 1024 * 1024)
                except Exception as exc:  # noqa: BLE001 - an object store's error mid-read
                    raise MediaError("unreadable", f"{type(exc).__name__}: {exc}"[:300]) from exc
            yield copy
        finally:
            copy.unlink(missing_ok=True)

    def _cut(self, doc: dict[str, Any], video: Path, scenes: list[dict], skipped: dict[str, int]):
        try:
            keyframes = keyframe_times(video)
        except Exception:  # noqa: BLE001 - unreadable packets: every clip is re-encoded
            keyframes = []
        fps = doc.get("fps") if isinstance(doc.get("fps"), (int, float)) and doc["fps"] > 0 else 25.0
        tolerance = 0.5 / fps  # half a frame

        def on_keyframe(t: float) -> bool:
            return any(abs(k - t) <= tolerance for k in keyframes)

        for n, scene in enumerate(scenes):
            start, end = float(scene["start"]), float(scene["end"])
            clip_id = f"{doc['video_id']}-{n:04d}"
            name = f"clips/{clip_id}.mp4"
            target = self.work / f"{clip_id}.mp4" if self.output.remote else self.output.dir / name
            mode = None
            if on_keyframe(start) and (on_keyframe(end) or n == len(scenes) - 1):
                failed = self._copy(video, target, start, end)
                if failed:
                    skipped[f"copy_failed:{failed}"] = skipped.get(f"copy_failed:{failed}", 0) + 1
                else:
                    mode = "copy"
            if mode is None:
                failed = self._reencode(video, target, start, end - start)
                if failed:
                    skipped[f"clip_failed:{failed}"] = skipped.get(f"clip_failed:{failed}", 0) + 1
                    continue
                mode = "reencode"
            clip = {"clip_id": clip_id, "video_id": doc["video_id"], "scene": n, "start": start, "end": end,
                    "duration": media_duration(target), "path": self.output.location(name), "mode": mode,
                    "size_bytes": target.stat().st_size}  # fmt: skip
            if self.output.remote:
                self.output.put(target, name)  # uploaded, then the local cut goes
                target.unlink(missing_ok=True)
            yield clip

    def _copy(self, video: Path, target: Path, start: float, end: float) -> str | None:
        """Remux the packets shown in ``[start, end)`` (video + first audio track) into ``target``;
        None, or why it failed (``copy_error``)."""
        import av

        tmp = target.with_name(target.name + ".tmp")
        eps = 1e-3
        try:
            with av.open(str(video)) as src:
                origin = src.start_time / 1_000_000 if src.start_time is not None else 0.0
                streams = [src.streams.video[0]] + list(src.streams.audio[:1])
                with av.open(str(tmp), "w", format="mp4",
                             options={"movflags": "+faststart", "avoid_negative_ts": "make_zero"}) as out:  # fmt: skip
                    outs = {s.index: out.add_stream_from_template(s) for s in streams}
                    vin = streams[0]
                    src.seek(round((start + origin) / vin.time_base) + 1, stream=vin, backward=True)
                    for packet in src.demux(streams):
                        if packet.pts is None or packet.dts is None:
                            continue  # a demuxer's flush packet
                        tb = packet.stream.time_base
                        if float(packet.dts * tb) - origin > end + 5.0:
                            break  # well past the scene in decode order: nothing of it is left
                        if not start - eps <= float(packet.pts * tb) - origin < end - eps:
                            continue
                        shift = round((start + origin) / tb)
                        packet.pts, packet.dts = packet.pts - shift, packet.dts - shift
                        packet.stream = outs[packet.stream.index]
                        out.mux(packet)
        except (av.error.FFmpegError, ValueError, IndexError, OSError) as exc:
            tmp.unlink(missing_ok=True)
            return "copy_error"
        if not tmp.is_file() or tmp.stat().st_size == 0:
            tmp.unlink(missing_ok=True)
            return "empty_output"
        os.replace(tmp, target)
        return None

    def _reencode(self, video: Path, target: Path, start: float, duration: float) -> str | None:
        """One frame-accurate ffmpeg cut into ``target`` (via a temporary file); None, or why it
        failed (``timeout``, ``ffmpeg_error``, ``empty_output``)."""
        tmp = target.with_name(target.name + ".tmp")
        cmd = [self.ffmpeg, "-nostdin", "-hide_banner", "-v", "error", "-y", "-ss", f"{max(start, 0.0):.3f}",
               "-i", str(video), "-t", f"{duration:.3f}", "-map", "0:v:0", "-map", "0:a:0?", *REENCODE,
               "-movflags", "+faststart", "-f", "mp4", str(tmp)]  # fmt: skip
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=self.timeout_s + self.timeout_per_second * duration)
            failed = None if done.returncode == 0 else "ffmpeg_error"
        except subprocess.TimeoutExpired:
            failed = "timeout"
        except OSError:
            failed = "ffmpeg_error"
        if failed is None and not (tmp.is_file() and tmp.stat().st_size > 0):
            failed = "empty_output"
        if failed is None:
            os.replace(tmp, target)
        else:
            tmp.unlink(missing_ok=True)
        return failed


def _scene(scene: Any) -> bool:
    """A usable ``{"start", "end"}`` with end after start."""
    if not isinstance(scene, dict):
        return False
    start, end = scene.get("start"), scene.get("end")
    return isinstance(start, (int, float)) and isinstance(end, (int, float)) and end > start >= 0
