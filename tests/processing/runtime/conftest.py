"""Runtime-test fixtures: one local Ray per test module."""

import pytest


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray for the module (ray.init costs seconds on this machine)."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # never a running one
    yield ray
    ray.shutdown()
