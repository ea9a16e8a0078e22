"""NearDupStage and NearDupIndex: near-duplicate clusters decided one video at a time, whatever the arrival order.

**Where the decision is made.** ``NearDupIndex`` holds one embedding model's clusters: the
frame vectors and perceptual hashes of EVERY registered video (canonicals and duplicates),
each tagged with its cluster. ``LocalIndexes`` holds one per model under an index dir.
``NearDupStage`` turns each work into a ``Candidate`` and asks an index service for a
``Decision``: ``LocalIndexes`` in the same process (tests, benchmarks), or, in the workers,
the one shared index actor of the stream (processing/runtime/index.py) that every driver
finds by name: it is the only writer and makes decisions one at a time, so two copies
processed at the same moment by two workers can never both become canonical.

**When two videos match** (``MatchRule.link``, symmetric in the two videos). Embedding layer:
with ``S = frames(a) @ frames(b).T``, the fraction of a's frames whose best match in b is at
least ``frame_threshold`` (cosine), and the same fraction of b's frames in a; they match when
either reaches ``min_match`` (a 1 s trim matches its 10 s source whichever arrives first);
similarity: the larger median best match. Perceptual-hash layer (``item.phash``, 64 bits,
from the crawl): hashes within ``phash_max_distance`` bits match, similarity
``1 - distance / 64``, once the frames confirm it at a lower bar (the larger median best
match at least ``phash_confirm``: copies the embedding misses score 0.66-0.88 there,
different clips at most 0.41, and random 64-bit hashes within 10 bits would otherwise wrongly
match ~1% of new videos once a million are kept). The hash layer is asked first; ``method``
(``work --dedup-method``, ``DEDUP_METHOD``) keeps ``both`` layers, the ``phash`` alone (no
frame confirmation: the seed's method) or the ``embedding`` alone. The faiss search (top
``k`` frames per frame) and the hash lookup only PROPOSE videos; the relation itself is
computed on the stored vectors of both videos (as the index keeps them: lossy if the index
compresses vectors, which is then the same loss both ways).

**Clusters.** A new video joins the cluster of every registered video it matches (any
member, not only the canonical); when it matches members of several clusters it bridges
them and they merge. So clusters are the connected components of the match relation over
all registered videos: the same in any arrival order and batch size (given that the search
proposes the matching videos, which at this size it always does).

**The canonical** of a cluster is one function of its members (``MatchRule.canonical``), so it
does not depend on arrival order either: (1) the copy that covers the others' content: only
members at most ``max(duration_tolerance_s, duration_tolerance x longest)`` shorter than the
cluster's longest are eligible (a trim or a cut never beats its source; re-encodes differ by
a frame or two); (2) among those, the best picture: resolution x bitrate (``quality``:
padding bars do not count as resolution, a grayscale copy counts half); (3) ties: the
smallest ``video_id``. Every change of canonical yields a ``Demotion`` for EVERY member whose
canonical changed (``work.updates``), so ``duplicate_of`` always names the cluster's canonical.
Because the rule tolerates small duration differences it is not a total order, and a merge
can (rarely) make a former duplicate the canonical: a promotion (``Demotion.promoted``); the
writer then relabels that video.

**Replays are idempotent by video_id.** A video already registered (a redelivered stream
entry, even one that was demoted since) gets its current place back (``already_indexed`` /
``already_duplicate``) and, as ``updates``, the current place of every other member of its
cluster, so a batch lost after the decision still repairs every document it changed.

**Persistence.** Each model's snapshot (processing/vision/frame_index.py: a folder or a URI)
holds the vectors and, in the same generation, ``clusters.json`` (member -> cluster,
quality, duration, similarity); flushed every ``flush_seconds`` and at teardown. As the
clusters are a function of the registered videos, whatever a snapshot lacks is decided
again from its vectors on load (``NearDupIndex.load``). Takedowns: an id listed in
the index dir's ``forgotten.txt`` (``python -m processing forget``) is purged from the
loaded indexes as soon as the list changes (checked every batch, and before every save,
under the dir's lock), and a forgotten video arriving later is rejected ``opted_out:
forgotten``, never indexed; the ``id:`` takedown tombstones in Redis count too (the only list
of an index at a URI). The shared index (processing/runtime/index.py) gives ``LocalIndexes``
a journal (every candidate in Redis before it is decided, replayed after a restart) and, with
several shards, frames that live in shard actors; ``options`` (``NEARDUP_CODEC``...) reach
``FrameIndex.load``.

Outcomes counted: ``kept`` (a new cluster), ``kept_better`` (canonical of the cluster it
joined), ``duplicate``, ``already_indexed``, ``already_duplicate``, ``forgotten``,
``no_embeddings``, ``neardup_error``; finer: ``match_phash`` / ``match_embedding`` (which
layer linked it), ``merged`` (it bridged clusters), ``promoted``, ``phash_unconfirmed``,
``bad_phash``.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Protocol

import numpy as np

from crawler import locations
from crawler.errors import MediaError
from crawler.items import DUPLICATE, QUEUED
from crawler.provenance import is_exact_copy
from processing.stages.base import Resources, Stage
from processing.vision.frame_index import FORGOTTEN_FILE, FrameIndex, IndexOptions, locked, phash_value, read_forgotten
from processing.vision.image import looks_gray, trim_borders
from processing.work import Demotion, Work

log = logging.getLogger(__name__)

METHODS = ("both", "phash", "embedding")
PROPOSE_SLACK = 0.2  # how far below a layer's bar a searched (approximate) similarity still proposes


def quality(item, frames: np.ndarray | None = None) -> float:
    """Resolution x bitrate of the picture: the better copy is kept.

    Bitrate is bits/s (from the file size when the probe gave none). With the sampled
    frames at hand, padding bars do not count as resolution and a grayscale copy counts half.
    """
    pixels = float((item.width or 0) * (item.height or 0))
    rate = item.bit_rate or item.video_bit_rate
    if not rate and item.size_bytes and item.duration:
        rate = 8 * item.size_bytes / max(item.duration, 1e-3)
    if frames is not None and frames.ndim == 4 and len(frames):
        trimmed = trim_borders(frames)
        pixels *= (trimmed.shape[1] * trimmed.shape[2]) / (frames.shape[1] * frames.shape[2])
        if looks_gray(frames):
            pixels *= 0.5
    return pixels * float(rate or 1)


# -- what crosses between the stage and the index service ---------------------------------------
@dataclass(frozen=True)
class Candidate:
    """What the index needs of one video to decide it (small: no frames, no item)."""

    video_id: str
    vectors: np.ndarray  # (N, D) float32, L2-normalised frame embeddings
    quality: float = 0.0  # resolution x bitrate (``quality``)
    duration: float = 0.0  # seconds
    phash: str | None = None  # 16 hex chars, or None


@dataclass
class Decision:
    """Where one candidate stands after the index decided it."""

    video_id: str
    outcome: str  # kept | kept_better | duplicate | already_indexed | already_duplicate | forgotten
    duplicate_of: str | None = None  # its cluster's canonical (None when it is the canonical)
    similarity: float | None = None  # to that canonical
    updates: list[Demotion] = field(default_factory=list)  # other videos whose place changed
    counts: dict[str, int] = field(default_factory=dict)  # finer counters (match_phash, merged...)


class IndexService(Protocol):
    """What NearDupStage asks of an index: ``LocalIndexes`` here, or the shared index actor."""

    def decide(self, model: str, candidates: list[Candidate]) -> list[Decision]: ...

    def states(self, requests: dict[str, list[str]]) -> dict[str, tuple[str, float | None] | None]: ...

    def flush(self) -> None: ...


# -- the one rule ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class MatchRule:
    """When two videos match, and which member of a cluster is its canonical (module docstring)."""

    frame_threshold: float
    min_match: float
    phash_max_distance: int  # -1: no hash layer
    phash_confirm: float = 0.5
    method: str = "both"
    k: int = 32  # nearest frames the search proposes per frame
    duration_tolerance_s: float = 0.5
    duration_tolerance: float = 0.01  # of the longest member's duration

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"dedup method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not 0.0 < self.frame_threshold <= 1.0:
            raise ValueError(f"frame_threshold must be in (0, 1], got {self.frame_threshold!r}")
        if not 0.0 < self.min_match <= 1.0:
            raise ValueError(f"min_match must be in (0, 1], got {self.min_match!r}")
        if not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k must be a positive integer, got {self.k!r}")
        if not isinstance(self.phash_max_distance, int) or not -1 <= self.phash_max_distance <= 64:
            raise ValueError(f"phash_max_distance must be an integer in [-1, 64] (-1: off), "
                             f"got {self.phash_max_distance!r}")  # fmt: skip
        if not 0.0 <= self.phash_confirm <= 1.0:
            raise ValueError(f"phash_confirm must be in [0, 1], got {self.phash_confirm!r}")
        if self.duration_tolerance_s < 0 or not 0.0 <= self.duration_tolerance < 1.0:
            raise ValueError("duration_tolerance_s must be >= 0 and duration_tolerance in [0, 1), got "
                             f"{self.duration_tolerance_s!r}, {self.duration_tolerance!r}")  # fmt: skip

    @property
    def uses_hash(self) -> bool:
        return self.method != "embedding" and self.phash_max_distance >= 0

    @property
    def uses_frames(self) -> bool:
        return self.method != "phash"

    def frame_match(self, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
        """(votes, similarity) of two videos' frames, the same whichever is ``a``: votes is the
        larger of the two fractions of frames with a match >= ``frame_threshold`` in the other
        video, similarity the larger of the two medians of best matches."""
        if not len(a) or not len(b):
            return 0.0, 0.0
        sims = a @ b.T
        best_a, best_b = sims.max(axis=1), sims.max(axis=0)
        votes = max(float((best_a >= self.frame_threshold).mean()), float((best_b >= self.frame_threshold).mean()))
        return votes, max(float(np.median(best_a)), float(np.median(best_b)))

    def link(self, a: np.ndarray, b: np.ndarray, distance: int | None) -> tuple[str | None, float, bool]:
        """(layer, similarity, hash_unconfirmed) of two videos: the layer that matches them
        (``phash``, ``embedding``) or None; ``distance``: their hashes' Hamming distance (None
        when either has none). ``similarity`` is also given when they do not match."""
        hashed = self.uses_hash and distance is not None and distance <= self.phash_max_distance
        if self.method == "phash":
            return ("phash", 1.0 - distance / 64.0, False) if hashed else (None, 0.0, False)
        votes, similarity = self.frame_match(a, b)
        if hashed:
            if similarity >= self.phash_confirm:
                return "phash", 1.0 - distance / 64.0, False
        if votes >= self.min_match:
            return "embedding", similarity, False
        return None, similarity, hashed

    def canonical(self, members: Iterable[tuple[str, float, float]]) -> str:
        """The canonical video id of ``(video_id, quality, duration)`` members (module docstring)."""
        members = list(members)
        longest = max(d for _, _, d in members)
        floor = longest - max(self.duration_tolerance_s, self.duration_tolerance * longest)
        eligible = [m for m in members if m[2] >= floor]
        return min(eligible, key=lambda m: (-m[1], m[0]))[0]


# -- one model's clusters -------------------------------------------------------------------------
@dataclass(slots=True)
class Member:
    """A registered video's place: its cluster (named by the canonical's id) and what ranks it."""

    cluster: str
    quality: float
    duration: float
    similarity: float | None = None  # to the canonical (None for the canonical itself)


def _hamming(a: str | None, b: str | None) -> int | None:
    va, vb = phash_value(a), phash_value(b)
    return None if va is None or vb is None else (va ^ vb).bit_count()


class NearDupIndex:
    """One embedding model's near-duplicate clusters (see the module docstring).

    ``frames`` holds the vectors and hashes of every member; ``members`` maps each video id
    to its place; ``clusters`` maps a canonical id to its members (itself first).
    """

    CLUSTERS = "clusters.json"

    def __init__(self, rule: MatchRule, frames: FrameIndex):
        self.rule = rule
        self.frames = frames
        self.members: dict[str, Member] = {}
        self.clusters: dict[str, list[str]] = {}
        self._dirty = False

    @property
    def dirty(self) -> bool:
        return self._dirty or self.frames.dirty

    def __len__(self) -> int:
        """Number of clusters (= canonical videos)."""
        return len(self.clusters)

    # -- decisions ---------------------------------------------------------------------------------
    def decide(self, c: Candidate) -> Decision:
        """Register ``c`` (once: a replay gets its place back) and say where it stands."""
        if c.video_id in self.members:
            return self._replay(c.video_id)
        num = self.frames.add(c.video_id, c.vectors, c.quality, c.duration, c.phash)
        mine = self.frames.video_vectors(c.video_id)  # as stored: both sides of a pair alike
        counts: dict[str, int] = {}
        links = self._links(c, num, mine, counts)
        self.members[c.video_id] = Member(c.video_id, c.quality, c.duration)
        self._dirty = True
        if not links:
            self.clusters[c.video_id] = [c.video_id]
            return Decision(c.video_id, "kept", counts=counts)
        layer = "phash" if "phash" in links.values() else "embedding"
        counts[f"match_{layer}"] = 1
        touched = sorted({self.members[v].cluster for v in links})
        if len(touched) > 1:
            counts["merged"] = 1
        merged = [m for k in touched for m in self.clusters.pop(k)] + [c.video_id]
        canon = self.rule.canonical((v, self.members[v].quality, self.members[v].duration) for v in merged)
        updates = self._repoint(merged, canon, skip=c.video_id)
        if any(u.promoted for u in updates):
            counts["promoted"] = 1
        if canon == c.video_id:
            return Decision(c.video_id, "kept_better", updates=updates, counts=counts)
        member = self.members[c.video_id]
        return Decision(c.video_id, "duplicate", canon, member.similarity, updates, counts)

    def _links(self, c: Candidate, num: int, mine: np.ndarray, counts: dict[str, int]) -> dict[str, str]:
        """Registered video id -> the layer that links it to ``c`` (every match, not the best)."""
        rule = self.rule
        proposed: set[int] = set()
        if rule.uses_frames:
            # no frame this close: no match either way (with slack: the search's similarities
            # come from compressed codes, the decision from the stored vectors)
            bar = min(rule.frame_threshold, rule.phash_confirm if rule.uses_hash else 1.0) - PROPOSE_SLACK
            for other, sims in self.frames.best_per_video(mine, rule.k).items():
                if other != num and float(sims.max()) >= bar:
                    proposed.add(other)
        if rule.uses_hash and c.phash:
            proposed.update(n for n, _ in self.frames.hashes_within(c.phash, rule.phash_max_distance) if n != num)
        links: dict[str, str] = {}
        for other in sorted(proposed):
            vid = self.frames.videos[other]["video_id"]
            if vid not in self.members:
                continue
            theirs = self.frames.video_vectors(vid) if rule.uses_frames else mine[:0]
            layer, _, unconfirmed = rule.link(mine, theirs, _hamming(c.phash, self.frames.videos[other].get("phash")))
            if layer:
                links[vid] = layer
            elif unconfirmed:
                counts["phash_unconfirmed"] = counts.get("phash_unconfirmed", 0) + 1
        return links

    def similarity(self, a: str, b: str, vb: np.ndarray | None = None) -> float:
        """How similar two registered videos are, by the layer that links them (hash first),
        else by their frames: what ``similarity`` says next to ``duplicate_of`` (``vb``: b's
        stored vectors, when the caller has them)."""
        ra, rb = self.frames.videos[self.frames.by_id[a]], self.frames.videos[self.frames.by_id[b]]
        empty = np.zeros((0, self.frames.dim), np.float32)
        va = self.frames.video_vectors(a) if self.rule.uses_frames else empty
        if vb is None:
            vb = self.frames.video_vectors(b) if self.rule.uses_frames else empty
        _, sim, _ = self.rule.link(va, vb, _hamming(ra.get("phash"), rb.get("phash")))
        return round(float(sim), 4)

    def _repoint(self, merged: list[str], canon: str, skip: str) -> list[Demotion]:
        """Make ``canon`` the canonical of ``merged``; Demotions for members (but ``skip``) that moved."""
        self.clusters[canon] = [canon] + sorted(v for v in merged if v != canon)  # the same in any order
        updates = []
        theirs = None  # the canonical's vectors, read once
        for vid in merged:
            member = self.members[vid]
            before = member.cluster
            member.cluster = canon
            if vid == canon:
                member.similarity = None
                if before != vid and vid != skip:
                    updates.append(Demotion(vid, None, None))  # a former duplicate: promoted
                continue
            if before == canon and member.similarity is not None and vid != skip:
                continue  # already pointed at it
            if theirs is None:
                theirs = self.frames.video_vectors(canon) if self.rule.uses_frames else np.zeros((0, self.frames.dim))
            member.similarity = self.similarity(vid, canon, theirs)
            if vid != skip:
                updates.append(Demotion(vid, canon, member.similarity))
        return updates

    def _replay(self, vid: str) -> Decision:
        member = self.members[vid]
        canon = member.cluster
        others = [Demotion(v, None, None) if v == canon else Demotion(v, canon, self.members[v].similarity)
                  for v in self.clusters.get(canon, []) if v != vid]  # fmt: skip
        if canon == vid:
            return Decision(vid, "already_indexed", updates=others)
        return Decision(vid, "already_duplicate", canon, member.similarity, others)

    def state(self, vid: str) -> tuple[str, float | None] | None:
        """(canonical, similarity to it) of a registered video, or None."""
        member = self.members.get(vid)
        return None if member is None else (member.cluster, member.similarity)

    # -- takedowns -----------------------------------------------------------------------------------
    def purge(self, video_ids: Iterable[str]) -> int:
        """Drop videos (a takedown: ``forget`` removes whole clusters); a cluster that loses its
        canonical but keeps members elects a new one. Returns how many were registered."""
        gone = {v for v in video_ids if v in self.members}
        self.frames.purge(gone)
        if not gone:
            return 0
        for canon in {self.members[v].cluster for v in gone}:
            rest = [v for v in self.clusters.pop(canon, []) if v not in gone]
            if rest:
                new = self.rule.canonical((v, self.members[v].quality, self.members[v].duration) for v in rest)
                if new != canon:
                    log.warning("takedown removed canonical %s but not its cluster; %s is canonical now", canon, new)
                self._repoint(rest, new, skip="")
        for v in gone:
            del self.members[v]
        self._dirty = True
        return len(gone)

    # -- persistence ---------------------------------------------------------------------------------
    def save(self, target: str | Path) -> None:
        """One snapshot: the vectors, and the clusters as a file of the same generation."""
        members = {v: [m.cluster, m.quality, m.duration, m.similarity] for v, m in self.members.items()}
        self.frames.save(target, extras={self.CLUSTERS: json.dumps({"version": 1, "members": members}).encode()})
        self._dirty = False

    @classmethod
    def load(cls, target: str | Path, dim: int, approx_threshold: int, rule: MatchRule,
             options: IndexOptions | None = None, frames=None) -> NearDupIndex:  # fmt: skip
        """The saved clusters at ``target`` with their vectors, or an empty index.

        The clusters are a function of the registered videos (the rule does not depend on
        order), so what the snapshot lacks is decided again from the stored vectors: every
        video when it holds no clusters (an index saved before clusters existed, or by a tool
        that saved the vectors alone), a video registered without a record; a record whose
        vectors are gone (a takedown) is dropped, and a cluster that lost its canonical elects one.
        ``options`` (``NEARDUP_CODEC``...) go to ``FrameIndex.load``; ``frames``: vectors loaded
        already (remote shards: processing/runtime/index.py), whose class reads the clusters file.
        """
        if frames is None:
            frames = FrameIndex.load(target, dim, approx_threshold, options)
        index = cls(rule, frames)
        live = {r["video_id"]: r for r in index.frames.videos if r["alive"]}
        raw = type(frames).load_extra(target, cls.CLUSTERS)
        saved = json.loads(raw)["members"] if raw else {}
        for vid, (cluster, q, duration, similarity) in saved.items():
            if vid in live:
                index.members[vid] = Member(cluster, q, duration, similarity)
        by_cluster: dict[str, list[str]] = {}
        for vid, m in index.members.items():
            by_cluster.setdefault(m.cluster, []).append(vid)
        for canon, vids in sorted(by_cluster.items()):
            if canon in vids:
                index.clusters[canon] = [canon] + sorted(v for v in vids if v != canon)
            else:  # its canonical was removed: elect again among the rest
                new = rule.canonical((v, index.members[v].quality, index.members[v].duration) for v in vids)
                index._repoint(vids, new, skip="")
        missing = [r for vid, r in live.items() if vid not in index.members]
        if missing:
            log.info("near-dup index %s: deciding %d registered videos again from their vectors", target, len(missing))
        for r in missing:
            vid = r["video_id"]
            index.decide(Candidate(vid, index.frames.video_vectors(vid), float(r.get("quality") or 0.0),
                                   float(r.get("duration") or 0.0), r.get("phash")))  # fmt: skip
        index._dirty = bool(missing)
        return index


# -- every model's clusters under one index dir ---------------------------------------------------
def model_folder(index_dir: str | Path, model: str) -> str | Path:
    """Where one embedding model's index goes under ``index_dir`` (a folder, or a URI: a URI then)."""
    safe = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in model)[:120]
    folder = locations.local_file(index_dir)
    return folder / safe if folder is not None else f"{str(index_dir).rstrip('/')}/{safe}"


