"""Near-duplicate clusters: the rule and the index on small exact vectors, the stage on real copies
made with ffmpeg from tests/data clips (real frames, real embeddings, real faiss index)."""

from __future__ import annotations

import copy
import itertools
import json
import random
import subprocess

import numpy as np
import pytest

from crawler.items import VideoItem
from pipelines.media import hamming, phash
from processing.stages.neardup import Candidate, LocalIndexes, MatchRule, NearDupIndex, NearDupStage
from processing.vision.frame_index import FrameIndex
from processing.work import Work

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
    "bunny_1s": ("bigbuckbunny", ["-ss", "2", "-t", "1", "-an"]),  # 1 s of a 5.3 s clip
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


def test_better_copy_becomes_canonical_and_every_member_is_repointed(embedded, tmp_path, stage_cfg):
    stage = neardup(stage_cfg, tmp_path / "index")
    half, crf = fresh(embedded, "bunny_half", "bunny_crf35")
    run(stage, [half])
    run(stage, [crf])  # full size at CRF 35 beats half size: half is demoted
    assert crf.item.status == "new" and [(u.video_id, u.duplicate_of) for u in crf.updates] == [
        ("bunny_half", "bunny_crf35")]
    original = fresh(embedded, "bigbuckbunny")[0]
    run(stage, [original])  # full resolution arrives last: it wins, both copies now point at it
    assert original.item.status == "new" and stage.stats.counts["kept_better"] == 2
    assert {u.video_id: u.duplicate_of for u in original.updates} == {"bunny_half": "bigbuckbunny",
                                                                      "bunny_crf35": "bigbuckbunny"}
    assert all(stage.frame_threshold <= u.similarity <= 1.0 for u in original.updates)
    index = stage.index.indexes[embedded["bigbuckbunny"].dedup_model]
    assert index.clusters == {"bigbuckbunny": ["bigbuckbunny", "bunny_crf35", "bunny_half"]}
    assert len(stage.indexes[embedded["bigbuckbunny"].dedup_model]) == 3  # members keep their frames


def test_a_short_trim_kept_first_is_joined_by_its_source(embedded, tmp_path, stage_cfg):
    """The relation is symmetric: a 1 s trim holds under a fifth of its source's frames, but all
    of its own frames are in the source, so the source joins it and becomes canonical."""
    stage = neardup(stage_cfg, tmp_path / "index")
    trim, original = fresh(embedded, "bunny_1s", "bigbuckbunny")
    run(stage, [trim])
    run(stage, [original])
    assert original.item.status == "new" and stage.stats.counts["kept_better"] == 1
    assert [(u.video_id, u.duplicate_of) for u in original.updates] == [("bunny_1s", "bigbuckbunny")]
    again = neardup(stage_cfg, tmp_path / "other")  # the other order gives the same cluster
    trim, original = fresh(embedded, "bunny_1s", "bigbuckbunny")
    run(again, [original, trim])
    assert (trim.item.status, trim.item.duplicate_of) == ("duplicate", "bigbuckbunny")


def test_copies_inside_one_batch_and_redelivery(embedded, tmp_path, stage_cfg):
    stage = neardup(stage_cfg, tmp_path / "index")
    works = fresh(embedded, "bikes", "bikes_crop80", "gradio_a")
    run(stage, works)
    assert [w.item.status for w in works] == ["new", "duplicate", "new"]
    again = fresh(embedded, "bikes")[0]  # the same video redelivered by the stream
    run(stage, [again])
    assert again.item.status == "new" and stage.stats.counts["already_indexed"] == 1
    # its members come back as updates (a batch lost after the decision repairs them all)
    assert [(u.video_id, u.duplicate_of) for u in again.updates] == [("bikes_crop80", "bikes")]
    crop = fresh(embedded, "bikes_crop80")[0]  # a duplicate redelivered: the same place again
    run(stage, [crop])
    assert (crop.item.status, crop.item.duplicate_of) == ("duplicate", "bikes")
    assert stage.stats.counts["already_duplicate"] == 1
    assert crop.item.similarity == works[1].item.similarity


