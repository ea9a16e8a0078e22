"""The Elasticsearch backend live, on the noida-db emulator always and on a real cluster when one is given.

``es_url`` runs each test twice: ``[emulator]`` against noida-db, an Elasticsearch-API emulator
that the session starts (it is not Elasticsearch; it reports 8.15.3 yet answers the 9.x
client), and ``[cluster]`` against ELASTICSEARCH_URL when that is set (skipped otherwise).
Every test works under its own ``videopipe-test-<id>`` alias and deletes what it made by
name (Elasticsearch 8+ refuses wildcard deletes); the fixture checks nothing is left.
"""

import json
import subprocess
import uuid

import pytest

from processing.catalogue import SearchQuery
from processing.catalogue.elastic import SERVER_MAJOR, ElasticCatalogue
from tests.conftest import PYTHON, ROOT, project_env
from tests.processing.catalogue.corpus import make_doc, unit, vid

DOCS = [
    make_doc("dog", "A dog running on the beach", vector=unit(1, 0, 0), tags=["pets"], duration=20.0,
             license="https://creativecommons.org/licenses/by/4.0/", width=640, height=360),
    make_doc("puppy", "Happy pup by the sea", vector=unit(0.9, 0.3, 0), duration=12.0, license="CC BY-SA 4.0"),
    make_doc("bikes", "Mountain bikes", vector=unit(0, 1, 0), source="archive", duration=30.0),
    make_doc("copy", "A dog running on the beach (copy)", vector=unit(1, 0.01, 0), status="duplicate",
             duplicate_of=vid("dog"), similarity=0.99),
]  # fmt: skip
DOCS[1]["copies"] = [{"url": "https://mirror.example.net/pup.mp4", "kind": "exact", "license": "CC BY-SA 4.0"}]


@pytest.fixture
def live(es_url):
    """An ElasticCatalogue under a fresh alias; afterwards its indices and template are deleted by name."""
    alias = f"videopipe-test-{uuid.uuid4().hex[:8]}"
    cat = ElasticCatalogue(es_url, index=alias)
    yield cat
    try:
        cat.delete()
        left = cat.client.indices.get(index=f"{alias}*", allow_no_indices=True, expand_wildcards="all")
        assert list(left) == [] and not cat.client.indices.exists_index_template(name=alias), "left behind"
    finally:
        cat.close()


def run(*args, **env):
    return subprocess.run([PYTHON, "-m", "processing", *args], cwd=ROOT, env=project_env(**env),
                          capture_output=True, text=True, timeout=180)  # fmt: skip


def test_round_trip_search_similar_duplicates_and_rebuild(live):
    assert live.setup()["created_index"] == f"{live.alias}-000001"
    live.upsert(DOCS)
    live.upsert(DOCS[:1])  # idempotent by _id
    live.refresh()
    assert live.counts() == {"indexed": 3, "duplicate": 1}
    assert live.get(vid("dog"))["title"] == "A dog running on the beach"
    result = live.search(SearchQuery("dog on a beach"))
    assert result.hits[0].video_id == vid("dog") and vid("copy") not in [h.video_id for h in result.hits]
    assert [h.video_id for h in live.search(SearchQuery(source="archive")).hits] == [vid("bikes")]
    assert dict(live.search(SearchQuery()).facets["licenses"]) == {"CC-BY-4.0": 1, "CC-BY-SA-4.0": 1, "unknown": 1}
    assert live.similar(vid("dog")).hits[0].video_id == vid("puppy")
    assert [d["video_id"] for d in live.duplicates(vid("copy"))["duplicates"]] == [vid("copy")]
    rebuilt = live.rebuild()
    assert live.indices() == [rebuilt["index"]] and rebuilt["deleted"] == [f"{live.alias}-000001"]
    assert not live.client.indices.exists(index=f"{live.alias}-000001")  # no index left without the alias
    assert live.counts() == {"indexed": 3, "duplicate": 1}


def test_licence_families_id_prefixes_places_and_remove(live):
    live.setup()
    live.upsert(DOCS)
    live.refresh()
    found = lambda **kw: [h.video_id for h in live.search(SearchQuery(**kw)).hits]  # noqa: E731
    assert found(license="cc-by") == [vid("dog")]  # the family CC-BY-*, not CC-BY-SA-4.0
    assert found(license="cc-by-sa") == [vid("puppy")] and found(license="CC-BY-SA-4.0") == [vid("puppy")]
    assert sorted(found(license="open")) == sorted([vid("dog"), vid("puppy")])
    assert found(license="unknown") == [vid("bikes")]
    assert live.resolve_id(vid("dog")[:10]) == [vid("dog")]
    # places: a copy's URL and the domains of every place
    assert [d["video_id"] for d in live.find_places(urls=["https://MIRROR.example.net/pup.mp4"])] == [vid("puppy")]
    assert [d["video_id"] for d in live.find_places(domain="example.net")] == [vid("puppy")]
    assert len(live.find_places(domain="example.org")) == 4
    assert live.remove([vid("puppy"), "0" * 64]) == 1
    assert live.get(vid("puppy")) is None and found(license="cc-by-sa") == []
    assert live.counts() == {"indexed": 2, "duplicate": 1}


def test_refresh_makes_every_write_visible_to_another_reader(live, es_url):
    live.setup()
    live.client.indices.put_settings(index=live.alias, settings={"index": {"refresh_interval": "-1"}})
    live.upsert(DOCS[:2])
    with ElasticCatalogue(es_url, index=live.alias, text_vectors=False) as reader:  # as `status` would
        assert reader.counts() == {}  # written, not yet searchable
        live.refresh()
        assert reader.counts() == {"indexed": 2}


def test_es_setup_and_search_commands_as_users_type_them(live, es_url):
    env = {"ELASTICSEARCH_URL": es_url, "ELASTICSEARCH_INDEX": live.alias, "SEARCH_SEMANTIC": "0", "KIBANA_URL": ""}
    res = run("es-setup", **env)
    assert res.returncode == 0, res.stderr
    assert f"alias '{live.alias}' ready; created {live.alias}-000001" in res.stdout
    version = live.setup()["server_version"]
    if int(version.split(".")[0]) < SERVER_MAJOR:  # the emulator reports 8.15.3: es-setup says 9 is needed
        assert f"reports Elasticsearch {version}" in res.stderr and f"Elasticsearch {SERVER_MAJOR}" in res.stderr
    else:
        assert res.stderr == ""
    assert "created" not in run("es-setup", **env).stdout  # idempotent: the alias exists
    live.upsert(DOCS)
    res = run("es-setup", "--rebuild", "--json", **env)
    assert res.returncode == 0, res.stderr
    rebuilt = json.loads(res.stdout)["rebuilt"]
    assert live.indices() == [rebuilt["index"]] and rebuilt["deleted"] == [f"{live.alias}-000001"]
    res = run("search", "mountain", "bikes", "--source", "archive", "--json", **env)
    assert res.returncode == 0, res.stderr
    assert [h["video_id"] for h in json.loads(res.stdout)["hits"]] == [vid("bikes")]
