"""The media functions (sha256, probe, phash, hamming) on the real clips and on broken copies."""

from __future__ import annotations

import hashlib
import subprocess

import pytest

import settings
from pipelines.media import MediaError, hamming, phash, probe, probe_ffprobe, sha256_file


def ffmpeg(*args) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True, timeout=120)


@pytest.fixture(scope="module")
def copies(media, tmp_path_factory):
    """Re-encoded (-crf 35) and half-size copies of two clips, made with ffmpeg."""
    out = tmp_path_factory.mktemp("copies")
    made = {}
    for name in ("bikes", "carphone_pristine"):
        src = media[name]
        made[f"{name}_crf35"] = out / f"{name}_crf35.mp4"
        ffmpeg("-i", src, "-c:v", "libx264", "-crf", "35", "-an", made[f"{name}_crf35"])
        made[f"{name}_half"] = out / f"{name}_half.mp4"
        ffmpeg("-i", src, "-vf", "scale=trunc(iw/4)*2:trunc(ih/4)*2", "-an", made[f"{name}_half"])
    return made


def test_sha256_streams_the_bytes(media):
    path = media["bikes"]
    assert sha256_file(path, chunk_size=4096) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_probe_reads_every_clip_like_ffprobe(media):
    for name, path in media.items():
        fast, slow = probe(path, 10), probe_ffprobe(path, 10)
        for key in ("width", "height", "video_codec", "audio_codec", "fps", "frame_count",
                    "audio_channels", "audio_sample_rate", "rotation"):  # fmt: skip
            assert fast[key] == slow[key], (name, key, fast[key], slow[key])
        assert fast["duration"] == pytest.approx(slow["duration"], abs=0.1), name
    bikes = probe(media["bikes"], 10)
    assert (bikes["width"], bikes["height"], bikes["fps"], bikes["duration"]) == (640, 272, 25.0, 10.0)
    assert bikes["audio_codec"] is None and bikes["frame_count"] == 250


def test_probe_reads_rotation(media, tmp_path):
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-i", media["gradio_b"], "-c", "copy", "-metadata:s:v:0", "rotate=90", rotated)
    assert abs(probe(rotated)["rotation"]) == 90


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"", "empty_file"),
        (b"<!doctype html><html><body>not a video</body></html>" * 50, "not_a_video"),
        (bytes(range(256)) * 400, "not_a_video"),
    ],
    ids=["zero-byte", "html", "noise"],
)
def test_bad_files_raise_a_reason(tmp_path, content, code):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    for func in (probe, phash):
        with pytest.raises(MediaError) as err:
            func(bad, 5)
        assert err.value.code == code


def test_truncated_and_corrupt_files_are_refused(media, tmp_path):
    data = media["gradio_b"].read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])  # moov atom at the end: nothing to read
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(data[:4096] + bytes((i * 97 + 13) % 256 for i in range(100_000)))
    audio_only = tmp_path / "audio.m4a"
    ffmpeg("-i", media["gradio_b"], "-vn", "-c:a", "copy", audio_only)
    for path, codes in ((truncated, {"truncated"}),  # its mdat box runs past the end
                        (corrupt, {"truncated"}),  # 4 KiB of it then garbage, shorter than its mdat
                        (audio_only, {"no_video_stream"})):  # fmt: skip
        with pytest.raises(MediaError) as err:
            probe(path, 5)
        assert err.value.code in codes, (path.name, err.value.code, err.value)


def test_phash_is_16_hex_chars_and_stable(media):
    first = phash(media["bikes"])
    assert len(first) == 16 and int(first, 16) >= 0
    assert phash(media["bikes"]) == first


def test_phash_matches_reencoded_and_resized_copies(media, copies):
    limit = settings.PHASH_MAX_DISTANCE
    for name in ("bikes", "carphone_pristine"):
        original = phash(media[name])
        for variant in ("crf35", "half"):
            distance = hamming(original, phash(copies[f"{name}_{variant}"]))
            assert distance <= limit, (name, variant, distance)


