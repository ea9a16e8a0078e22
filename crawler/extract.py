"""Pure page parsing: HTML -> video candidates, page metadata, robots directives and links.

No network and no Scrapy engine: ``extract_page(html, url)`` is tested on saved pages
(``tests/data/pages/web/<case>/``). Patterns recognised, in order of precedence (the first
pattern that names a URL wins, later ones only fill fields it left empty):

1. JSON-LD ``VideoObject`` (``contentUrl``, ``embedUrl``; also inside ``@graph`` / lists)
2. ``<video src>`` and ``<video><source src>``
3. ``og:video`` / ``og:video:url`` / ``og:video:secure_url``
4. ``twitter:player:stream`` (and ``twitter:player`` when it is a platform embed)
5. ``<a href>`` to media files and to HLS/DASH manifests
6. ``<iframe>`` / ``<embed>`` / ``<object data>`` of platforms that yt-dlp supports

Each pattern is one function of this module, listed in ``PATTERNS`` in that order;
``extract_page`` reads the page once and runs them over it.

Direct files get ``download_via="files"``; manifests (``.m3u8``/``.mpd``) and platform
embeds get ``download_via="ytdlp"``. URLs are returned as found (made absolute); refusing
hostile ones is the spider's job (crawler.netguard).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from urllib.parse import urljoin, urlsplit

from parsel import Selector
from w3lib.html import remove_tags, replace_entities
from w3lib.url import safe_url_string

from crawler.media_types import VIDEO_EXTENSIONS

LINK_VIDEO_EXTENSIONS = VIDEO_EXTENSIONS - {".ts"}  # ".ts" in an <a href> is usually TypeScript
MANIFEST_EXTENSIONS = frozenset({".m3u8", ".mpd"})
MANIFEST_TYPES = frozenset(
    {"application/x-mpegurl", "application/vnd.apple.mpegurl", "application/dash+xml"}
)
# Links with these extensions are neither pages to follow nor videos.
NOT_PAGE_EXTENSIONS = frozenset(
    ".jpg .jpeg .png .gif .webp .svg .ico .bmp .tif .tiff .avif .heic .pdf .zip .gz .tgz .bz2 "
    ".xz .7z .rar .tar .exe .dmg .iso .apk .mp3 .wav .flac .ogg .oga .m4a .aac .opus .css .js "
    ".json .xml .rss .atom .woff .woff2 .ttf .eot .doc .docx .xls .xlsx .ppt .pptx .csv".split()
)
CC_LICENSE = re.compile(r"^https?://(www\.)?creativecommons\.org/(licenses|publicdomain)/", re.I)
ISO_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$",
    re.I,
)
BLOCK_END = re.compile(r"<(?:br|/p|/div|/li|/tr|/td|/h\d)\b[^>]*>", re.I)  # become spaces in html_text
ROBOTS_OPT_OUT = frozenset({"noai", "noindex", "none", "noimageai"})


@dataclass
class VideoCandidate:
    """One video a page points at, with what the page says about it."""

    url: str
    download_via: str  # "files" | "ytdlp"
    pattern: str  # video_tag | source_tag | og_video | twitter | jsonld | link | manifest | embed
    title: str | None = None
    description: str | None = None
    uploader: str | None = None
    published: str | None = None
    duration_hint: float | None = None
    thumbnail: str | None = None
    license: str | None = None
    extractor: str | None = None  # yt-dlp extractor key for platform embeds

    def fill(self, other: VideoCandidate) -> None:
        """Fill this candidate's empty fields from ``other`` (same URL, weaker pattern)."""
        for name in ("title", "description", "uploader", "published", "duration_hint",
                     "thumbnail", "license", "extractor"):  # fmt: skip
            if getattr(self, name) is None and getattr(other, name) is not None:
                setattr(self, name, getattr(other, name))


@dataclass
class PageInfo:
    """What a page holds: its metadata, robots directives, videos and links to follow."""

    url: str
    title: str | None = None
    description: str | None = None
    uploader: str | None = None
    published: str | None = None
    thumbnail: str | None = None
    license: str | None = None
    keywords: list[str] = field(default_factory=list)
    robots: list[str] = field(default_factory=list)  # lower-cased directives of <meta robots>
    videos: list[VideoCandidate] = field(default_factory=list)
    links: list[str] = field(default_factory=list)  # absolute, fragment-less, in page order

    @property
    def opted_out(self) -> bool:
        return bool(ROBOTS_OPT_OUT & set(self.robots))

    def to_dict(self) -> dict:
        return asdict(self)


