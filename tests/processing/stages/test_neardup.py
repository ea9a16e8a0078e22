"""Near-duplicate stage on real copies made with ffmpeg from tests/data clips (real faiss index)."""

from __future__ import annotations

import copy
import json
import subprocess

import pytest

from crawler.items import VideoItem
from pipelines.media import hamming, phash
from processing.stages.neardup import NearDupStage
from processing.vision.frame_index import FrameIndex
from processing.work import Demotion, Work

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
    "bunny_crf45": ("bigbuckbunny", ["-c:v", "libx264", "-crf", "45", "-an"]),  # heavy re-encode
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
def embedded(media, tmp_path_factory, frames_stage, embed_stage):
    """video name -> a Work with frames and embeddings (originals and their copies), made once."""
    folder = tmp_path_factory.mktemp("copies")
    paths = {name: media[name] for name in ("bigbuckbunny", "bikes", "carphone_pristine", "gradio_a", "gradio_world")}
    for name, (src, opts) in COPIES.items():
        ext = "webm" if "libvpx-vp9" in opts else "mp4"
        target = folder / f"{name}.{ext}"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(media[src]), *opts, str(target)], check=True)
        paths[name] = target
    works = {name: Work(probe_item(path, name)) for name, path in paths.items()}
    frames_stage.process_batch(list(works.values()))
    embed_stage.process_batch(list(works.values()))
    assert all(not w.item.decided for w in works.values()), {n: w.item.errors for n, w in works.items()}
    return works


def fresh(embedded, *names, hashed: bool = False) -> list[Work]:
    """Copies of the works; ``hashed``: with the crawl's perceptual hash on the item."""
    works = [copy.deepcopy(embedded[n]) for n in names]
    for work in works:
        if hashed:
            work.item.phash = phash(work.item.path)
    return works


def run(stage: NearDupStage, works: list[Work]) -> list[Work]:
    return stage.process_batch(works)


def neardup(cfg, folder, **overrides) -> NearDupStage:
    """The stage as the workers build it (thresholds from settings), its index in ``folder``."""
    stage = NearDupStage.from_config(cfg, index_dir=folder, **overrides)
    stage.setup()
    return stage


def test_copies_are_found_and_different_clips_are_not(embedded, tmp_path, stage_cfg):
    stage = neardup(stage_cfg, tmp_path / "index")
    # as the workers get them: with the crawl's perceptual hash (grayscale copies are caught
    # by it; the colour frame embeddings alone miss bunny_gray12)
    originals = fresh(embedded, "bigbuckbunny", "bikes", "carphone_pristine", "gradio_a", "gradio_world", hashed=True)
    run(stage, originals)
    assert [w.item.status for w in originals] == ["new"] * 5  # five different clips: all kept
    copies = fresh(embedded, "bunny_crf35", "bunny_trim2", "bunny_gray12", "bikes_crop80", "bikes_pillar", "world_cut20",
                   hashed=True)
    run(stage, copies)
    found = {w.item.video_id: (w.item.status, w.item.duplicate_of, w.item.similarity) for w in copies}
    expected = {"bunny_crf35": "bigbuckbunny", "bunny_trim2": "bigbuckbunny", "bunny_gray12": "bigbuckbunny",
                "bikes_crop80": "bikes", "bikes_pillar": "bikes", "world_cut20": "gradio_world"}
    for name, original in expected.items():
        status, dup_of, sim = found[name]
        if status == "duplicate":
            assert dup_of == original, found
            assert min(stage.frame_threshold, 1 - stage.phash_max_distance / 64) <= sim <= 1.0
        else:  # the copy was judged better (pillarbox bars do not count): the original is demoted
            work = next(w for w in copies if w.item.video_id == name)
            assert work.updates and work.updates[0].video_id == original, found
    assert stage.stats.counts["kept"] == 5