def test_phash_separates_different_clips(media):
    names = ["bigbuckbunny", "bikes", "carphone_pristine", "gradio_b"]
    hashes = {n: phash(media[n]) for n in names}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert hamming(hashes[a], hashes[b]) > settings.PHASH_MAX_DISTANCE, (a, b)


def test_hamming():
    assert hamming("0" * 16, "f" * 16) == 64
    assert hamming("00000000000000ff", "000000000000000f") == 4


def test_media_steps_stop_at_their_time_cap(media):
    for func in (probe, phash):
        with pytest.raises(MediaError) as err:
            func(media["gradio_world"], 1e-6)
        assert err.value.code == "timeout"


def test_probe_and_phash_on_one_open_file_answers_as_the_two_do(media, copies, tmp_path):
    from pipelines.media import probe_and_phash

    for path in [*media.values(), *copies.values()]:
        assert probe_and_phash(path, 30) == {"probe": probe(path, 30), "phash": phash(path, 30)}, path
    text = tmp_path / "page.mp4"
    text.write_text("<html>not a video</html>")
    with pytest.raises(MediaError) as err:
        probe_and_phash(text, 30)
    assert err.value.code == "not_a_video"  # the probe's verdict, as probe() gives it


@pytest.fixture(scope="module")
def containers(media, tmp_path_factory):
    """bikes.mp4 stream-copied into Matroska and re-encoded to VP9 WebM and to fragmented MP4."""
    out = tmp_path_factory.mktemp("containers")
    made = {"mkv": out / "bikes.mkv", "webm": out / "bikes.webm", "frag": out / "bikes_frag.mp4"}
    ffmpeg("-i", media["bikes"], "-c", "copy", made["mkv"])
    ffmpeg("-i", media["bikes"], "-t", "4", "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8",
           "-c:a", "libopus", made["webm"])  # fmt: skip
    ffmpeg("-i", media["bikes"], "-c", "copy", "-movflags", "+frag_keyframe+empty_moov", made["frag"])
    return made


def test_mp4_and_matroska_open_without_decoding_and_answer_as_a_full_open(media, containers, monkeypatch):
    """FAST_OPEN_FAMILIES skip find_stream_info's decoding: the same probe fields and hashes."""
    from pipelines import media as m

    paths = [*media.values(), *containers.values()]
    fast = [(m.probe_and_phash(p, 30), m.probe(p, 30), m.phash(p, 30)) for p in paths]
    monkeypatch.setattr(m, "FAST_OPEN_FAMILIES", ())
    full = [(m.probe_and_phash(p, 30), m.probe(p, 30), m.phash(p, 30)) for p in paths]
    assert fast == full
    assert all(f[0]["phash"] == f[2] and f[0]["probe"] == f[1] for f in fast)
    assert {f[1]["container"].split(",")[0] for f in fast} == {"mov", "matroska"}


def test_a_stream_that_cannot_seek_back_is_hashed_on_the_probes_open(media, tmp_path):
    """Raw H.264 cannot be rewound: the hash goes on after the probe's first keyframe."""
    from pipelines.media import probe_and_phash

    raw = tmp_path / "bikes.h264"
    ffmpeg("-i", media["bikes"], "-an", "-c:v", "copy", "-bsf:v", "h264_mp4toannexb", "-f", "h264", raw)
    assert probe_and_phash(raw, 30) == {"probe": probe(raw, 30), "phash": phash(raw, 30)}


def test_phash_in_threads_is_the_same_as_one_at_a_time(media):
    """MEDIA_PROCESSES=0 hashes in the crawl's threads: each thread has its own swscale context."""
    from concurrent.futures import ThreadPoolExecutor

    paths = list(media.values()) * 2
    alone = [phash(p, 30) for p in paths]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda p: phash(p, 30), paths)) == alone
