"""The one error of bad media (``MediaError(code, message)``) and the one list of the crawl's reason codes.

Raised by the media functions (``pipelines.media``), the download pipeline and the worker
stages; whoever catches it records ``item.fail(stage, err.code, err.message)`` or
``item.reject(...)``. It imports nothing, so the workers use it without Scrapy.

Every item the crawl records ends with one of the codes below in ``item.errors[stage]`` (and
in its ledger entry's ``error``), before an optional ``": "`` and the raw message. A code in
``REJECT_CODES`` is a deliberate verdict on the content or the URL (``rejected``: crawling
again gives the same answer); every other code is a failure (``failed``: retryable).

Rejected (``REJECT_CODES``):

- ``not_a_video``       the bytes are no video container: text, HTML, images (PNG, JPEG, GIF,
                        animated or not, WebP...), archives, random bytes, playlists or
                        scripts (HLS, ffconcat, SDP: FFmpeg demuxers that open other files or
                        sockets are never used), or a local file that is no video candidate
- ``no_video_stream``   a container without a video stream (audio only)
- ``unsupported_codec`` a video stream in a codec FFmpeg does not know or cannot decode
- ``undecodable``       a video stream whose frames cannot be decoded (corrupt, no frames)
- ``too_large``         more than ``MEDIA_MAX_BYTES`` (declared, received or after gzip
                        decoding: bombs), or frames above ``MEDIA_MAX_PIXELS``
- ``too_short`` / ``too_long`` / ``too_small`` / ``codec_not_allowed``   the filters' limits
- ``bad_scheme``        a direct download that is not http(s)
- ``bad_url`` / ``scheme_not_allowed`` / ``private_address``   crawler.netguard's refusals
                        (of the URL, of any redirect hop, of any request yt-dlp makes)
- ``opted_out``         the page or the site asked not to be used (robots directives, list)
- ``robots_txt_disallowed``   robots.txt forbids fetching the file
- ``outside_root``      local: a symlink out of the crawled folder (``-a follow_symlinks=1``)
- ``not_a_file``        local: a FIFO, socket or device, never opened

Failed (retryable):

- ``http_<status>``     any final HTTP status but 200 (``http_404``, ``http_503``...)
- ``timeout``           a step ran past its deadline (``DOWNLOAD_TIMEOUT``, ``MEDIA_TIMEOUT``...)
- ``truncated``         the connection or the file ended before its declared end
- ``empty_file``        0 bytes
- ``connection_refused`` / ``connection_error`` / ``unresolvable`` / ``tls_error``
- ``bad_response``      not HTTP (bad status line, header flood, overlong header)
- ``bad_content_encoding`` / ``unsupported_encoding``   a gzip/deflate body that does not
                        decode, or an encoding the downloader does not decode (br, zstd...)
- ``too_many_redirects`` more than ``MEDIA_MAX_REDIRECTS`` hops, or a loop
- ``missing_file`` / ``unreadable``   the file is gone, or cannot be read
- ``store_error``       writing to ``FILES_STORE`` failed (disk full...)
- ``probe_error``       ffprobe gave no usable answer
- ``ytdlp_error``       yt-dlp failed or wrote no file
- resolve (yt-dlp spider): ``unsupported_url``, ``login_required``, ``geo_restricted``,
  ``unavailable``, ``network_error``, ``extractor_error``, ``no_info``
- ``redis_error``       the hand-off could not write to Redis
- ``worker_crashed``    the media worker process died on the file twice (a decoder crash,
                        the OOM killer): pipelines/pool.py; the crawl itself goes on
- ``internal_error``    a bug: an exception no stage expected (report it)
- ``unsupported_store`` / ``bad_download_via``   configuration the stage cannot serve

``is_known(code)`` says whether a code is on this list (tests check every recorded code).
"""

from __future__ import annotations

import re

REJECT_CODES = frozenset({
    "not_a_video", "no_video_stream", "unsupported_codec", "undecodable", "too_large",
    "too_short", "too_long", "too_small", "codec_not_allowed", "bad_scheme",
    "bad_url", "scheme_not_allowed", "private_address",  # crawler.netguard (unresolvable: DNS may come back)
    "opted_out", "robots_txt_disallowed", "outside_root", "not_a_file",
})  # fmt: skip

FAIL_CODES = frozenset({
    "timeout", "truncated", "empty_file", "connection_refused", "connection_error",
    "unresolvable", "tls_error", "bad_response", "bad_content_encoding", "unsupported_encoding",
    "too_many_redirects", "missing_file", "unreadable", "store_error", "probe_error",
    "ytdlp_error", "unsupported_url", "login_required", "geo_restricted", "unavailable",
    "network_error", "extractor_error", "no_info", "redis_error", "worker_crashed", "internal_error",
    "unsupported_store", "bad_download_via",
})  # fmt: skip

_HTTP_STATUS = re.compile(r"http_[1-5][0-9][0-9]")


def is_known(code: str) -> bool:
    """True for a code on the documented list (``http_<status>`` included)."""
    return code in REJECT_CODES or code in FAIL_CODES or bool(_HTTP_STATUS.fullmatch(code or ""))


class MediaError(Exception):
    """A media problem with a stable reason ``code`` (``str(err)`` is the raw message)."""

    def __init__(self, code: str, message: str = ""):
        super().__init__(message or code)
        self.code = code
        self.message = message