def test_better_copy_becomes_canonical(embedded, tmp_path, stage_cfg):
    stage = neardup(stage_cfg, tmp_path / "index")
    half, original = fresh(embedded, "bunny_half", "bigbuckbunny")
    run(stage, [half])
    assert half.item.status == "new"
    run(stage, [original])  # full resolution arrives later: it wins, the half-size copy is demoted
    assert original.item.status == "new"
    assert original.updates == [Demotion("bunny_half", "bigbuckbunny", original.updates[0].similarity)]
    index = stage.indexes[embedded["bigbuckbunny"].dedup_model]
    assert len(index) == 1  # the demoted copy left the index
    crf = fresh(embedded, "bunny_crf35")[0]
    run(stage, [crf])
    assert (crf.item.status, crf.item.duplicate_of) == ("duplicate", "bigbuckbunny")


def test_copies_inside_one_batch_and_redelivery(embedded, tmp_path, stage_cfg):
    stage = neardup(stage_cfg, tmp_path / "index")
    works = fresh(embedded, "bikes", "bikes_crop80", "gradio_a")
    run(stage, works)
    assert [w.item.status for w in works] == ["new", "duplicate", "new"]
    again = fresh(embedded, "bikes")[0]  # the same video redelivered by the stream
    run(stage, [again])
    assert again.item.status == "new" and stage.stats.counts["already_indexed"] == 1


def test_index_persists_and_reloads(embedded, tmp_path, stage_cfg):
    stage = neardup(stage_cfg, tmp_path / "index", flush_seconds=3600)
    run(stage, fresh(embedded, "bigbuckbunny", "gradio_world"))
    stage.teardown()
    model = embedded["bigbuckbunny"].dedup_model
    folder = stage.folder(model)
    assert (folder / FrameIndex.FILE).exists() and (folder / FrameIndex.META).exists()
    reloaded = neardup(stage_cfg, tmp_path / "index")
    cut = fresh(embedded, "world_cut20")[0]
    run(reloaded, [cut])
    assert (cut.item.status, cut.item.duplicate_of) == ("duplicate", "gradio_world")
    assert len(reloaded.indexes[model]) == 2


def test_models_are_never_mixed(embedded, tmp_path, stage_cfg):
    stage = neardup(stage_cfg, tmp_path / "index")
    original, copy_ = fresh(embedded, "bigbuckbunny", "bunny_crf35")
    run(stage, [original])
    copy_.dedup_model = "another-model"  # same vectors, but claimed by another model
    run(stage, [copy_])
    assert copy_.item.status == "new"
    assert stage.folder("another-model") != stage.folder(original.dedup_model)


def test_work_without_embeddings_fails_with_reason(tmp_path, stage_cfg):
    stage = neardup(stage_cfg, tmp_path / "index")
    work = Work(VideoItem(url="u", source="t", video_id="x"))
    stage.process_batch([work])
    assert work.item.status == "failed" and work.item.errors["neardup"].startswith("no_embeddings")


def test_config_is_checked(tmp_path, stage_cfg):
    with pytest.raises(ValueError, match="frame_threshold"):
        NearDupStage.from_config(stage_cfg, frame_threshold=1.5)
    with pytest.raises(ValueError, match="min_match"):
        NearDupStage.from_config(stage_cfg, min_match=0)
    with pytest.raises(ValueError, match="phash_max_distance"):
        NearDupStage.from_config(stage_cfg, phash_max_distance=65)