def test_a_byte_copy_in_the_batch_of_a_demotion_stays_a_copy(embedded, tmp_path, stage_cfg):
    """A byte copy (the crawl's dedup: same id, another URL) shares its video's id: when a better
    video in its batch demotes that video, the copy must not take the demotion (the writer would
    then write the copy's URL, unlabelled, as the demoted video's document)."""
    stage = neardup(stage_cfg, tmp_path / "index")
    run(stage, fresh(embedded, "bunny_half"))
    copy_, original = fresh(embedded, "bunny_half", "bigbuckbunny")
    copy_.item.url, copy_.item.status, copy_.item.duplicate_of = "http://mirror.test/half.mp4", "duplicate", "bunny_half"
    run(stage, [copy_, original])
    assert [(u.video_id, u.duplicate_of) for u in original.updates] == [("bunny_half", "bigbuckbunny")]
    assert (copy_.item.status, copy_.item.duplicate_of) == ("duplicate", "bunny_half")


def test_index_persists_and_reloads(embedded, tmp_path, stage_cfg):
    stage = neardup(stage_cfg, tmp_path / "index", flush_seconds=3600)
    run(stage, fresh(embedded, "bigbuckbunny", "gradio_world"))
    stage.teardown()
    model = embedded["bigbuckbunny"].dedup_model
    folder = stage.folder(model)
    assert (folder / FrameIndex.META).exists()  # the snapshot's manifest (its files are named in it)
    assert FrameIndex.load_extra(folder, NearDupIndex.CLUSTERS)  # the clusters, in the same snapshot
    reloaded = neardup(stage_cfg, tmp_path / "index")
    cut = fresh(embedded, "world_cut20")[0]
    run(reloaded, [cut])
    assert (cut.item.status, cut.item.duplicate_of) == ("duplicate", "gradio_world")
    assert len(reloaded.indexes[model]) == 3 and len(reloaded.index.indexes[model]) == 2  # videos, clusters


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
    saved = FrameIndex.load(stage.folder(model), meta["dim"], meta["approx_threshold"])
    hashes = {v["video_id"]: v.get("phash") for v in saved.videos}  # a member keeps its hash
    assert hashes == {"bunny_half": half.item.phash, "bigbuckbunny": original.item.phash,
                      "gradio_world": world.item.phash}  # fmt: skip

    reloaded = neardup(stage_cfg, tmp_path / "index", frame_threshold=0.999)  # frames alone match nothing
    crf, half_again = fresh(embedded, "bunny_crf45", "bunny_half", hashed=True)
    half_again.item.video_id = "bunny_half_2"
    run(reloaded, [crf, half_again])
    assert (crf.item.status, crf.item.duplicate_of) == ("duplicate", "bigbuckbunny")
    assert (half_again.item.status, half_again.item.duplicate_of) == ("duplicate", "bigbuckbunny")
    assert reloaded.stats.counts["match_phash"] == 2

# -- the rule and the index on small exact vectors ------------------------------------------------
DIM = 24
RULE = MatchRule(frame_threshold=0.8, min_match=0.5, phash_max_distance=-1)


def _unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


SCENES = {g: _unit(np.random.default_rng(ord(g)).normal(size=(10, DIM))) for g in "ABCD"}


def clip(content: str, start: int = 0, stop: int = 10, seed: int = 0, frames: int = 8) -> np.ndarray:
    """A video's frame vectors: ``frames`` samples of scenes [start, stop) of ``content``, with
    a little noise (a re-encode); ``content`` "AB" is A's first half then B's (a compilation)."""
    scenes = np.concatenate([SCENES[g][start:stop] for g in content])
    idx = np.linspace(0, len(scenes) - 1, frames).round().astype(int)
    return _unit(scenes[idx] + 0.05 * np.random.default_rng(seed).normal(size=(frames, DIM)))


