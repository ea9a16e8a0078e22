"""Pure feed parsing: sitemaps (index, urlset, video), robots.txt ``Sitemap:`` lines, RSS / Media RSS / Atom.

No network and no Scrapy engine, like crawler/extract.py: ``parse_feed(body, url)`` is tested on
saved feeds (``tests/data/pages/web/<case>/input.xml``). What each kind gives:

- sitemap index: the child sitemaps (``<sitemap><loc>``);
- urlset: every ``<url><loc>`` as a page to crawl, and each ``<video:video>`` as a video
  (``content_loc``, else ``player_loc``; title, description, thumbnail, duration, publication
  date, uploader, tags), its page the ``<loc>``;
- RSS 2.0 / RSS 1.0 / Atom: per item, ``<enclosure>`` / ``<link rel="enclosure">`` with a video
  type, ``<media:content>`` (one per ``<media:group>``: the default or the largest rendition)
  and a platform ``<media:player>``; title, description (HTML stripped), date, author,
  licence, categories; the item's link is a page to crawl.

Videos are ``FeedVideo`` (a ``VideoCandidate`` with its own page and tags); a URL named twice
keeps its first entry, later ones only fill its empty fields. XML is parsed without entities
or network access; a body that is not one of these kinds gives None (the spider then reads it
as HTML). Gzipped sitemaps are unpacked up to ``max_bytes``.
"""

from __future__ import annotations

import gzip
import io
import zlib
from dataclasses import asdict, dataclass, field
from email.utils import parsedate_to_datetime

from lxml import etree

from crawler.extract import MANIFEST_TYPES, VideoCandidate, _absolute, _classify, _clean, html_text, parse_duration

# Namespace URI (without a trailing "/" or "#") -> the short name this module matches on.
NAMESPACES = {
    "http://www.sitemaps.org/schemas/sitemap/0.9": "",
    "http://www.google.com/schemas/sitemap/0.84": "",
    "http://purl.org/rss/1.0": "",  # RSS 1.0 items
    "http://www.w3.org/2005/Atom": "atom",
    "http://search.yahoo.com/mrss": "media",
    "http://www.google.com/schemas/sitemap-video/1.1": "video",
    "http://purl.org/dc/elements/1.1": "dc",
    "http://backend.userland.com/creativeCommonsRssModule": "cc",
    "http://www.itunes.com/dtds/podcast-1.0.dtd": "itunes",
    "http://www.w3.org/1999/02/22-rdf-syntax-ns": "rdf",
}
KINDS = ("sitemapindex", "urlset", "rss", "atom")
MAX_SITEMAP_BYTES = 50 * 1024 * 1024  # the sitemap protocol's limit, uncompressed


@dataclass
class FeedVideo(VideoCandidate):
    """A video a feed or sitemap names: a candidate with the page it belongs to and its tags."""

    page_url: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass
class FeedInfo:
    """What one feed or sitemap holds."""

    url: str
    kind: str  # sitemapindex | urlset | rss | atom
    title: str | None = None
    videos: list[FeedVideo] = field(default_factory=list)
    pages: list[str] = field(default_factory=list)  # pages to crawl: <loc>s, item links
    sitemaps: list[str] = field(default_factory=list)  # child sitemaps of an index

    def to_dict(self) -> dict:
        return asdict(self)


# -- XML helpers ---------------------------------------------------------------------------
def _key(el) -> tuple[str, str] | None:
    """(namespace short name, local name) of an element; None for comments and the like."""
    tag = el.tag
    if not isinstance(tag, str):
        return None
    if tag.startswith("{"):
        uri, local = tag[1:].split("}", 1)
        uri = uri.rstrip("/#")
        return NAMESPACES.get(uri, "?" + uri), local
    return "", tag


def _kids(el, ns: str, name: str) -> list:
    return [c for c in el if _key(c) == (ns, name)]


def _kid(el, ns: str, name: str):
    return next((c for c in el if _key(c) == (ns, name)), None)


