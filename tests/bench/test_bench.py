"""Smoke tests of the benchmark harness: the JSON line's shape, the runner's table, the scoring."""

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bench import common, run_all
from bench.common import Report, run

TARGET_KEYS = {"name", "value", "baseline", "target", "met", "unit", "note"}


def _tiny(report: Report, args) -> None:
    report.target("sum of 1..10", sum(range(11)), 55, "= 55", sum(range(11)) == 55, unit="")
    seconds, _ = common.timed(sorted, list(range(100, 0, -1)), repeat=3)
    report.figure("sort_seconds", seconds)
    report.not_measured("gpu frames/s", "no GPU here", ">= 0.9x")


def test_run_prints_one_json_object_as_the_last_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    report = run(_tiny, "tiny", "a tiny benchmark", argv=["--quick", "--json"])
    lines = capsys.readouterr().out.strip().splitlines()
    data = json.loads(lines[-1])
    assert data["bench"] == "tiny" and data["quick"] is True and data["error"] is None
    assert [set(t) for t in data["targets"]] == [TARGET_KEYS, TARGET_KEYS]
    first, second = data["targets"]
    assert (first["value"], first["baseline"], first["met"]) == (55, 55, True)
    assert second["value"] is None and second["met"] is None
    assert second["note"].startswith("not measured: ")
    assert "sort_seconds" in data["figures"]
    assert any("sum of 1..10" in line for line in lines[:-1])  # the human table comes first
    assert json.loads((tmp_path / "tiny-quick.json").read_text())["targets"] == data["targets"]
    assert report.seconds is not None


def test_a_crash_still_prints_the_json_line_with_the_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", tmp_path)

    def broken(report, args):
        report.target("half done", 1.0, 2.0, ">= 2", False)
        raise RuntimeError("the stage under test is missing")

    run(broken, "broken", "crashes", argv=["--json"])
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "the stage under test is missing" in data["error"]
    assert data["targets"][0]["name"] == "half done"


def test_helpers():
    assert common.median([3, 1, None, 2]) == 2
    assert common.median([]) is None
    assert common.ratio(3, 2) == 1.5 and common.ratio(1, 0) is None
    assert common.fmt(None) == "-" and common.fmt(2500.0, "q/s") == "2,500 q/s"
    table = common.render_table(["a", "b"], [(1, "x")])
    assert table.splitlines()[0].startswith("| a") and len(table.splitlines()) == 3


