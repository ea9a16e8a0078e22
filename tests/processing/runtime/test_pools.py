"""Placement of the actor pools: GPUs counted on the cluster, devices decided in the actor, custom resources.

A real local Ray that offers one GPU (on a machine without CUDA a fake one, Ray's accounting
only, as on a ``ray.cluster_utils.Cluster`` node started with ``num_gpus=1``: the model actor
must then choose the CPU itself) and two custom resources; the project's own stages. The
multi-node picture is tests/processing/runtime/test_cluster.py.
"""

from __future__ import annotations

import logging
import time

import pytest

from processing.config import ProcessingConfig
from processing.runtime import localray
from processing.runtime.pools import PLACEMENT_SHARE, cluster_config, placement, start_pools, stop_pools


def test_the_gpu_count_waits_for_the_cluster_unless_it_was_given(tmp_path):
    cfg = ProcessingConfig.from_settings(data_dir=tmp_path, num_workers=2)
    assert cfg.num_gpus is None and cfg.device == "auto"  # nothing asked of the driver's torch
    counted = cfg.with_cluster_gpus(3.0)
    assert (counted.num_gpus, counted.model_workers, counted.max_inflight) == (3, 3, 10)
    assert counted.device == "auto"  # cuda or cpu: decided in the model actor
    cpu_only = cfg.with_cluster_gpus(0.0)
    assert (cpu_only.num_gpus, cpu_only.model_workers, cpu_only.device) == (0, 1, "cpu")
    given = ProcessingConfig.from_settings(data_dir=tmp_path, num_gpus=0, model_workers=2)
    assert given.with_cluster_gpus(4.0) is given  # an explicit --num-gpus wins
    with pytest.raises(ValueError, match="num_gpus must be an integer >= 0"):
        ProcessingConfig.from_settings(data_dir=tmp_path, num_gpus=-1)


def test_the_machines_local_ray_offers_the_placement_resources_a_driver_names(data_dir):
    ray = pytest.importorskip("ray")
    info = localray.join(data_dir, num_gpus=0, resources=["decode", "model"])  # the keeper starts Ray
    try:
        have = ray.cluster_resources()
        assert (have["decode"], have["model"], have.get("GPU", 0), info["num_gpus"]) == (1.0, 1.0, 0, 0)
    finally:
        localray.leave()
    deadline = time.monotonic() + 60
    while localray.running(localray.ray_dir(data_dir)) is not None and time.monotonic() < deadline:
        time.sleep(0.2)  # the keeper stops its Ray once no driver is left
    assert localray.running(localray.ray_dir(data_dir)) is None


@pytest.fixture
def fake_gpu_ray():
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=3, num_gpus=1, resources={"cpu-node": 1, "gpu-node": 1}, include_dashboard=False,
             log_to_driver=False)  # fmt: skip
    yield ray
    ray.shutdown()


def test_pools_ask_for_their_resources_and_say_where_they_run(fake_gpu_ray, tmp_path, caplog):
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"  # what the actor must choose on this machine
    cfg = ProcessingConfig.from_settings(data_dir=tmp_path, num_workers=1, labelers=(),
                                         decode_resource="cpu-node", model_resource="gpu-node")  # fmt: skip
    assert cluster_config(cfg).num_gpus == 1  # the cluster's fake GPU
    caplog.set_level(logging.INFO, logger="processing.runtime.pools")
    pools = start_pools(cfg, timeout_s=300)
    try:
        free = fake_gpu_ray.available_resources()
        assert free.get("GPU", 0) == 0  # the model actor holds the GPU
        assert free["cpu-node"] == pytest.approx(1 - PLACEMENT_SHARE)  # one decode actor
        assert free["gpu-node"] == pytest.approx(1 - 2 * PLACEMENT_SHARE)  # the model and neardup actors
        where = placement(pools)
        (model,) = where["model"]
        assert model["gpus"] and model["devices"] == {"embed": device, "labels": device}
        (decode,) = where["decode"]
        assert decode["gpus"] == [] and decode["node_id"] == model["node_id"] and decode["pid"] != model["pid"]
    finally:
        stop_pools(pools)
    lines = [r.getMessage() for r in caplog.records]
    node = model["node_id"]
    for pool in ("decode", "model", "neardup"):
        assert any(m.startswith(f"{pool} pool: 1 actor on node {node}") for m in lines), lines
    assert any(m.startswith("model pool:") and "GPUs 0" in m and f"device {device}" in m for m in lines), lines
    assert any("was granted GPU" in m and "torch sees no CUDA" in m for m in lines) == (device == "cpu"), lines
