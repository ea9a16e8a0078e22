"""crawler.netguard: reason codes for hostile URLs, allow-lists, pinned answers with a TTL, and
the middleware and resolver that apply them in real Scrapy crawls."""

import asyncio
import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis
from scrapy import Request
from scrapy.exceptions import IgnoreRequest
from scrapy.utils.test import get_crawler

from crawler.middlewares import NetguardMiddleware
from crawler.netguard import Guard, NetPolicy, Refused, Resolutions, check_url, is_public, refusal
from tests.conftest import PYTHON, ROOT, project_env
from tests.crawler.spiders.conftest import crawl


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
        ("http://100.64.0.1/", "private_address"),  # shared address space (CGNAT)
        ("http://169.254.169.254/latest/meta-data/", "private_address"),  # cloud metadata
        ("http://224.0.0.1/", "private_address"),
        ("http://255.255.255.255/", "private_address"),
        ("http://0.0.0.0/", "private_address"),
        # every IPv4 spelling a browser or inet_aton reads as loopback
        ("http://2130706433/", "private_address"),
        ("http://0x7f000001/", "private_address"),
        ("http://0177.0.0.1/", "private_address"),
        ("http://0x7f.0.0.1/", "private_address"),
        ("http://127.1/", "private_address"),
        ("http://017700000001/", "private_address"),
        ("http://127.0.0.1./", "private_address"),
        ("http://0/", "private_address"),
        # IPv6, and IPv6 forms that carry an IPv4 address
        ("http://[::1]/", "private_address"),
        ("http://[::]/", "private_address"),
        ("http://[fe80::1%25eth0]/", "private_address"),
        ("http://[fd00::1]/", "private_address"),
        ("http://[fec0::1]/", "private_address"),  # site-local
        ("http://[ff02::1]/", "private_address"),
        ("http://[::ffff:127.0.0.1]/", "private_address"),  # IPv4-mapped
        ("http://[::ffff:7f00:1]/", "private_address"),
        ("http://[::127.0.0.1]/", "private_address"),  # IPv4-compatible
        ("http://[::8.8.8.8]/", "private_address"),  # deprecated form: never public
        ("http://[::ffff:0:7f00:1]/", "private_address"),  # IPv4-translated
        ("http://[64:ff9b::7f00:1]/", "private_address"),  # NAT64 of 127.0.0.1
        ("http://[64:ff9b::a00:1]/", "private_address"),  # NAT64 of 10.0.0.1
        ("http://[64:ff9b:1::808:808]/", "private_address"),  # local-use NAT64
        ("http://[2002:7f00:1::]/", "private_address"),  # 6to4 of 127.0.0.1
        ("http://[2002:a9fe:a9fe::1]/", "private_address"),  # 6to4 of 169.254.169.254
        ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", "private_address"),  # Teredo, client 127.0.0.1
        ("http://no-such-host.invalid/", "unresolvable"),
        ("http://93.184.215.14/video.mp4", None),  # a public address literal
        ("https://[2606:4700::1111]/", None),
        ("http://[::ffff:93.184.215.14]/", None),  # mapped public address: that address
        ("http://[64:ff9b::808:808]/", None),  # NAT64 of 8.8.8.8
        ("http://[2002:808:808::1]/", None),  # 6to4 of 8.8.8.8
    ],
)
def test_refusal_reasons(url, reason):
    assert refusal(url, allow_private=False) == reason


def test_allow_private_lets_loopback_through_but_not_other_schemes():
    for allow in (True, 1, "1", "true", "TRUE", "yes"):
        assert refusal("http://127.0.0.1:8080/a.mp4", allow_private=allow) is None
    assert refusal("http://localhost/", allow_private=True) is None
    assert refusal("file:///etc/passwd", allow_private=True) == "scheme_not_allowed"
    assert refusal("http://no-such-host.invalid/", allow_private=True) == "unresolvable"
    for deny in (False, 0, "0", "false", "", None):
        assert refusal("http://127.0.0.1:8080/", allow_private=deny) == "private_address"


