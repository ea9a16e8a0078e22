"""The item contract: VideoItem survives JSON both ways and records outcomes by stage."""

from crawler.items import VideoItem


def test_item_round_trips_through_json_and_ignores_unknown_keys():
    item = VideoItem(url="https://example.org/a.mp4", source="web", title="A", tags=["x"])
    item.fail("probe", "timeout", "ffprobe took 61 s")
    data = item.to_dict() | {"field_from_the_future": 1}
    back = VideoItem.from_dict(data)
    assert back == item
    assert VideoItem.from_json(item.to_json()) == item
    assert back.errors == {"probe": "timeout: ffprobe took 61 s"} and back.status == "failed"