# -- helpers -------------------------------------------------------------------------------
def _clean(text) -> str | None:
    if text is None:
        return None
    if isinstance(text, (int, float)):
        text = str(text)
    if not isinstance(text, str):
        return None
    text = " ".join(text.split())
    return text or None


def html_text(value) -> str | None:
    """Plain text of an HTML fragment (feed descriptions, Commons metadata): tags and entities out."""
    text = _clean(value)
    if text is None:
        return None
    if "<" in text:
        text = remove_tags(BLOCK_END.sub(" ", text))
    return _clean(replace_entities(text))


def _ext(url: str) -> str:
    path = urlsplit(url).path.lower()
    dot = path.rfind(".")
    return path[dot:] if dot > path.rfind("/") else ""


def _absolute(base: str, href: str | None) -> str | None:
    """``href`` made absolute against ``base`` (fragment dropped), or None for no URL."""
    if not href:
        return None
    href = href.strip()
    if not href or href.startswith("#"):
        return None
    try:
        url = urljoin(base, href)
        if url.split(":", 1)[0].lower() in ("http", "https"):
            url = safe_url_string(url)
    except ValueError:
        return None
    return url.split("#", 1)[0] or None


def parse_duration(value) -> float | None:
    """Seconds from ISO 8601 (``PT1M30S``), ``hh:mm:ss`` or a number."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value >= 0 else None
    if not isinstance(value, str):
        return None
    value = value.strip()
    match = ISO_DURATION.match(value)
    if match and any(match.groupdict().values()):
        d, h, m, s = (float(match.group(k) or 0) for k in "dhms")
        return d * 86400 + h * 3600 + m * 60 + s
    if re.fullmatch(r"\d+(:\d{1,2}){1,2}(\.\d+)?", value):
        total = 0.0
        for part in value.split(":"):
            total = total * 60 + float(part)
        return total
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


@lru_cache(maxsize=1)
def _platform_extractors() -> tuple:
    from yt_dlp.extractor import gen_extractor_classes

    return tuple(ie for ie in gen_extractor_classes() if ie.ie_key() != "Generic")


@lru_cache(maxsize=4096)
def platform_extractor(url: str) -> str | None:
    """The key of the (non-generic) yt-dlp extractor that handles ``url``, or None."""
    if not url.lower().startswith(("http://", "https://")):
        return None
    for ie in _platform_extractors():
        try:
            if ie.suitable(url) and ie.working():
                return ie.ie_key()
        except Exception:  # noqa: BLE001 - a broken extractor regex must not break parsing
            continue
    return None


def _name(value) -> str | None:
    """A person/organisation name from JSON-LD (a string, an object or a list of them)."""
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        return _clean(value.get("name"))
    return _clean(value)


def _first_url(value) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("url") or value.get("contentUrl") or value.get("@id")
    return value if isinstance(value, str) else None


def _jsonld_objects(sel: Selector) -> list[dict]:
    found: list[dict] = []

    def walk(node):
        if isinstance(node, list):
            for child in node:
                walk(child)
        elif isinstance(node, dict):
            found.append(node)
            for key in ("@graph", "video", "hasPart", "itemListElement", "item", "mainEntity"):
                if key in node:
                    walk(node[key])

    for raw in sel.xpath('//script[@type="application/ld+json"]/text()').getall():
        try:
            walk(json.loads(raw, strict=False))
        except (ValueError, RecursionError):
            continue
    return found


def _is_type(obj: dict, name: str) -> bool:
    kind = obj.get("@type")
    kinds = kind if isinstance(kind, list) else [kind]
    return any(isinstance(k, str) and k.split("/")[-1] == name for k in kinds)


def _classify(url: str) -> tuple[str, str, str | None] | None:
    """(download_via, pattern override, extractor) for a video URL, None if not a video."""
    ext = _ext(url)
    if ext in MANIFEST_EXTENSIONS:
        return "ytdlp", "manifest", None
    if ext in VIDEO_EXTENSIONS:
        return "files", "", None
    extractor = platform_extractor(url)
    if extractor:
        return "ytdlp", "embed", extractor
    return None


# -- one page being parsed ----------------------------------------------------------------
class _Page:
    """A parsed page: its selector, base URL, ``<meta>`` values, metadata and the videos found."""

    def __init__(self, html: str | bytes, url: str):
        if isinstance(html, bytes):
            html = html.decode("utf-8", "replace")
        self.sel = Selector(text=html or "<html></html>")
        self.base = _absolute(url, self.sel.xpath("//base/@href").get()) or url
        self.meta = _meta_values(self.sel)
        self.info = _page_info(self.sel, self.base, self.meta, url)
        self.duration = parse_duration(self.meta.get("og:video:duration") or self.meta.get("video:duration"))
        self.found: dict[str, VideoCandidate] = {}

    def url(self, href: str | None) -> str | None:
        return _absolute(self.base, href)

    @property
    def fields(self) -> dict:
        """The page's own metadata, the default for every candidate it shows."""
        info = self.info
        return dict(title=info.title, description=info.description, uploader=info.uploader,
                    published=info.published, thumbnail=info.thumbnail, license=info.license)  # fmt: skip

    def add(self, raw_url, pattern: str, default_via: str | None = None, **fields) -> None:
        """Record a candidate; ``default_via`` None: only if its URL is a video by itself.

        The first pattern that names a URL keeps it; a later one only fills its empty fields.
        """
        video_url = self.url(raw_url) if isinstance(raw_url, str) else None
        if not video_url:
            return
        kind = _classify(video_url)
        if kind is None and default_via is None:
            return
        via, override, extractor = kind or (default_via, "", None)
        if pattern == "jsonld":
            override = ""  # the structured data is the stronger signal; keep its name
        cand = VideoCandidate(url=video_url, download_via=via, pattern=override or pattern,
                              extractor=extractor, **fields)  # fmt: skip
        if video_url in self.found:
            self.found[video_url].fill(cand)
        else:
            self.found[video_url] = cand


