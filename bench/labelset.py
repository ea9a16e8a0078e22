"""The labelled evaluation set of bench/labels.py: real clips from tests/data and ffmpeg-made ones.

Each ``LabelClip`` carries what a person sees and hears in it: the on-screen text, speech
(yes/no), a human face (yes/no), NSFW (always no: no such clip is made or shipped), and the
ImageNet-1k classes a user would accept as tags (an empty set: no tag is right, e.g. a plain
colour screen; ``None``: not scored). The truth is written down from the pictures and the
sounds, never from a model's output.

Made here (cached under bench/results/labels_set, gitignored):
- text burnt in with ffmpeg ``drawtext`` (DejaVu fonts), large to subtitle-sized, on plain
  screens and over real footage, and text that shows only in one half of the clip;
- speech from ``espeak-ng`` (several voices), alone, over music, and over the carphone face;
- speech-free music synthesised here (``synth_music``: chords, a melody, drums) and pure
  tones / noise, over pictures;
- plain colour screens, SMPTE bars, and still pictures (scikit-learn's sample photos).
The tests of the labelers use the same makers (``make_clip``, ``speak``, ``synth_music``).
"""

from __future__ import annotations

import math
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
SET_DIR = ROOT / "bench" / "results" / "labels_set"
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
FONT_REGULAR = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
RATE = 22050  # Hz of the synthesised audio
ENC = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-r", "25"]
AUDIO_ENC = ["-c:a", "aac", "-b:a", "96k"]


def _sk_image(name: str) -> Path | None:
    try:
        import sklearn
    except ImportError:
        return None
    path = Path(sklearn.__file__).parent / "datasets" / "images" / name
    return path if path.is_file() else None


# -- truth ---------------------------------------------------------------------------------
VEHICLES = {  # what the bikes clip shows: a street with parked cars, cyclists, a pedestrian
    "mountain bike", "bicycle-built-for-two", "tricycle", "moped", "motor scooter", "car wheel",
    "cab", "minivan", "sports car", "convertible", "limousine", "beach wagon", "police van",
    "jeep", "pickup", "racer", "grille", "streetcar", "traffic light", "parking meter",
    "car mirror", "minibus", "passenger car", "trolleybus", "crash helmet", "jinrikisha",
    "Model T", "ambulance", "recreational vehicle", "moving van",
}
SUIT = {"bow tie", "suit", "Windsor tie", "car mirror", "seat belt"}  # the carphone man in a car
RABBIT = {"hare", "wood rabbit", "Angora"}  # Big Buck Bunny
FLOWER = {"daisy", "pot", "vase"}  # a dahlia (no dahlia class in ImageNet-1k)
TEMPLE = {"palace", "monastery", "stupa", "bell cote", "church", "mosque", "dome", "boathouse", "lakeside",
          "pier"}  # the Summer Palace tower over a lake  # fmt: skip


@dataclass
class LabelClip:
    """One clip of the set and what is in it."""

    name: str
    path: Path
    text: str | None = ""  # the words on screen ("" = none; None: not scored)
    text_allowed: str = ""  # words that are on screen too but not asked for (a sign in the scene)
    speech: bool | None = False
    faces: bool | None = False
    nsfw: bool = False
    tags: set[str] | None = None  # ImageNet classes a user accepts; set(): no tag is right
    note: str = ""


# -- makers ---------------------------------------------------------------------------------
def ffmpeg(args: list[str], out: Path, timeout: float = 300) -> Path:
    """Run ffmpeg writing ``out`` atomically (a temporary name, then rename)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{out.name}")
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args, str(tmp)]
    subprocess.run(cmd, check=True, timeout=timeout, capture_output=True)
    tmp.rename(out)
    return out


def write_wav(path: Path, audio: np.ndarray, rate: int = RATE) -> Path:
    """Mono float audio in [-1, 1] as 16-bit PCM WAV."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return path


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as src:
        rate, n, width, channels = src.getframerate(), src.getnframes(), src.getsampwidth(), src.getnchannels()
        data = np.frombuffer(src.readframes(n), dtype="<i2" if width == 2 else np.uint8)
    audio = data.astype(np.float32).reshape(-1, channels).mean(axis=1) / 32768.0
    return audio, rate


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


