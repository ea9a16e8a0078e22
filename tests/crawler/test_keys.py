"""RedisKeys: every key name under one prefix, taken from Scrapy settings or the settings module."""

import pytest
from scrapy.settings import Settings

import settings
from crawler.keys import RedisKeys


def test_every_project_key_starts_with_the_prefix():
    keys = RedisKeys("x")
    names = [keys.stream, keys.dead, keys.ledger, keys.ledger_counts, keys.seen, keys.sha256,
             keys.rate_minute(29_000_000), keys.stage_stats]  # fmt: skip
    assert all(name.startswith("x:") for name in names)
    assert len(set(names)) == len(names)
    assert (keys.stream, keys.dead, keys.group) == ("x:videos", "x:videos:dead", "workers")
    # scrapy-redis' per-spider keys keep their documented names
    assert (RedisKeys.start_urls("web"), RedisKeys.videos_seen("web")) == ("web:start_urls", "web:videos_seen")


def test_prefix_comes_from_the_settings_in_use(monkeypatch):
    assert RedisKeys.from_settings(Settings({"KEY_PREFIX": "crawl1"})).stream == "crawl1:videos"
    monkeypatch.setattr(settings, "KEY_PREFIX", "work1")
    assert RedisKeys.from_settings(settings).ledger == "work1:ledger"
    assert RedisKeys.from_settings(Settings()).prefix == "vp"


@pytest.mark.parametrize("prefix", ["", "a:b", "a b"])
def test_a_prefix_that_would_mix_keys_is_refused(prefix):
    with pytest.raises(ValueError, match="KEY_PREFIX"):
        RedisKeys(prefix)
