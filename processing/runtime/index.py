"""The near-duplicate index every driver shares: one decider actor per stream, the only writer, over shard actors.

Why one decider: two copies processed at the same moment by two workers must never both become
canonical, so the decision has ONE place where it is made, one video at a time. Every
``python -m processing work`` on a Ray cluster (``--ray-address``, or the machine's shared
local Ray: processing/runtime/localray.py) finds it by name: ``neardup-index:<KEY_PREFIX>``
in the Ray namespace ``videopipe``, created by the first driver with
``get_if_exists=True, lifetime="detached"`` (so it does not die with the driver that made it).
It hosts a ``LocalIndexes`` (processing/stages/neardup.py: one ``NearDupIndex`` per embedding
model, never mixed) and executes one call at a time (a Ray actor's default), so each decision
sees every earlier one. Each driver's ``NearDupStage`` (on its own neardup pool actor, where the
frames are) sends only candidates: frame vectors, quality, duration, phash.

**Shards** (``NEARDUP_INDEX_SHARDS``). With ``n > 1`` the frame codes, exact vectors and hashes
live in ``n`` shard actors (``ShardActor``, named ``neardup-shard:<KEY_PREFIX>:<i>-of-<n>``,
detached, found with ``get_if_exists``); shard ``i`` holds, per model, the ``FrameIndex`` of
the videos with ``shard_of(video_id, n) == i`` (processing/vision/shards.py). The decider keeps
only the clusters (``NearDupIndex.members``) and sees the shards through ``RemoteShards``, the
``FrameIndex`` API that ``NearDupIndex`` uses: searches (``best_per_video``, ``hashes_within``)
go to every shard in parallel and are merged, ``add`` / ``video_vectors`` go to the owning
shard. With ``n == 1`` the one ``FrameIndex`` lives in the decider itself (no hop).

**Snapshots** go to ``NEARDUP_INDEX_URI`` (a folder or an fsspec URI; empty: ``DATA_DIR/index``):
per model ``<uri>/<model>/``, with ``n > 1`` each shard under ``shard-SSS-of-NNN/`` and the
decider's ``clusters.json`` beside ``shards.json`` (the layout ``ShardedIndex`` reads), so an
actor restarted on another node loads them.

**Nothing decided is lost.** With Redis (``REDIS_URL`` or the embedded server recorded under
``DATA_DIR``) the decider appends every candidate to the stream ``<prefix>:index:journal``
(``Journal``: id, float16 vectors, quality, duration, phash) BEFORE deciding it, and trims it
after a flush (decider and every shard saved) that covers it. A restarted decider loads its
snapshot, then decides the journal's candidates again; a restarted shard loads its snapshot,
then adds the journal's videos that are its own. Both are idempotent by video_id. Actors are
``max_restarts=-1``; calls to a shard being restarted are retried by Ray, and a call that
meets a dead decider is sent again to the actor found or created anew by name. Without Redis
(a test, a tool) decisions since the last flush (``flush_seconds``) die with the decider.

**Takedowns**: the ids in the index dir's ``forgotten.txt`` (local index) and the ``id:``
tombstones in Redis (crawler/takedowns.py; the only list for an index at a URI) are purged
from the loaded indexes when either changes and never replayed from the journal.

Drivers ``attach`` at start and ``detach`` at the end; the last to detach flushes the index,
ends the shards, and the decider ends, so a later run reloads exactly what was saved. A
driver killed without detaching leaves the actors up. The writer asks ``states`` after each
batch, so documents follow decisions made by other drivers meanwhile (writer.py).

The actors ask Ray for no CPU (``num_cpus=0``; with ``INDEX_RESOURCE`` set, ``0.001`` of that
custom resource, so they run only on nodes that offer it). ``where()`` says where each runs.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import ray

from crawler import locations
from crawler.connection import recorded_url
from crawler.keys import RedisKeys
from processing.config import ProcessingConfig
from processing.pipeline import load_stage_class
from processing.stages.neardup import (Candidate, Decision, LocalIndexes, MatchRule, NearDupStage, forgotten_ids,
                                       model_folder)
from processing.vision.frame_index import MAX_FRAMES, SLOT_BITS, FrameIndex, IndexOptions, best_by_video, phash_value
from processing.vision.shards import (ShardedIndex, check_shards, global_num, local_num, merge_hashes, shard_of,
                                      write_manifest)

log = logging.getLogger(__name__)

NAMESPACE = "videopipe"  # the Ray namespace of the project's named actors
ATTACH_TRIES = 20  # the actor may be ending (its last driver detached) when another attaches
VECTOR_CACHE = 256  # videos whose stored vectors the decider keeps at hand (remote shards)


def index_name(key_prefix: str) -> str:
    """The shared index (decider) actor's name for a stream (one per KEY_PREFIX on a Ray cluster)."""
    return f"neardup-index:{key_prefix}"


