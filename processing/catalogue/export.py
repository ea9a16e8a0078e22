"""Export the labeled catalogue as a training manifest (JSONL, CSV or Parquet) plus a duplicate map.

Rows are the kept (``indexed``) videos, or every document with ``include_duplicates``; each row
carries the file path or URL, the state and ``duplicate_of``. Nested fields (tags, labels,
errors, models) are JSON-encoded in CSV and Parquet so every format has the same columns.
Vectors are not exported. ``duplicates.json`` maps each canonical id to its duplicates' ids.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Iterable

from processing.catalogue.base import Catalogue
from processing.catalogue.documents import doc_tags, label_text

FORMATS = ("jsonl", "csv", "parquet")
COLUMNS = (
    "video_id", "status", "duplicate_of", "similarity", "path", "url", "page_url", "source",
    "title", "description", "license", "uploader", "published", "duration", "width", "height",
    "fps", "video_codec", "audio_codec", "container", "size_bytes", "sha256", "phash",
    "thumbnail_path", "fetched_at", "processed_at", "embedding_model", "tags", "all_tags",
    "caption", "ocr_text", "transcript", "labels", "models", "errors",
)  # fmt: skip
NESTED = ("tags", "all_tags", "labels", "models", "errors")
NUMERIC = {"similarity": float, "duration": float, "fps": float, "width": int, "height": int, "size_bytes": int}


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
    for name, cast in NUMERIC.items():
        try:
            out[name] = cast(out[name]) if out[name] is not None else None
        except (TypeError, ValueError):
            out[name] = None
    return out


def _flat(r: dict[str, Any]) -> dict[str, Any]:
    return {k: json.dumps(v, ensure_ascii=False, sort_keys=True) if k in NESTED else v for k, v in r.items()}


class Exporter:
    """Writes ``videos.<format>`` and ``duplicates.json`` into ``out_dir`` (atomically, via .tmp)."""

    def __init__(self, catalogue: Catalogue, out_dir: str | Path, fmt: str = "jsonl",
                 include_duplicates: bool = False):  # fmt: skip
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        self.catalogue = catalogue
        self.out_dir = Path(out_dir)
        self.fmt = fmt
        self.include_duplicates = include_duplicates

    def run(self) -> dict[str, Any]:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        rows, dupmap, counts = [], {}, {}
        for doc in self.catalogue.iter_all():
            status = doc.get("status") or "indexed"
            counts[status] = counts.get(status, 0) + 1
            if status == "duplicate" and doc.get("duplicate_of"):
                dupmap.setdefault(doc["duplicate_of"], []).append(doc["video_id"])
            if status == "indexed" or (self.include_duplicates and status == "duplicate"):
                rows.append(row(doc))
        rows.sort(key=lambda r: (r["status"] != "indexed", r["video_id"]))
        target = self.out_dir / f"videos.{self.fmt}"
        getattr(self, f"_write_{self.fmt}")(rows, target)
        dup_path = self.out_dir / "duplicates.json"
        self._atomic(dup_path, lambda p: p.write_text(
            json.dumps({k: sorted(v) for k, v in sorted(dupmap.items())}, indent=2) + "\n"))  # fmt: skip
        return {"file": str(target), "rows": len(rows), "duplicates_file": str(dup_path),
                "canonicals_with_duplicates": len(dupmap), "catalogue": counts}  # fmt: skip

    @staticmethod
    def _atomic(path: Path, write) -> None:
        tmp = path.with_name(path.name + ".tmp")
        write(tmp)
        os.replace(tmp, path)

    def _write_jsonl(self, rows: Iterable[dict], path: Path) -> None:
        def write(p):
            with open(p, "w", encoding="utf-8") as f:
                for r in rows:
                    f.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")

        self._atomic(path, write)

    def _write_csv(self, rows: Iterable[dict], path: Path) -> None:
        def write(p):
            with open(p, "w", encoding="utf-8", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=COLUMNS)
                writer.writeheader()
                for r in rows:
                    writer.writerow(_flat(r))

        self._atomic(path, write)

    def _write_parquet(self, rows: list[dict], path: Path) -> None:
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
        self._atomic(path, lambda p: pq.write_table(table, p))
