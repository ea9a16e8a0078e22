"""Place: where an index snapshot lives, a local folder or an fsspec URI (s3://, gs://, memory://, file://).

A snapshot is a set of files plus ``meta.json``, the manifest, written last: on a local disk
through a temporary name and ``os.replace``, on an object store as one PUT (atomic per
object), so readers see the previous snapshot or the new one. Files are staged locally and
uploaded (``put_files``); a URI needs fsspec and the filesystem's package (s3fs, gcsfs).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "meta.json"
GENERATION = re.compile(r"-\d{8}-[0-9a-f]{6}(\.|$)")  # the generation tag in a snapshot file's name


def new_generation(previous: dict | None) -> tuple[str, int]:
    """(tag, number) of the snapshot after ``previous`` (its manifest): the number goes up by
    one, the random tail keeps two writers that race from naming the same files."""
    number = int((previous or {}).get("generation_number", 0)) + 1
    return f"{number:08d}-{secrets.token_hex(3)}", number


def generation_name(name: str, generation: str) -> str:
    """``clusters.json`` -> ``clusters-00000003-a1b2c3.json``."""
    path = Path(name)
    return f"{path.stem}-{generation}{path.suffix}"


@dataclass
class Place:
    uri: str
    local: Path | None  # set for a local folder (a path or file://)
    fs: object = None  # fsspec filesystem, for a URI
    root: str = ""

    @classmethod
    def of(cls, target: str | Path) -> Place:
        if isinstance(target, Path) or "://" not in str(target):
            return cls(str(target), Path(target))
        import fsspec

        fs, root = fsspec.core.url_to_fs(str(target))
        if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
            return cls(str(target), Path(root))
        return cls(str(target).rstrip("/"), None, fs, root.rstrip("/"))

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}"

    # -- manifest -----------------------------------------------------------------------------------
    def read_manifest(self, name: str = MANIFEST) -> dict | None:
        data = self.read_bytes(name)
        return None if data is None else json.loads(data)

    def write_manifest(self, manifest: dict, name: str = MANIFEST) -> None:
        data = json.dumps(manifest).encode()
        if self.local is not None:
            self.local.mkdir(parents=True, exist_ok=True)
            tmp = self.local / (name + ".tmp")
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.local / name)
        else:
            self.fs.pipe_file(self._path(name), data)

    def put_extras(self, extras: dict[str, bytes], generation: str) -> dict[str, str]:
        """Write ``name -> bytes`` as files of this generation; returns name -> stored file name."""
        names = {name: generation_name(name, generation) for name in extras}
        with tempfile.TemporaryDirectory(prefix="snapshot-") as tmp:
            for name, data in extras.items():
                (Path(tmp) / names[name]).write_bytes(data)
            self.put_files({names[n]: Path(tmp) / names[n] for n in extras})
        return names

    # -- files --------------------------------------------------------------------------------------
    def read_bytes(self, name: str) -> bytes | None:
        try:
            if self.local is not None:
                return (self.local / name).read_bytes()
            return self.fs.cat_file(self._path(name))
        except FileNotFoundError:
            return None

    def put_files(self, files: dict[str, Path]) -> None:
        """Copy local files here under these names (each whole before it takes the name)."""
        if self.local is not None:
            self.local.mkdir(parents=True, exist_ok=True)
            for name, src in files.items():
                dest = self.local / name
                if Path(src).resolve() == dest.resolve():
                    continue
                tmp = self.local / (name + ".tmp")
                shutil.copyfile(src, tmp)
                os.replace(tmp, dest)
            return
        self.fs.makedirs(self.root, exist_ok=True)
        for name, src in files.items():
            self.fs.put_file(str(src), self._path(name))

    def get_files(self, names: list[str], into: Path) -> dict[str, Path]:
        """Local paths of these files: in place for a local folder, else downloaded ``into``."""
        if self.local is not None:
            return {name: self.local / name for name in names}
        into.mkdir(parents=True, exist_ok=True)
        out = {}
        for name in names:
            self.fs.get_file(self._path(name), str(into / name))
            out[name] = into / name
        return out

    def delete_generations(self, keep: set[str]) -> None:
        """Delete snapshot files of older generations (names with a generation tag, not in ``keep``)."""
        if self.local is not None:
            names = [p.name for p in self.local.iterdir()] if self.local.exists() else []
        else:
            names = [p.rsplit("/", 1)[-1] for p in self.fs.ls(self.root, detail=False)]
        for name in names:
            if GENERATION.search(name) and name not in keep and not name.endswith(".tmp"):
                try:
                    if self.local is not None:
                        (self.local / name).unlink()
                    else:
                        self.fs.rm_file(self._path(name))
                except FileNotFoundError:
                    pass