def _meta_values(sel: Selector) -> dict[str, str]:
    """``<meta>`` content by lower-cased property / name / itemprop (the first one wins)."""
    meta = {}
    for node in sel.xpath("//meta"):
        key = (node.attrib.get("property") or node.attrib.get("name")
               or node.attrib.get("itemprop") or "").strip().lower()  # fmt: skip
        content = node.attrib.get("content")
        if key and content is not None and key not in meta:
            meta[key] = content.strip()
    return meta


def _page_info(sel: Selector, base: str, meta: dict[str, str], url: str) -> PageInfo:
    """The page's title, description, author, date, thumbnail, licence, keywords and robots."""
    page = PageInfo(url=url)
    page.title = _clean(meta.get("og:title")) or _clean(sel.xpath("//title/text()").get())
    page.description = _clean(meta.get("og:description") or meta.get("description"))
    page.uploader = _clean(meta.get("author") or meta.get("article:author"))
    page.published = _clean(
        meta.get("article:published_time") or meta.get("og:video:release_date")
        or meta.get("uploaddate") or meta.get("date")
    )  # fmt: skip
    page.thumbnail = _absolute(base, meta.get("og:image") or meta.get("twitter:image"))
    page.keywords = [k for k in (_clean(x) for x in meta.get("keywords", "").split(",")) if k]
    for node in sel.xpath("//meta[@name]"):
        if node.attrib["name"].strip().lower() in ("robots", "videopipe"):
            page.robots += [d.strip().lower() for d in node.attrib.get("content", "").split(",")
                            if d.strip()]  # fmt: skip
    page.license = _page_license(sel, base, meta)
    return page


def _page_license(sel: Selector, base: str, meta: dict[str, str]) -> str | None:
    """``rel="license"``, else the first Creative Commons link, else a licence ``<meta>``."""
    href = sel.xpath(
        '//link[contains(concat(" ", normalize-space(@rel), " "), " license ")]/@href'
        ' | //a[contains(concat(" ", normalize-space(@rel), " "), " license ")]/@href'
    ).get()  # fmt: skip
    if not href:
        href = next((h for h in sel.xpath("//a/@href").getall() if CC_LICENSE.match(h.strip())), None)
    return _absolute(base, href) or _clean(meta.get("license") or meta.get("dc.rights"))


