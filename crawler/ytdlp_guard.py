"""yt-dlp under crawler.netguard: every connection it opens is checked and pinned; the guarded download child.

yt-dlp's request handlers (urllib, requests, websockets) open every socket through
``yt_dlp.networking._helper.create_connection``, which looks the host up with
``socket.getaddrinfo`` and connects to what it answers. ``guarded(guard)`` routes that
lookup through the guard for the calling thread (``process_wide=True``: for every thread, as
in the download child, whose fragment downloads run in threads): a refused host raises
``netguard.Refused`` and is recorded in the returned ``Refusals``; an allowed one answers only
the addresses the guard checked, so the connection goes exactly where the check looked (no
second lookup, no rebinding). Extractor API calls, manifests, segments and every redirect hop
are connections, so each one passes. Other threads of the process are untouched.

What else keeps yt-dlp on the guard's side: no proxy (``proxy: ""``: the guard must see the
address connected, not a proxy's), native downloaders only (``external_downloader: native``,
so HLS/DASH segments are fetched by yt-dlp itself, not by ffmpeg), and should yt-dlp still
hand ffmpeg a URL, ffmpeg opens only local files (``-protocol_whitelist file,crypto,data``).

The child, ``python -m crawler.ytdlp_guard <job.json>``, downloads one URL with the guard
process-wide and writes ``<dir>/result.json``: ``{"ok", "code", "message", "refused", "info"}``.
Any refused request fails the job with the guard's code (``private_address``...), even when
yt-dlp carried on without it (a skipped fragment, a fallback URL).
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from crawler.netguard import Guard, NetPolicy, Refused, Resolutions

_real_getaddrinfo = socket.getaddrinfo
_local = threading.local()
_process_state: tuple[Guard, Refusals] | None = None
_install_lock = threading.Lock()
_SERVICES = {"http": 80, "https": 443}

# yt-dlp options that keep every request on the guard's side (see the module docstring)
GUARDED_OPTIONS = {
    "proxy": "",
    "external_downloader": {"default": "native"},
    "external_downloader_args": {"ffmpeg_i": ["-protocol_whitelist", "file,crypto,data"]},
    "postprocessor_args": {"ffmpeg_i": ["-protocol_whitelist", "file,crypto,data"]},
    "enable_file_urls": False,
}


@dataclass
class Refusals:
    """Connections the guard refused while yt-dlp ran: ``(code, host, port)``, first first."""

    seen: list[tuple[str, str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, code: str, host: str, port: int) -> None:
        with self.lock:
            if len(self.seen) < 100:
                self.seen.append((code, host, port))

    def __bool__(self) -> bool:
        return bool(self.seen)

    @property
    def code(self) -> str | None:
        return self.seen[0][0] if self.seen else None

    def describe(self) -> str:
        code, host, port = self.seen[0]
        more = f" (+{len(self.seen) - 1} more)" if len(self.seen) > 1 else ""
        return f"yt-dlp request to {host}:{port} refused{more}"


def _port(value) -> int:
    if isinstance(value, int):
        return value
    text = value.decode() if isinstance(value, bytes) else str(value or "")
    return int(text) if text.isdigit() else _SERVICES.get(text.lower(), 0)


def _guarded_getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002 - socket's names
    state = getattr(_local, "state", None) or _process_state
    if state is None or getattr(_local, "inside", False):
        return _real_getaddrinfo(host, port, family, type, proto, flags)
    guard, refusals = state
    name = host.decode() if isinstance(host, bytes) else str(host or "")
    number = _port(port)
    _local.inside = True  # the guard's own lookup uses the real resolver
    try:
        verdict = guard.check_host(name, number)
    finally:
        _local.inside = False
    if not verdict.ok:
        refusals.add(verdict.reason, name, number)
        raise Refused(verdict.reason, f"{name}:{number}")
    answers = []
    for ip in verdict.addresses:
        answers.extend(_real_getaddrinfo(ip, port, family, type, proto, flags | socket.AI_NUMERICHOST))
    return answers


def _install() -> None:
    with _install_lock:
        if socket.getaddrinfo is not _guarded_getaddrinfo:
            socket.getaddrinfo = _guarded_getaddrinfo


@contextlib.contextmanager
def guarded(guard: Guard, process_wide: bool = False):
    """Within the block, connections yt-dlp opens in this thread (or every thread) pass ``guard``."""
    global _process_state
    _install()
    refusals = Refusals()
    if process_wide:
        _process_state = (guard, refusals)
    else:
        _local.state = (guard, refusals)
    try:
        yield refusals
    finally:
        if process_wide:
            _process_state = None
        else:
            _local.state = None


def policy_text(value) -> str:
    """An ``ALLOW_PRIVATE_NETWORKS`` setting value as the text the child parses."""
    if isinstance(value, bool) or value is None:
        return "1" if value else "0"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(str(v) for v in value)
    return str(value)


# -- the download child -----------------------------------------------------------------------
_INFO_FIELDS = ("id", "extractor_key", "title", "description", "uploader", "license", "duration",
                "webpage_url", "ext", "is_live")  # fmt: skip


class _Log:
    """yt-dlp's logger: keeps the last messages (their words give the reason code)."""

    def __init__(self):
        self.lines: list[str] = []

    def debug(self, msg):
        if not str(msg).startswith("[debug]"):
            self.lines = (self.lines + [str(msg)])[-20:]

    info = warning = error = debug