@pytest.fixture
def bench_dir(tmp_path, monkeypatch):
    """A bench folder with three tiny scripts: one good, one that prints no JSON, one too slow."""
    root = Path(common.ROOT)
    good = f"""
        import sys; sys.path.insert(0, {str(root)!r})
        from bench.common import run
        def main(report, args):
            report.target("answer", 42, 41, ">= 42", True, unit="x")
        run(main, "good", "good")
    """
    (tmp_path / "good.py").write_text(textwrap.dedent(good))
    (tmp_path / "broken.py").write_text("print('no json here'); raise SystemExit(3)\n")
    (tmp_path / "slow.py").write_text("import time; time.sleep(30)\n")
    (tmp_path / "common.py").write_text("# a helper, not a benchmark\n")
    monkeypatch.setattr(run_all, "BENCH_DIR", tmp_path)
    monkeypatch.setattr(run_all, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(run_all, "SCRIPTS", {"good": 30, "broken": 30, "slow": 2})
    return tmp_path


def test_runner_collects_every_script_into_one_table(bench_dir, capsys):
    assert run_all.discover() == ["good", "broken", "slow"]
    run_all.main(["--quick", "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    by_bench = {r["bench"]: r for r in summary["results"]}
    assert by_bench["good"]["targets"][0]["value"] == 42
    assert "exit code 3" in by_bench["broken"]["targets"][0]["note"]
    assert "timed out" in by_bench["slow"]["targets"][0]["note"]
    header = next(line for line in out if line.startswith("| bench"))
    assert [c.strip() for c in header.strip("|").split("|")] == run_all.HEADER
    assert any(line.startswith("| good") and "answer" in line and "yes" in line for line in out)
    assert (bench_dir / "results" / "summary-quick.json").exists()


def test_last_json_skips_noise():
    text = "starting\n{not json\n" + json.dumps({"targets": [], "bench": "x"}) + "\n"
    assert run_all.last_json(text)["bench"] == "x"
    assert run_all.last_json("nothing") is None


def test_dedup_scoring_on_a_tiny_set():
    from bench.dedup import Clip, cluster_pairs, score, truth

    clips = [Clip("a", Path("a"), "a", "original"), Clip("a_half", Path("h"), "a", "half_size"),
             Clip("a_crop", Path("c"), "a", "crop_80"), Clip("b", Path("b"), "b", "distractor")]
    pos, neg = truth(clips)
    assert frozenset(("a", "a_half")) in pos and frozenset(("a_half", "a_crop")) not in pos | neg
    assert len(neg) == 3
    found = cluster_pairs(clips, {"a_half": ("a", "embedding"), "b": ("a", "embedding")})
    s = score(found, clips)
    assert s["tp"] == 1 and s["fp"] == 2 and s["fn"] == 1
    assert s["per_kind"] == {"half_size": 1.0, "crop_80": 0.0}
    assert 0 < s["f1"] < 1


def test_labels_scoring_on_a_tiny_set():
    from bench.labels import score
    from bench.labelset import LabelClip

    clips = [LabelClip("title", Path("t"), text="Open Source", tags=set()),
             LabelClip("man", Path("m"), faces=True, speech=None, tags={"suit", "bow tie"}),
             LabelClip("music", Path("s"), tags={"daisy"})]  # fmt: skip
    labels = {
        "title": {"ocr": {"text": "OPEN SOURCE x", "present": True}, "faces": {"present": True},
                  "imagenet": {"tags": [{"name": "web site"}]}},
        "man": {"ocr": {"text": "", "present": False}, "faces": {"present": True}, "speech": {"present": True},
                "imagenet": {"tags": [{"name": "suit"}, {"name": "tie"}]}},
        "music": {"ocr": {"text": "", "present": False}, "faces": {"present": False}, "speech": {"present": True},
                  "imagenet": {"tags": []}},
    }  # fmt: skip
    s = score(clips, labels)
    assert (s["ocr"]["tp"], s["ocr"]["fp"], s["ocr"]["tn"], s["ocr"]["recall"]) == (1, 0, 2, 1.0)
    assert s["ocr_words"]["recall"] == 1.0 and s["ocr_words"]["precision"] == 2 / 3  # "x" is not on screen
    assert (s["faces"]["tp"], s["faces"]["fp"], s["faces"]["precision"]) == (1, 1, 0.5)
    assert (s["speech"]["fp"], s["speech"]["tn"]) == (1, 0) and s["speech"]["precision"] == 0.0  # "man": unscored
    assert s["imagenet"]["precision"] == 1 / 3 and s["imagenet"]["recall"] == 0.5  # web site, tie wrong; daisy missed
    assert s["nsfw"]["precision"] is None


def test_index_bench_data_is_deterministic_and_copies_are_near_their_source():
    from bench.index import PER_VIDEO, Frames, make_queries

    gen = Frames(dim=32, alpha=1.0, seed=3)
    one, again = gen.chunk(0, 50), Frames(dim=32, alpha=1.0, seed=3).chunk(0, 50)
    assert one.shape == (50, PER_VIDEO, 32) and np.array_equal(one, again)  # same seed, same vectors
    assert np.allclose(np.linalg.norm(one, axis=2), 1.0, atol=1e-5)
    queries, src_rows, sources = make_queries(gen, 50, 5, np.random.default_rng(0))
    assert queries.shape == (5 * PER_VIDEO, 32) and len(set(sources)) == 5
    stored = one.reshape(-1, 32)
    own = (queries * stored[src_rows]).sum(axis=1)  # each query frame against its source frame
    other = queries @ stored.T
    assert own.mean() > 0.8 and (own >= np.sort(other, axis=1)[:, -3]).mean() > 0.9  # its source is near the top


def test_the_video2dataset_style_baseline_downloads_probes_and_writes_every_url(media, tmp_path):
    """bench/v2dstyle.py over loopback HTTP: 2 processes, ffprobe per file, files + JSON written."""
    import functools
    import subprocess
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(Path(media["bikes"]).parent))
    handler.log_message = lambda *a: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        names = ["bikes", "gradio_a", "carphone_pristine"]
        urls = tmp_path / "urls.txt"
        urls.write_text("".join(f"http://127.0.0.1:{server.server_port}/{n}.mp4\n" for n in names) +
                        f"http://127.0.0.1:{server.server_port}/missing.mp4\n")  # fmt: skip
        cmd = [sys.executable, "-m", "bench.v2dstyle", "--urls", str(urls), "--out", str(tmp_path / "out")]
        done = subprocess.run(cmd, cwd=common.ROOT, capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert (summary["ok"], summary["failed"]) == (3, 1)  # a 404 is a failed sample, as in video2dataset
    metas = [json.loads(p.read_text()) for p in (tmp_path / "out").rglob("*.json")]
    assert sorted(m["url"].rsplit("/", 1)[1] for m in metas) == sorted(f"{n}.mp4" for n in names)
    assert all(m["video_metadata"]["streams"][0]["codec_name"] == "h264" for m in metas)
    assert len(list((tmp_path / "out").rglob("*.mp4"))) == 3


def test_every_benchmark_script_takes_quick_and_json():
    scripts = [p for p in (Path(common.ROOT) / "bench").glob("*.py") if p.stem not in run_all.HELPERS]
    assert {"dedup", "embed", "index", "crawl", "e2e"} <= {p.stem for p in scripts}
    for path in scripts:
        text = path.read_text()
        assert text.startswith('"""'), f"{path.name} needs a one-line module docstring"
        assert "run(main" in text or "--json" in text, f"{path.name} must use bench.common.run"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
