"""Prometheus metrics of a ``work`` driver: videos by final state, stage and model batch times, stream, GPU.

``WorkerMetrics`` owns its own ``CollectorRegistry`` (two drivers in one process, or a test,
never share series) and is fed by the runtime: ``record_batch`` once a batch is written,
``record_retry`` when a batch failed as a whole; the stream's figures are read when Prometheus
scrapes (``watch_stream(stream.stats)``; or set with ``set_stream``). ``serve(port)`` starts
prometheus_client's HTTP server; the series (all prefixed ``videopipe_``):

- ``videos_total{status}`` counter: indexed | duplicate | rejected | failed
- ``batches_total{result}`` counter: written | retried
- ``stage_seconds{stage}`` histogram: seconds one batch spent in one stage (its own timer)
- ``model_batch_seconds{stage}`` histogram: the same for the model stages (embed, labels)
- ``stream_backlog`` / ``stream_pending`` / ``stream_dead_lettered`` gauges
- ``model_pool_busy_ratio`` gauge: share of the last minute the model actors spent in the
  model stages (their GPUs' busy share as the scheduler sees it; any node layout)
- ``gpu_busy_ratio{gpu}`` gauge: NVML utilisation of each GPU this process sees (no series
  without a GPU or without NVML)
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

from processing.pipeline import STEPS

log = logging.getLogger(__name__)

FINAL_STATES = ("indexed", "duplicate", "rejected", "failed")
MODEL_STAGES = tuple(s.name for s in STEPS if s.pool == "model")  # embed, labels: GPUs when present
STAGE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
BUSY_WINDOW_S = 60.0


def nvml_utilization() -> dict[str, float]:
    """GPU index -> busy fraction (0..1) from NVML; {} without a GPU or an NVML library.

    ``pynvml`` (nvidia-ml-py) when installed, else the copy Ray ships for its own dashboard.
    NVML reports every GPU of the machine, whatever CUDA_VISIBLE_DEVICES says.
    """
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        try:
            from ray._private.thirdparty import pynvml  # type: ignore[no-redef]
        except ImportError:
            return {}
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no driver / no GPU: no series
        return {}
    try:
        out = {}
        for i in range(pynvml.nvmlDeviceGetCount()):
            rates = pynvml.nvmlDeviceGetUtilizationRates(pynvml.nvmlDeviceGetHandleByIndex(i))
            out[str(i)] = rates.gpu / 100.0
        return out
    except Exception as exc:  # noqa: BLE001 - a GPU that cannot answer: no series this time
        log.debug("NVML utilisation unavailable: %s", exc)
        return {}
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


class _BeforeScrape:
    """Registered first, so that values refreshed here are the ones the later series show."""

    def __init__(self, refresh: Callable[[], None]):
        self.refresh = refresh

    def describe(self):
        return []

    def collect(self):
        self.refresh()
        return iter(())


class _GpuCollector:
    """Reads GPU utilisation at scrape time (so an idle driver still reports fresh values)."""

    def __init__(self, probe: Callable[[], Mapping[str, float]]):
        self.probe = probe

    def describe(self):
        return []  # values come at collect time; nothing to check at registration

    def collect(self):
        readings = self.probe()
        if not readings:
            return
        family = GaugeMetricFamily("videopipe_gpu_busy_ratio",
                                   "Fraction of the last sample period a kernel ran on the GPU (NVML)",
                                   labels=["gpu"])  # fmt: skip
        for gpu, value in sorted(readings.items()):
            family.add_metric([gpu], float(value))
        yield family


class WorkerMetrics:
    """The Prometheus series of one work driver, in a registry of its own."""

    def __init__(self, *, model_stages: Iterable[str] = MODEL_STAGES,
                 gpu_probe: Callable[[], Mapping[str, float]] | None = nvml_utilization,
                 busy_window_s: float = BUSY_WINDOW_S):  # fmt: skip
        self.registry = CollectorRegistry()
        self.model_stages = frozenset(model_stages)
        self.busy_window_s = busy_window_s
        self._stream_source: Callable[[], Mapping] | None = None
        r = self.registry
        r.register(_BeforeScrape(self._refresh_stream))
        self.videos = Counter("videopipe_videos", "Videos by final state", ["status"], registry=r)
        for state in FINAL_STATES:
            self.videos.labels(state)  # every state has a series from the start, at 0
        self.batches = Counter("videopipe_batches", "Batches written or retried", ["result"], registry=r)
        for result in ("written", "retried"):
            self.batches.labels(result)
        self.stage_seconds = Histogram("videopipe_stage_seconds", "Seconds one batch spent in one stage",
                                       ["stage"], buckets=STAGE_BUCKETS, registry=r)  # fmt: skip
        self.model_batch_seconds = Histogram("videopipe_model_batch_seconds",
                                             "Seconds of one batch in a model stage (embed, labels)",
                                             ["stage"], buckets=STAGE_BUCKETS, registry=r)  # fmt: skip
        self.backlog = Gauge("videopipe_stream_backlog", "Stream entries not yet delivered", registry=r)
        self.pending = Gauge("videopipe_stream_pending", "Stream entries delivered, not yet acked",
                             registry=r)  # fmt: skip
        self.dead = Gauge("videopipe_stream_dead_lettered", "Entries in the dead-letter stream", registry=r)
        self.model_actors = Gauge("videopipe_model_actors", "Model actors (embed + labels) running",
                                  registry=r)  # fmt: skip
        busy = Gauge("videopipe_model_pool_busy_ratio",
                     "Share of the last minute the model actors spent in model stages", registry=r)  # fmt: skip
        busy.set_function(self.model_busy_ratio)
        self._busy: deque[tuple[float, float]] = deque()  # (end time, seconds) of model steps
        self._busy_lock = threading.Lock()
        self._n_model_actors = 0
        if gpu_probe is not None:
            r.register(_GpuCollector(gpu_probe))
        self._server = None
        self._thread = None

    # -- what the runtime calls --------------------------------------------------------------
    def record_batch(self, stage_stats: Mapping[str, object] | None, outcomes: Mapping[str, int]) -> None:
        """A written batch: its seconds per stage and its videos' counts by final state.

        ``stage_stats`` is ``WorkBatch.stats`` (stage name -> counters with ``seconds``, the
        stage's own timer) or stage name -> seconds; ``None`` when nothing was timed.
        """
        for stage, stats in (stage_stats or {}).items():
            seconds = _seconds(stats)
            if seconds is not None:
                self.observe_stage(stage, seconds)
        for status, n in outcomes.items():
            if n:
                self.videos.labels(status).inc(n)
        self.batches.labels("written").inc()

    def observe_stage(self, stage: str, seconds: float, now: float | None = None) -> None:
        """One batch finished one stage after ``seconds``."""
        seconds = max(0.0, float(seconds))
        self.stage_seconds.labels(stage).observe(seconds)
        if stage in self.model_stages:
            self.model_batch_seconds.labels(stage).observe(seconds)
            with self._busy_lock:
                self._busy.append((time.monotonic() if now is None else now, seconds))

    def record_retry(self) -> None:
        """A batch failed as a whole; its entries are retried one by one."""
        self.batches.labels("retried").inc()

    def set_stream(self, backlog: int | None, pending: int, dead: int) -> None:
        """The work stream's figures (``WorkStream.stats()``); an unknown backlog is left as it was."""
        if backlog is not None:
            self.backlog.set(backlog)
        self.pending.set(pending)
        self.dead.set(dead)

    def watch_stream(self, stats: Callable[[], Mapping]) -> None:
        """Read the stream's figures at every scrape from ``stats()`` (``WorkStream.stats``)."""
        self._stream_source = stats

    def _refresh_stream(self) -> None:
        if self._stream_source is None:
            return
        try:
            st = self._stream_source()
        except Exception as exc:  # noqa: BLE001 - Redis away: the gauges keep their last values
            log.debug("stream figures unavailable: %s", exc)
            return
        self.set_stream(st.get("backlog"), st.get("pending", 0), st.get("dead", 0))

    def set_model_actors(self, n: int) -> None:
        self._n_model_actors = max(0, int(n))
        self.model_actors.set(self._n_model_actors)

    def model_busy_ratio(self, now: float | None = None) -> float:
        """Model-step seconds that ended within the window, over (window x model actors), at most 1."""
        now = time.monotonic() if now is None else now
        start = now - self.busy_window_s
        with self._busy_lock:
            while self._busy and self._busy[0][0] < start:
                self._busy.popleft()
            busy = sum(min(seconds, end - start) for end, seconds in self._busy)
        if self._n_model_actors <= 0:
            return 0.0
        return min(1.0, busy / (self.busy_window_s * self._n_model_actors))

    # -- the endpoint ------------------------------------------------------------------------
    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` on ``host:port`` in a daemon thread; returns the bound port (0: any free)."""
        if self._server is not None:
            raise RuntimeError("metrics server already running")
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise RuntimeError(f"cannot serve metrics on {host}:{port}: {exc}") from exc
        bound = self._server.server_port
        log.info("metrics on http://%s:%d/metrics", host, bound)
        return bound

    def close(self) -> None:
        """Stop the HTTP server (when serving)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = self._thread = None


def _seconds(stats: object) -> float | None:
    value = stats.get("seconds") if isinstance(stats, Mapping) else stats
    return float(value) if isinstance(value, (int, float)) else None