def test_an_allow_list_lets_only_its_own_hosts_and_ports_through():
    policy = NetPolicy.parse("127.0.0.1:8765, 10.0.0.0/8, 192.168.1.0/24:8080, [::1]:9000, localhost:8000")
    allowed = ["http://127.0.0.1:8765/a.mp4", "http://0x7f000001:8765/", "http://10.9.8.7/",
               "https://10.0.0.1/", "http://192.168.1.20:8080/", "http://[::1]:9000/",
               "http://[::ffff:127.0.0.1]:8765/", "http://localhost:8000/", "http://localhost:8765/",
               "http://93.184.215.14/"]  # fmt: skip
    refused = ["http://127.0.0.1:8766/", "http://127.0.0.1/", "http://127.0.0.2:8765/",
               "http://192.168.1.20/", "http://192.168.2.1:8080/", "http://[::1]:9001/", "http://[::1]/",
               "http://localhost:8001/", "http://169.254.169.254/"]  # fmt: skip
    assert {u: refusal(u, policy) for u in allowed} == dict.fromkeys(allowed)
    assert {u: refusal(u, policy) for u in refused} == dict.fromkeys(refused, "private_address")
    assert refusal("http://127.0.0.1:8765/", ["127.0.0.1:8765"]) is None  # a list works as well
    v6 = NetPolicy.parse("[fd00::/8]:443")
    assert refusal("https://[fd00::5]/", v6) is None and refusal("http://[fd00::5]/", v6) == "private_address"
    assert not is_public("not an address")


@pytest.mark.parametrize("bad", ["127.0.0.1:99999", "127.0.0.1:http", "10.0.0.0/33", "[::1", "a b", "x/y"])
def test_a_bad_allow_list_entry_is_named(bad):
    with pytest.raises(ValueError, match="ALLOW_PRIVATE_NETWORKS: .* is not a host"):
        NetPolicy.parse(f"127.0.0.1:8765,{bad}")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def rebinding(answers):
    """A resolver that answers each name with the next of ``answers`` (the last one repeats)."""
    calls = []

    def resolve(host):
        calls.append(host)
        return [answers[min(len(calls), len(answers)) - 1]]

    return resolve, calls


def test_answers_are_checked_reused_for_the_ttl_then_checked_again():
    resolve, calls = rebinding(["93.184.215.14", "127.0.0.1"])
    clock = Clock()
    guard = Guard(False, Resolutions(resolve, ttl=30, clock=clock))
    first = guard.check("http://rebind.example/a.mp4")
    assert first.ok and first.addresses == ("93.184.215.14",) and first.address == "93.184.215.14"
    clock.now += 29
    again = guard.check("http://rebind.example/b.mp4")
    assert again == first and len(calls) == 1  # within the TTL: the same, checked answer
    clock.now += 2
    later = guard.check("http://rebind.example/a.mp4")
    assert later.reason == "private_address" and later.addresses == () and len(calls) == 2
    assert guard.check("http://rebind.example/c", resolve=False).reason == "private_address"
    clock.now += 31
    assert guard.check("http://rebind.example/c", resolve=False) is None  # expired: needs a lookup


def test_every_address_of_a_name_must_pass():
    guard = Guard(False, Resolutions(lambda host: ["93.184.215.14", "10.0.0.7"]))
    assert guard.check("http://mixed.example/").reason == "private_address"
    failing = Resolutions(lambda host: None, ttl=5, clock=Clock())
    assert Guard(True, failing).check("http://gone.example/").reason == "unresolvable"


