"""The media worker processes: probe, perceptual hash and sha256 on every core, a deadline per call.

One pool per crawl (``MediaPool.of(crawler)``) of at most ``MEDIA_PROCESSES`` workers (default:
one per core; 0: no processes, the calls run in the crawl's threads), all started when the spider
opens (``prestart``: each imports FFmpeg and numpy, ~0.2 s of CPU, on another core while Scrapy
is still starting, instead of after the first download). A worker is ``python -m
pipelines.pool``: it imports only ``pipelines.media`` (no Scrapy), reads one JSON request a line
on stdin (``{"f": "probe", "a": [path, ...]}``) and answers one JSON line on stdout, so a call
costs the crawl process only a pipe write and read while the demux, decode and hashing run
outside its GIL. Only the functions in ``FUNCTIONS`` can be called.

Each worker runs one call at a time, so a call's fate is its own:

- a ``MediaError`` raised in the worker comes back with the same code and message;
- past its deadline the call is ``timeout`` and its worker is killed (a hung decoder cannot
  keep a core) and replaced;
- a worker that dies on a file (a decoder crash, the OOM killer) is replaced and the call tried
  once more on a fresh one, then ends as ``worker_crashed`` (retryable); the crawl goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
import weakref
from pathlib import Path
from typing import Any

from crawler.errors import MediaError

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
STOP_GRACE = 5.0  # seconds a worker has to exit once its input closes
_pools: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # crawler -> MediaPool


FUNCTIONS = ("probe", "phash", "probe_and_phash", "sha256_file")  # the pipelines.media functions a worker may be asked to run


class _Worker:
    """One ``python -m pipelines.pool`` child and its pipes."""

    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc

    @classmethod
    async def start(cls) -> _Worker:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pipelines.pool", cwd=str(ROOT), env=env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, limit=1024 * 1024,
        )  # fmt: skip
        return cls(proc)

    async def ask(self, request: bytes) -> bytes:
        self.proc.stdin.write(request)
        await self.proc.stdin.drain()
        line = await self.proc.stdout.readline()
        if not line:
            raise ConnectionError("the media worker exited")
        return line

    def kill(self) -> None:
        if self.proc.returncode is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass

    async def stop(self) -> None:
        """Close its input (it exits), kill it if it has not within ``STOP_GRACE``."""
        try:
            self.proc.stdin.close()
        except (OSError, RuntimeError):
            pass
        try:
            await asyncio.wait_for(self.proc.wait(), STOP_GRACE)
        except (asyncio.TimeoutError, TimeoutError):
            self.kill()
            await self.proc.wait()


class MediaPool:
    """Up to ``processes`` media workers, started on demand, each running one call at a time."""

    def __init__(self, processes: int):
        if processes < 0:
            raise ValueError(f"MEDIA_PROCESSES must be >= 0 (0: in threads), got {processes}")
        self.processes = processes
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._starting: list[asyncio.Future] = []  # prestarted workers not yet taken
        self._free: asyncio.Semaphore | None = None
        self.replaced = 0  # workers killed or dead and replaced

    @classmethod
    def of(cls, crawler) -> MediaPool:
        """The crawl's pool, made on first use (a media pipeline's init), its workers started when
        the spider opens, stopped when it closes."""
        pool = _pools.get(crawler)
        if pool is None:
            pool = _pools[crawler] = cls(crawler.settings.getint("MEDIA_PROCESSES", os.cpu_count() or 1))
            if getattr(crawler, "signals", None) is not None:
                from scrapy import signals
                from scrapy.utils.defer import deferred_from_coro

                crawler.signals.connect(lambda spider=None: pool.prestart(), signal=signals.spider_opened, weak=False)
                crawler.signals.connect(lambda spider=None: deferred_from_coro(pool.close()),
                                        signal=signals.spider_closed, weak=False)  # fmt: skip
        return pool

    def prestart(self) -> None:
        """Start every worker now, in the background (needs a running event loop); calls take them."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop (another reactor): workers start on demand
            return
        if self.processes and not self._all and not self._starting:
            self._starting = [asyncio.ensure_future(self._start(warm=True)) for _ in range(self.processes)]

    async def call(self, func, *args, timeout: float, label: str = "media") -> Any:
        """``func(*args)`` in a worker (in a thread when ``processes`` is 0); ``MediaError`` as raised there."""
        if not self.processes:
            try:
                return await asyncio.wait_for(asyncio.to_thread(func, *args), timeout)
            except (asyncio.TimeoutError, TimeoutError) as exc:
                raise MediaError("timeout", f"{label} ran over {timeout:g}s") from exc
        name = getattr(func, "__name__", "")
        if name not in FUNCTIONS:
            raise ValueError(f"{name!r} is not a media worker function (one of {FUNCTIONS})")
        args = [str(a) if isinstance(a, os.PathLike) else a for a in args]
        request = (json.dumps({"f": name, "a": args}) + "\n").encode()
        if self._free is None:
            self._free = asyncio.Semaphore(self.processes)
        deadline = time.monotonic() + timeout
        async with self._free:
            for attempt in (1, 2):
                worker = self._idle.pop() if self._idle else await self._take()
                try:
                    line = await asyncio.wait_for(worker.ask(request), max(0.001, deadline - time.monotonic()))
                except (asyncio.TimeoutError, TimeoutError):
                    self._drop(worker)
                    raise MediaError("timeout", f"{label} ran over {timeout:g}s") from None
                except (ConnectionError, OSError):
                    self._drop(worker)
                    if attempt == 2 or time.monotonic() >= deadline:
                        raise MediaError("worker_crashed", f"{label}: the media worker died on this file") from None
                    logger.warning("a media worker died (%s); trying once more on a fresh one", label)
                    continue
                except BaseException:  # cancelled: its answer would come to the next caller
                    self._drop(worker)
                    raise
                self._idle.append(worker)
                return _answer(line)
        raise AssertionError("unreachable")

    async def _take(self) -> _Worker:
        """A prestarted worker (started, or still starting), else a new one."""
        while self._starting:
            try:
                return await self._starting.pop()
            except (OSError, ConnectionError):  # it could not start, or died warming up: the next
                pass
        return await self._start()

    async def _start(self, warm: bool = False) -> _Worker:
        worker = await _Worker.start()
        self._all.add(worker)
        if warm:  # its imports done before its first call: one round trip that runs no media
            try:
                await worker.ask(b'{"f": "warm", "a": []}\n')
            except BaseException:
                self._drop(worker)
                raise
        return worker

    def _drop(self, worker: _Worker) -> None:
        worker.kill()
        self._all.discard(worker)
        self.replaced += 1

    async def close(self) -> None:
        """Stop every worker (the spider closed): nothing of theirs outlives the crawl."""
        starting, self._starting = self._starting, []
        for worker in await asyncio.gather(*starting, return_exceptions=True):
            if isinstance(worker, _Worker):
                self._all.add(worker)
        workers, self._all, self._idle = list(self._all), set(), []
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)


def _answer(line: bytes) -> Any:
    reply = json.loads(line)
    if "error" in reply:
        code, message = reply["error"]
        raise MediaError(code, message)
    if "bug" in reply:
        raise RuntimeError(f"media worker: {reply['bug']}")
    return reply["ok"]


def serve() -> None:
    """The worker's loop: one JSON request a line in, one JSON answer a line out, until EOF."""
    from pipelines import media

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the crawl's to handle
    stdin = sys.stdin.buffer
    stdout = os.fdopen(os.dup(1), "wb")  # the answers; anything else written to fd 1 goes to stderr
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    functions = {name: getattr(media, name) for name in FUNCTIONS}
    functions["warm"] = media.warm
    for line in stdin:
        try:
            request = json.loads(line)
            result = {"ok": functions[request["f"]](*request["a"])}
        except MediaError as exc:
            result = {"error": [exc.code, exc.message]}
        except Exception as exc:  # noqa: BLE001 - a bug, reported to the caller (internal_error there)
            result = {"bug": f"{type(exc).__name__}: {exc}"[:500]}
        stdout.write((json.dumps(result) + "\n").encode())
        stdout.flush()


if __name__ == "__main__":
    serve()
