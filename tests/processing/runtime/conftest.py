"""Runtime-test fixtures: one local Ray per test module."""

import pytest


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray for the module (ray.init costs seconds on this machine)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
