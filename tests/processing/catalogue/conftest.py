"""Catalogue-test fixtures: the Elasticsearch-API emulator, and the live backends to test on."""

import pytest

from tests.processing.catalogue.emulator import es_emulator  # noqa: F401  (a fixture)
from tests.conftest import LIVE_ELASTICSEARCH_URL


@pytest.fixture(params=["emulator", "cluster"])
def es_url(request):
    """Each live ES-API server: the noida-db emulator always; a real cluster when ELASTICSEARCH_URL is set."""
    if request.param == "cluster":
        if not LIVE_ELASTICSEARCH_URL:
            pytest.skip("ELASTICSEARCH_URL not set: no real Elasticsearch cluster to test against")
        return LIVE_ELASTICSEARCH_URL
    return request.getfixturevalue("es_emulator")