def _outcome_code(info: dict | None, log: _Log, max_duration: float) -> tuple[str, str]:
    text = " ".join(log.lines).lower()
    if "max-filesize" in text or "larger than max" in text:
        return "too_large", "over MEDIA_MAX_BYTES (yt-dlp --max-filesize)"
    if info and info.get("is_live"):
        return "ytdlp_error", "live streams are not downloaded"
    duration = (info or {}).get("duration")
    if isinstance(duration, (int, float)) and max_duration and duration > max_duration:
        return "too_long", f"{duration:g}s > {max_duration:g}s"
    return "ytdlp_error", (log.lines[-1] if log.lines else "yt-dlp wrote no file")[:300]


def run_job(job: dict) -> dict:
    """Download ``job["url"]`` into ``job["dir"]`` with the guard on every connection."""
    import yt_dlp
    from yt_dlp.utils import match_filter_func

    guard = Guard(NetPolicy.parse(job.get("policy", "0")), Resolutions(ttl=float(job.get("dns_ttl", 60))))
    log = _Log()
    opts = {
        "quiet": True, "no_warnings": False, "noprogress": True, "logger": log,
        "format": job["format"], "max_filesize": int(job["max_bytes"]), "noplaylist": True,
        "match_filter": match_filter_func(f"!is_live & duration <=? {float(job['max_duration']):g}"),
        "socket_timeout": float(job.get("socket_timeout", 30)), "retries": 1, "fragment_retries": 1,
        "skip_unavailable_fragments": False, "restrictfilenames": True, "cachedir": False,
        "updatetime": False, "paths": {"home": job["dir"]}, "outtmpl": {"default": "video.%(ext)s"},
        **GUARDED_OPTIONS,
    }  # fmt: skip
    info, error = None, None
    with guarded(guard, process_wide=True) as refusals:
        try:
            with yt_dlp.YoutubeDL(opts) as ydl:
                info = ydl.extract_info(job["url"], download=True)
        except Exception as exc:  # noqa: BLE001 - yt-dlp raises many kinds; each becomes a code
            error = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    kept = {k: info.get(k) for k in _INFO_FIELDS} if isinstance(info, dict) else {}
    result = {"ok": False, "code": None, "message": "", "refused": refusals.seen, "info": kept}
    files = [p for p in Path(job["dir"]).iterdir() if p.is_file() and p.name.startswith("video.")
             and not p.name.endswith((".part", ".ytdl", ".json"))]  # fmt: skip
    if refusals:
        result.update(code=refusals.code, message=refusals.describe())
    elif error:
        result.update(code="ytdlp_error", message=error)
    elif not files:
        code, message = _outcome_code(info, log, float(job["max_duration"]))
        result.update(code=code, message=message)
    else:
        result.update(ok=True, file=str(max(files, key=lambda p: p.stat().st_size)))
    return result


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text())
    result = run_job(job)
    (Path(job["dir"]) / "result.json").write_text(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
