"""``python -m processing forget``: a takedown removes a video everywhere and keeps it out of later crawls.

``forget(urls=..., video_ids=..., domains=...)`` finds the videos (a URL or path where one was
found, its page, a copy's URL; the ledger's and the claims' records of a URL; every video on
a domain) and removes, for each, its whole duplicate cluster (the video, its byte copies and
its near-duplicates: the same content):

- the catalogue documents (either backend: ``Catalogue.remove``);
- the near-duplicate index vectors and hashes (``FrameIndex.purge`` under the index dir's lock,
  each shard of a sharded index too; the id goes on the dir's ``forgotten.txt`` too, so a
  running near-dup actor purges its copy in memory and never writes it back). An index at a
  URI (``NEARDUP_INDEX_URI``) is not edited here: the ``id:`` tombstones below are its
  forgotten list, which the index actors purge from memory when it changes, drop from what
  they load and never replay from their journal (processing/runtime/index.py);
- the stored files and thumbnails under ``FILES_STORE``, ``THUMBNAILS_URI`` and ``DATA_DIR``,
  objects too when those are bucket prefixes (a ``local`` crawl's source files, a bucket it
  listed, are the user's own: they are left where they are, and listed);
- the copies' provenance (``CopyBook``);

and records tombstones (crawler/takedowns.py) by every URL and path, by sha256 id and by the
domains given, so the crawl rejects them as ``opted_out: forgotten``; the ledger records each
URL as ``rejected`` (stage ``takedown``). The next export reads the catalogue: they are gone.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import redis

from crawler import locations
from crawler.items import REJECTED
from crawler.keys import RedisKeys
from crawler.ledger import Ledger
from crawler.provenance import CopyBook
from crawler.takedowns import FORGOTTEN, Tombstones, domain_key, host_of
from processing.catalogue import Catalogue
from processing.catalogue.documents import doc_copies, doc_places
from processing.vision.frame_index import FrameIndex, add_forgotten, locked

log = logging.getLogger(__name__)


@dataclass
class ForgetReport:
    """What a takedown removed, and what it could not."""

    videos: list[dict[str, Any]] = field(default_factory=list)  # {video_id, title, url, status}
    files_deleted: list[str] = field(default_factory=list)
    files_left: list[str] = field(default_factory=list)  # not the project's copy (a local source file)
    index_vectors: int = 0  # videos purged from near-dup indexes
    tombstones: int = 0  # new tombstones
    ledger_urls: int = 0  # URLs recorded rejected

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _seen_video(client: redis.Redis, keys: RedisKeys, url: str) -> str | None:
    """The video id the download claims name for ``url`` (``<prefix>:seen``), if any."""
    raw = client.hget(keys.seen, f"url:{url}")
    text = raw.decode() if isinstance(raw, bytes) else raw
    if not text:
        return None
    vid = text.rsplit(":", 1)[-1] if text.startswith("pending:") else text
    return vid if len(vid) == 64 else None


class Forgetter:
    """Finds and removes videos; one instance per command."""

    def __init__(self, catalogue: Catalogue, client: redis.Redis, keys: RedisKeys, *, index_dir: Path,
                 owned_dirs: Iterable[Path], owned_prefixes: Iterable[str] = ()):  # fmt: skip
        self.catalogue = catalogue
        self.client = client
        self.keys = keys
        self.ledger = Ledger(client, keys)
        self.tombstones = Tombstones(client, keys)
        self.copies = CopyBook(client, keys)
        self.index_dir = Path(index_dir)
        self.owned = [Path(d).expanduser().resolve() for d in owned_dirs]
        self.owned_prefixes = list(owned_prefixes)  # bucket prefixes (s3://, gs://) whose objects are ours

    @classmethod
    def from_config(cls, catalogue: Catalogue, client: redis.Redis, cfg) -> Forgetter:
        """From a ``ProcessingConfig``: its index dir; the files it may delete are under ``FILES_STORE``,
        the data dir and the thumbnails' place (folders, or bucket prefixes)."""
        import settings

        store = str(getattr(settings, "FILES_STORE", "") or "")
        places = [p for p in (store, cfg.thumbnail_dir) if p]
        owned = [cfg.data_dir] + [locations.local_file(p) for p in places if locations.local_file(p) is not None]
        prefixes = [str(p) for p in places if locations.is_remote(str(p))]
        return cls(catalogue, client, cfg.keys, index_dir=cfg.index_dir, owned_dirs=owned, owned_prefixes=prefixes)

    # -- finding -------------------------------------------------------------------------------
    def find(self, urls: Iterable[str] = (), video_ids: Iterable[str] = (),
             domains: Iterable[str] = ()) -> dict[str, dict]:  # fmt: skip
        """The documents to remove, by id: those named, and the whole cluster of each."""
        urls, domains = list(urls), [domain_key(d) for d in domains]
        found: dict[str, dict] = {}
        ids = set(video_ids)
        for url in urls:  # what the crawl recorded of the URL, document or not
            entry = self.ledger.get(url) or {}
            ids.update(v for v in (entry.get("video_id"), _seen_video(self.client, self.keys, url)) if v)
        for domain in domains:
            for url, entry in self.ledger.entries():
                host = host_of(url)
                if entry.get("video_id") and host and (host == domain or host.endswith("." + domain)):
                    ids.add(entry["video_id"])
        for doc in self.catalogue.find_places(urls=urls) if urls else []:
            found[doc["video_id"]] = doc
        for domain in domains:
            for doc in self.catalogue.find_places(domain=domain):
                found[doc["video_id"]] = doc
        for vid in ids - set(found):
            if (doc := self.catalogue.get(vid)) is not None:
                found[vid] = doc
            else:
                found[vid] = {"video_id": vid, "missing": True}  # forgotten all the same (tombstone)
        for doc in list(found.values()):  # the cluster: canonical and every copy
            canonical = doc.get("duplicate_of") if doc.get("status") == "duplicate" else doc["video_id"]
            if canonical and canonical not in found and (c := self.catalogue.get(canonical)) is not None:
                found[canonical] = c
        for vid in list(found):
            for dup in self.catalogue.duplicates_of(vid) if not found[vid].get("missing") else []:
                found.setdefault(dup["video_id"], dup)
        return found

    # -- removing ------------------------------------------------------------------------------
    def _owned(self, path: str) -> bool:
        try:
            real = Path(path).expanduser().resolve()
        except (OSError, RuntimeError):
            return False
        return any(real == d or d in real.parents for d in self.owned)

    def _delete_files(self, docs: list[dict], report: ForgetReport) -> None:
        paths: list[str] = []
        for doc in docs:
            for rec in [doc, *doc_copies(doc)]:
                for name in ("path", "thumbnail_path"):
                    value = rec.get(name)
                    if isinstance(value, str) and value and value not in paths:
                        paths.append(value)
        for path in paths:
            if locations.is_remote(path):
                self._delete_object(path, report)
                continue
            if "://" in path or not self._owned(path):
                if "://" in path or os.path.exists(path):
                    report.files_left.append(path)
                continue
            try:
                os.unlink(path)
                report.files_deleted.append(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not delete %s: %s", path, exc)
                report.files_left.append(path)

    def _delete_object(self, uri: str, report: ForgetReport) -> None:
        """Delete an object under an owned bucket prefix (plain names only: no ``..``, ``%``...)."""
        if not locations.under_bucket_prefix(uri, self.owned_prefixes):
            report.files_left.append(uri)
            return
        try:
            if locations.is_file(uri):
                locations.remove(uri)
                report.files_deleted.append(uri)
        except Exception as exc:  # noqa: BLE001 - the store refused or is down: say so, go on
            log.warning("could not delete %s: %s: %s", uri, type(exc).__name__, str(exc)[:200])
            report.files_left.append(uri)

    def _purge_index(self, video_ids: list[str]) -> int:
        """Drop the videos from every model's near-dup index on disk, and list them as forgotten."""
        purged = 0
        with locked(self.index_dir):
            add_forgotten(self.index_dir, video_ids)
            metas = [*self.index_dir.glob(f"*/{FrameIndex.META}"), *self.index_dir.glob(f"*/shard-*/{FrameIndex.META}")]
            for meta in sorted(metas):  # a model's index, or each shard of a sharded one
                try:
                    info = json.loads(meta.read_text())
                    index = FrameIndex.load(meta.parent, int(info["dim"]), int(info["approx_threshold"]))
                except (OSError, ValueError, KeyError) as exc:
                    log.warning("near-dup index %s not read: %s", meta.parent, exc)
                    continue
                n = index.purge(video_ids)
                if n:
                    index.save(meta.parent)
                    purged += n
        return purged

    def forget(self, urls: Iterable[str] = (), video_ids: Iterable[str] = (), domains: Iterable[str] = (),
               dry_run: bool = False) -> ForgetReport:  # fmt: skip
        urls, video_ids, domains = list(urls), list(video_ids), list(domains)
        found = self.find(urls, video_ids, domains)
        report = ForgetReport(videos=[
            {"video_id": vid, "title": d.get("title"), "url": d.get("url"), "status": d.get("status"),
             "places": doc_places(d)}
            for vid, d in sorted(found.items())
        ])  # fmt: skip
        if dry_run:
            return report
        docs = [d for d in found.values() if not d.get("missing")]
        ids = sorted(found)
        # tombstones first: a crawl running meanwhile already refuses what is being removed
        places = list(dict.fromkeys([*urls, *(p for d in docs for p in _video_places(d))]))
        report.tombstones = self.tombstones.add(urls=places, video_ids=ids, domains=domains, reason="forget")
        self.catalogue.remove(ids)
        self.catalogue.refresh()
        report.index_vectors = self._purge_index(ids)
        self._delete_files(docs, report)
        self.copies.delete(ids)
        for url in places:
            entry = self.ledger.get(url)
            if entry is None:
                continue  # not a URL the crawl recorded (a page given on the command line)
            self.ledger.record(url, REJECTED, video_id=entry.get("video_id"), stage="takedown",
                               error=f"opted_out: {FORGOTTEN}", source=entry.get("source"))  # fmt: skip
            # a later crawl of the same source yields it again, to be rejected (and counted) as forgotten
            if entry.get("source"):
                self.client.srem(RedisKeys.videos_seen(entry["source"]), url)
            report.ledger_urls += 1
        return report


def _video_places(doc: dict) -> list[str]:
    """The URLs of a document's video and of its copies (a local file's is its ``file://`` URI);
    not their pages: a page may show other videos too."""
    return [rec["url"] for rec in [doc, *doc_copies(doc)] if isinstance(rec.get("url"), str) and rec["url"]]
