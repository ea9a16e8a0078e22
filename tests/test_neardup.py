"""Near-duplicate stage on real copies made with ffmpeg from tests/data clips (real faiss index)."""

from __future__ import annotations

import copy
import subprocess

import numpy as np
import pytest

from crawler.items import VideoItem
from processing.stages.base import Work
from processing.stages.embed import EmbedStage
from processing.stages.frames import FramesStage
from processing.stages.neardup import FrameIndex, NearDupStage

# name -> (source clip, ffmpeg output options)
COPIES = {
    "bunny_crf35": ("bigbuckbunny", ["-c:v", "libx264", "-crf", "35", "-an"]),
    "bunny_trim2": ("bigbuckbunny", ["-ss", "2", "-an"]),  # input seek set below
    "bunny_half": ("bigbuckbunny", ["-vf", "scale=iw/2:-2", "-an"]),
    "bunny_gray12": ("bigbuckbunny", ["-vf", "fps=12,format=gray", "-c:v", "libvpx-vp9", "-b:v",
                                      "300k", "-deadline", "realtime", "-cpu-used", "8", "-an"]),
    "bikes_crop80": ("bikes", ["-vf", "crop=iw*0.8:ih*0.8", "-an"]),
    "bikes_pillar": ("bikes", ["-vf", "pad=iw*1.5:ih:(ow-iw)/2:0", "-an"]),
    "world_cut20": ("gradio_world", ["-ss", "5", "-t", "20", "-an"]),
}


def probe_item(path, video_id: str) -> VideoItem:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=width,height:format=duration,bit_rate", "-of", "default=nw=1", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout
    info = dict(line.split("=", 1) for line in out.split() if "=" in line)
    return VideoItem(
        url=f"file://{path}", source="test", path=str(path), video_id=video_id,
        width=int(info["width"]), height=int(info["height"]),
        duration=float(info["duration"]), bit_rate=int(info.get("bit_rate", "0") or 0),
    )


@pytest.fixture(scope="module")
def embedded(media, tmp_path_factory):
    """video name -> a Work with frames and embeddings (originals and their copies), made once."""
    folder = tmp_path_factory.mktemp("copies")
    paths = {name: media[name] for name in ("bigbuckbunny", "bikes", "carphone_pristine", "gradio_a", "gradio_world")}
    for name, (src, opts) in COPIES.items():
        ext = "webm" if "libvpx-vp9" in opts else "mp4"
        target = folder / f"{name}.{ext}"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(media[src]), *opts, str(target)], check=True)
        paths[name] = target
    frames, embed = FramesStage(frames_per_video=8), EmbedStage(precision="auto")
    frames.setup()
    embed.setup()
    works = {name: Work(probe_item(path, name)) for name, path in paths.items()}
    frames.process_batch(list(works.values()))
    embed.process_batch(list(works.values()))
    assert all(not w.item.decided for w in works.values()), {n: w.item.errors for n, w in works.items()}
    return works


def fresh(embedded, *names) -> list[Work]:
    return [copy.deepcopy(embedded[n]) for n in names]


def run(stage: NearDupStage, works: list[Work]) -> list[Work]:
    return stage.process_batch(works)


def test_copies_are_found_and_different_clips_are_not(embedded, tmp_path):
    stage = NearDupStage(index_dir=tmp_path / "index")
    stage.setup()
    originals = fresh(embedded, "bigbuckbunny", "bikes", "carphone_pristine", "gradio_a", "gradio_world")
    run(stage, originals)
    assert [w.item.status for w in originals] == ["new"] * 5  # five different clips: all kept
    copies = fresh(embedded, "bunny_crf35", "bunny_trim2", "bunny_gray12", "bikes_crop80", "bikes_pillar", "world_cut20")
    run(stage, copies)
    found = {w.item.video_id: (w.item.status, w.item.duplicate_of, w.item.similarity) for w in copies}
    expected = {"bunny_crf35": "bigbuckbunny", "bunny_trim2": "bigbuckbunny", "bunny_gray12": "bigbuckbunny",
                "bikes_crop80": "bikes", "bikes_pillar": "bikes", "world_cut20": "gradio_world"}
    for name, original in expected.items():
        status, dup_of, sim = found[name]
        if status == "duplicate":
            assert dup_of == original, found
            assert stage.frame_threshold <= sim <= 1.0
        else:  # the copy was judged better (pillarbox bars do not count): the original is demoted
            work = next(w for w in copies if w.item.video_id == name)
            assert work.updates and work.updates[0]["video_id"] == original, found
    assert stage.counts["kept"] == 5