def _text(el, ns: str, name: str) -> str | None:
    kid = _kid(el, ns, name) if el is not None else None
    return _clean("".join(kid.itertext())) if kid is not None else None


def _gunzip(data: bytes, max_bytes: int) -> bytes | None:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            out = f.read(max_bytes + 1)
    except (OSError, EOFError, zlib.error):
        return None
    return out if len(out) <= max_bytes else None


def _root(body: bytes | str, max_bytes: int):
    if isinstance(body, str):
        body = body.encode("utf-8")
    if body[:2] == b"\x1f\x8b":
        body = _gunzip(body, max_bytes)
        if body is None:
            return None
    parser = etree.XMLParser(resolve_entities=False, no_network=True, recover=True, huge_tree=False,
                             remove_comments=True, remove_pis=True, load_dtd=False)  # fmt: skip
    try:
        return etree.fromstring(body.lstrip(), parser)
    except (etree.XMLSyntaxError, ValueError):
        return None


def _date(value: str | None) -> str | None:
    """RFC 822 dates (RSS ``pubDate``) as ISO 8601; other text as given."""
    if not value:
        return None
    if value[:1].isdigit() and "-" in value[:8]:
        return value  # already ISO 8601 (Atom, sitemaps, dc:date)
    try:
        return parsedate_to_datetime(value).isoformat()
    except (TypeError, ValueError, IndexError):
        return value


def _rss_author(value: str | None) -> str | None:
    """RSS 2.0 ``<author>`` is ``email (Name)``: the name when there is one."""
    if value and value.endswith(")") and "(" in value:
        return _clean(value[value.index("(") + 1 : -1]) or value
    return value


def _int(value) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0


def _via(url: str, mime: str | None = None, medium: str | None = None,
         default: str | None = None) -> str | None:  # fmt: skip
    """How a feed's media URL is downloaded, or None when it is no video."""
    mime = (mime or "").split(";")[0].strip().lower()
    medium = (medium or "").strip().lower()
    if mime.startswith(("audio/", "image/", "text/")) or medium in ("audio", "image", "document"):
        return None
    kind = _classify(url)
    if kind:
        return kind[0]
    if mime in MANIFEST_TYPES:
        return "ytdlp"
    if mime.startswith("video/") or medium == "video":
        return "files"
    return default


class _Found:
    """Videos of one feed in order, each URL once (the first entry wins, later ones fill)."""

    def __init__(self):
        self.videos: dict[str, FeedVideo] = {}

    def add(self, url: str | None, via: str | None, pattern: str, **fields) -> bool:
        if not url or not via:
            return False
        kind = _classify(url) if via == "ytdlp" else None
        video = FeedVideo(url=url, download_via=via, pattern=pattern, extractor=kind and kind[2], **fields)
        if url in self.videos:
            self.videos[url].fill(video)
            if not self.videos[url].tags:
                self.videos[url].tags = video.tags
        else:
            self.videos[url] = video
        return True


# -- sitemaps ------------------------------------------------------------------------------
def _sitemap_index(root, info: FeedInfo) -> None:
    for sitemap in _kids(root, "", "sitemap"):
        loc = _absolute(info.url, _text(sitemap, "", "loc"))
        if loc:
            info.sitemaps.append(loc)


def _urlset(root, info: FeedInfo, found: _Found) -> None:
    for entry in _kids(root, "", "url"):
        page = _absolute(info.url, _text(entry, "", "loc"))
        if page:
            info.pages.append(page)
        for video in _kids(entry, "video", "video"):
            fields = dict(
                title=_text(video, "video", "title"),
                description=html_text(_text(video, "video", "description")),
                thumbnail=_absolute(info.url, _text(video, "video", "thumbnail_loc")),
                duration_hint=parse_duration(_text(video, "video", "duration")),
                published=_date(_text(video, "video", "publication_date")),
                uploader=_text(video, "video", "uploader"),
                page_url=page,
                tags=[t for t in (_clean("".join(k.itertext())) for k in _kids(video, "video", "tag")) if t],
            )  # fmt: skip
            content = _absolute(info.url, _text(video, "video", "content_loc"))
            if not found.add(content, content and _via(content, default="files"), "sitemap_video", **fields):
                player = _absolute(info.url, _text(video, "video", "player_loc"))
                found.add(player, player and _via(player, default="ytdlp"), "sitemap_player", **fields)