def test_heavy_reencode_missed_by_frames_is_found_by_phash(embedded, tmp_path, stage_cfg):
    originals = ("bigbuckbunny", "bikes", "carphone_pristine", "gradio_a", "gradio_world")
    frames_only = neardup(stage_cfg, tmp_path / "frames-only", phash_max_distance=-1)
    run(frames_only, fresh(embedded, *originals, hashed=True))
    missed = fresh(embedded, "bunny_crf45", hashed=True)[0]
    run(frames_only, [missed])
    assert missed.item.status == "new"  # the frame embeddings drift too far at CRF 45

    stage = neardup(stage_cfg, tmp_path / "index")  # the default: phash layer on
    kept = fresh(embedded, *originals, hashed=True)
    run(stage, kept)
    assert [w.item.status for w in kept] == ["new"] * 5  # different clips are not matched by hash
    assert "match_phash" not in stage.stats.counts
    crf = fresh(embedded, "bunny_crf45", hashed=True)[0]
    run(stage, [crf])
    assert (crf.item.status, crf.item.duplicate_of) == ("duplicate", "bigbuckbunny")
    distance = hamming(crf.item.phash, kept[0].item.phash)
    assert distance <= stage.phash_max_distance
    assert crf.item.similarity == pytest.approx(1 - distance / 64, abs=1e-4)
    assert stage.stats.counts["match_phash"] == 1
    again = fresh(embedded, "bigbuckbunny", hashed=True)[0]  # redelivered: not a copy of itself
    run(stage, [again])
    assert again.item.status == "new" and stage.stats.counts["already_indexed"] == 1


def test_a_hash_collision_with_a_different_clip_is_not_a_duplicate(embedded, tmp_path, stage_cfg):
    stage = neardup(stage_cfg, tmp_path / "index")
    kept = fresh(embedded, "bigbuckbunny", hashed=True)[0]
    run(stage, [kept])
    other = fresh(embedded, "bikes", hashed=True)[0]
    other.item.phash = kept.item.phash  # a collision, as random 64-bit hashes give at scale
    run(stage, [other])
    assert other.item.status == "new" and other.item.duplicate_of is None
    assert stage.stats.counts["phash_unconfirmed"] == 1 and "match_phash" not in stage.stats.counts


def test_item_without_phash_skips_the_layer(embedded, tmp_path, stage_cfg):
    stage = neardup(stage_cfg, tmp_path / "index")
    run(stage, fresh(embedded, "bigbuckbunny", hashed=True))
    crf = fresh(embedded, "bunny_crf45")[0]  # no phash on the item (None)
    run(stage, [crf])
    assert crf.item.status == "new" and "match_phash" not in stage.stats.counts
    bad = fresh(embedded, "bunny_crf45")[0]
    bad.item.video_id, bad.item.phash = "bad", "not-a-hash"
    run(stage, [bad])
    assert bad.item.status != "failed" and stage.stats.counts["bad_phash"] == 1


def test_phashes_persist_reload_and_leave_with_demoted_videos(embedded, tmp_path, stage_cfg):
    stage = neardup(stage_cfg, tmp_path / "index", flush_seconds=3600)
    half, original, world = fresh(embedded, "bunny_half", "bigbuckbunny", "gradio_world", hashed=True)
    run(stage, [half])
    run(stage, [original, world])  # full size wins: the half-size copy is demoted
    assert original.updates and original.updates[0].video_id == "bunny_half"
    stage.teardown()
    model = embedded["gradio_world"].dedup_model
    meta = json.loads((stage.folder(model) / FrameIndex.META).read_text())
    hashes = {v["video_id"]: v.get("phash") for v in meta["videos"]}
    assert hashes == {"bunny_half": None, "bigbuckbunny": original.item.phash, "gradio_world": world.item.phash}

    reloaded = neardup(stage_cfg, tmp_path / "index", frame_threshold=0.999)  # frames alone match nothing
    crf, half_again = fresh(embedded, "bunny_crf45", "bunny_half", hashed=True)
    half_again.item.video_id = "bunny_half_2"
    run(reloaded, [crf, half_again])
    assert (crf.item.status, crf.item.duplicate_of) == ("duplicate", "bigbuckbunny")
    assert (half_again.item.status, half_again.item.duplicate_of) == ("duplicate", "bigbuckbunny")
    assert reloaded.stats.counts["match_phash"] == 2