"""The one error of bad media: a stable reason ``code`` and the raw ``message`` kept apart.

Raised by the media functions (``pipelines.media``), the download pipeline and the worker
stages; whoever catches it records ``item.fail(stage, err.code, err.message)`` or
``item.reject(...)``. It imports nothing, so the workers use it without Scrapy.
"""

from __future__ import annotations


class MediaError(Exception):
    """A media problem with a stable reason ``code`` (``str(err)`` is the raw message)."""

    def __init__(self, code: str, message: str = ""):
        super().__init__(message or code)
        self.code = code
        self.message = message