def test_better_copy_becomes_canonical(embedded, tmp_path):
    stage = NearDupStage(index_dir=tmp_path / "index")
    stage.setup()
    half, original = fresh(embedded, "bunny_half", "bigbuckbunny")
    run(stage, [half])
    assert half.item.status == "new"
    run(stage, [original])  # full resolution arrives later: it wins, the half-size copy is demoted
    assert original.item.status == "new"
    assert original.updates == [
        {"video_id": "bunny_half", "status": "duplicate", "duplicate_of": "bigbuckbunny",
         "similarity": original.updates[0]["similarity"]}
    ]
    index = stage.indexes[embedded["bigbuckbunny"].extras["dedup_model"]]
    assert len(index) == 1  # the demoted copy left the index
    crf = fresh(embedded, "bunny_crf35")[0]
    run(stage, [crf])
    assert (crf.item.status, crf.item.duplicate_of) == ("duplicate", "bigbuckbunny")


def test_copies_inside_one_batch_and_redelivery(embedded, tmp_path):
    stage = NearDupStage(index_dir=tmp_path / "index")
    stage.setup()
    works = fresh(embedded, "bikes", "bikes_crop80", "gradio_a")
    run(stage, works)
    assert [w.item.status for w in works] == ["new", "duplicate", "new"]
    again = fresh(embedded, "bikes")[0]  # the same video redelivered by the stream
    run(stage, [again])
    assert again.item.status == "new" and stage.counts["already_indexed"] == 1


def test_index_persists_and_reloads(embedded, tmp_path):
    stage = NearDupStage(index_dir=tmp_path / "index", flush_seconds=3600)
    stage.setup()
    run(stage, fresh(embedded, "bigbuckbunny", "gradio_world"))
    stage.teardown()
    model = embedded["bigbuckbunny"].extras["dedup_model"]
    folder = stage.folder(model)
    assert (folder / FrameIndex.FILE).exists() and (folder / FrameIndex.META).exists()
    reloaded = NearDupStage(index_dir=tmp_path / "index")
    reloaded.setup()
    cut = fresh(embedded, "world_cut20")[0]
    run(reloaded, [cut])
    assert (cut.item.status, cut.item.duplicate_of) == ("duplicate", "gradio_world")
    assert len(reloaded.indexes[model]) == 2


def test_models_are_never_mixed(embedded, tmp_path):
    stage = NearDupStage(index_dir=tmp_path / "index")
    stage.setup()
    original, copy_ = fresh(embedded, "bigbuckbunny", "bunny_crf35")
    run(stage, [original])
    copy_.extras["dedup_model"] = "another-model"  # same vectors, but claimed by another model
    run(stage, [copy_])
    assert copy_.item.status == "new"
    assert stage.folder("another-model") != stage.folder(original.extras["dedup_model"])


def test_work_without_embeddings_fails_with_reason(tmp_path):
    stage = NearDupStage(index_dir=tmp_path / "index")
    work = Work(VideoItem(url="u", source="t", video_id="x"))
    stage.process_batch([work])
    assert work.item.status == "failed" and work.item.errors["neardup"].startswith("no_embeddings")


def test_frame_index_switches_to_hnsw_and_tombstones(tmp_path):
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((300, 64)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index = FrameIndex(64, approx_threshold=100)
    for v in range(30):
        index.add(f"v{v}", vecs[v * 10 : (v + 1) * 10])
    assert index.approximate and index.ntotal == 300
    sims, rows = index.search(vecs[:20], k=10)
    recall = np.mean([r in row for r, row in zip(range(20), rows)])
    assert recall >= 0.95 and sims[0, 0] == pytest.approx(1.0, abs=1e-4)
    index.remove("v0")
    assert 0 not in index.best_per_video(vecs[:10])
    index.save(tmp_path / "idx")
    back = FrameIndex.load(tmp_path / "idx", 64, approx_threshold=100)
    assert len(back) == 29 and back.approximate


def test_config_is_checked(tmp_path):
    with pytest.raises(ValueError, match="frame_threshold"):
        NearDupStage(index_dir=tmp_path, frame_threshold=1.5)
    with pytest.raises(ValueError, match="min_match"):
        NearDupStage(index_dir=tmp_path, min_match=0)
    with pytest.raises(ValueError, match="dim"):
        FrameIndex(0)