# -- RSS / Atom ----------------------------------------------------------------------------
def _media_fields(el, base: str) -> dict:
    """What Media RSS says at one level (an item, a group or a content element)."""
    if el is None:
        return {}
    thumb = _kid(el, "media", "thumbnail")
    credit = _kid(el, "media", "credit")
    lic = _kid(el, "media", "license")
    keywords = _text(el, "media", "keywords") or ""
    return {k: v for k, v in dict(
        title=_text(el, "media", "title"),
        description=html_text(_text(el, "media", "description")),
        thumbnail=_absolute(base, thumb.get("url")) if thumb is not None else None,
        uploader=_clean("".join(credit.itertext())) if credit is not None else None,
        license=(_absolute(base, lic.get("href")) or _clean("".join(lic.itertext())))
        if lic is not None else None,
        tags=[t for t in (_clean(k) for k in keywords.split(",")) if t],
    ).items() if v}  # fmt: skip


def _best_rendition(contents: list):
    """The ``isDefault`` rendition of a group, else the largest (height, bitrate, size)."""
    for content in contents:
        if (content.get("isDefault") or "").lower() == "true":
            return content
    return max(contents, key=lambda c: (_int(c.get("height")), _int(c.get("bitrate")),
                                        _int(c.get("fileSize"))))  # fmt: skip


def _entry(el, atom: bool, info: FeedInfo, found: _Found) -> None:
    """One RSS ``<item>`` or Atom ``<entry>``."""
    base = info.url
    ns = "atom" if atom else ""
    links = _kids(el, ns, "link")
    if atom:
        page = next((_absolute(base, ln.get("href")) for ln in links
                     if (ln.get("rel") or "alternate") == "alternate"), None)  # fmt: skip
        author = _text(_kid(el, "atom", "author"), "atom", "name")
        description = html_text(_text(el, "atom", "summary") or _text(el, "atom", "content"))
        published = _text(el, "atom", "published") or _text(el, "atom", "updated")
        lic = next((ln.get("href") for ln in links if ln.get("rel") == "license"), None)
        tags = [c.get("term") for c in _kids(el, "atom", "category") if _clean(c.get("term"))]
    else:
        page = _absolute(base, _text(el, "", "link"))
        author = _text(el, "dc", "creator") or _text(el, "itunes", "author") or _rss_author(_text(el, "", "author"))
        description = html_text(_text(el, "", "description") or _text(el, "itunes", "summary"))
        published = _date(_text(el, "", "pubDate") or _text(el, "dc", "date"))
        lic = _text(el, "cc", "license")
        tags = [t for t in (_clean("".join(c.itertext())) for c in _kids(el, "", "category")) if t]
    image = _kid(el, "itunes", "image")
    item = dict(
        title=_text(el, ns, "title"), description=description, uploader=author, published=published,
        license=_absolute(base, lic) if lic and "/" in lic else (lic or _text(el, "dc", "rights")),
        thumbnail=_absolute(base, image.get("href")) if image is not None else None,
        duration_hint=parse_duration(_text(el, "itunes", "duration")), tags=tags,
    )  # fmt: skip
    if page:
        info.pages.append(page)
    item_media = _media_fields(el, base)

    def fields(*levels) -> dict:
        out = dict(item, page_url=page)
        for level in (item_media, *levels):  # the innermost level wins
            out.update(level)
        extra_tags = [t for level in (item_media, *levels) for t in level.get("tags", [])]
        out["tags"] = list(dict.fromkeys(item["tags"] + extra_tags))
        return out

    def content(c, group_fields: dict) -> bool:
        url = _absolute(base, c.get("url"))
        via = url and _via(url, c.get("type"), c.get("medium"))
        own = _media_fields(c, base)
        if c.get("duration"):
            own["duration_hint"] = parse_duration(c.get("duration"))
        return found.add(url, via, "media_content", **fields(group_fields, own))

    added = False
    for group in _kids(el, "media", "group"):
        group_fields = _media_fields(group, base)
        videos = [c for c in _kids(group, "media", "content")
                  if _via(_absolute(base, c.get("url")) or "", c.get("type"), c.get("medium"))]  # fmt: skip
        if videos:
            added |= content(_best_rendition(videos), group_fields)
    for c in _kids(el, "media", "content"):
        added |= content(c, {})
    enclosures = ([ln for ln in links if ln.get("rel") == "enclosure"] if atom else _kids(el, "", "enclosure"))
    for enc in enclosures:
        url = _absolute(base, enc.get("href") if atom else enc.get("url"))
        added |= found.add(url, url and _via(url, enc.get("type")), "enclosure", **fields())
    if added:
        return
    groups = _kids(el, "media", "group")
    players = _kids(el, "media", "player") + [p for g in groups for p in _kids(g, "media", "player")]
    for player in players:
        url = _absolute(base, player.get("url"))
        if url and _classify(url):  # a platform player (yt-dlp), not any HTML page
            found.add(url, _classify(url)[0], "media_player", **fields())