def shard_name(key_prefix: str, shard: int, n: int) -> str:
    """The name of frame-code shard ``shard`` of ``n`` of a stream's shared index."""
    return f"neardup-shard:{key_prefix}:{shard}-of-{n}"


def journal_url(cfg: ProcessingConfig) -> str | None:
    """The Redis the index actors journal to: ``REDIS_URL``, else the embedded server recorded
    under ``DATA_DIR`` (crawler/connection.py), else None (no journal)."""
    return recorded_url(cfg.data_dir)


@dataclass(frozen=True)
class IndexSpec:
    """What every index actor of a stream is built from (picklable: it travels to the actors)."""

    target: str  # snapshots: a folder or a URI
    rule: MatchRule
    approx_threshold: int
    flush_seconds: float
    options: IndexOptions | None = None
    shards: int = 1
    key_prefix: str = "vp"
    redis_url: str | None = None  # the journal's Redis (None: no journal)
    resource: str = ""  # custom Ray resource the actors ask 0.001 of ("" : none)
    namespace: str = NAMESPACE

    def actor_options(self, name: str, max_task_retries: int) -> dict:
        opts = dict(name=name, namespace=self.namespace, get_if_exists=True, lifetime="detached",
                    num_cpus=0, max_restarts=-1, max_task_retries=max_task_retries)  # fmt: skip
        if self.resource:
            opts["resources"] = {self.resource: 0.001}
        return opts

    def redis(self):
        from crawler.connection import get_redis

        return get_redis(self.redis_url) if self.redis_url else None

    def journal(self, client) -> Journal | None:
        return Journal(client, RedisKeys(self.key_prefix).index_journal) if client is not None else None

    def tombstones(self, client):
        from crawler.takedowns import Tombstones

        return Tombstones(client, RedisKeys(self.key_prefix)) if client is not None else None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Journal:
    """The decided candidates not yet covered by a flush: a Redis stream (module docstring)."""

    PAGE = 256

    def __init__(self, client, key: str):
        self.client, self.key = client, key

    def append(self, model: str, candidates: list[Candidate]) -> None:
        with self.client.pipeline(transaction=False) as pipe:
            for c in candidates:
                v = np.ascontiguousarray(c.vectors, dtype=np.float16)
                pipe.xadd(self.key, {"m": model, "v": c.video_id, "x": v.tobytes(), "n": v.shape[0],
                                     "d": v.shape[1], "q": repr(float(c.quality)), "t": repr(float(c.duration)),
                                     "h": c.phash or ""})  # fmt: skip
            pipe.execute()

    def entries(self) -> Iterator[tuple[str, dict]]:
        """(entry id, fields) of every entry, oldest first."""
        start = "-"
        while True:
            page = self.client.xrange(self.key, min=start, max="+", count=self.PAGE)
            for entry_id, fields in page:
                yield _text(entry_id), {_text(k): v for k, v in fields.items()}
            if len(page) < self.PAGE:
                return
            ms, seq = _text(page[-1][0]).split("-")
            start = f"{ms}-{int(seq) + 1}"

    def candidates(self, model: str) -> Iterator[Candidate]:
        for _, f in self.entries():
            if _text(f["m"]) == model:
                shape = (int(f["n"]), int(f["d"]))
                vectors = np.frombuffer(f["x"], np.float16).reshape(shape).astype(np.float32)
                yield Candidate(_text(f["v"]), vectors, float(f["q"]), float(f["t"]), _text(f["h"]) or None)

    def models(self) -> dict[str, int]:
        """model -> vector dim, of every model with journalled candidates."""
        return {_text(f["m"]): int(f["d"]) for _, f in self.entries()}

    def last(self) -> str | None:
        newest = self.client.xrevrange(self.key, max="+", min="-", count=1)
        return _text(newest[0][0]) if newest else None

    def trim(self, upto: str) -> None:
        """Drop the entries up to ``upto`` (inclusive): a flush saved them."""
        ms, seq = upto.split("-")
        self.client.xtrim(self.key, minid=f"{ms}-{int(seq) + 1}")

    def __len__(self) -> int:
        return int(self.client.xlen(self.key))