def forgotten_ids(index_dir: Path | None, tombstones=None) -> set[str]:
    """The forgotten video ids: a local index dir's ``forgotten.txt`` (None: an index at a URI
    has none) and the ``id:`` takedown tombstones in Redis (crawler/takedowns.py), when given."""
    ids = read_forgotten(index_dir) if index_dir is not None else set()
    return ids | (tombstones.video_ids() if tombstones is not None else set())


class LocalIndexes:
    """The index service in this process: one ``NearDupIndex`` per embedding model (never
    mixed) under ``index_dir`` (a folder, or a URI: ``NEARDUP_INDEX_URI``), flushed every
    ``flush_seconds``; takedowns read from the dir's ``forgotten.txt`` and, given ``tombstones``
    (crawler/takedowns.py), from Redis (the only list when the index lives at a URI).

    ``journal`` (processing/runtime/index.py: a Redis stream): every candidate is appended to
    it before it is decided and the journal is trimmed after a flush that covers it; a model's
    index replays it after loading its snapshot, so a restarted index loses nothing.
    ``frames_loader(target, model, dim)``: the vectors of a model (default ``FrameIndex.load``;
    the shared index passes remote shards).
    """

    def __init__(self, index_dir: str | Path, rule: MatchRule, approx_threshold: int, flush_seconds: float = 5.0,
                 options: IndexOptions | None = None, *, journal=None, tombstones=None,
                 frames_loader=None):  # fmt: skip
        if flush_seconds < 0:
            raise ValueError(f"flush_seconds must be >= 0, got {flush_seconds!r}")
        self.index_dir: Path | None = locations.local_file(index_dir)  # forgotten.txt, the lock; None: a URI
        self.target: str | Path = self.index_dir if self.index_dir is not None else index_dir
        self.rule = rule
        self.approx_threshold = approx_threshold
        self.flush_seconds = float(flush_seconds)
        self.options = options
        self.journal = journal
        self.tombstones = tombstones
        self.frames_loader = frames_loader
        self.indexes: dict[str, NearDupIndex] = {}
        self.forgotten: set[str] = set()
        self._forgotten_stamp: tuple | None = None
        self._last_flush = time.monotonic()
        if self.index_dir is not None:
            self.index_dir.mkdir(parents=True, exist_ok=True)

    def folder(self, model: str) -> str | Path:
        return model_folder(self.target, model)

    def index_for(self, model: str, dim: int) -> NearDupIndex:
        """The index of one embedding model, loaded the first time it is needed (its snapshot,
        then the journal's candidates of that model)."""
        if model not in self.indexes:
            target = self.folder(model)
            frames = self.frames_loader(target, model, dim) if self.frames_loader else None
            index = NearDupIndex.load(target, dim, self.approx_threshold, self.rule, self.options, frames)
            index.purge(self.forgotten)
            self.indexes[model] = index
            if self.journal is not None:
                replayed = [index.decide(c) for c in self.journal.candidates(model) if c.video_id not in self.forgotten]
                if replayed:
                    log.info("near-dup index %s: %d journalled candidates replayed", model, len(replayed))
        return self.indexes[model]

    def recover(self) -> None:
        """Load every model the journal names (a restarted index: nothing decided is lost)."""
        if self.journal is not None:
            self.check_forgotten()
            for model, dim in self.journal.models().items():
                self.index_for(model, dim)

    def check_forgotten(self) -> None:
        """Purge the videos ``forget`` listed since the last look (one stat, one HLEN when nothing changed)."""
        try:
            mtime = (self.index_dir / FORGOTTEN_FILE).stat().st_mtime_ns if self.index_dir else None
        except FileNotFoundError:
            mtime = None
        stamp = (mtime, self.tombstones.version() if self.tombstones is not None else None)
        if stamp == self._forgotten_stamp or stamp == (None, None) or stamp == (None, 0):
            return
        self._forgotten_stamp = stamp
        self.forgotten = forgotten_ids(self.index_dir, self.tombstones)
        for index in self.indexes.values():
            if index.purge(self.forgotten):
                log.info("purged forgotten videos from the near-duplicate index")

    def decide(self, model: str, candidates: list[Candidate]) -> list[Decision]:
        """One decision per candidate, in order (copies among them dedup against each other)."""
        self.check_forgotten()
        if self.journal is not None and candidates:
            self.index_for(model, int(candidates[0].vectors.shape[1]))  # loaded (and replayed) first
            self.journal.append(model, candidates)  # before deciding: a crash from here on replays them
        self._prefetch(model, candidates)
        out = []
        for c in candidates:
            if c.video_id in self.forgotten:
                out.append(Decision(c.video_id, "forgotten"))
                continue
            out.append(self.index_for(model, int(c.vectors.shape[1])).decide(c))
        if self.flush_seconds == 0 or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()
        return out

    def _prefetch(self, model: str, candidates: list[Candidate]) -> None:
        """Frames over remote shards answer a batch's adds and searches in one round trip
        (processing/runtime/index.py: ``RemoteShards.prefetch``); new videos only, in order."""
        new: dict[str, Candidate] = {}
        for c in candidates:
            if c.video_id not in self.forgotten:
                new.setdefault(c.video_id, c)
        if not new:
            return
        index = self.index_for(model, int(next(iter(new.values())).vectors.shape[1]))
        prefetch = getattr(index.frames, "prefetch", None)
        if prefetch is not None:
            rule = self.rule
            prefetch([c for v, c in new.items() if v not in index.members], rule.k if rule.uses_frames else 0,
                     rule.phash_max_distance if rule.uses_hash else -1)  # fmt: skip

    def states(self, requests: dict[str, list[str]]) -> dict[str, tuple[str, float | None] | None]:
        """video id -> (canonical, similarity) now, for ids of each model (None: not registered)."""
        out: dict[str, tuple[str, float | None] | None] = {}
        for model, ids in requests.items():
            index = self.indexes.get(model)
            for vid in ids:
                out[vid] = index.state(vid) if index is not None else None
        return out

    def flush(self) -> None:
        covered = self.journal.last() if self.journal is not None else None  # what this flush saves
        if any(index.dirty for index in self.indexes.values()):
            # `forget` edits a local index's files under the same lock
            with locked(self.index_dir) if self.index_dir else nullcontext():
                self.check_forgotten()
                for model, index in self.indexes.items():
                    if index.dirty:
                        index.save(self.folder(model))
        if covered is not None:
            self.journal.trim(covered)
        self._last_flush = time.monotonic()

    def sizes(self) -> dict[str, dict[str, int]]:
        """model -> {"videos", "clusters"}: what the index holds."""
        return {m: {"videos": len(i.members), "clusters": len(i.clusters)} for m, i in self.indexes.items()}