def speak(path: Path, text: str, voice: str = "en-us", speed: int = 150, pitch: int = 50) -> Path:
    """Speech from espeak-ng (formant synthesis) as a WAV; raises when espeak-ng is missing."""
    if not have_espeak():
        raise FileNotFoundError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), text],
                   check=True, timeout=60, capture_output=True)  # fmt: skip
    return path


def _note(freq: float, seconds: float, rate: int, harmonics: int, decay: float, attack: float = 0.01):
    t = np.arange(int(seconds * rate)) / rate
    wave_ = sum(np.sin(2 * math.pi * freq * k * t) / k**1.3 for k in range(1, harmonics + 1))
    env = np.minimum(1.0, t / attack) * np.exp(-decay * t)
    return wave_ * env


def synth_music(seconds: float, style: str = "pop", seed: int = 0, rate: int = RATE) -> np.ndarray:
    """Speech-free music, deterministic for a seed: ``pop`` (chords, a melody, drums), ``pad``
    (slow chords, a bell melody), ``lead`` (chords and a sawtooth lead with vibrato), ``drums``."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    out = np.zeros(n + rate, np.float64)
    bpm = {"pop": 118, "drums": 96}.get(style, 72)
    beat = 60.0 / bpm
    progression = [(261.63, 329.63, 392.00), (196.00, 246.94, 293.66), (220.00, 261.63, 329.63),
                   (174.61, 220.00, 261.63)]  # C G Am F  # fmt: skip
    scale = [261.63, 293.66, 329.63, 392.00, 440.00, 523.25, 587.33, 659.25]

    def add(signal, at: float, gain: float):
        i = int(at * rate)
        if i < n:
            j = min(len(out), i + len(signal))
            out[i:j] += gain * signal[: j - i]

    bar = 4 * beat
    for b in range(int(seconds / bar) + 1 if style != "drums" else 0):
        chord = progression[b % len(progression)]
        for f in chord:
            if style == "pop":
                for k in range(4):
                    add(_note(f, beat, rate, 5, 4.0), b * bar + k * beat, 0.06)
            else:
                add(_note(f / 2, bar, rate, 3, 0.6, attack=0.4), b * bar, 0.09)
        add(_note(chord[0] / 2, bar, rate, 4, 1.5), b * bar, 0.12)  # bass
    step = beat / 2 if style == "pop" else beat
    for k in range(int(seconds / step) if style in ("pop", "pad") else 0):
        if rng.random() < 0.8:
            add(_note(float(rng.choice(scale)) * (2 if style == "pad" else 1), step * 1.5, rate,
                      3 if style == "pop" else 2, 5.0 if style == "pop" else 2.5), k * step, 0.12)  # fmt: skip
    if style == "lead":  # a sawtooth lead with vibrato (voice-like spectrum), slow notes
        for k in range(int(seconds / beat)):
            f = float(rng.choice(scale))
            tt = np.arange(int(beat * 0.95 * rate)) / rate
            phase = 2 * math.pi * np.cumsum(f * (1 + 0.012 * np.sin(2 * math.pi * 5.5 * tt))) / rate
            saw = sum(np.sin(h * phase) / h for h in range(1, 12))
            add(saw * np.minimum(1, tt / 0.05) * np.exp(-0.8 * tt), k * beat, 0.2)
    if style in ("pop", "drums"):
        kick_t = np.arange(int(0.25 * rate)) / rate
        kick = np.sin(2 * math.pi * (50 + 90 * np.exp(-kick_t * 25)) * kick_t) * np.exp(-kick_t * 14)
        hat_t = np.arange(int(0.05 * rate)) / rate
        for k in range(int(seconds / beat)):
            add(kick, k * beat, 0.5)
            noise = np.diff(rng.standard_normal(len(hat_t) + 1)) * np.exp(-hat_t * 80)
            add(noise, k * beat + beat / 2, 0.08)
            if k % 2 == 1:
                snare_t = np.arange(int(0.18 * rate)) / rate
                snare = (rng.standard_normal(len(snare_t)) * 0.6 + np.sin(2 * math.pi * 190 * snare_t))
                add(snare * np.exp(-snare_t * 22), k * beat, 0.22)
    out = out[:n]
    return (0.8 * out / (np.abs(out).max() or 1.0)).astype(np.float32)


def fit_audio(audio: np.ndarray, seconds: float, rate: int = RATE, offset: float = 0.3) -> np.ndarray:
    """``audio`` placed ``offset`` s in and padded / cut to ``seconds``."""
    n = int(seconds * rate)
    out = np.zeros(n, np.float32)
    i = int(offset * rate)
    piece = audio[: max(0, n - i)]
    out[i : i + len(piece)] = piece
    return out


def resample(audio: np.ndarray, rate: int, to: int = RATE) -> np.ndarray:
    if rate == to:
        return audio
    t = np.arange(int(len(audio) * to / rate)) * rate / to
    return np.interp(t, np.arange(len(audio)), audio).astype(np.float32)


def drawtext(text: str, size: int, color: str = "white", y: str = "(h-text_h)/2", box: bool = False,
             enable: str | None = None, font: Path = FONT) -> str:  # fmt: skip
    """An ffmpeg drawtext filter for ``text`` (centred horizontally)."""
    esc = text.replace("\\", "\\\\").replace(":", "\\:").replace("'", "\\'")
    parts = [f"fontfile={font}", f"text='{esc}'", f"fontsize={size}", f"fontcolor={color}",
             "x=(w-text_w)/2", f"y={y}"]  # fmt: skip
    if box:
        parts += ["box=1", "boxcolor=black@0.6", "boxborderw=8"]
    if enable:
        parts.append(f"enable='{enable}'")
    return "drawtext=" + ":".join(parts)


def make_clip(out: Path, *, video: str | Path, seconds: float = 6.0, vf: str | None = None,
              audio: np.ndarray | Path | None = None, audio_rate: int = RATE, size: str = "640x360") -> Path:  # fmt: skip
    """An H.264 clip: ``video`` a lavfi source (``color=c=blue``), an image or a video file;
    ``vf`` filters on it; ``audio`` samples (float, ``audio_rate``), a media file whose audio
    is used, or None (no audio track)."""
    args: list[str] = []
    video = str(video)
    if Path(video).suffix.lower() in (".jpg", ".jpeg", ".png"):
        args += ["-loop", "1", "-framerate", "25", "-t", str(seconds), "-i", video]
        vf = f"scale={size.replace('x', ':')}:force_original_aspect_ratio=increase,crop={size.replace('x', ':')}" + (
            f",{vf}" if vf else "")  # fmt: skip
    elif Path(video).exists():
        args += ["-stream_loop", "-1", "-t", str(seconds), "-i", video]
    else:
        args += ["-f", "lavfi", "-t", str(seconds), "-i", f"{video}:s={size}:r=25" if "=" in video
                 else f"{video}=s={size}:r=25"]  # fmt: skip
    tmp_wav = None
    if isinstance(audio, np.ndarray):
        tmp_wav = write_wav(out.with_name(f".{out.stem}.wav"), fit_audio(audio, seconds, audio_rate, 0.0),
                            audio_rate)  # fmt: skip
        args += ["-i", str(tmp_wav)]
    elif audio is not None:
        args += ["-i", str(audio)]
    maps = ["-map", "0:v:0"] + (["-map", "1:a:0"] if audio is not None else [])
    try:
        sound = [*AUDIO_ENC, "-shortest"] if audio is not None else ["-an"]
        ffmpeg([*args, *maps, *(["-vf", vf] if vf else []), *ENC, *sound, "-t", str(seconds)], out)
    finally:
        if tmp_wav:
            tmp_wav.unlink(missing_ok=True)
    return out


# -- the set --------------------------------------------------------------------------------
SENTENCES = {
    "en-us": "Welcome back to the channel. Today we are going to look at how to build a small "
             "wooden bookshelf, step by step, with only a few simple tools.",
    "en+f3": "The weather will stay dry this afternoon, with sunny spells and light winds from "
             "the west. Tonight, clouds will move in from the coast.",
    "de": "Guten Abend und herzlich willkommen zu den Nachrichten. Heute sprechen wir über das "
          "Wetter, den Verkehr und die neuesten Ergebnisse aus dem Sport.",
}


def _audio_of_video(path: Path, seconds: float) -> np.ndarray:
    wav = SET_DIR / f".{path.stem}.wav"
    if not wav.exists():
        ffmpeg(["-i", str(path), "-vn", "-ac", "1", "-ar", str(RATE), "-t", str(seconds)], wav)
    return read_wav(wav)[0]


def build_set(quick: bool = True) -> list[LabelClip]:
    """Every clip of the set, made once (cached); speech clips only when espeak-ng exists."""
    SET_DIR.mkdir(parents=True, exist_ok=True)
    clips: list[LabelClip] = [
        LabelClip("bigbuckbunny", DATA / "bigbuckbunny.mp4", tags=RABBIT, note="cartoon rabbit; music track"),
        LabelClip("bikes", DATA / "bikes.mp4", tags=VEHICLES, text=None, faces=None,
                  note="street: cars, cyclists; a TAXI roof sign (OCR not scored); a cyclist's face "
                       "~15 px high in a few frames (faces not scored)"),
        LabelClip("carphone", DATA / "carphone_pristine.mp4", faces=True, tags=SUIT, speech=None,
                  note="a man's face in a car; no audio track"),
        LabelClip("gradio_a", DATA / "gradio_a.mp4", text="THANKS FOR WATCHING", tags=set(),
                  note="end card, silent track"),
        LabelClip("gradio_world", DATA / "gradio_world.mp4", tags=set(), note="the Earth at night; silent"),
    ]
    wanted: list[tuple[LabelClip, dict]] = []

    def made(name: str, **truth) -> None:
        spec = {k: truth.pop(k) for k in ("video", "vf", "audio", "seconds", "size") if k in truth}
        wanted.append((LabelClip(name, SET_DIR / f"{name}.mp4", **truth), spec))

    pop, pad = synth_music(8, "pop", seed=1), synth_music(8, "pad", seed=2)
    silence = np.zeros(RATE * 8, np.float32)
    t = np.arange(RATE * 8) / RATE
    tone = (0.3 * np.sin(2 * math.pi * 1000 * t)).astype(np.float32)
    noise = np.random.default_rng(3).standard_normal(RATE * 8).astype(np.float32) * 0.1
    flower, temple = _sk_image("flower.jpg"), _sk_image("china.jpg")
    # plain screens: no tag, no text, nothing
    made("blue_screen", video="color=c=blue", tags=set(), audio=silence)
    made("black_screen", video="color=c=black", tags=set())
    made("white_screen", video="color=c=white", tags=set(), audio=noise, note="white noise track")
    made("gray_screen", video="color=c=0x808080", tags=set(), audio=tone, note="1 kHz tone")
    made("smpte_bars", video="smptebars", tags=set(), audio=tone, note="bars and tone")
    # text
    made("text_title", video="color=c=0x102040", vf=drawtext("OPEN SOURCE VIDEO", 84), tags=set(),
         size="1280x720", text="OPEN SOURCE VIDEO", audio=pad, note="title card over music")
    made("text_dark_on_white", video="color=c=white", vf=drawtext("Hello World 2026", 44, "black"),
         text="Hello World 2026", tags=set())
    made("text_subtitle_bikes", video=DATA / "bikes.mp4", size="640x272",
         vf=drawtext("The quick brown fox", 30, y="h-text_h-16", box=True), text="The quick brown fox",
         text_allowed="TAXI", tags=VEHICLES, faces=None, seconds=6)
    made("text_small_720p", video="color=c=0x303030", size="1280x720",
         vf=drawtext("Subscribe for more videos", 34, font=FONT_REGULAR, y="h-text_h-60"),
         text="Subscribe for more videos", tags=set(), note="subtitle-sized on 720p")
    made("text_tiny_720p", video="color=c=0x202020", size="1280x720",
         vf=drawtext("Recorded live in Berlin", 24, font=FONT_REGULAR, y="h-text_h-40"),
         text="Recorded live in Berlin", tags=set(), note="24 px on 720p: 7.5 px in a 224-px frame")
    made("text_low_contrast", video="color=c=0x404040",
         vf=drawtext("Episode Seven", 40, color="0x707070"), text="Episode Seven", tags=set(),
         note="gray on gray")
    made("text_two_lines", video="color=c=0x000000",
         vf=drawtext("Breaking News", 44, y="h/2-60") + "," + drawtext("Markets close higher", 30, y="h/2+20"),
         text="Breaking News Markets close higher", tags=set())
    made("text_second_half", video="color=c=0x400000",
         vf=drawtext("CHAPTER TWO", 56, enable="gte(t,4)"), text="CHAPTER TWO", tags=set(), seconds=8,
         note="text only in the second half")
    # music without speech
    made("music_pop_mandelbrot", video="mandelbrot", audio=pop, tags=None, note="synth pop: drums, chords")
    if flower:
        made("music_pad_flower", video=flower, audio=pad, tags=FLOWER, note="synth pad over a still photo")
    if temple:
        made("music_pop_temple", video=temple, audio=pop, tags=TEMPLE, note="synth pop over a still photo")
    lead, drums = synth_music(8, "lead", seed=4), synth_music(8, "drums", seed=5)
    made("music_lead_gray", video="color=c=0x505060", audio=lead, tags=set(), note="vibrato lead over chords")
    made("drums_only_black", video="color=c=black", audio=drums, tags=set(), note="a drum loop")
    made("music_bbb_on_black", video="color=c=black", audio=_audio_of_video(DATA / "bigbuckbunny.mp4", 6),
         seconds=5, tags=set(), note="Big Buck Bunny's score alone")
    # speech
    if have_espeak():
        voices = {}
        for voice, sentence in SENTENCES.items():
            wav = SET_DIR / f".speech-{voice.replace('+', '_')}.wav"
            if not wav.exists():
                speak(wav, sentence, voice)
            audio, rate = read_wav(wav)
            voices[voice] = resample(audio, rate)
        made("speech_en_blue", video="color=c=0x000080", audio=fit_audio(voices["en-us"], 8), seconds=8,
             speech=True, tags=set())
        made("speech_en_female_gray", video="color=c=0x606060", audio=fit_audio(voices["en+f3"], 8),
             seconds=8, speech=True, tags=set())
        made("speech_de_black", video="color=c=black", audio=fit_audio(voices["de"], 8), seconds=8,
             speech=True, tags=set())
        over = fit_audio(voices["en-us"], 8) + 0.35 * pop
        made("speech_over_music", video="color=c=0x204020", audio=over, seconds=8, speech=True, tags=set(),
             note="voice over synth pop")
        short = pop.copy()
        short[int(3 * RATE) : int(3 * RATE) + len(voices["en-us"][: 2 * RATE])] += voices["en-us"][: 2 * RATE]
        made("speech_short_in_music", video="color=c=0x402040", audio=short, seconds=8, speech=True, tags=set(),
             note="2 s of speech inside 8 s of music")
        fast = SET_DIR / ".speech-fast.wav"
        if not fast.exists():
            speak(fast, SENTENCES["en-us"], "en-us", speed=210, pitch=30)
        made("speech_fast_low", video="color=c=0x003030", audio=fit_audio(resample(*read_wav(fast)), 8), seconds=8,
             speech=True, tags=set(), note="fast, low-pitched voice")
        made("talking_head", video=DATA / "carphone_pristine.mp4", size="640x360",
             vf="scale=440:360,pad=640:360:100:0", audio=fit_audio(voices["en+f3"], 8), seconds=8,
             speech=True, faces=True, tags=SUIT, note="the carphone face, upscaled, with speech")
    made("face_mirrored", video=DATA / "carphone_pristine.mp4", vf="hflip,scale=352:288", size="352x288",
         faces=True, tags=SUIT, speech=None, seconds=4)
    for clip, spec in wanted:
        if not clip.path.exists():
            make_clip(clip.path, **spec)
        clips.append(clip)
    return clips
