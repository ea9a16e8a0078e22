"""crawler.optout: the opt-out list's entries, and the downloader middleware that refuses them."""

import pytest
from scrapy import Request
from scrapy.exceptions import IgnoreRequest
from scrapy.statscollectors import MemoryStatsCollector
from scrapy.utils.test import get_crawler

from crawler.optout import OptOutList, OptOutMiddleware

LIST = """
# whole sites
Example.ORG          # and every subdomain
*.cdn.example.net
# one channel, one video (any scheme, any query)
https://videos.example.com/user/bob/
videos.example.com/watch/clip.mp4
http://[2001:db8::1]:8080/x.mp4
bücher.example
not a url/
"""


@pytest.fixture
def optout():
    return OptOutList.parse(LIST)


@pytest.mark.parametrize("url", [
    "https://example.org/", "http://www.example.org/a.mp4", "https://deep.sub.example.org:8443/x",
    "https://cdn.example.net/v.mp4", "https://a.cdn.example.net/v.mp4",
    "http://videos.example.com/user/bob/", "https://videos.example.com/user/bob/talk.webm?x=1",
    "https://videos.example.com/watch/clip.mp4", "https://VIDEOS.example.com/watch/clip.mp4?t=3#frag",
    "https://[2001:db8::1]:8080/x.mp4", "https://xn--bcher-kva.example/a.mp4",
])  # fmt: skip
def test_listed(optout, url):
    assert optout.match(url)


@pytest.mark.parametrize("url", [
    "https://notexample.org/", "https://example.org.evil.test/", "https://videos.example.com/user/bobby/x.mp4",
    "https://videos.example.com/watch/clip.mp4.html", "https://videos.example.com/", "file:///example.org/a.mp4",
    "data:,example.org", "ftp://example.org/a.mp4", "http://[bad", "", None,
])  # fmt: skip
def test_not_listed(optout, url):
    assert not optout.match(url)


def test_empty_missing_and_bad_lists(tmp_path, caplog):
    assert not OptOutList.load(None) and not OptOutList.load("")
    assert not OptOutList.load(None).match("https://example.org/")
    with pytest.raises(ValueError, match="OPTOUT_PATH .*cannot be read"):
        OptOutList.load(tmp_path / "absent.txt")
    path = tmp_path / "optout.txt"
    path.write_text(LIST)
    assert len(OptOutList.load(path)) == 6
    assert "line 10 is neither a domain nor an http(s) URL: 'not a url/'" in caplog.text


def test_middleware_refuses_listed_requests_and_counts_them(optout):
    stats = MemoryStatsCollector(get_crawler())
    mw = OptOutMiddleware(stats, optout)
    assert mw.process_request(Request("https://other.example/")) is None
    with pytest.raises(IgnoreRequest, match="optout: opted_out"):
        mw.process_request(Request("https://www.example.org/page.html"))
    assert stats.get_value("optout/refused") == 1
