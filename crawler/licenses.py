"""Licences as SPDX ids: ``normalize(raw)`` for what sources say, ``matches(id, query)`` for filters.

``normalize`` reads what the sources give and returns one id:

- a Creative Commons licence: its SPDX id, ``CC-BY-4.0``, ``CC-BY-SA-3.0``, ``CC-BY-NC-ND-2.5``...
  (versions 1.0, 2.0, 2.5, 3.0, 4.0; a jurisdiction port such as ``/by/3.0/de/`` gives the
  generic id ``CC-BY-3.0``; the raw value keeps the port). A licence named without a version
  (Vimeo's ``by-sa``, PeerTube's ``Attribution - Share Alike``) keeps its family: ``CC-BY-SA``.
  YouTube's ``Creative Commons Attribution license (reuse allowed)`` is CC BY 3.0 (YouTube's
  own help page says so): ``CC-BY-3.0``.
- ``CC0-1.0`` for the CC0 dedication.
- ``public-domain`` for the Public Domain Mark, "public domain", Flickr's "No known copyright
  restrictions" and "United States Government Work", Commons' ``pd-*`` templates,
  rightsstatements.org's NKC and NoC-US.
- ``unknown`` for everything else ("Standard YouTube License", "all-rights-reserved", None...).

Input forms: URLs (``http(s)://creativecommons.org/licenses/by/4.0/``, ``/publicdomain/zero/1.0/``,
``/publicdomain/mark/1.0/``, with ``legalcode``, ``deed.xx`` or a port after them), names
(``CC BY-SA 3.0``, ``Attribution 4.0 International``, ``cc-by-sa-4.0``), yt-dlp's ``license``
strings, Internet Archive's ``licenseurl``, Commons' ``LicenseShortName`` / ``LicenseUrl`` /
``License``, and JSON-LD ``license`` values (a string, ``{"@id"|"url"|"name": ...}`` or a list).

``matches(license_id, query)`` is the one rule every ``--license`` filter uses (search on both
catalogue backends, export): the query is an id (exact, case-insensitive), a family, or ``open``:

- ``cc-by`` means CC-BY-<version> (and the versionless CC-BY) only, never -SA, -NC or -ND;
  likewise ``cc-by-sa``, ``cc-by-nc``, ``cc-by-nd``, ``cc-by-nc-sa``, ``cc-by-nc-nd``;
- ``cc0``, ``public-domain``, ``unknown``;
- ``open``: the families in ``OPEN`` (CC0, public domain, CC BY, CC BY-SA): free to use
  commercially and to adapt;
- anything else is normalised first (``--license "CC BY 4.0"`` is ``CC-BY-4.0``; ``--license by-sa``
  is the family ``cc-by-sa``); a query that names no licence raises ``ValueError``.

``ids_matching(query)`` lists every id ``normalize`` can return that a query matches, so a
backend can filter with ``IN (...)`` or an Elasticsearch ``terms`` query.
"""

from __future__ import annotations

import re
from typing import Any

UNKNOWN = "unknown"
PUBLIC_DOMAIN = "public-domain"
CC0 = "CC0-1.0"
VERSIONS = ("1.0", "2.0", "2.5", "3.0", "4.0")
# The six Creative Commons families, by their parts (SPDX order: BY, NC, ND, SA).
FAMILIES = ("CC-BY", "CC-BY-SA", "CC-BY-NC", "CC-BY-ND", "CC-BY-NC-SA", "CC-BY-NC-ND")
# ``--license open``: free to use commercially and to adapt.
OPEN = ("cc0", "public-domain", "cc-by", "cc-by-sa")
QUERY_FAMILIES = tuple(f.lower() for f in FAMILIES) + ("cc0", "public-domain", "unknown")
# Every id ``normalize`` returns.
ALL_IDS = tuple(
    [f"{fam}-{v}" for fam in FAMILIES for v in VERSIONS] + list(FAMILIES) + [CC0, PUBLIC_DOMAIN, UNKNOWN]
)