# -- the frame-code shards --------------------------------------------------------------------------
class ShardActor:
    """One shard of every model's frames: the videos with ``shard_of(id, n) == shard``."""

    def __init__(self, spec: IndexSpec, shard: int):
        self.spec, self.shard, self.n = spec, shard, spec.shards
        client = spec.redis()
        self.journal, self.tombstones = spec.journal(client), spec.tombstones(client)
        self.indexes: dict[str, FrameIndex] = {}
        self.saved_to: dict[str, str] = {}

    def target(self, model: str) -> str | Path:
        return ShardedIndex.shard_target(model_folder(self.spec.target, model), self.shard, self.n)

    def _index(self, model: str, dim: int) -> FrameIndex:
        """A model's shard: its snapshot, then its videos from the journal (a restart loses nothing)."""
        if model not in self.indexes:
            index = FrameIndex.load(self.target(model), dim, self.spec.approx_threshold, self.spec.options)
            forgotten = forgotten_ids(locations.local_file(self.spec.target), self.tombstones)
            index.purge(forgotten)
            if self.journal is not None:
                mine = [(c.video_id, c.vectors, c.quality, c.duration, c.phash) for c in self.journal.candidates(model)
                        if shard_of(c.video_id, self.n) == self.shard and c.video_id not in forgotten]  # fmt: skip
                if mine:
                    index.add_many(mine)
                    log.info("near-dup shard %d/%d %s: %d journalled videos added", self.shard, self.n, model,
                             len(mine))  # fmt: skip
            self.indexes[model] = index
        return self.indexes[model]

    def add(self, model: str, dim: int, video_id: str, vectors: np.ndarray, quality: float, duration: float,
            phash: str | None) -> tuple[int, np.ndarray, dict]:  # fmt: skip
        index = self._index(model, dim)
        num = index.add(video_id, vectors, quality, duration, phash)
        return num, index.video_vectors(video_id), index.videos[num]

    def video_vectors(self, model: str, dim: int, video_id: str, exact: bool = True) -> np.ndarray:
        return self._index(model, dim).video_vectors(video_id, exact)

    def prepare(self, model: str, dim: int, own: list[tuple[int, tuple]], queries: list[np.ndarray], k: int,
                phashes: list[str | None], max_distance: int) -> dict:  # fmt: skip
        """A batch at once, as the decider will ask it one candidate at a time: add this shard's
        candidates (``own``: batch position, record), then for each candidate ``j`` what
        ``best_per_video`` and ``hashes_within`` would give once candidates ``0..j`` are added
        (the later ones are left out of its top ``k``; ``k`` 0: no search)."""
        index = self._index(model, dim)
        nums = index.add_many(r for _, r in own)
        position = {num: j for (j, _), num in zip(own, nums)}
        rows = np.array([index.table.cols["nvec"][n] for n in nums], np.int64) if own else np.zeros(0, np.int64)
        at = np.array([j for j, _ in own], np.int64)
        out = {"added": [(j, num) for (j, _), num in zip(own, nums)], "best": [], "hits": [], "records": {}}
        for j, q in enumerate(queries):
            best: dict = {}
            if k > 0 and len(q):
                later = int(rows[at > j].sum())  # vectors the decider will not have seen yet
                sims, ids = index.search(q, k + later)
                if later:
                    pos = np.vectorize(lambda n: position.get(int(n), -1), otypes=[np.int64])(ids >> SLOT_BITS)
                    keep = (ids >= 0) & (pos <= j)
                    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
                    kept = np.take_along_axis(keep, order, 1)
                    sims = np.take_along_axis(sims, order, 1)
                    ids = np.where(kept, np.take_along_axis(ids, order, 1), -1)
                best = best_by_video(sims, ids, index.alive)
            hits = index.hashes_within(phashes[j], max_distance) if phashes[j] and max_distance >= 0 else []
            out["best"].append(best)
            out["hits"].append(hits)
            for num in [*best, *(n for n, _ in hits), *(n for _, n in out["added"])]:
                if num not in out["records"]:
                    out["records"][num] = index.videos[num]
        return out

    def best_per_video(self, model: str, dim: int, queries: np.ndarray, k: int) -> tuple[dict, dict]:
        """({local number: best similarities}, {local number: record}) of this shard's top ``k``."""
        index = self._index(model, dim)
        best = index.best_per_video(queries, k)
        return best, {num: index.videos[num] for num in best}

    def hashes_within(self, model: str, dim: int, phash: str, max_distance: int) -> tuple[list, dict]:
        index = self._index(model, dim)
        hits = index.hashes_within(phash, max_distance)
        return hits, {num: index.videos[num] for num, _ in hits}

    def record(self, model: str, dim: int, num: int) -> dict:
        return self._index(model, dim).videos[num]

    def num_of(self, model: str, dim: int, video_id: str) -> tuple[int, dict] | None:
        index = self._index(model, dim)
        if video_id not in index.by_id:
            return None
        num = index.by_id[video_id]
        return num, index.videos[num]

    def live_records(self, model: str, dim: int) -> list[dict]:
        return [r for r in self._index(model, dim).videos if r["alive"]]

    def purge(self, model: str, dim: int, video_ids: list[str]) -> int:
        return self._index(model, dim).purge(video_ids)

    def save(self, model: str, dim: int, target: str) -> int:
        """Snapshot this model's shard to ``target`` (when changed); returns its generation."""
        index = self._index(model, dim)
        if index.dirty or self.saved_to.get(model) != str(target):
            index.save(target)
            self.saved_to[model] = str(target)
        return index.generation

    def sizes(self) -> dict[str, int]:
        return {m: len(i) for m, i in self.indexes.items()}

    def where(self) -> dict:
        ctx = ray.get_runtime_context()
        return {"shard": f"{self.shard}-of-{self.n}", "node_id": ctx.get_node_id(),
                "node_ip": ray.util.get_node_ip_address(), "pid": os.getpid(), "models": self.sizes()}  # fmt: skip


