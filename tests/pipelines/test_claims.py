"""The Redis claims behind download and exact dedup: one winner per URL, platform id and digest."""

from crawler.items import VideoItem
from crawler.keys import RedisKeys
from pipelines.claims import SeenIndex, Sha256Index


def test_a_url_or_platform_id_is_claimed_once_until_released(redis_client, key_prefix):
    seen = SeenIndex(redis_client, RedisKeys(key_prefix))
    first = VideoItem(url="https://e.org/a", source="t", platform_id="Yt:1")
    assert seen.claim(first) == (True, None)
    same_video = VideoItem(url="https://e.org/other-page", source="t", platform_id="Yt:1")
    assert seen.claim(same_video) == (False, None)  # claimed, no video id known yet
    seen.resolve(first, "v1")
    assert seen.claim(same_video) == (False, "v1")
    assert not redis_client.hexists(RedisKeys(key_prefix).seen, "url:https://e.org/other-page")
    seen.release(first)  # a failed download gives its claim up
    assert seen.claim(same_video) == (True, None)


def test_the_first_url_of_a_digest_owns_it(redis_client, key_prefix):
    digests = Sha256Index(redis_client, RedisKeys(key_prefix))
    assert digests.claim("d1", "https://e.org/a") == "new"
    assert digests.claim("d1", "https://e.org/a") == "same_url"  # a resumed crawl
    assert digests.claim("d1", "https://e.org/b") == "duplicate"
    assert digests.claim("d2", "https://e.org/b") == "new"
