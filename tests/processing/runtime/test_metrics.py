"""WorkerMetrics as Prometheus sees it: a real HTTP server on a free port, scraped and parsed."""

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from processing.runtime.metrics import WorkerMetrics


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """GET /metrics; {(sample name, sorted labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}  # fmt: skip


@pytest.fixture
def served():
    metrics = WorkerMetrics(gpu_probe=lambda: {"0": 0.75, "1": 0.0})
    port = metrics.serve(0)
    yield metrics, port
    metrics.close()


def test_a_recorded_batch_is_scraped_with_its_counts_and_stage_times(served):
    metrics, port = served
    before = scrape(port)
    assert {before[("videopipe_videos_total", (("status", s),))] for s in
            ("indexed", "duplicate", "rejected", "failed")} == {0.0}  # fmt: skip

    metrics.set_model_actors(1)
    metrics.record_batch({"frames": 0.2, "embed": {"seconds": 1.5, "ok": 3}, "labels": 3.0},
                         {"indexed": 2, "duplicate": 1, "failed": 1})  # fmt: skip
    metrics.record_batch(None, {"indexed": 1, "rejected": 1})
    metrics.record_retry()
    metrics.set_stream(backlog=7, pending=3, dead=2)
    got = scrape(port)

    assert got[("videopipe_videos_total", (("status", "indexed"),))] == 3
    assert got[("videopipe_videos_total", (("status", "duplicate"),))] == 1
    assert got[("videopipe_videos_total", (("status", "rejected"),))] == 1
    assert got[("videopipe_videos_total", (("status", "failed"),))] == 1
    assert got[("videopipe_batches_total", (("result", "written"),))] == 2
    assert got[("videopipe_batches_total", (("result", "retried"),))] == 1
    frames = (("stage", "frames"),)
    assert got[("videopipe_stage_seconds_count", frames)] == 1
    assert got[("videopipe_stage_seconds_sum", frames)] == pytest.approx(0.2)
    assert got[("videopipe_stage_seconds_bucket", (("le", "0.1"), ("stage", "frames")))] == 0
    assert got[("videopipe_stage_seconds_bucket", (("le", "0.25"), ("stage", "frames")))] == 1
    # the model stages also land in the model batch histogram, the decode stage does not
    assert got[("videopipe_model_batch_seconds_sum", (("stage", "embed"),))] == pytest.approx(1.5)
    assert got[("videopipe_model_batch_seconds_sum", (("stage", "labels"),))] == pytest.approx(3.0)
    assert ("videopipe_model_batch_seconds_sum", frames) not in got
    assert got[("videopipe_stream_backlog", ())] == 7
    assert got[("videopipe_stream_pending", ())] == 3
    assert got[("videopipe_stream_dead_lettered", ())] == 2
    assert got[("videopipe_gpu_busy_ratio", (("gpu", "0"),))] == 0.75
    assert got[("videopipe_gpu_busy_ratio", (("gpu", "1"),))] == 0.0
    # 4.5 s of model work by one actor in a 60 s window
    assert got[("videopipe_model_pool_busy_ratio", ())] == pytest.approx(4.5 / 60, abs=1e-3)


def test_no_gpu_means_no_gpu_series_and_an_unknown_backlog_keeps_the_last_value():
    metrics = WorkerMetrics(gpu_probe=lambda: {})
    port = metrics.serve(0)
    try:
        metrics.set_stream(backlog=5, pending=0, dead=0)
        metrics.set_stream(backlog=None, pending=1, dead=0)
        got = scrape(port)
    finally:
        metrics.close()
    assert not [k for k in got if k[0] == "videopipe_gpu_busy_ratio"]
    assert got[("videopipe_stream_backlog", ())] == 5
    assert got[("videopipe_stream_pending", ())] == 1
    assert got[("videopipe_model_pool_busy_ratio", ())] == 0.0  # no model actors yet


def test_the_stream_figures_are_read_at_every_scrape_and_kept_while_redis_is_away():
    figures = [{"backlog": 10, "pending": 2, "dead": 0, "length": 12}, RuntimeError("redis down"),
               {"backlog": 4, "pending": 1, "dead": 1, "length": 5}]  # fmt: skip

    def stats():
        value = figures.pop(0)
        if isinstance(value, Exception):
            raise value
        return value

    metrics = WorkerMetrics(gpu_probe=None)
    metrics.watch_stream(stats)
    port = metrics.serve(0)
    try:
        seen = [scrape(port) for _ in range(3)]
    finally:
        metrics.close()
    backlog = [s[("videopipe_stream_backlog", ())] for s in seen]
    dead = [s[("videopipe_stream_dead_lettered", ())] for s in seen]
    assert backlog == [10, 10, 4] and dead == [0, 0, 1]
    assert not figures


def test_busy_ratio_counts_only_the_window_and_is_capped():
    metrics = WorkerMetrics(gpu_probe=None, busy_window_s=10.0)
    metrics.set_model_actors(2)
    metrics.observe_stage("embed", 4.0, now=100.0)
    metrics.observe_stage("labels", 6.0, now=105.0)
    metrics.observe_stage("frames", 50.0, now=105.0)  # a decode stage: not model time
    assert metrics.model_busy_ratio(now=105.0) == pytest.approx(10.0 / 20.0)
    # window 102..112: embed (96..100) has left it, labels (99..105) is in it for 3 s
    assert metrics.model_busy_ratio(now=112.0) == pytest.approx(3.0 / 20.0)
    metrics.observe_stage("embed", 100.0, now=113.0)  # clipped to the window: 10 s
    assert metrics.model_busy_ratio(now=113.0) == pytest.approx((10.0 + 2.0) / 20.0)
    metrics.set_model_actors(1)  # more busy seconds than one actor has: capped
    assert metrics.model_busy_ratio(now=113.0) == 1.0


def test_two_drivers_in_one_process_keep_separate_series_and_a_busy_port_is_a_clear_error():
    a, b = WorkerMetrics(gpu_probe=None), WorkerMetrics(gpu_probe=None)
    port = a.serve(0)
    try:
        a.record_batch(None, {"indexed": 4})
        with pytest.raises(RuntimeError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            b.serve(port)
        assert scrape(port)[("videopipe_videos_total", (("status", "indexed"),))] == 4
        assert b.videos.labels("indexed")._value.get() == 0
    finally:
        a.close()


@pytest.mark.slow
def test_work_metrics_port_serves_the_counters_while_videos_flow(redis_url, key_prefix, data_dir, media):
    """`python -m processing work --metrics-port P` as a user runs it (real Redis, local Ray,
    the test runner's tiny stages): scraped until the queued videos are counted, then stopped."""
    import signal
    import socket
    import subprocess
    import time

    import redis

    from tests.conftest import PYTHON, ROOT, project_env
    from tests.processing.runtime.test_runner import STAGES, _item, _queue

    client = redis.Redis.from_url(redis_url)
    corrupt = data_dir / "corrupt.mp4"
    corrupt.write_bytes(media["bikes"].read_bytes()[:2000])
    for path in (media["gradio_a"], media["gradio_b"], corrupt):
        _queue(client, _item(path))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = project_env(PROCESSING_STAGES=",".join(f"{k}={v}" for k, v in STAGES.items()),
                      PROCESSING_NUM_WORKERS=1)  # fmt: skip
    proc = subprocess.Popen([PYTHON, "-m", "processing", "work", "--num-gpus", "0", "--batch-size", "1",
                             "--metrics-port", str(port), "--no-progress"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    got = {}
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                got = scrape(port)
            except OSError:  # not listening yet
                got = {}
            videos = sum(v for k, v in got.items() if k[0] == "videopipe_videos_total")
            if videos >= 3 and got.get(("videopipe_stream_pending", ())) == 0:
                break
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C does: in-flight batches finish, then exit
        try:
            out, err = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert "processed 3 videos" in out, out + err[-2000:]
    assert got[("videopipe_videos_total", (("status", "indexed"),))] == 2
    assert got[("videopipe_videos_total", (("status", "failed"),))] == 1
    assert got[("videopipe_batches_total", (("result", "written"),))] == 3
    assert got[("videopipe_stage_seconds_count", (("stage", "frames"),))] == 3
    assert got[("videopipe_stage_seconds_sum", (("stage", "frames"),))] > 0
    assert got[("videopipe_model_batch_seconds_count", (("stage", "embed"),))] == 2  # the failed one skips
    assert (got[("videopipe_stream_backlog", ())], got[("videopipe_stream_pending", ())]) == (0, 0)
    assert got[("videopipe_model_actors", ())] == 1


def test_work_flags_reach_the_config_and_a_minimal_ray_says_the_dashboard_cannot_start(key_prefix, data_dir):
    import subprocess

    from processing.cli import _config, _dashboard_missing, build_parser
    from tests.conftest import PYTHON, ROOT, project_env

    args = build_parser().parse_args(["work", "--num-gpus", "0", "--ray-dashboard", "--metrics-port", "9400",
                                      "--metrics-host", "0.0.0.0"])  # fmt: skip
    cfg = _config(args)
    assert (cfg.ray_dashboard, cfg.metrics_port, cfg.metrics_host) == (True, 9400, "0.0.0.0")
    cfg = _config(build_parser().parse_args(["work", "--num-gpus", "0"]))
    assert (cfg.ray_dashboard, cfg.metrics_port, cfg.metrics_host) == (False, 0, "127.0.0.1")
    if not _dashboard_missing():
        pytest.skip("ray[default] is installed here: the dashboard can start")
    out = subprocess.run([PYTHON, "-m", "processing", "work", "--num-gpus", "0", "--ray-dashboard"], cwd=ROOT,
                         env=project_env(), capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 2
    assert "--ray-dashboard: Ray's dashboard needs packages this install lacks" in out.stderr
    assert "ray[default]" in out.stderr


def test_nvml_readings_are_fractions_per_gpu_and_nothing_without_a_gpu():
    from processing.runtime.metrics import nvml_utilization

    readings = nvml_utilization()
    assert all(isinstance(k, str) and 0.0 <= v <= 1.0 for k, v in readings.items())
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if not has_gpu:
        assert readings == {}
    metrics = WorkerMetrics()  # the default probe: NVML
    names = {fam.name for fam in metrics.registry.collect()}
    assert ("videopipe_gpu_busy_ratio" in names) == bool(readings)
