"""Two `work` drivers on a real multi-node Ray cluster: actors where their resources are, and an index node killed.

A ``ray.cluster_utils.Cluster`` on this machine (every node a real raylet with its own workers
and object store; they all bind the machine's address): the head offers ``decode`` (the drivers
attach to the head), one node ``model`` and two fake GPUs (Ray's accounting: torch sees no CUDA,
so the model actors must decide on the CPU themselves), two nodes ``index``. Two
``python -m processing work --until-empty --ray-address ...`` at once, with DECODE_RESOURCE /
MODEL_RESOURCE / INDEX_RESOURCE set and no ``--num-gpus`` (the GPUs are the cluster's), on 15
clips in 3 near-duplicate groups (tests/processing/dedup_groups.py). While they work, the
node holding the near-dup index actor is killed (its raylet and workers, SIGKILL): the index
must come back on the other index node and the catalogue must hold every clip, one indexed per
group, every duplicate pointing at its group's original.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from crawler.ledger import Ledger
from processing.catalogue import SqliteCatalogue
from tests.conftest import PYTHON, ROOT, project_env
from tests.processing.dedup_groups import make_groups, queued_item
from tests.processing.runtime.test_runner import _queue

pytestmark = [pytest.mark.slow, pytest.mark.faults]

GROUPS = ("bunny", "bikes", "mandelbrot")  # 3 groups x (original + 4 copies)
FAST_NODE_DEATH = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                   "health_check_timeout_ms": 1000, "health_check_failure_threshold": 3}  # fmt: skip


@pytest.fixture
def cluster():
    """head (decode) + model (2 fake GPUs) + two index nodes; node name -> Node."""
    from ray.cluster_utils import Cluster

    head = {"num_cpus": 2, "resources": {"decode": 4}, "include_dashboard": False, "_system_config": FAST_NODE_DEATH}
    c = Cluster(initialize_head=True, head_node_args=head)
    try:
        nodes = {"decode": c.head_node,
                 "model": c.add_node(num_cpus=4, num_gpus=2, resources={"model": 4}),
                 "index-a": c.add_node(num_cpus=0, resources={"index": 2}),
                 "index-b": c.add_node(num_cpus=0, resources={"index": 2})}  # fmt: skip
        c.wait_for_nodes()
        yield c, nodes
    finally:
        c.shutdown()


def _index_nodes(c, key_prefix: str) -> set[str]:
    """Node ids of the live index actors of this stream (named after its KEY_PREFIX), from the GCS."""
    actors = c.global_state.actor_table(None).values()
    return {a["Address"]["NodeID"] for a in actors if key_prefix in a["Name"] and a["State"] == "ALIVE"}


def _placed(log: str, pool: str) -> set[str]:
    """The node ids a driver's log names for ``pool`` ("decode pool: 1 actor on node <id> (<ip>)...")."""
    lines = [line.split(f"{pool} pool: ", 1)[1] for line in log.splitlines() if f" {pool} pool: " in line]
    return {node for line in lines for node in re.findall(r"on node ([0-9a-f]+)", line)}


def test_two_drivers_on_a_cluster_place_actors_by_resource_and_survive_losing_the_index_node(
        cluster, redis_client, key_prefix, data_dir, tmp_path_factory):  # fmt: skip
    c, nodes = cluster
    clips = [clip for clip in make_groups(tmp_path_factory.getbasetemp() / "dedup_groups") if clip.group in GROUPS]
    items = {clip.name: queued_item(clip) for clip in clips}
    for clip in sorted(clips, key=lambda k: k.kind == "original"):  # copies first: originals demote
        _queue(redis_client, items[clip.name])
    env = project_env(LABELERS="", DECODE_RESOURCE="decode", MODEL_RESOURCE="model", INDEX_RESOURCE="index",
                      PROCESSING_CLAIM_IDLE_MS=2000, LOG_LEVEL="INFO")  # fmt: skip
    cmd = [PYTHON, "-m", "processing", "work", "--until-empty", "--ray-address", c.address, "--num-workers", "1",
           "--model-workers", "1", "--batch-size", "2", "--no-progress"]  # fmt: skip
    logs = [data_dir / "work-1.log", data_dir / "work-2.log"]
    workers = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
               for log in logs]  # fmt: skip
    ledger = Ledger(redis_client, key_prefix)
    index_ids = {nodes[n].node_id: n for n in ("index-a", "index-b")}
    killed, recorded_at_kill, back_on = None, None, set()
    try:
        deadline = time.monotonic() + 200  # within pytest's 300 s timeout, cleanup included
        while any(w.poll() is None for w in workers) and time.monotonic() < deadline:
            held = _index_nodes(c, key_prefix)
            recorded = sum(n for state, n in ledger.counts().items() if state != "queued")
            if killed is None and held and recorded:  # the index decides and the drivers have work left
                assert held <= set(index_ids), f"index actors on {held}, not on an index node {set(index_ids)}"
                killed, recorded_at_kill = index_ids[next(iter(held))], recorded
                c.remove_node(nodes[killed], allow_graceful=False)  # its raylet and workers, killed
            elif killed is not None:
                back_on |= held - {nodes[killed].node_id}  # the GCS may list it a moment longer
            time.sleep(0.2)
        codes = [w.poll() for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait(30)
    outputs = [log.read_text() for log in logs]
    assert codes == [0, 0], "\n-----\n".join(o[-3000:] for o in outputs)

    # placement, as each driver reports it
    for out in outputs:
        assert _placed(out, "decode") == {nodes["decode"].node_id}, out[-3000:]
        assert _placed(out, "model") == _placed(out, "neardup") == {nodes["model"].node_id}, out[-3000:]
        model_line = next(line for line in out.splitlines() if " model pool: " in line)
        assert "; GPUs " in model_line  # the cluster's GPUs: no --num-gpus was given
        assert "device cuda" in model_line or "torch sees no CUDA" in out  # decided in the actor, where it runs
    assert killed is not None and recorded_at_kill < len(clips), (killed, recorded_at_kill)
    survivor = nodes["index-b" if killed == "index-a" else "index-a"].node_id
    assert back_on == {survivor}, (back_on, survivor)  # the index came back on the other index node

    # nothing lost: every clip recorded, one indexed per group, every copy pointing at its original
    status = subprocess.run([PYTHON, "-m", "processing", "status", "--json"], cwd=ROOT, env=project_env(),
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    st = json.loads(status.stdout)
    assert {k: st[k] for k in ("indexed", "duplicate", "failed", "queued", "in_progress", "dead_lettered")} == {
        "indexed": len(GROUPS), "duplicate": len(clips) - len(GROUPS), "failed": 0, "queued": 0,
        "in_progress": 0, "dead_lettered": 0}, st  # fmt: skip
    cat = SqliteCatalogue(data_dir / "catalogue.sqlite")
    docs = {name: cat.get(item.video_id) for name, item in items.items()}
    assert sorted(n for n, d in docs.items() if d["status"] == "indexed") == sorted(GROUPS)
    for clip in clips:
        if clip.kind != "original":
            doc = docs[clip.name]
            assert (doc["status"], doc["duplicate_of"]) == ("duplicate", items[clip.group].video_id), clip.name