class RemoteShards:
    """One model's frames over shard actors, as ``NearDupIndex`` sees a ``FrameIndex``.

    Global numbers are ``ShardedIndex``'s (``local * n + shard``). Records that came with a
    search are kept until the next search (what ``videos[num]`` asks right after); the stored
    vectors of the last ``VECTOR_CACHE`` videos added or read are kept (they never change).
    """

    def __init__(self, handles: list, model: str, dim: int, target: str | Path):
        check_shards(target, len(handles))
        self.handles, self.n, self.model, self.dim = list(handles), len(handles), model, dim
        self.videos = _RemoteVideos(self)
        self.by_id = _RemoteById(self)
        self._records: dict[int, dict] = {}  # global num -> record, from the latest answers
        self._nums: dict[str, int] = {}  # video id -> global num, of the live ones among them
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._prepared: dict[str, tuple[int, dict, list]] = {}  # video id -> (num, best, hits) of this batch
        self._current: str | None = None  # the video last added (whose prepared results come next)
        self.dirty = False

    def _owner(self, video_id: str):
        return self.handles[shard_of(video_id, self.n)]

    def _keep(self, video_id: str, vectors: np.ndarray) -> np.ndarray:
        self._vectors[video_id] = vectors
        self._vectors.move_to_end(video_id)
        while len(self._vectors) > VECTOR_CACHE:
            self._vectors.popitem(last=False)
        return vectors

    def _remember(self, num: int, record: dict) -> None:
        self._records[num] = record
        if record.get("alive"):
            self._nums[record["video_id"]] = num  # what ``by_id`` asks next (``similarity``)

    def _forget_records(self) -> None:
        self._records = {}
        self._nums = {}

    def _records_of(self, s: int, records: dict[int, dict]) -> None:
        for local, record in records.items():
            self._remember(global_num(local, s, self.n), record)

    # -- a batch in one round trip -----------------------------------------------------------------
    def prefetch(self, candidates: list[Candidate], k: int, max_distance: int) -> None:
        """Before deciding ``candidates`` in order: every shard adds its own and answers every
        candidate's searches in one parallel call (``ShardActor.prepare``); the ``add``,
        ``best_per_video`` and ``hashes_within`` calls of each decision are then answered here."""
        self._prepared, self._current = {}, None
        self._forget_records()
        if not candidates:
            return
        stored = [np.ascontiguousarray(c.vectors, np.float32).astype(np.float16).astype(np.float32) for c in candidates]
        own: dict[int, list] = {s: [] for s in range(self.n)}
        for j, c in enumerate(candidates):
            own[shard_of(c.video_id, self.n)].append((j, (c.video_id, stored[j], c.quality, c.duration, c.phash)))
        phashes = [c.phash if phash_value(c.phash) is not None else None for c in candidates]
        parts = ray.get([h.prepare.remote(self.model, self.dim, own[s], stored, k, phashes, max_distance)
                         for s, h in enumerate(self.handles)])  # fmt: skip
        nums: dict[int, int] = {}
        for s, part in enumerate(parts):
            self._records_of(s, part["records"])
            nums.update({j: global_num(local, s, self.n) for j, local in part["added"]})
        for j, c in enumerate(candidates):
            best = {global_num(local, s, self.n): sims
                    for s, part in enumerate(parts) for local, sims in part["best"][j].items()}  # fmt: skip
            hits = merge_hashes([(global_num(n, s, self.n), d) for n, d in part["hits"][j]]
                                for s, part in enumerate(parts))  # fmt: skip
            self._prepared[c.video_id] = (nums[j], best, hits)
            if len(stored[j]) <= MAX_FRAMES:
                self._keep(c.video_id, stored[j])
        self.dirty = True

    # -- writes --------------------------------------------------------------------------------------
    def add(self, video_id: str, vectors: np.ndarray, quality: float = 0.0, duration: float = 0.0,
            phash: str | None = None) -> int:  # fmt: skip
        if video_id in self._prepared:  # added by prefetch
            self._current = video_id
            return self._prepared[video_id][0]
        self._current = None
        s = shard_of(video_id, self.n)
        local, stored, record = ray.get(self.handles[s].add.remote(self.model, self.dim, video_id, vectors,
                                                                   quality, duration, phash))  # fmt: skip
        num = global_num(local, s, self.n)
        self._remember(num, record)
        self._keep(video_id, stored)
        self.dirty = True
        return num

    def purge(self, video_ids) -> int:
        by_shard: dict[int, list[str]] = {}
        for vid in video_ids:
            by_shard.setdefault(shard_of(vid, self.n), []).append(vid)
            self._vectors.pop(vid, None)
        self._forget_records()
        self._prepared, self._current = {}, None
        if not by_shard:
            return 0
        self.dirty = True
        return sum(ray.get([self.handles[s].purge.remote(self.model, self.dim, ids) for s, ids in by_shard.items()]))

    # -- queries -------------------------------------------------------------------------------------
    def best_per_video(self, queries: np.ndarray, k: int = 32) -> dict[int, np.ndarray]:
        """Every shard's own top ``k`` (in parallel), merged: a superset of what one index gives."""
        if self._current is not None:
            return self._prepared[self._current][1]
        self._forget_records()
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        parts = ray.get([h.best_per_video.remote(self.model, self.dim, queries, k) for h in self.handles])
        out: dict[int, np.ndarray] = {}
        for s, (best, records) in enumerate(parts):
            self._records_of(s, records)
            out.update({global_num(local, s, self.n): sims for local, sims in best.items()})
        return out

    def hashes_within(self, phash: str | None, max_distance: int) -> list[tuple[int, int]]:
        if phash_value(phash) is None or max_distance < 0:
            return []
        if self._current is not None:
            return self._prepared[self._current][2]
        parts = ray.get([h.hashes_within.remote(self.model, self.dim, phash, max_distance) for h in self.handles])
        for s, (_, records) in enumerate(parts):
            self._records_of(s, records)
        return merge_hashes([(global_num(num, s, self.n), d) for num, d in hits] for s, (hits, _) in enumerate(parts))

    def video_vectors(self, video_id: str, exact: bool = True) -> np.ndarray:
        if exact and video_id in self._vectors:
            self._vectors.move_to_end(video_id)
            return self._vectors[video_id]
        vectors = ray.get(self._owner(video_id).video_vectors.remote(self.model, self.dim, video_id, exact))
        return self._keep(video_id, vectors) if exact and len(vectors) else vectors

    def record(self, num: int) -> dict:
        if num not in self._records:
            s, local = local_num(num, self.n)
            self._remember(num, ray.get(self.handles[s].record.remote(self.model, self.dim, local)))
        return self._records[num]

    def number(self, video_id: str) -> int | None:
        if video_id in self._nums:
            return self._nums[video_id]
        s = shard_of(video_id, self.n)
        found = ray.get(self.handles[s].num_of.remote(self.model, self.dim, video_id))
        if found is None:
            return None
        num = global_num(found[0], s, self.n)
        self._remember(num, found[1])
        return num

    def live_records(self) -> list[dict]:
        parts = ray.get([h.live_records.remote(self.model, self.dim) for h in self.handles])
        return [r for part in parts for r in part]

    def __len__(self) -> int:
        return sum(size.get(self.model, 0) for size in ray.get([h.sizes.remote() for h in self.handles]))

    # -- persistence ---------------------------------------------------------------------------------
    def save(self, target: str | Path, extras: dict[str, bytes] | None = None) -> None:
        """Every shard to its own sub-place (in parallel), then the manifest with ``extras``."""
        gens = ray.get([h.save.remote(self.model, self.dim, ShardedIndex.shard_target(target, s, self.n))
                        for s, h in enumerate(self.handles)])  # fmt: skip
        write_manifest(target, self.n, gens, extras)
        self.dirty = False

    load_extra = ShardedIndex.load_extra


