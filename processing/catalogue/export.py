"""Export the catalogue: a manifest (JSONL, CSV, Parquet), WebDataset shards, embeddings, scene clips.

Rows are the kept (``indexed``) videos, or every document with ``include_duplicates`` (manifests
only), that pass the ``ExportFilter`` (duration, resolution, licence, tags, NSFW). Each manifest
row carries the file path or URL, the state and ``duplicate_of``; nested fields (tags, labels,
errors, models, scenes) are JSON-encoded in CSV and Parquet so every format has the same
columns, and vectors are not in manifests. The training outputs are streamed, one video at a
time: ``webdataset`` (tar shards, processing/catalogue/shards.py), ``embeddings`` (Parquet with a
vector column, the model in the schema metadata) and ``clips`` (one clip per scene,
processing/catalogue/clips.py); they leave NSFW-flagged videos out unless told otherwise.
Every export also writes ``duplicates.json``: each canonical id that has copies -> ``{"duplicates":
[near-duplicate ids], "places": [every place the video was found: the canonical's own, its
byte-identical copies at other URLs or paths, each near-duplicate and its copies; each with url,
page_url, path, source, license, license_id, kind (canonical / exact / near), similarity]}``.

The output is a folder or a bucket prefix (``--out s3://bucket/prefix``, ``gs://...``;
processing/catalogue/output.py), the same files in both; video files are read where the
documents say they are (a path or an object URI, ``crawler.locations``).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from processing.catalogue.base import Catalogue
from processing.catalogue.documents import doc_copies, doc_license_id, doc_tags, label_text
from processing.catalogue.output import Output

MANIFESTS = ("jsonl", "csv", "parquet")
TRAINING = ("webdataset", "embeddings", "clips")  # NSFW-flagged videos left out by default
FORMATS = MANIFESTS + TRAINING
COLUMNS = (
    "video_id", "status", "duplicate_of", "similarity", "path", "url", "page_url", "source",
    "title", "description", "license", "license_id", "uploader", "published", "duration", "width", "height",
    "fps", "video_codec", "audio_codec", "container", "size_bytes", "sha256", "phash",
    "thumbnail_path", "fetched_at", "processed_at", "embedding_model", "tags", "all_tags",
    "caption", "ocr_text", "transcript", "labels", "models", "errors", "scenes", "copies",
)  # fmt: skip
NESTED = ("tags", "all_tags", "labels", "models", "errors", "scenes", "copies")
NUMERIC = {"similarity": float, "duration": float, "fps": float, "width": int, "height": int, "size_bytes": int}
EMBEDDINGS_BATCH = 4096  # rows per Parquet row group of the embeddings file


def row(doc: dict[str, Any]) -> dict[str, Any]:
    """One manifest row: the columns above, vectors left out."""
    labels = doc.get("labels") if isinstance(doc.get("labels"), dict) else {}
    out = {c: doc.get(c) for c in COLUMNS}
    out["status"] = doc.get("status") or "indexed"
    out["tags"] = [t for t in doc.get("tags") or [] if isinstance(t, str)]
    out["all_tags"] = doc_tags(doc)
    for column, name in (("caption", "caption"), ("ocr_text", "ocr"), ("transcript", "transcript")):
        out[column] = label_text(doc, name) or None
    out["labels"], out["models"] = labels, doc.get("models") or {}
    out["errors"] = doc.get("errors") or {}
    out["scenes"] = doc.get("scenes") if isinstance(doc.get("scenes"), list) else []
    out["license_id"] = doc_license_id(doc)  # the raw `license` stays beside it
    out["copies"] = doc_copies(doc)  # every other place the video was found (crawler/provenance.py)
    for name, cast in NUMERIC.items():
        try:
            out[name] = cast(out[name]) if out[name] is not None else None
        except (TypeError, ValueError):
            out[name] = None
    return out


def _flat(r: dict[str, Any]) -> dict[str, Any]:
    return {k: json.dumps(v, ensure_ascii=False, sort_keys=True) if k in NESTED else v for k, v in r.items()}


def is_nsfw(doc: dict[str, Any]) -> bool:
    """True when the ``nsfw`` labeler flagged the video (``labels.nsfw.present``)."""
    label = (doc.get("labels") or {}).get("nsfw")
    return isinstance(label, dict) and label.get("present") is True


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass
class ExportFilter:
    """What a training set keeps; ``reason(doc)`` says why a document is left out (None: kept).

    ``license`` is an id, a family or ``open``, read by ``crawler.licenses.matches`` (the rule
    ``search --license`` uses too); ``tags`` must all be present (source or label tags, any
    case); ``exclude_nsfw`` leaves out what the nsfw labeler flagged (videos it did not label are
    kept and counted as ``nsfw_unlabeled``). A bound on a value the document lacks (no duration,
    no resolution) leaves it out.
    """

    min_duration: float | None = None
    max_duration: float | None = None
    min_width: int | None = None
    min_height: int | None = None
    license: str | None = None
    tags: list[str] = field(default_factory=list)
    exclude_nsfw: bool = False

    def __post_init__(self):
        for name in ("min_duration", "max_duration", "min_width", "min_height"):
            value = getattr(self, name)
            if value is not None and (_number(value) is None or value < 0):
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        if self.license:
            from crawler.licenses import check_query

            self.license = check_query(self.license)  # ValueError: a query that names no licence
        self.tags = [t.strip().lower() for t in self.tags or [] if t and t.strip()]

    def reason(self, doc: dict[str, Any]) -> str | None:
        duration, width, height = (_number(doc.get(k)) for k in ("duration", "width", "height"))
        if self.min_duration is not None and (duration is None or duration < self.min_duration):
            return "duration"
        if self.max_duration is not None and (duration is None or duration > self.max_duration):
            return "duration"
        if self.min_width is not None and (width is None or width < self.min_width):
            return "resolution"
        if self.min_height is not None and (height is None or height < self.min_height):
            return "resolution"
        if self.license:
            from crawler.licenses import matches

            if not matches(doc_license_id(doc), self.license):
                return "license"
        if self.tags and not set(self.tags) <= set(doc_tags(doc)):
            return "tag"
        if self.exclude_nsfw and is_nsfw(doc):
            return "nsfw"
        return None

    def describe(self) -> dict[str, Any]:
        """The filters that are set (for reports)."""
        return {k: v for k, v in vars(self).items() if v not in (None, [], False)}


class Exporter:
    """Writes the export of ``fmt`` and ``duplicates.json`` into ``out_dir`` (a folder or a bucket
    prefix); ``run()`` reports it.

    ``nsfw``: leave NSFW-flagged videos out; None (default) means yes for the training formats
    (webdataset, embeddings, clips) and no for manifests. ``options`` go to the format's writer:
    ``shard_size`` / ``shard_count`` (webdataset), ``embedding_model`` (embeddings).
    """

    def __init__(self, catalogue: Catalogue, out_dir: str | Path, fmt: str = "jsonl",
                 include_duplicates: bool = False, filters: ExportFilter | None = None,
                 nsfw: bool | None = None, **options: Any):  # fmt: skip
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        if include_duplicates and fmt not in MANIFESTS:
            raise ValueError(f"include_duplicates is for the manifests ({', '.join(MANIFESTS)}), not {fmt}")
        self.catalogue = catalogue
        self.output = Output(out_dir)  # ValueError: a bucket scheme whose package is missing
        self.fmt = fmt
        self.include_duplicates = include_duplicates
        self.filters = filters or ExportFilter()
        exclude = fmt in TRAINING if nsfw is None else nsfw
        self.filters.exclude_nsfw = self.filters.exclude_nsfw or exclude
        self.options = options
        self.writer = self._writer()  # bad options raise here, before anything is written
        self.counts: dict[str, int] = {}  # catalogue documents per status
        self.filtered: dict[str, int] = {}  # left out by the filters, per reason
        self.dupmap: dict[str, dict[str, list]] = {}  # canonical -> {"duplicates", "places"}
        self.nsfw_unlabeled = 0

    def _writer(self):
        if self.fmt == "webdataset":
            from processing.catalogue.shards import ShardWriter

            return ShardWriter(self.output, shard_size=self.options.get("shard_size"),
                               shard_count=self.options.get("shard_count"))  # fmt: skip
        if self.fmt == "clips":
            from processing.catalogue.clips import ClipWriter

            return ClipWriter(self.output)
        if self.fmt == "embeddings":
            return EmbeddingsWriter(self.output, self.options.get("embedding_model"))
        return None

    # -- selection --------------------------------------------------------------------------
    def _note_duplicate(self, doc: dict[str, Any]) -> None:
        """Add a document and its byte copies to the duplicate map (``duplicates.json``)."""
        from crawler.provenance import provenance

        status = doc.get("status") or "indexed"
        if status == "duplicate" and doc.get("duplicate_of"):
            group = self.dupmap.setdefault(doc["duplicate_of"], {"duplicates": [], "places": []})
            group["duplicates"].append(doc["video_id"])
            group["places"].append(provenance(doc, "near", similarity=doc.get("similarity")))
        elif status == "indexed":
            group = self.dupmap.setdefault(doc["video_id"], {"duplicates": [], "places": []})
            group["places"].insert(0, provenance(doc, "canonical", similarity=1.0))
        else:
            return
        own = doc["video_id"]
        group["places"] += [c for c in doc_copies(doc) if c.get("kind", "exact") == "exact"
                            and c.get("video_id") in (None, own)]  # fmt: skip

    def duplicate_map(self) -> dict[str, dict[str, list]]:
        """The canonicals with a duplicate or a copy at another place, in id order."""
        return {k: {"duplicates": sorted(g["duplicates"]), "places": g["places"]}
                for k, g in sorted(self.dupmap.items()) if g["duplicates"] or len(g["places"]) > 1}  # fmt: skip

    def selected(self, count: bool = True) -> Iterator[dict[str, Any]]:
        """The documents this export writes, streamed; with ``count``, tallies every document."""
        for doc in self.catalogue.iter_all():
            status = doc.get("status") or "indexed"
            if count:
                self.counts[status] = self.counts.get(status, 0) + 1
                self._note_duplicate(doc)
            if not (status == "indexed" or (self.include_duplicates and status == "duplicate")):
                continue
            reason = self.filters.reason(doc)
            if reason:
                if count:
                    self.filtered[reason] = self.filtered.get(reason, 0) + 1
                continue
            if count and self.filters.exclude_nsfw and not isinstance((doc.get("labels") or {}).get("nsfw"), dict):
                self.nsfw_unlabeled += 1
            yield doc

    # -- the run ----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.output.prepare()
        if self.fmt in MANIFESTS:
            report = self._manifest()
        else:
            if getattr(self.writer, "needs_total", False):
                self.writer.total = sum(1 for _ in self.selected(count=False))
            report = self.writer.write(self.selected())
        dupmap = self.duplicate_map()
        with self.output.atomic("duplicates.json", "w") as f:
            f.write(json.dumps(dupmap, indent=2, ensure_ascii=False) + "\n")
        report.update({
            "format": self.fmt, "filters": self.filters.describe(), "filtered": dict(sorted(self.filtered.items())),
            "duplicates_file": self.output.location("duplicates.json"), "canonicals_with_duplicates": len(dupmap),
            "catalogue": self.counts,
        })  # fmt: skip
        if self.filters.exclude_nsfw:
            report["nsfw_unlabeled"] = self.nsfw_unlabeled
        return report

    def _manifest(self) -> dict[str, Any]:
        rows = [row(doc) for doc in self.selected()]
        rows.sort(key=lambda r: (r["status"] != "indexed", r["video_id"]))
        name = f"videos.{self.fmt}"
        getattr(self, f"_write_{self.fmt}")(rows, name)
        return {"file": self.output.location(name), "rows": len(rows)}

    def _write_jsonl(self, rows: Iterable[dict], name: str) -> None:
        with self.output.atomic(name, "w") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")

    def _write_csv(self, rows: Iterable[dict], name: str) -> None:
        """CSV for spreadsheets: text cells that a spreadsheet would run as a formula are defused."""
        with self.output.atomic(name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            for r in rows:
                writer.writerow({k: _defuse(v) for k, v in _flat(r).items()})

    def _write_parquet(self, rows: list[dict], name: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        types = {"similarity": pa.float64(), "duration": pa.float64(), "fps": pa.float64(),
                 "width": pa.int64(), "height": pa.int64(), "size_bytes": pa.int64()}  # fmt: skip
        schema = pa.schema([(c, types.get(c, pa.string())) for c in COLUMNS])
        flat = [_flat(r) for r in rows]
        columns = {}
        for c in COLUMNS:
            values = [r[c] for r in flat]
            if c not in types:
                values = [v if v is None or isinstance(v, str) else str(v) for v in values]
            columns[c] = values
        table = pa.table(columns, schema=schema)
        with self.output.atomic(name) as f:
            pq.write_table(table, f)


class EmbeddingsWriter:
    """``embeddings.parquet``: ``video_id`` + ``vector`` (fixed-size list of float32), one model.

    The vectors are the video descriptors the catalogue keeps (``vector``: the L2-normalised
    mean of the frame embeddings of ``embedding_model``). Models are never mixed: the file
    holds ``embedding_model`` (default: the model of the first vector met); other models'
    vectors are skipped and counted by model. The schema metadata names the model, the
    dimension and what the vectors are. Written in row groups of ``EMBEDDINGS_BATCH``.
    """

    name = "embeddings.parquet"

    def __init__(self, output: Output | str | Path, embedding_model: str | None = None):
        self.output = output if isinstance(output, Output) else Output(output)
        self.model = embedding_model or None

    def write(self, docs: Iterable[dict[str, Any]]) -> dict[str, Any]:
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        skipped: dict[str, int] = {}
        writer, dim, rows = None, None, 0
        ids: list[str] = []
        vecs: list = []

        def flush():
            nonlocal writer
            if writer is None:
                schema = pa.schema([("video_id", pa.string()), ("vector", pa.list_(pa.float32(), dim or 0))],
                                   metadata=self._metadata(dim or 0))  # fmt: skip
                writer = pq.ParquetWriter(sink, schema)
            if ids:
                flat = pa.array(np.concatenate(vecs).astype(np.float32))
                vector = pa.FixedSizeListArray.from_arrays(flat, dim)
                writer.write_table(pa.table({"video_id": pa.array(ids, pa.string()), "vector": vector},
                                            schema=writer.schema))  # fmt: skip
                ids.clear(), vecs.clear()

        with self.output.atomic(self.name) as sink:
            for doc in docs:
                vec = doc.get("vector")
                if not isinstance(vec, (list, tuple)) or not vec:
                    skipped["no_embedding"] = skipped.get("no_embedding", 0) + 1
                    continue
                model = doc.get("embedding_model") or "unknown"
                if self.model is None:
                    self.model = model
                if model != self.model:
                    skipped[f"model:{model}"] = skipped.get(f"model:{model}", 0) + 1
                    continue
                try:
                    arr = np.asarray(vec, dtype=np.float32).reshape(-1)
                except (TypeError, ValueError):
                    skipped["bad_vector"] = skipped.get("bad_vector", 0) + 1
                    continue
                if dim is None:
                    dim = int(arr.shape[0])
                if arr.shape[0] != dim:
                    skipped["other_dim"] = skipped.get("other_dim", 0) + 1
                    continue
                ids.append(doc["video_id"]), vecs.append(arr)
                rows += 1
                if len(ids) >= EMBEDDINGS_BATCH:
                    flush()
            flush()
            writer.close()
        return {"file": self.output.location(self.name), "rows": rows, "embedding_model": self.model,
                "dim": dim or 0, "skipped": dict(sorted(skipped.items()))}  # fmt: skip

    def _metadata(self, dim: int) -> dict[str, str]:
        return {"embedding_model": self.model or "", "dim": str(dim),
                "vector": "video descriptor: L2-normalised mean of the frame embeddings",
                "producer": "python -m processing export --format embeddings"}  # fmt: skip


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what Excel, LibreOffice and Sheets treat as a formula


def _defuse(value):
    """A text cell starting like a formula (``=HYPERLINK(...)``, ``@SUM(...)``) gets a leading ``'``
    so spreadsheets show it as text (OWASP's CSV-injection advice); numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
