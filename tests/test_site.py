"""The local test site (tests/site.py): the routes a browser sees, saved pages served once."""

import urllib.error
import urllib.request

from tests.conftest import DATA


def get(site, path, **headers):
    """(status, headers, body) of one GET, error statuses included."""
    request = urllib.request.Request(site + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_site_routes_a_browser_would_see(site, media):
    status, headers, body = get(site, "/media/bikes.mp4", Range="bytes=10-19")
    assert status == 206 and body == media["bikes"].read_bytes()[10:20]
    assert headers["Content-Range"].endswith(f"/{media['bikes'].stat().st_size}")
    assert get(site, "/fail/404")[0] == 404 and get(site, "/fail/500")[0] == 500
    assert get(site, "/fail/wrong-type.mp4")[1]["Content-Type"] == "text/plain"
    status, _, body = get(site, "/gen/0.html?n=7")
    assert status == 200 and b'href="/gen/1.html?n=7"' in body and b"<video" in body
    assert get(site, "/gen/7.html?n=7")[0] == 404
    status, _, body = get(site, "/hls/bbb/index.m3u8")
    assert status == 200 and b"#EXTM3U" in body
    assert get(site, "/hls/bbb/../../etc/passwd")[0] == 404
    status, headers, _ = get(site, "/optout-header/page.html")
    assert status == 200 and headers["X-Robots-Tag"] == "noai"
    assert "X-Robots-Tag" not in get(site, "/index.html")[1]


def test_saved_extraction_cases_are_pages_of_the_site(site):
    """Each page is stored once: the site serves tests/data/pages/web/<case>/input.html."""
    status, headers, body = get(site, "/video-tag.html")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert body == (DATA / "pages" / "web" / "video_tag" / "input.html").read_bytes()
    status, _, index = get(site, "/index.html")  # the site's own pages link to them
    assert status == 200 and b'href="video-tag.html"' in index
    assert get(site, "/no-such-case.html")[0] == 404