_CC_URL = re.compile(
    r"creativecommons\.org/+(?P<kind>licenses|publicdomain)(?:/+(?P<code>[a-z+-]+))?(?:/+(?P<version>\d+(?:\.\d+)?))?",
    re.I,
)
_RIGHTS_URL = re.compile(r"rightsstatements\.org/(?:vocab|page)/(?P<code>[A-Za-z-]+)/", re.I)
_YOUTUBE_CC = "creative commons attribution license (reuse allowed)"
# Phrases to codes, applied in this order (``non-commercial`` before ``no derivatives``).
_PHRASES = (
    (re.compile(r"creative[\s_-]*commons"), " cc "),
    (re.compile(r"\bcc[\s_-]*(?:0|zero)\b"), " cc0 "),
    (re.compile(r"share[\s_-]*alike"), " sa "),
    (re.compile(r"non[\s_-]*commercial"), " nc "),
    (re.compile(r"no[\s_-]*deriv\w*(?:[\s_-]*works)?"), " nd "),
    (re.compile(r"attribution"), " by "),
)
_TOKEN = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")
_PARTS = {"by", "sa", "nc", "nd"}
_FILLER = {"license", "licence", "international", "unported", "generic", "legalcode", "deed", "version", "igo"}
_PD_PHRASES = (
    "public domain", "publicdomain", "public-domain", "no known copyright", "not in copyright",
    "united states government work", "us government work", "pd-", "pdm",
)  # fmt: skip


def normalize(raw: Any) -> str:
    """The SPDX id (or ``public-domain`` / ``unknown``) of a licence as a source gives it."""
    if raw is None:
        return UNKNOWN
    if isinstance(raw, dict):
        for key in ("@id", "url", "href", "identifier", "license", "licenseurl", "name", "@value"):
            if raw.get(key) and (got := normalize(raw[key])) != UNKNOWN:
                return got
        return UNKNOWN
    if isinstance(raw, (list, tuple)):
        return next((got for r in raw if (got := normalize(r)) != UNKNOWN), UNKNOWN)
    text = str(raw).strip()
    if not text:
        return UNKNOWN
    if "creativecommons.org" in text.lower():
        return _from_cc_url(text)
    if (m := _RIGHTS_URL.search(text)) is not None:
        return PUBLIC_DOMAIN if m.group("code").upper() in ("NKC", "NOC-US") else UNKNOWN
    if "spdx.org/licenses/" in text.lower():
        text = text.rstrip("/").rsplit("/", 1)[-1].removesuffix(".html").removesuffix(".json")
    elif re.match(r"^[a-z][a-z0-9+.-]*://", text, re.I):
        return UNKNOWN  # some other licence page: keep the raw value, claim nothing
    return _from_name(text)


def _cc_id(parts: set[str], version: str | None) -> str:
    """``{"by", "sa"}, "4.0"`` -> ``CC-BY-SA-4.0``; an impossible combination -> unknown."""
    if "by" not in parts or not parts <= _PARTS or {"sa", "nd"} <= parts:
        return UNKNOWN
    fam = "CC-BY" + "".join(f"-{p.upper()}" for p in ("nc", "nd", "sa") if p in parts)
    return f"{fam}-{version}" if version in VERSIONS else fam


def _version(text: str | None) -> str | None:
    """``"4"`` -> ``"4.0"``, ``"2.5"`` -> ``"2.5"``; None when it is not a CC version."""
    if not text:
        return None
    v = text if "." in text else f"{text}.0"
    return v if v in VERSIONS else None


def _from_cc_url(text: str) -> str:
    m = _CC_URL.search(text)
    if m is None:
        return UNKNOWN
    kind, code = m.group("kind").lower(), (m.group("code") or "").lower()
    if kind == "publicdomain":
        return CC0 if code == "zero" else PUBLIC_DOMAIN  # mark/1.0, certification, the old dedication
    if code == "publicdomain":  # creativecommons.org/licenses/publicdomain/ (the 2004 dedication)
        return PUBLIC_DOMAIN
    return _cc_id(set(code.split("-")), _version(m.group("version")))


