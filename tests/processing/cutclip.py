"""A clip with one known hard cut, made with ffmpeg from two different test clips."""

import subprocess
from pathlib import Path

from tests.conftest import DATA

FPS = 25
FIRST_FRAMES = 87  # 3.48 s of bikes.mp4 (between its own cuts at 1.2 s and 5.48 s)
SECOND_FRAMES = 75  # 3.00 s of gradio_world.mp4
CUT = FIRST_FRAMES / FPS  # 3.48 s: where the second shot starts
DURATION = (FIRST_FRAMES + SECOND_FRAMES) / FPS


def two_shot_clip(out: Path, keyframe_at_cut: bool) -> Path:
    """bikes 1.5 s.. then gradio_world 2 s.., 320x180 at 25 fps, H.264 + a sine tone.

    ``keyframe_at_cut``: a keyframe at the cut (else only at 0: x264's scene-cut keyframes off).
    """
    keys = ["-force_key_frames", f"0,{CUT}"] if keyframe_at_cut else []
    shot = "[{i}:v]trim=start={at},setpts=PTS-STARTPTS,fps=" + str(FPS) + ",trim=end_frame={n},scale=320:180,setsar=1"
    graph = (shot.format(i=0, at=1.5, n=FIRST_FRAMES) + "[a];" + shot.format(i=1, at=2, n=SECOND_FRAMES) + "[b];"
             "[a][b]concat=n=2:v=1:a=0[v]")  # fmt: skip
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(DATA / "bikes.mp4"), "-i", str(DATA / "gradio_world.mp4"),
         "-f", "lavfi", "-i", f"sine=frequency=440:duration={DURATION}", "-filter_complex", graph,
         "-map", "[v]", "-map", "2:a", "-c:v", "libx264", "-x264-params", "keyint=250:scenecut=0", *keys,
         "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(out)],
        check=True, timeout=120,
    )  # fmt: skip
    return out
