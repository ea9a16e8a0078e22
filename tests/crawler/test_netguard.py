"""crawler.netguard: reason codes for hostile URLs, and the middleware that applies them."""

import asyncio

import pytest
from scrapy import Request
from scrapy.exceptions import IgnoreRequest
from scrapy.utils.test import get_crawler

from crawler.middlewares import NetguardMiddleware
from crawler.netguard import refusal


@pytest.mark.parametrize(
    "url, reason",
    [
        ("javascript:alert(1)", "scheme_not_allowed"),
        ("data:text/html,<script>", "scheme_not_allowed"),
        ("file:///etc/passwd", "scheme_not_allowed"),
        ("ftp://ftp.example.com/a.mp4", "scheme_not_allowed"),
        ("gopher://127.0.0.1:6379/_FLUSHALL", "scheme_not_allowed"),
        ("http://", "bad_url"),
        ("http://exa mple.org/\n", "bad_url"),
        ("http://example.org:99999/", "bad_url"),
        ("https://example.org/" + "a" * 3000, "bad_url"),
        ("", "bad_url"),
        ("http://127.0.0.1/", "private_address"),
        ("http://localhost:6379/", "private_address"),
        ("http://10.1.2.3/", "private_address"),
        ("http://192.168.0.1/", "private_address"),
        ("http://169.254.169.254/latest/meta-data/", "private_address"),  # cloud metadata
        ("http://[::1]/", "private_address"),
        ("http://[::ffff:127.0.0.1]/", "private_address"),
        ("http://0.0.0.0/", "private_address"),
        ("http://2130706433/", "private_address"),  # 127.0.0.1 as one decimal number
        ("http://no-such-host.invalid/", "unresolvable"),
        ("http://93.184.215.14/video.mp4", None),  # a public address literal
        ("https://[2606:4700::1111]/", None),
    ],
)
def test_refusal_reasons(url, reason):
    assert refusal(url, allow_private=False) == reason


def test_allow_private_lets_loopback_through_but_not_other_schemes():
    assert refusal("http://127.0.0.1:8080/a.mp4", allow_private=True) is None
    assert refusal("http://localhost/", allow_private=True) is None
    assert refusal("file:///etc/passwd", allow_private=True) == "scheme_not_allowed"
    assert refusal("http://no-such-host.invalid/", allow_private=True) == "unresolvable"


def _run(mw, url):
    return asyncio.run(mw.process_request(Request(url)))


def test_middleware_refuses_and_counts():
    crawler = get_crawler(settings_dict={"ALLOW_PRIVATE_NETWORKS": False})
    crawler.stats.open_spider()
    stats = crawler.stats
    mw = NetguardMiddleware.from_crawler(crawler)
    for url in ("http://127.0.0.1/a", "http://127.0.0.1/b", "http://no-such-host.invalid/"):
        with pytest.raises(IgnoreRequest):
            _run(mw, url)
    assert _run(mw, "data:,work-token") is None
    assert stats.get_value("netguard/refused/private_address") == 2
    assert stats.get_value("netguard/refused/unresolvable") == 1
    assert stats.get_value("netguard/refused") == 3
    open_mw = NetguardMiddleware(stats, allow_private=True)
    assert _run(open_mw, "http://127.0.0.1/a") is None