# -- the stage ------------------------------------------------------------------------------------
class NearDupStage(Stage):
    """Put every video in its near-duplicate cluster: the canonical stays, the others are ``duplicate``."""

    name = "neardup"
    resources = Resources(num_cpus=1)
    error_code = "neardup_error"

    def __init__(
        self,
        *,
        index_dir: str | Path,
        frame_threshold: float,
        min_match: float,
        approx_threshold: int,
        phash_max_distance: int,
        k: int = 32,
        flush_seconds: float = 5.0,
        phash_confirm: float = 0.5,
        method: str = "both",
        duration_tolerance_s: float = 0.5,
        duration_tolerance: float = 0.01,
        index: IndexService | None = None,
        options: IndexOptions | None = None,
        index_uri: str = "",
    ):
        self.rule = MatchRule(frame_threshold=frame_threshold, min_match=min_match,
                              phash_max_distance=phash_max_distance, phash_confirm=phash_confirm,
                              method=method, k=k, duration_tolerance_s=duration_tolerance_s,
                              duration_tolerance=duration_tolerance)  # fmt: skip
        if flush_seconds < 0:
            raise ValueError(f"flush_seconds must be >= 0, got {flush_seconds!r}")
        self.index_dir = Path(index_dir)
        self.index_target: str | Path = index_uri or self.index_dir  # where the snapshots go
        self.options = options  # how the index stores vectors (NEARDUP_CODEC...; None: the defaults)
        self.approx_threshold = approx_threshold
        self.flush_seconds = float(flush_seconds)
        self.index = index  # None: LocalIndexes in this process (built in setup)

    # the rule's values, as the stage's own settings
    frame_threshold = property(lambda self: self.rule.frame_threshold)
    min_match = property(lambda self: self.rule.min_match)
    phash_max_distance = property(lambda self: self.rule.phash_max_distance)
    phash_confirm = property(lambda self: self.rule.phash_confirm)
    method = property(lambda self: self.rule.method)
    k = property(lambda self: self.rule.k)

    @classmethod
    def from_config(cls, cfg, **overrides) -> NearDupStage:
        return cls(**{"index_dir": cfg.index_dir, "frame_threshold": cfg.neardup_threshold,
                      "min_match": cfg.neardup_min_match,
                      "approx_threshold": cfg.neardup_approx_threshold,
                      "phash_max_distance": cfg.phash_max_distance,
                      "method": getattr(cfg, "dedup_method", "both"),
                      "options": getattr(cfg, "neardup_index", None),
                      "index_uri": getattr(cfg, "index_uri", "") or ""} | overrides)  # fmt: skip

    def local_service(self) -> LocalIndexes:
        """The index service this stage's settings describe, in this process."""
        return LocalIndexes(self.index_target, self.rule, self.approx_threshold, self.flush_seconds, self.options)

    def setup(self) -> None:
        if self.index is None:
            self.index = self.local_service()

    @property
    def indexes(self) -> dict[str, FrameIndex]:
        """model -> its FrameIndex (every member's vectors), with the local service only."""
        return {m: i.frames for m, i in getattr(self.index, "indexes", {}).items()}

    def folder(self, model: str) -> Path:
        return model_folder(self.index_target, model)  # the same layout wherever the service runs

    def candidate(self, work: Work) -> tuple[str, Candidate]:
        """(model, candidate) of one work; MediaError ``no_embeddings`` when it has none."""
        vectors = work.dedup_embeddings if work.dedup_embeddings is not None else work.embeddings
        model = work.dedup_model or work.item.embedding_model
        if vectors is None or len(vectors) == 0 or not model:
            raise MediaError("no_embeddings", "nothing to compare")
        item = work.item
        phash = item.phash if phash_value(item.phash) is not None else None
        if item.phash is not None and phash is None:
            self.stats.count("bad_phash")  # malformed: this item skips the hash layer
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(vectors), -1)
        return model, Candidate(item.video_id or item.sha256 or item.url, vectors, quality(item, work.frames),
                                float(item.duration or 0.0), phash)  # fmt: skip

    def process_batch(self, works: list[Work]) -> list[Work]:
        """The batch's candidates go to the index in one call per model, in batch order."""
        pending = [w for w in works if not w.skip]
        with self.stats.timer(videos=len(pending)):
            by_model: dict[str, list[tuple[Work, Candidate]]] = {}
            for work in pending:
                try:
                    model, cand = self.candidate(work)
                except MediaError as exc:
                    work.item.fail(self.name, exc.code, exc.message or None)
                    self.stats.count(exc.code)
                    continue
                by_model.setdefault(model, []).append((work, cand))
            # an unreachable index is no fault of the videos: it raises, and the batch is retried
            for model, pairs in by_model.items():
                decisions = self.index.decide(model, [c for _, c in pairs])
                for (work, _), decision in zip(pairs, decisions):
                    self.apply(work, decision, works)
        return works

    def apply(self, work: Work, d: Decision, batch: list[Work]) -> None:
        """Record a decision on its work (and on works of this batch whose place it changed)."""
        item = work.item
        if d.outcome == "forgotten":
            item.reject(self.name, "opted_out", "forgotten")
        elif d.duplicate_of:
            item.status, item.duplicate_of, item.similarity = DUPLICATE, d.duplicate_of, d.similarity
        work.updates = list(d.updates)
        self.stats.count(d.outcome)
        for key, n in d.counts.items():
            self.stats.count(key, n)
        if d.outcome in ("already_indexed", "already_duplicate"):
            return  # a replay's updates are the cluster as it stands: the writer compares them
        # the works of this batch whose place an update names; a byte copy of a video shares its
        # id but is not that video (the crawl decided it: it keeps pointing at its own bytes)
        here = {w.item.video_id: w for w in batch if not is_exact_copy(w.item)}
        for u in d.updates:
            other = here.get(u.video_id)
            if other is None or other is work:
                continue
            if u.promoted:  # labels must see it: back to undecided
                other.item.status, other.item.duplicate_of, other.item.similarity = QUEUED, None, None
            else:
                other.item.status, other.item.duplicate_of, other.item.similarity = (
                    DUPLICATE, u.duplicate_of, u.similarity)  # fmt: skip

    def process_one(self, work: Work) -> str:  # pragma: no cover - process_batch decides per batch
        raise NotImplementedError("NearDupStage decides a batch at a time (process_batch)")

    def flush(self) -> None:
        if self.index is not None:
            self.index.flush()

    def teardown(self) -> None:
        self.flush()