class _RemoteVideos:
    """``videos[global num]`` and, for ``NearDupIndex.load``, iteration over the live records."""

    def __init__(self, frames: RemoteShards):
        self._frames = frames

    def __getitem__(self, num: int) -> dict:
        return self._frames.record(int(num))

    def __iter__(self) -> Iterator[dict]:
        return iter(self._frames.live_records())


class _RemoteById:
    def __init__(self, frames: RemoteShards):
        self._frames = frames

    def __getitem__(self, video_id: str) -> int:
        num = self._frames.number(video_id)
        if num is None:
            raise KeyError(video_id)
        return num

    def __contains__(self, video_id) -> bool:
        return isinstance(video_id, str) and self._frames.number(video_id) is not None


# -- the decider ----------------------------------------------------------------------------------
class IndexActor:
    """The decider: a ``LocalIndexes`` (clusters; the frames in it, or in shard actors) and the
    drivers attached to it."""

    def __init__(self, spec: IndexSpec):
        self.spec = spec
        self.index_dir = spec.target
        client = spec.redis()
        self.journal = spec.journal(client)
        self.shards = []
        if spec.shards > 1:
            names = [shard_name(spec.key_prefix, i, spec.shards) for i in range(spec.shards)]
            shard = ray.remote(ShardActor)
            self.shards = [shard.options(**spec.actor_options(name, max_task_retries=-1)).remote(spec, i)
                           for i, name in enumerate(names)]
        loader = (lambda target, model, dim: RemoteShards(self.shards, model, dim, target)) if self.shards else None
        self.service = LocalIndexes(spec.target, spec.rule, spec.approx_threshold, spec.flush_seconds, spec.options,
                                    journal=self.journal, tombstones=spec.tombstones(client),
                                    frames_loader=loader)  # fmt: skip
        self.service.recover()  # a restarted decider: its snapshot, then the journal
        self.drivers: set[str] = set()
        self.ended = False

    def attach(self, driver: str, index_dir: str) -> dict | None:
        """Register a driver; None when this actor is ending (the caller attaches again)."""
        if self.ended:
            return None
        if str(index_dir) != self.index_dir:
            log.warning("driver %s uses index %s; the shared index keeps %s", driver, index_dir, self.index_dir)
        self.drivers.add(driver)
        return self.where()

    def detach(self, driver: str) -> bool:
        """Flush; True when no driver is left (the shards are ended, the caller ends this actor)."""
        self.drivers.discard(driver)
        self.service.flush()
        if self.drivers:
            return False
        self.ended = True
        for shard in self.shards:
            ray.kill(shard)
        return True

    def decide(self, model: str, candidates: list[Candidate]) -> list[Decision]:
        return self.service.decide(model, candidates)

    def states(self, requests: dict[str, list[str]]) -> dict:
        return self.service.states(requests)

    def flush(self) -> None:
        self.service.flush()

    def journalled(self) -> int | None:
        """Entries in the journal now (None: no journal)."""
        return len(self.journal) if self.journal is not None else None

    def where(self) -> dict:
        ctx = ray.get_runtime_context()
        shards = []
        for ref in [s.where.remote() for s in self.shards]:
            try:
                shards.append(ray.get(ref, timeout=60))
            except Exception as exc:  # noqa: BLE001 - a shard being restarted: say so
                shards.append({"error": f"{type(exc).__name__}: {exc}"})
        return {"node_id": ctx.get_node_id(), "node_ip": ray.util.get_node_ip_address(), "pid": os.getpid(),
                "index_dir": self.index_dir, "drivers": len(self.drivers), "models": self.service.sizes(),
                "journal": self.journal is not None, "shards": shards}  # fmt: skip