class Named(BaseHTTPRequestHandler):
    """Answers every GET with its server's name and counts what it served."""

    def do_GET(self):
        self.server.hits += 1
        body = self.server.name.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def two_servers():
    """The allowed site at 127.0.0.1:P and an 'internal' one at 127.0.0.2 on the same port."""
    servers = []
    legit = ThreadingHTTPServer(("127.0.0.1", 0), Named)
    port = legit.server_address[1]
    internal = ThreadingHTTPServer(("127.0.0.2", port), Named)
    for server, name in ((legit, "legit"), (internal, "internal")):
        server.name, server.hits = name, 0
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    yield legit, internal, port
    for server in servers:
        server.shutdown()
        server.server_close()


def _get(sock, host):
    sock.sendall(f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data.split(b"\r\n\r\n", 1)[1].decode()


def test_create_connection_goes_to_the_checked_address(two_servers):
    legit, internal, port = two_servers
    resolve, calls = rebinding(["127.0.0.1", "127.0.0.2"])
    clock = Clock()
    guard = Guard(f"127.0.0.1:{port}", Resolutions(resolve, ttl=60, clock=clock))
    assert check_url(f"http://rebind.test:{port}/", guard=guard).address == "127.0.0.1"
    with guard.create_connection(("rebind.test", port), timeout=5) as sock:
        assert sock.getpeername() == ("127.0.0.1", port) and _get(sock, "rebind.test") == "legit"
    assert len(calls) == 1  # the connection used the answer that was checked
    clock.now += 61  # the name now points inside: the new answer is checked before any connect
    with pytest.raises(Refused) as refused:
        guard.create_connection(("rebind.test", port), timeout=5)
    assert refused.value.code == "private_address" and str(refused.value).startswith("netguard: private_address")
    with pytest.raises(Refused):
        check_url(f"http://rebind.test:{port}/", guard=guard)
    assert (legit.hits, internal.hits) == (1, 0)


def _run(mw, url):
    return asyncio.run(mw.process_request(Request(url)))


def test_middleware_refuses_and_counts():
    crawler = get_crawler(settings_dict={"ALLOW_PRIVATE_NETWORKS": False})
    crawler.stats.open_spider()
    stats = crawler.stats
    mw = NetguardMiddleware.from_crawler(crawler)
    for url in ("http://127.0.0.1/a", "http://127.0.0.1/b", "http://no-such-host.invalid/", "http://[::127.0.0.1]/"):
        with pytest.raises(IgnoreRequest, match="^netguard: "):
            _run(mw, url)
    assert _run(mw, "data:,work-token") is None
    assert stats.get_value("netguard/refused/private_address") == 3
    assert stats.get_value("netguard/refused/unresolvable") == 1
    assert stats.get_value("netguard/refused") == 4
    assert _run(NetguardMiddleware(stats, allow_private=True), "http://127.0.0.1/a") is None
    listed = NetguardMiddleware.from_crawler(get_crawler(settings_dict={"ALLOW_PRIVATE_NETWORKS": "127.0.0.1:8765"}))
    assert _run(listed, "http://127.0.0.1:8765/a") is None
    with pytest.raises(IgnoreRequest, match="private_address"):
        _run(listed, "http://127.0.0.1:8766/a")


# A real Scrapy process whose resolver answers "rebind.test" with 127.0.0.1 first, then 127.0.0.2:
# the middleware checks the first answer; the connection must not go to the second.
PROBE = r"""
import json, sys
from scrapy import Request, Spider
from scrapy.crawler import CrawlerProcess
from scrapy.utils.project import get_project_settings
from crawler import netguard

url, answers, calls, got = sys.argv[1], sys.argv[2].split(","), [], {}

def rebinding(host):
    if host != "rebind.test":
        return netguard.system_resolve(host)
    calls.append(host)
    return [answers[min(len(calls), len(answers)) - 1]]

netguard.RESOLUTIONS.resolve = rebinding

class Probe(Spider):
    name = "probe"
    async def start(self):
        yield Request(url, callback=self.parse, errback=self.failed, dont_filter=True)
    def parse(self, response):
        got["body"] = response.text
    def failed(self, failure):
        got["error"] = failure.type.__name__

settings = get_project_settings()
settings.setdict({"ITEM_PIPELINES": {}, "EXTENSIONS": {}, "ROBOTSTXT_OBEY": False, "RETRY_ENABLED": False,
                  "SCHEDULER": "scrapy.core.scheduler.Scheduler",
                  "DUPEFILTER_CLASS": "scrapy.dupefilters.RFPDupeFilter",
                  "TELNETCONSOLE_ENABLED": False, "LOG_LEVEL": "WARNING"}, priority="cmdline")
process = CrawlerProcess(settings)
process.crawl(Probe)
process.start()
print("RESULT " + json.dumps({"got": got, "calls": len(calls)}))
"""


def _probe(port, ttl):
    env = project_env(ALLOW_PRIVATE_NETWORKS=f"127.0.0.1:{port}", NETGUARD_DNS_TTL=ttl)
    proc = subprocess.run([PYTHON, "-c", PROBE, f"http://rebind.test:{port}/", "127.0.0.1,127.0.0.2"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert line, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(line[0][len("RESULT ") :]), proc.stderr


def test_a_scrapy_connection_uses_the_answer_the_middleware_checked(two_servers):
    legit, internal, port = two_servers
    result, _ = _probe(port, ttl=60)
    assert result == {"got": {"body": "legit"}, "calls": 1}  # one lookup: checked, then connected to
    # TTL 0: the resolver looks again at connect time, gets 127.0.0.2, checks it and refuses
    result, log = _probe(port, ttl=0)
    assert result["got"] == {"error": "CannotResolveHostError"} and result["calls"] == 2
    assert f"netguard refused a connection to rebind.test:{port} (private_address)" in log
    assert (legit.hits, internal.hits) == (1, 0)


@pytest.mark.slow
def test_a_crawl_allowed_only_its_site_reaches_it_and_nothing_else(tmp_path, site, two_servers, redis_url, key_prefix):
    """`-s ALLOW_PRIVATE_NETWORKS=127.0.0.1:<site port>`: the site is crawled, the same port on
    127.0.0.2 and another port on 127.0.0.1 are refused, and they never see a request."""
    site = site.rstrip("/")
    site_port = int(site.rsplit(":", 1)[1])
    legit, internal, other_port = two_servers  # both on other_port: 127.0.0.1:Q and 127.0.0.2:Q
    same_port_elsewhere = ThreadingHTTPServer(("127.0.0.2", site_port), Named)
    same_port_elsewhere.name, same_port_elsewhere.hits = "internal", 0
    threading.Thread(target=same_port_elsewhere.serve_forever, daemon=True).start()
    client = redis.Redis.from_url(redis_url)
    try:
        for url in (f"{site}/index.html", f"http://127.0.0.2:{site_port}/index.html",
                    f"http://127.0.0.1:{other_port}/index.html"):  # fmt: skip
            client.lpush("web:start_urls", url)
        items, crawled, log = crawl(tmp_path, "web", settings=["MAX_IDLE_TIME_BEFORE_CLOSE=2",
                                    f"ALLOW_PRIVATE_NETWORKS=127.0.0.1:{site_port}"],
                                    REDIS_URL=redis_url, ALLOW_PRIVATE_NETWORKS=0)  # fmt: skip
    finally:
        same_port_elsewhere.shutdown()
        same_port_elsewhere.server_close()
        client.close()
    assert f"{site}/index.html" in crawled and len(crawled) > 3
    assert all(u.startswith(site + "/") for u in crawled), crawled
    assert any(i["url"].startswith(f"{site}/media/") and not i.get("errors") for i in items)
    assert "'netguard/refused/private_address': 2" in log
    assert (same_port_elsewhere.hits, legit.hits, internal.hits) == (0, 0, 0)
    assert "connections are not pinned" not in log
