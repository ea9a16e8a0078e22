"""A small catalogue corpus shared by the catalogue and search-page tests: documents as workers write them."""

import hashlib
import subprocess

import numpy as np

from crawler.items import VideoItem

MODEL = "efficientnet-lite0"


def vid(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def unit(*xs) -> list[float]:
    v = np.asarray(xs, dtype=np.float32)
    return [float(x) for x in v / np.linalg.norm(v)]


def make_doc(name, title, *, vector=None, tags=(), labels=None, status="indexed", path=None,
             thumbnail=None, **fields):
    """A catalogue document shaped as the workers write it: VideoItem.to_dict() + vector."""
    item = VideoItem(url=f"https://videos.example.org/{name}.mp4", source=fields.pop("source", "web"),
                     title=title, tags=list(tags), **fields)
    doc = item.to_dict()
    doc.update(video_id=vid(name), sha256=vid(name), status=status, path=str(path) if path else None,
               thumbnail_path=str(thumbnail) if thumbnail else None, labels=labels or {},
               processed_at="2026-11-23T20:00:00+00:00")
    if vector is not None:
        doc["vector"] = vector
        doc["embedding_model"] = fields.get("embedding_model") or MODEL
    return doc


def thumbnail_of(video, out):
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", "1", "-i", str(video), "-frames:v", "1",
                    "-vf", "scale=320:-2", str(out)], check=True, timeout=60)  # fmt: skip
    return out


def corpus(media, thumbs_dir):
    """Eight videos: kept ones with labels, a near-duplicate pair, a failed and a rejected one."""
    thumbs_dir.mkdir(parents=True, exist_ok=True)
    th = {k: thumbnail_of(p, thumbs_dir / f"{k}.jpg") for k, p in media.items()}
    cap = lambda text: {"model": "blip-test", "text": text}  # noqa: E731
    tags = lambda *n: {"model": "efficientnet-lite0", "tags": [{"name": x, "score": 0.8} for x in n]}  # noqa: E731
    return [
        make_doc("dog", "A dog running on the beach", vector=unit(1, 0, 0, 0), tags=["pets"],
                 labels={"imagenet": tags("golden retriever", "seashore"), "caption": cap("a dog runs along the sand")},
                 duration=20.0, width=640, height=360, license="https://creativecommons.org/licenses/by/4.0/", path=media["bigbuckbunny"],
                 thumbnail=th["bigbuckbunny"]),
        make_doc("puppy", "Happy pup by the sea", vector=unit(0.95, 0.3, 0, 0),
                 labels={"caption": cap("a young golden puppy plays in the waves at the seaside")},
                 duration=12.0, width=1280, height=720, license="Attribution 4.0 International", path=media["bikes"], thumbnail=th["bikes"]),
        make_doc("bikes", "Mountain bikes downhill race", vector=unit(0, 1, 0, 0), tags=["sport"],
                 labels={"imagenet": tags("mountain bike"), "transcript": {"model": "whisper-tiny", "text": "and the riders take the jump"}},
                 duration=30.0, width=1920, height=1080, license="http://creativecommons.org/publicdomain/zero/1.0/", source="archive",
                 path=media["bikes"], thumbnail=th["bikes"]),
        make_doc("phone", "Man talking on a car phone", vector=unit(0, 0, 1, 0),
                 labels={"ocr": {"model": "rapidocr", "text": "CARPHONE 1998"}, "faces": {"model": "haar", "present": True}},
                 duration=8.0, width=176, height=144, path=media["carphone_pristine"], thumbnail=th["carphone_pristine"]),
        make_doc("world", "Hello world demo", vector=unit(0, 0, 0, 1), tags=["demo"],
                 duration=5.0, width=640, height=480, license="Attribution-ShareAlike 4.0 International", path=media["gradio_world"],
                 thumbnail=th["gradio_world"]),
        make_doc("world-copy", "Hello world demo (re-upload)", vector=unit(0, 0.05, 0, 1), tags=["demo"],
                 status="duplicate", duplicate_of=vid("world"), similarity=0.987, duration=5.0, width=640,
                 height=480, path=media["gradio_a"], thumbnail=th["gradio_a"]),
        make_doc("world-copy2", "hello world demo", vector=unit(0, 0.1, 0, 1), status="duplicate",
                 duplicate_of=vid("world"), similarity=0.95, path=media["gradio_b"]),
        make_doc("broken", "Dog video that would not decode", status="failed", errors={"frames": "decode_error: EOF"}),
        make_doc("long", "A dog movie, four hours", status="rejected", errors={"filters": "too_long: 20000 s"}),
    ]  # fmt: skip