def _from_name(text: str) -> str:
    low = text.lower()
    if low == _YOUTUBE_CC:
        return "CC-BY-3.0"
    t = low
    for pattern, code in _PHRASES:
        t = pattern.sub(code, t)
    tokens = _TOKEN.findall(t)
    if "cc0" in tokens:
        return CC0
    parts = {tok for tok in tokens if tok in _PARTS}
    versions = [v for tok in tokens if re.fullmatch(r"\d(?:\.\d)?", tok) and (v := _version(tok))]
    # Without "Creative Commons"/"CC" in it, a name must be nothing but licence words
    # ("Attribution 4.0 International", Vimeo's "by-sa"), so "Attribution required" is not CC BY.
    # A two-letter word is a port's jurisdiction only after a version ("CC BY-SA 3.0 DE").
    port = r"\d(?:\.\d)?|[a-z]{2}" if versions else r"\d(?:\.\d)?"
    plain = all(tok in _PARTS or tok in _FILLER or re.fullmatch(port, tok) for tok in tokens)
    if parts and ("cc" in tokens or plain):
        got = _cc_id(parts, versions[0] if versions else None)
        if got != UNKNOWN:
            return got
    if low in ("pd", "cc-pd", "public domain") or any(p in low for p in _PD_PHRASES):
        return PUBLIC_DOMAIN
    return UNKNOWN


def _query(query: str) -> tuple[str, str]:
    """``("family", "cc-by")``, ``("id", "cc-by-4.0")`` or ``("open", "open")``."""
    q = (query or "").strip().lower()
    if q == "open":
        return "open", q
    if q in QUERY_FAMILIES:
        return "family", q
    if q in (i.lower() for i in ALL_IDS):
        return "id", q
    got = normalize(query)
    if got == UNKNOWN:
        raise ValueError(
            f"--license {query!r} names no licence: give an id (CC-BY-4.0, CC0-1.0, public-domain, unknown), "
            f"a family ({', '.join(QUERY_FAMILIES)}) or 'open' ({', '.join(OPEN)})"
        )
    low = got.lower()
    return ("family", low) if low in QUERY_FAMILIES else ("id", low)


def check_query(query: str) -> str:
    """The query as ``matches`` reads it (``cc-by``, ``cc-by-4.0``, ``open``); ValueError if it names none."""
    return _query(query)[1]


def _in_family(lid: str, family: str) -> bool:
    if family == "cc0":
        return lid == CC0.lower()
    if family in ("public-domain", "unknown"):
        return lid == family
    return lid == family or (lid.startswith(family + "-") and lid[len(family) + 1 :] in VERSIONS)


def matches(license_id: str | None, query: str) -> bool:
    """True when ``license_id`` (a ``normalize`` result; None is ``unknown``) is what ``query`` asks for.

    ``query``: an id (exact, case-insensitive), a family (``cc-by`` is CC-BY-* only, not -SA,
    -NC or -ND; ``cc-by-sa``, ``cc-by-nc``, ``cc-by-nd``, ``cc-by-nc-sa``, ``cc-by-nc-nd``, ``cc0``,
    ``public-domain``, ``unknown``) or ``open`` (the families in ``OPEN``). Raises ``ValueError``
    when the query names no licence.
    """
    kind, q = _query(query)
    lid = (license_id or UNKNOWN).strip().lower()
    if kind == "open":
        return any(_in_family(lid, fam) for fam in OPEN)
    if kind == "family":
        return _in_family(lid, q)
    return lid == q


def ids_matching(query: str) -> list[str]:
    """Every id ``normalize`` can return that ``query`` matches (for ``IN (...)`` / ``terms`` filters)."""
    return [i for i in ALL_IDS if matches(i, query)]


def license_id_of(record: Any) -> str:
    """The id of a ``VideoItem`` or a catalogue document: its ``license``, else a licence name in
    ``extra`` (Commons' ``license_name`` when the ``LicenseUrl`` says nothing, a list's column)."""
    get = record.get if isinstance(record, dict) else lambda name: getattr(record, name, None)
    got = normalize(get("license"))
    if got == UNKNOWN:
        extra = get("extra") if isinstance(get("extra"), dict) else {}
        got = normalize([extra.get(k) for k in ("license_name", "license", "licenseurl", "rights") if extra.get(k)])
    return got