class SharedIndex:
    """A handle on the shared index actor, usable from the driver and from any actor
    (picklable); implements neardup's ``IndexService``. Calls that meet a dead actor are sent
    again to the actor found (or created) anew by name."""

    def __init__(self, name: str, index_dir: str | Path, rule: MatchRule, approx_threshold: int,
                 flush_seconds: float, namespace: str = NAMESPACE, *, options: IndexOptions | None = None,
                 shards: int = 1, key_prefix: str | None = None, redis_url: str | None = None,
                 resource: str = ""):  # fmt: skip
        self.name, self.namespace = name, namespace
        self.spec = IndexSpec(str(index_dir), rule, approx_threshold, float(flush_seconds), options, int(shards),
                              key_prefix or name.rsplit(":", 1)[-1], redis_url, resource or "", namespace)  # fmt: skip
        self._handle = None

    @classmethod
    def for_config(cls, cfg: ProcessingConfig) -> SharedIndex | None:
        """The shared index of ``cfg``'s stream, with the neardup stage's own settings; None
        when the neardup step is not a NearDupStage (a stand-in keeps its own state)."""
        stage_cls = load_stage_class(cfg.stages["neardup"])
        if not issubclass(stage_cls, NearDupStage):
            return None
        stage = stage_cls.from_config(cfg)
        return cls(index_name(cfg.key_prefix), stage.index_target, stage.rule, stage.approx_threshold,
                   stage.flush_seconds, options=stage.options, shards=cfg.index_shards, key_prefix=cfg.key_prefix,
                   redis_url=journal_url(cfg), resource=cfg.index_resource)  # fmt: skip

    def __getstate__(self):
        return {**self.__dict__, "_handle": None}  # found again by name where it lands

    def handle(self, fresh: bool = False):
        if self._handle is None or fresh:
            self._handle = ray.remote(IndexActor).options(**self.spec.actor_options(self.name, max_task_retries=3)
                                                          ).remote(self.spec)  # fmt: skip
        return self._handle

    def _call(self, method: str, *args, timeout: float | None = None):
        try:
            return ray.get(getattr(self.handle(), method).remote(*args), timeout=timeout)
        except ray.exceptions.RayActorError:
            log.warning("shared near-dup index %s was gone; calling it again", self.name)
            return ray.get(getattr(self.handle(fresh=True), method).remote(*args), timeout=timeout)

    # -- IndexService --------------------------------------------------------------------------------
    def decide(self, model: str, candidates: list[Candidate]) -> list[Decision]:
        return self._call("decide", model, candidates)

    def states(self, requests: dict[str, list[str]]) -> dict:
        return self._call("states", requests)

    def flush(self) -> None:
        self._call("flush")

    def where(self) -> dict:
        """Where the decider and every shard run (node, pid) and what they hold."""
        return self._call("where", timeout=300)

    # -- drivers -------------------------------------------------------------------------------------
    def attach(self, driver: str) -> dict:
        """Register a driver (creating the actor if none is up); returns ``where()``."""
        for attempt in range(ATTACH_TRIES):
            try:
                where = ray.get(self.handle(fresh=attempt > 0).attach.remote(driver, self.spec.target), timeout=300)
                if where is not None:
                    return where
            except ray.exceptions.RayActorError:
                pass
            time.sleep(0.2)  # it was ending: its last driver detached just now
        raise RuntimeError(f"the shared near-dup index {self.name} could not be reached")

    def detach(self, driver: str) -> None:
        """Flush and unregister; the last driver ends the actors (a later run reloads the flush)."""
        try:
            last = ray.get(self.handle().detach.remote(driver), timeout=120)
        except Exception as exc:  # noqa: BLE001 - already gone, or Ray is shutting down
            log.warning("shared near-dup index %s: detach failed: %s", self.name, exc)
            return
        if last:
            ray.kill(self.handle())
            self._handle = None
