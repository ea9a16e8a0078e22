"""Near-dup decisions/s through the shared index actors: one frame index in the decider vs frame-code shard actors.

What is timed is what the workers do: ``SharedIndex.decide`` from a driver on a local Ray
(processing/runtime/index.py), batches of ``--batch`` candidates (8 frames of ``--dim`` each,
``--videos`` originals then a noisy copy of every fifth), each decision journalled to Redis
first (``BENCH_REDIS_URL``; ``--no-journal`` measures without). Configurations, run in one
process one after the other (so compare their ratios, not the absolute rates, on a loaded
machine): ``LocalIndexes`` in this process (no Ray, no journal: the floor), the decider alone
(``shards=1``: the frames in the decider), and ``shards=2`` (every search fanned out to two
shard actors, ``add`` / vector reads to the owner). The clusters of every configuration must
be the same (checked). Also: bytes per video of the decider's own records (the clusters:
``NearDupIndex.members`` / ``clusters``), measured with tracemalloc over 100k videos.
"""

from __future__ import annotations

import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import BENCH_REDIS_URL, Report, run  # noqa: E402


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def candidates(n: int, dim: int, seed: int = 0):
    from processing.stages.neardup import Candidate

    rng = np.random.default_rng(seed)
    mean = unit(rng.standard_normal(dim)) * np.sqrt(0.29)
    scale = np.sqrt(np.arange(1, dim + 1) ** -1.0 / np.sum(np.arange(1, dim + 1) ** -1.0) * 0.71)
    centres = mean + rng.standard_normal((n, 1, dim)) * scale
    originals = unit(centres + 0.6 * rng.standard_normal((n, 8, dim)) * scale)
    out = [Candidate(f"{i:064x}", originals[i], 1.0, 10.0) for i in range(n)]
    for i in range(0, n, 5):
        copy = unit(originals[i] + 0.3 / np.sqrt(dim) * rng.standard_normal((8, dim)))
        out.append(Candidate(f"{10**6 + i:064x}", copy, 0.5, 10.0))
    return out


def decide_all(service, cands, batch: int, warm: int = 0) -> tuple[float, dict]:
    """Seconds to decide ``cands[warm:]`` in batches (after ``cands[:warm]``), and every
    candidate's canonical then."""
    if warm:
        service.decide("m", cands[:warm])
    start = time.perf_counter()
    for i in range(warm, len(cands), batch):
        service.decide("m", cands[i : i + batch])
    seconds = time.perf_counter() - start
    states = service.states({"m": [c.video_id for c in cands]})
    return seconds, {v: s[0] for v, s in states.items()}


def record_bytes(n: int) -> float:
    """Bytes per video of the decider's clusters (members + cluster lists), tracemalloc."""
    from processing.stages.neardup import Member

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    members, clusters = {}, {}
    for i in range(n):
        vid = f"{i:064x}"
        canon = vid if i % 2 == 0 else f"{i - 1:064x}"
        members[vid] = Member(canon, 123456.0 * i, 10.0, None if canon == vid else 0.93)
        clusters.setdefault(canon, []).append(vid)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / n


def main(report: Report, args) -> None:
    import ray
    import redis

    from crawler.keys import RedisKeys
    from processing.runtime.index import SharedIndex, index_name
    from processing.stages.neardup import LocalIndexes, MatchRule

    import faiss

    faiss.omp_set_num_threads(1)  # as in the actors (Ray gives a num_cpus=0 actor one thread)
    n = 100 if args.quick else args.videos
    cands = candidates(n, args.dim)
    rule = MatchRule(frame_threshold=0.8, min_match=0.5, phash_max_distance=-1)
    report.figure("candidates", len(cands))
    report.figure("dim", args.dim)
    report.figure("batch", args.batch)
    url = None if args.no_journal else BENCH_REDIS_URL
    report.figure("journal", url or "off")
    client = redis.Redis.from_url(url) if url else None
    rates, clusters = {}, {}
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-decide-") as tmp:
            local = LocalIndexes(Path(tmp) / "local", rule, 10_000, flush_seconds=3600)
            seconds, clusters["in_process"] = decide_all(local, cands, args.batch, warm=1)
            rates["in_process"] = (len(cands) - 1) / seconds
            for shards in (1, 2):
                prefix = f"b{uuid.uuid4().hex[:8]}"
                index = SharedIndex(index_name(prefix), Path(tmp) / prefix, rule, 10_000, 3600, shards=shards,
                                    key_prefix=prefix, redis_url=url)  # fmt: skip
                index.attach("bench")
                # the first candidate once the actors are up and the model loaded
                seconds, clusters[f"shards_{shards}"] = decide_all(index, cands, args.batch, warm=1)
                rates[f"shards_{shards}"] = (len(cands) - 1) / seconds
                index.detach("bench")
                if client is not None:
                    client.delete(RedisKeys(prefix).index_journal)
    finally:
        ray.shutdown()
    same = clusters["in_process"] == clusters["shards_1"] == clusters["shards_2"]
    report.figure("same_clusters", same)
    report.figure("clusters", len(set(clusters["shards_2"].values())))
    for name, rate in rates.items():
        report.figure(f"decisions_per_s_{name}", round(rate, 1))
    report.target("decisions/s, 2 shard actors vs the decider alone", round(rates["shards_2"], 1),
                  round(rates["shards_1"], 1), "(figure)", None, unit="/s",
                  note=f"ratio {rates['shards_2'] / rates['shards_1']:.2f}; "
                  f"in-process floor {rates['in_process']:.0f}/s")  # fmt: skip
    report.target("same clusters for 1 and 2 shards", same, True, "True", same)
    per_video = record_bytes(10_000 if args.quick else 100_000)
    report.target("decider bytes per video (clusters)", round(per_video), None, "(figure)", None, unit="B",
                  note="Python dict + Member per video: the decider's RAM, beside the shards' codes")  # fmt: skip


def _extra(parser) -> None:
    parser.add_argument("--videos", type=int, default=420, help="originals (a copy of every fifth follows)")
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--no-journal", action="store_true", help="decide without the Redis journal")


if __name__ == "__main__":
    run(main, "decide", __doc__.splitlines()[0], extra=_extra)
