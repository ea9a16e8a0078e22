"""Tiny random transformers models (CLIP, BLIP, Whisper) built from configs and saved locally.

No hub access: tokenizers are written from a small character vocabulary, processors are built
in code, everything is ``save_pretrained`` to a folder that the real loading code then reads.
The weights are random, so outputs are meaningless; shapes, loading and generation are real.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

CHARS = string.ascii_lowercase + string.digits + " .,'!?-"


def _byte_chars() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for bytes (GPT-2's mapping)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    keep += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def _write_bpe_vocab(folder: Path, specials: list[str], word_suffix: str = "") -> tuple[Path, Path]:
    """A byte-level BPE vocab of single characters (plus ``word_suffix`` forms) and no merges."""
    tokens = list(specials)
    for ch in _byte_chars():
        tokens.append(ch)
        if word_suffix:
            tokens.append(ch + word_suffix)
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab_file.write_text(json.dumps(vocab))
    merges_file.write_text("#version: 0.2\n")
    return vocab_file, merges_file


def make_tiny_clip(folder: Path) -> Path:
    """CLIPModel (32-d, 1 layer, 32 px images) + CLIPProcessor, saved to ``folder``."""
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTextConfig,
        CLIPTokenizer,
        CLIPVisionConfig,
    )

    folder.mkdir(parents=True, exist_ok=True)
    work = folder / "_tok"
    work.mkdir(exist_ok=True)
    specials = ["<|startoftext|>", "<|endoftext|>"]
    vocab_file, merges_file = _write_bpe_vocab(work, specials, word_suffix="</w>")
    tokenizer = CLIPTokenizer(str(vocab_file), str(merges_file))
    text = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=64, projection_dim=32,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        image_size=32, patch_size=8, projection_dim=32,
    )
    config = CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=32)
    CLIPModel(config).save_pretrained(folder)
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def make_tiny_blip(folder: Path) -> Path:
    """BlipForConditionalGeneration (tiny text decoder and vision tower) + BlipProcessor."""
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    folder.mkdir(parents=True, exist_ok=True)
    work = folder / "_tok"
    work.mkdir(exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"] + list(CHARS.replace(" ", ""))
    vocab += ["a", "video", "of", "the", "cat", "dog", "globe", "bunny"]
    (work / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    tokenizer = BertTokenizer(str(work / "vocab.txt"), bos_token="[DEC]")
    config = BlipConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 64,
            "encoder_hidden_size": 32, "bos_token_id": tokenizer.bos_token_id,
            "pad_token_id": tokenizer.pad_token_id, "sep_token_id": tokenizer.sep_token_id,
        },
        vision_config={
            "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "image_size": 32, "patch_size": 8,
        },
        projection_dim=32,
    )
    model = BlipForConditionalGeneration(config)
    model.generation_config.max_length = 12
    model.save_pretrained(folder)
    images = BlipImageProcessor(size={"height": 32, "width": 32})
    BlipProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def make_tiny_whisper(folder: Path) -> Path:
    """WhisperForConditionalGeneration (d_model 32, 1+1 layers, 80 mels) + WhisperProcessor."""
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    folder.mkdir(parents=True, exist_ok=True)
    work = folder / "_tok"
    work.mkdir(exist_ok=True)
    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>",
                "<|translate|>", "<|notimestamps|>", "<|nocaptions|>", "<|startofprev|>"]
    vocab_file, merges_file = _write_bpe_vocab(work, [])
    tokenizer = WhisperTokenizer(str(vocab_file), str(merges_file))
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in specials}
    config = WhisperConfig(
        vocab_size=len(tokenizer), num_mel_bins=80, d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_source_positions=1500, max_target_positions=64,
        pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|endoftext|>"], decoder_start_token_id=ids["<|startoftranscript|>"],
        begin_suppress_tokens=None, suppress_tokens=None,
    )
    model = WhisperForConditionalGeneration(config)
    gen = model.generation_config
    gen.decoder_start_token_id = ids["<|startoftranscript|>"]
    gen.eos_token_id = ids["<|endoftext|>"]
    gen.pad_token_id = ids["<|endoftext|>"]
    gen.forced_decoder_ids = None
    gen.no_timestamps_token_id = ids["<|notimestamps|>"]
    gen.max_length = 16
    model.save_pretrained(folder)
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer).save_pretrained(folder)
    return folder