def service(tmp_path, name="index", rule=RULE) -> LocalIndexes:
    return LocalIndexes(tmp_path / name, rule, approx_threshold=10_000, flush_seconds=3600)


def test_the_match_is_symmetric_and_the_canonical_one_function_of_the_members():
    long, trim = clip("A", seed=1), clip("A", 0, 2, seed=2)  # a fifth of the source
    assert RULE.frame_match(long, trim) == RULE.frame_match(trim, long)
    assert RULE.link(long, trim, None)[0] == RULE.link(trim, long, None)[0] == "embedding"
    assert RULE.link(clip("A", seed=1), clip("B", seed=1), None)[0] is None
    members = [("orig", 100.0, 10.0), ("crf", 50.0, 10.02), ("trim", 500.0, 8.0), ("cut", 900.0, 9.0)]
    assert RULE.canonical(members) == "orig"  # trims never beat their source, whatever their bitrate
    for order in itertools.permutations(members):
        assert RULE.canonical(order) == "orig"
    assert RULE.canonical([("b", 1.0, 5.0), ("a", 1.0, 5.0)]) == "a"  # a tie: the smaller id
    assert RULE.canonical([("a", 1.0, 9.6), ("b", 2.0, 10.0)]) == "b"  # within the tolerance: quality


def test_the_same_clusters_and_canonicals_in_any_order_and_batch_size(tmp_path):
    cands = []
    for g in "ABC":  # per content: the original, a re-encode, a trim (higher bitrate), a small copy
        cands += [Candidate(f"{g}-orig", clip(g, seed=1), 100.0, 10.0),
                  Candidate(f"{g}-crf", clip(g, seed=2), 50.0, 10.0),
                  Candidate(f"{g}-trim", clip(g, 0, 2, seed=3), 400.0, 2.0),
                  Candidate(f"{g}-half", clip(g, seed=4), 25.0, 9.96)]  # fmt: skip
    results = []
    for n, batch in enumerate([1, 2, 5, 12]):
        for seed in range(3):
            order = cands[:]
            random.Random(100 * n + seed).shuffle(order)
            svc = service(tmp_path, f"i{n}-{seed}")
            for i in range(0, len(order), batch):
                svc.decide("m", order[i : i + batch])
            index = svc.indexes["m"]
            results.append({canon: sorted(m) for canon, m in index.clusters.items()})
    assert all(r == results[0] for r in results)
    assert results[0] == {f"{g}-orig": sorted(f"{g}-{k}" for k in ("orig", "crf", "trim", "half")) for g in "ABC"}


def test_a_video_bridging_two_clusters_merges_them_and_repoints_every_member(tmp_path):
    svc = service(tmp_path)
    first = svc.decide("m", [Candidate("a1", clip("A", seed=1), 10.0, 10.0),
                             Candidate("a2", clip("A", seed=2), 5.0, 10.0),
                             Candidate("b1", clip("B", seed=1), 10.0, 10.0)])  # fmt: skip
    assert [d.outcome for d in first] == ["kept", "duplicate", "kept"]
    # a compilation: half A, half B (both halves pass min_match=0.5), longer, the best copy
    (bridge,) = svc.decide("m", [Candidate("ab", clip("AB", frames=16, seed=3), 50.0, 20.0)])
    assert (bridge.outcome, bridge.counts.get("merged")) == ("kept_better", 1)
    assert {u.video_id: u.duplicate_of for u in bridge.updates} == {"a1": "ab", "a2": "ab", "b1": "ab"}
    index = svc.indexes["m"]
    assert index.clusters == {"ab": ["ab", "a1", "a2", "b1"]}
    assert {v: index.state(v)[0] for v in ("a1", "a2", "b1", "ab")} == dict.fromkeys(("a1", "a2", "b1", "ab"), "ab")
    # a bridge that is not the best: the better old canonical wins, the other cluster follows it
    svc2 = service(tmp_path, "other")
    svc2.decide("m", [Candidate("c1", clip("C", seed=1), 10.0, 10.0), Candidate("c2", clip("C", seed=2), 1.0, 10.0),
                      Candidate("d1", clip("D", seed=1), 20.0, 10.0)])  # fmt: skip
    (low,) = svc2.decide("m", [Candidate("cd", clip("CD", frames=16, seed=3), 1.0, 10.0)])
    assert (low.outcome, low.duplicate_of) == ("duplicate", "d1")
    assert {u.video_id: u.duplicate_of for u in low.updates} == {"c1": "d1", "c2": "d1"}