# -- the discovery patterns, strongest first -----------------------------------------------
def find_jsonld(page: _Page) -> None:
    """JSON-LD ``VideoObject``: ``contentUrl`` (a file) and ``embedUrl`` (a player)."""
    info = page.info
    for obj in _jsonld_objects(page.sel):
        if not _is_type(obj, "VideoObject"):
            continue
        thumb = _first_url(obj.get("thumbnailUrl") or obj.get("thumbnail"))
        lic = _first_url(obj.get("license")) or _clean(obj.get("license") if isinstance(obj.get("license"), str) else None)
        fields = dict(
            title=_clean(obj.get("name")) or info.title,
            description=_clean(obj.get("description")) or info.description,
            uploader=_name(obj.get("author") or obj.get("creator") or obj.get("publisher")) or info.uploader,
            published=_clean(obj.get("uploadDate") or obj.get("datePublished")) or info.published,
            duration_hint=parse_duration(obj.get("duration")),
            thumbnail=page.url(thumb) or info.thumbnail,
            license=page.url(lic) if lic and "/" in lic else (lic or info.license),
        )  # fmt: skip
        page.add(_first_url(obj.get("contentUrl")), "jsonld", "files", **fields)
        page.add(_first_url(obj.get("embedUrl")), "jsonld", "ytdlp", **fields)


def find_video_tags(page: _Page) -> None:
    """``<video src>`` and its ``<source src>`` children (HLS/DASH by type go to yt-dlp)."""
    for video in page.sel.xpath("//video"):
        fields = dict(page.fields, title=_clean(video.attrib.get("title")) or page.info.title,
                      thumbnail=page.url(video.attrib.get("poster")) or page.info.thumbnail,
                      duration_hint=page.duration)  # fmt: skip
        page.add(video.attrib.get("src"), "video_tag", "files", **fields)
        for source in video.xpath(".//source"):
            mime = (source.attrib.get("type") or "").split(";")[0].strip().lower()
            page.add(source.attrib.get("src"), "source_tag",
                     "ytdlp" if mime in MANIFEST_TYPES else "files", **fields)  # fmt: skip


def find_open_graph(page: _Page) -> None:
    """``og:video:secure_url``, else ``og:video:url``, else ``og:video``."""
    for key in ("og:video:secure_url", "og:video:url", "og:video"):
        if page.meta.get(key):
            page.add(page.meta[key], "og_video", "files", **page.fields, duration_hint=page.duration)
            return


def find_twitter_card(page: _Page) -> None:
    """``twitter:player:stream`` (a file), and ``twitter:player`` when it is a platform embed."""
    fields = dict(page.fields, duration_hint=page.duration)
    page.add(page.meta.get("twitter:player:stream"), "twitter", "files", **fields)
    if page.meta.get("twitter:player"):
        page.add(page.meta["twitter:player"], "twitter", None, **fields)


def find_media_links(page: _Page) -> None:
    """``<a href>`` to a media file or an HLS/DASH manifest, titled by the link text."""
    for anchor in page.sel.xpath("//a[@href]"):
        href = page.url(anchor.attrib["href"])
        if not href:
            continue
        ext = _ext(href)
        if ext in LINK_VIDEO_EXTENSIONS or ext in MANIFEST_EXTENSIONS:
            text = _clean(" ".join(anchor.xpath(".//text()").getall()))
            page.add(href, "link", None, **dict(page.fields, title=text or page.info.title))


def find_embeds(page: _Page) -> None:
    """``<iframe>`` / ``<embed>`` / ``<object data>`` of platforms that yt-dlp supports."""
    for src in page.sel.xpath("//iframe/@src | //embed/@src | //object/@data").getall():
        page.add(src, "embed", None, **page.fields)


PATTERNS = (find_jsonld, find_video_tags, find_open_graph, find_twitter_card, find_media_links,
            find_embeds)  # fmt: skip


def links_to_follow(page: _Page) -> list[str]:
    """``<a href>`` pages to crawl next: absolute, each once, no media and no videos found."""
    links: list[str] = []
    seen: set[str] = set()
    for href in page.sel.xpath("//a/@href").getall():
        link = page.url(href)
        if not link or link in seen or link in page.found:
            continue
        ext = _ext(link)
        if ext in VIDEO_EXTENSIONS or ext in MANIFEST_EXTENSIONS or ext in NOT_PAGE_EXTENSIONS:
            continue
        seen.add(link)
        links.append(link)
    return links


def extract_page(html: str | bytes, url: str) -> PageInfo:
    """Parse one HTML page fetched from ``url``: its metadata, videos (``PATTERNS``) and links."""
    page = _Page(html, url)
    for find in PATTERNS:
        find(page)
    page.info.videos = list(page.found.values())
    page.info.links = links_to_follow(page)
    return page.info
