"""The Kibana saved objects in deploy/kibana: their shape (as Kibana 9 ships and exports them) and the import.

No Kibana runs here: the import goes to a real local HTTP server standing in for Kibana's
saved-objects endpoint (a stand-in, not Kibana). The object shapes were checked against
Kibana 9's saved-object schemas (dashboard, visualization, saved search, data view) and the
visualisation defaults of its aggregation-based chart types.
"""

import json

from processing.catalogue import CatalogueConfig
from processing.catalogue.elastic import index_template
from processing.catalogue.kibana import KIBANA_DIR, kibana_import, saved_objects
from tests.processing.catalogue.standins import KibanaStandIn, serving

ALLOWED_ATTRIBUTES = {  # Kibana 9: dashboard v1 schema (unknowns forbidden), visualization 8.8.0 schema
    "dashboard": {"title", "description", "kibanaSavedObjectMeta", "timeRestore", "timeFrom", "timeTo",
                  "refreshInterval", "controlGroupInput", "panelsJSON", "optionsJSON", "hits", "version"},
    "visualization": {"title", "description", "version", "kibanaSavedObjectMeta", "uiStateJSON", "visState",
                      "savedSearchRefName"},
}  # fmt: skip


def kibana_objects():
    return [json.loads(line) for f in sorted(KIBANA_DIR.glob("*.ndjson")) for line in f.read_text().splitlines() if line]


def test_objects_reference_each_other_and_mapped_fields():
    objs = kibana_objects()
    by_key = {(o["type"], o["id"]) for o in objs}
    assert len(by_key) == len(objs)
    assert {"index-pattern", "search", "dashboard", "visualization"} <= {o["type"] for o in objs}
    for o in objs:
        for ref in o.get("references", []):
            assert (ref["type"], ref["id"]) in by_key, (o["id"], ref)
    props = index_template("videos")["template"]["mappings"]["properties"]
    fields = set()
    for o in objs:
        if o["type"] == "visualization":
            for agg in json.loads(o["attributes"]["visState"])["aggs"]:
                if "field" in agg["params"]:
                    fields.add(agg["params"]["field"])
        if o["type"] == "search":
            fields.update(o["attributes"]["columns"])
    assert {"tags", "source", "duration", "resolution", "license_id", "duplicate_of", "status"} <= fields
    assert fields <= set(props), fields - set(props)


def test_objects_have_the_shape_kibana_9_imports():
    for o in kibana_objects():
        assert o["coreMigrationVersion"] == "8.8.0" and o["typeMigrationVersion"]  # migrated forward on import
        assert set(o["attributes"]) <= ALLOWED_ATTRIBUTES.get(o["type"], set(o["attributes"])), o["id"]
        if o["type"] == "visualization":
            vis = json.loads(o["attributes"]["visState"])
            if vis["type"] in ("histogram", "horizontal_bar"):  # aggregation-based XY: params.type is the series kind
                assert vis["params"]["type"] == "histogram" and vis["params"]["seriesParams"][0]["data"]["id"] == "1"
                side = "left" if vis["type"] == "horizontal_bar" else "bottom"
                assert vis["params"]["categoryAxes"][0]["position"] == side
            else:
                assert vis["type"] == "pie" and vis["params"]["legendDisplay"] == "show"
        if o["type"] == "index-pattern":
            assert o["attributes"]["title"] == "videos" and o["attributes"]["timeFieldName"] == "indexed_at"
            assert {f["value"] for f in json.loads(o["attributes"]["sourceFilters"])} == {"vector", "text_vector"}


def test_dashboard_panels_are_placed_without_overlap():
    dashboard = next(o for o in kibana_objects() if o["type"] == "dashboard")
    panels = json.loads(dashboard["attributes"]["panelsJSON"])
    assert len(panels) == len(dashboard["references"]) >= 7
    assert {p["panelRefName"] for p in panels} == {r["name"] for r in dashboard["references"]}
    cells = set()
    for p in panels:
        g = p["gridData"]
        assert g["x"] + g["w"] <= 48
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, p["panelIndex"]
        cells |= mine


def test_import_posts_ndjson_with_overwrite_and_points_the_data_view_at_the_alias():
    KibanaStandIn.received = []
    cfg = CatalogueConfig.from_settings(index="catalogue-prod")
    with serving(KibanaStandIn) as url:
        replies = kibana_import(url + "/", cfg)
        again = kibana_import(url, cfg)  # idempotent: the same fixed ids, overwritten
    path, xsrf, ctype, body = KibanaStandIn.received[0]
    assert path == "/api/saved_objects/_import?overwrite=true" and xsrf == "true"
    assert ctype.startswith("multipart/form-data; boundary=")
    assert b'name="file"; filename="videopipe.ndjson"' in body
    assert replies[0]["successCount"] == again[0]["successCount"] == len(kibana_objects())
    sent = [json.loads(x) for x in body.split(b"\r\n\r\n", 1)[1].splitlines() if x.startswith(b"{")]
    assert next(o for o in sent if o["type"] == "index-pattern")["attributes"]["title"] == "catalogue-prod"
    assert [o["id"] for o in sent] == [o["id"] for o in kibana_objects()]
    assert saved_objects(KIBANA_DIR / "videopipe.ndjson", "videos").decode().count("\n") == len(kibana_objects())