def _rss(root, info: FeedInfo, found: _Found) -> None:
    channel = _kid(root, "", "channel")
    container = channel if channel is not None else root
    info.title = _text(container, "", "title")
    items = _kids(container, "", "item") or _kids(root, "", "item")  # RSS 1.0 items sit beside the channel
    for item in items:
        _entry(item, False, info, found)


def _atom(root, info: FeedInfo, found: _Found) -> None:
    info.title = _text(root, "atom", "title")
    for entry in _kids(root, "atom", "entry"):
        _entry(entry, True, info, found)


# -- entry points --------------------------------------------------------------------------
def parse_feed(body: bytes | str, url: str, max_bytes: int = MAX_SITEMAP_BYTES) -> FeedInfo | None:
    """Parse a sitemap, sitemap index, RSS or Atom document fetched from ``url``; None if it is none."""
    root = _root(body, max_bytes) if body else None
    key = _key(root) if root is not None else None
    if key is None:
        return None
    ns, local = key
    found = _Found()
    if ns == "" and local == "sitemapindex":
        info = FeedInfo(url=url, kind="sitemapindex")
        _sitemap_index(root, info)
    elif ns == "" and local == "urlset":
        info = FeedInfo(url=url, kind="urlset")
        _urlset(root, info, found)
    elif (ns, local) in (("", "rss"), ("rdf", "RDF")):
        info = FeedInfo(url=url, kind="rss")
        _rss(root, info, found)
    elif (ns, local) == ("atom", "feed"):
        info = FeedInfo(url=url, kind="atom")
        _atom(root, info, found)
    else:
        return None
    info.videos = list(found.videos.values())
    info.pages = list(dict.fromkeys(info.pages))
    info.sitemaps = list(dict.fromkeys(info.sitemaps))
    return info


def looks_like_feed(head: bytes) -> bool:
    """True when a body's first bytes may be XML of a feed or sitemap (or gzip: a .xml.gz sitemap)."""
    head = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:200].lower()
    return head.startswith((b"\x1f\x8b", b"<?xml", b"<rss", b"<urlset", b"<sitemapindex", b"<feed", b"<rdf:rdf"))


def sitemaps_in_robots(text: str, url: str) -> list[str]:
    """The absolute URLs of a robots.txt's ``Sitemap:`` lines, each once, in order."""
    out: list[str] = []
    for line in (text or "").splitlines():
        line = line.split("#", 1)[0].strip()
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == "sitemap":
            loc = _absolute(url, value.strip())
            if loc and loc not in out:
                out.append(loc)
    return out