def test_a_longer_copy_can_promote_a_former_duplicate(tmp_path):
    """Durations within the tolerance compare by quality; a longer arrival can put the best copy
    out of range, and the canonical is then a member that was a duplicate: a promotion."""
    svc = service(tmp_path)
    b, c = svc.decide("m", [Candidate("b", clip("A", seed=1), 50.0, 9.7),
                            Candidate("c", clip("A", seed=2), 80.0, 9.4)])  # fmt: skip
    assert (b.outcome, c.outcome, svc.indexes["m"].state("b")[0]) == ("kept", "kept_better", "c")
    (a,) = svc.decide("m", [Candidate("a", clip("A", seed=3), 10.0, 10.0)])  # longest, the worst picture
    assert (a.outcome, a.duplicate_of, a.counts["promoted"]) == ("duplicate", "b", 1)
    assert {u.video_id: u.duplicate_of for u in a.updates} == {"b": None, "c": "b"}
    promoted = next(u for u in a.updates if u.promoted)
    assert promoted.fields() == {"status": "indexed", "duplicate_of": None, "similarity": None}


def test_replays_find_their_registration_even_after_a_demotion(tmp_path):
    svc = service(tmp_path)
    svc.decide("m", [Candidate("x", clip("A", seed=1), 1.0, 10.0)])
    svc.decide("m", [Candidate("y", clip("A", seed=2), 9.0, 10.0)])  # better: x demoted
    (again,) = svc.decide("m", [Candidate("x", clip("A", seed=1), 1.0, 10.0)])  # x's entry redelivered
    assert (again.outcome, again.duplicate_of) == ("already_duplicate", "y")
    assert [(u.video_id, u.duplicate_of) for u in again.updates] == [("y", None)]
    (canon,) = svc.decide("m", [Candidate("y", clip("A", seed=2), 9.0, 10.0)])
    assert canon.outcome == "already_indexed" and [u.video_id for u in canon.updates] == ["x"]
    assert svc.indexes["m"].frames.ntotal == 16  # registered once each


def test_clusters_persist_and_what_a_snapshot_lacks_is_decided_again(tmp_path):
    svc = service(tmp_path)
    svc.decide("m", [Candidate("x", clip("A", seed=1), 1.0, 10.0), Candidate("y", clip("A", seed=2), 9.0, 10.0),
                     Candidate("z", clip("B", seed=1), 1.0, 10.0)])  # fmt: skip
    svc.flush()
    index = svc.indexes["m"]
    again = NearDupIndex.load(svc.folder("m"), DIM, 10_000, RULE)
    assert again.clusters == {"y": ["y", "x"], "z": ["z"]} and again.state("x") == index.state("x")
    # a tool that saves the vectors alone (forget, an old version) leaves no clusters: decided again
    index.frames.add("late", clip("A", seed=5), 20.0, 10.0)  # registered, never decided: the best copy
    index.frames.save(svc.folder("m"))
    rebuilt = NearDupIndex.load(svc.folder("m"), DIM, 10_000, RULE)
    assert rebuilt.clusters == {"late": ["late", "x", "y"], "z": ["z"]}
    assert rebuilt.state("x") == ("late", pytest.approx(index.similarity("x", "y"), abs=0.05))
    assert rebuilt.frames.ntotal == index.frames.ntotal  # decided again, not registered twice
