"""The cluster profile's file store: landing, archive, quarantine, reports, annotation batches
and the model registry on object storage (S3 or any S3-compatible store), through fsspec.

The same methods as the embedded `LocalFiles` and `ModelRegistry`, so the assets and sensors
do not know which they have:

- a landing object is listed with its size and last-modified time (the file sensors' settle
  rule: unchanged over two ticks), and read from a local staged copy (the same parser as on
  one machine; the checksum is taken on the bytes read, so exactly-once holds per version);
- archive and quarantine copies are objects under `archive/` and `quarantine/`, a quarantine
  copy with its `.reason.json` beside it; a move deletes the landing object after the copy;
- reports, annotation batches and model versions are written as objects under the same
  folders as on disk (`reports/`, `annotation/batches/`, `models/`). The registry's pointer
  `current.json` is one PUT, which S3 applies whole: a reader sees the old or the new
  version in use, never a mix; every load checks the artifact's SHA-256 and trusted types.

Credentials and endpoint come from the standard AWS_* variables (AWS_ENDPOINT_URL for an
S3-compatible store). Imported only with ML_ASSETS_FILES=s3://...; needs the `cluster` extra.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from datetime import date, datetime
from pathlib import Path

import dagster as dg
from upath import UPath

from ml_assets.spec import DatasetSpec, LandingFiles
from ml_assets.storage.base import fitting_name, quarantine_entries, quarantine_reason
from ml_assets.storage.registry import Registry
from ml_assets.transforms.arrivals import FileStat


class ObjectStoreFiles(dg.ConfigurableResource):
    """The data folder's files as objects under `root` (s3://bucket/prefix)."""

    root: str
    # where landing objects are copied to be read (one folder per store; any local scratch)
    staging_dir: str = ""
    # S3 dates a multipart upload by its start: an object may appear this long after its
    # last-modified time, and the file sensors look back that far (the longest upload)
    upload_margin_seconds: int = 3600

    @property
    def clock_margin_seconds(self) -> float:
        return float(self.upload_margin_seconds)

    @property
    def base(self) -> UPath:
        return UPath(self.root.rstrip("/"))

    @property
    def staging(self) -> Path:
        folder = self.staging_dir or os.path.join(tempfile.gettempdir(), "ml_assets-staged")
        bucket_and_prefix = re.sub(r"^[a-z0-9]+://", "", self.root.rstrip("/"))
        return Path(folder) / bucket_and_prefix

    # -- landing ------------------------------------------------------------------------------

    def _landing_objects(self, landing: LandingFiles, pattern: str) -> dict[str, dict]:
        """{name: object info} of the landing folder's objects matching `pattern`."""
        folder = self.base / landing.path
        # s3fs keeps folder listings for good: a sensor in a long-lived process would never
        # see a new object
        folder.fs.invalidate_cache(folder.path)
        found = folder.fs.glob(f"{folder.path}/{pattern}", detail=True)
        return {
            info["name"].rsplit("/", 1)[-1]: info
            for info in found.values()
            if info.get("type") == "file"
        }

    def landing_files(self, landing: LandingFiles, day: date) -> list[Path]:
        """The day's landing objects, each staged to a local copy to be read."""
        names = self._landing_objects(landing, landing.pattern.replace("{date}", day.isoformat()))
        return [self.landing_path(landing, name) for name in sorted(names)]

    def landing_glob(self, landing: LandingFiles, day: date) -> str:
        return str(self.base / landing.path / landing.pattern.replace("{date}", day.isoformat()))

    def landing_listing(self, landing: LandingFiles) -> dict[str, FileStat]:
        """Every landing object the pattern could match, with its size and last-modified time
        (an object changes only by a new PUT, which moves its last-modified time)."""
        pattern = re.sub(r"\*+", "*", landing.pattern.replace("{date}", "*"))
        return {
            name: FileStat(int(info["size"]), _modified_ns(info), _etag(info))
            for name, info in self._landing_objects(landing, pattern).items()
        }

    def landing_irregular(self, landing: LandingFiles) -> dict[str, str]:
        """Objects have no links, pipes or devices: every listed object is a regular file."""
        return {}

    def landing_path(self, landing: LandingFiles, name: str) -> Path:
        """A local copy of the landing object `name`, made now (written aside and renamed, so a
        concurrent reader of the same object never sees half a copy)."""
        source = self.base / landing.path / name
        target = self.staging / landing.path / name
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = target.with_name(f".{fitting_name(name)}.{os.getpid()}.partial")
        try:
            source.fs.invalidate_cache(source.parent.path)
            source.fs.get_file(source.path, str(partial))
        except BaseException:
            partial.unlink(missing_ok=True)
            target.unlink(missing_ok=True)  # the object is gone (or unreadable): so is its copy
            raise
        os.chmod(partial, 0o600)  # it may hold personal data
        partial.replace(target)
        return target

    def release(self, path) -> None:
        """The staged copy is read: remove it (it holds the landing file's clear values, which
        live only in landing, archive and quarantine)."""
        staged = Path(path)
        if staged.is_relative_to(self.staging):
            staged.unlink(missing_ok=True)

    def origin(self, path) -> str:
        """The object a staged copy was made from (what logs and metadata name)."""
        try:
            return str(self.base / Path(path).relative_to(self.staging).as_posix())
        except ValueError:
            return str(path)

    # -- folders, quarantine, archive -----------------------------------------------------------

    def folder(self, *parts: str) -> UPath:
        """A folder (prefix) of the store; objects written under it need no folder created."""
        return self.base.joinpath(*parts)

    def quarantine_file(self, source: Path, reason: str, dataset: str, *, move: bool = False):
        """Copy a landing object (from its staged copy) to quarantine/<dataset>/ with a sidecar
        saying why; `move=True` then deletes the landing object. Nothing is overwritten: a name
        already in quarantine gets a numbered suffix."""
        origin = UPath(self.origin(source))
        target = self._free_name(self.folder("quarantine", dataset) / Path(source).name)
        if origin.exists():
            origin.fs.copy(origin.path, target.path)  # the object itself, copied in the store
        else:
            target.write_bytes(Path(source).read_bytes())
        (target.parent / f"{target.name}.reason.json").write_text(
            quarantine_reason(str(origin), move, reason)
        )
        if move:
            if origin.exists():
                origin.unlink()
            Path(source).unlink(missing_ok=True)
        return target

    def _free_name(self, path: UPath) -> UPath:
        if not path.exists():
            return path
        stem, suffix = (path.name.rsplit(".", 1) + [""])[:2]
        for i in range(1, 100_000):
            candidate = path.parent / (f"{stem}.{i}.{suffix}" if suffix else f"{stem}.{i}")
            if not candidate.exists():
                return candidate
        raise RuntimeError(f"no free name for {path} in quarantine")

    def quarantined(self, dataset: str) -> list[dict]:
        """The objects waiting in quarantine (move them to quarantine/<dataset>/resolved once handled)."""
        folder = self.folder("quarantine", dataset)
        return quarantine_entries(sorted(folder.glob("*.reason.json"), key=str))

    def archive_file(self, source: Path, dataset: str, day: date) -> tuple[UPath, str]:
        """Keep the version of a landing object that was ingested, as
        archive/<dataset>/<day>/<sha16>_<name>; returns the copy and the SHA-256 of its bytes."""
        data = Path(source).read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        target = (
            self.folder("archive", dataset, day.isoformat()) / f"{sha[:16]}_{Path(source).name}"
        )
        if not target.exists():
            target.write_bytes(data)
        return target, sha


def _modified_ns(info: dict) -> int:
    modified = info.get("LastModified") or info.get("mtime")
    if isinstance(modified, datetime):
        return int(modified.timestamp() * 1_000_000_000)
    return int(float(modified or 0) * 1_000_000_000)


def _etag(info: dict) -> str:
    return str(info.get("ETag") or info.get("etag") or "").strip('"').replace(":", "")


class ObjectStoreRegistry(dg.ConfigurableResource):
    """The model registry as objects: each dataset's versions under `<root>/models/`."""

    root: str

    def for_dataset(self, spec: DatasetSpec) -> Registry:
        from ml_assets.names import dataset_folder

        return Registry(UPath(self.root.rstrip("/")).joinpath(*dataset_folder(spec, "models")))
