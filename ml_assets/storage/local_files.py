"""The embedded profile's files and models: landing, archive, quarantine and reports as folders
of the data folder, and the model registry's versions under its models/ folder."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from datetime import date
from pathlib import Path

import dagster as dg

from ml_assets.spec import DatasetSpec, LandingFiles
from ml_assets.storage.base import (
    fitting_name,
    free_name,
    not_a_regular_file,
    quarantine_entries,
    quarantine_reason,
)
from ml_assets.storage.registry import Registry
from ml_assets.transforms.arrivals import FileStat
from ml_assets.transforms.privacy import private_dir


class LocalFiles(dg.ConfigurableResource):
    """The data folder on local disk: landing files, quarantine, model artifacts, reports."""

    data_dir: str

    @property
    def root(self) -> Path:
        return Path(self.data_dir)

    @property
    def clock_margin_seconds(self) -> float:
        """How far behind the clock a new file's change time may be (a file server's clock)."""
        return 60.0

    def landing_files(self, landing: LandingFiles, day: date) -> list[Path]:
        """The day's landing entries: regular files, and anything else the pattern matches (a
        link, a folder) so that the caller can refuse it; never followed."""
        folder = self.root / landing.path
        return sorted(folder.glob(landing.pattern.replace("{date}", day.isoformat())))

    def landing_glob(self, landing: LandingFiles, day: date) -> str:
        return str(self.root / landing.path / landing.pattern.replace("{date}", day.isoformat()))

    def folder(self, *parts: str) -> Path:
        """A folder of the data folder, created readable by its owner only (0700)."""
        return private_dir(self.root.joinpath(*parts))

    def landing_listing(self, landing: LandingFiles) -> dict[str, FileStat]:
        """Every regular file of a landing folder that matches the pattern, with its size and
        change time (from the entry itself: a link is not followed)."""
        listing = {}
        for path in self._matching(landing):
            try:
                if not_a_regular_file(path) is None:
                    listing[path.name] = FileStat.of(path)
            except FileNotFoundError:  # removed between the listing and the stat
                continue
        return listing

    def landing_irregular(self, landing: LandingFiles) -> dict[str, str]:
        """{name: what it is} of the entries matching the pattern that are not regular files
        (links, folders, pipes, devices): landing takes regular files only."""
        out = {}
        for path in self._matching(landing):
            try:
                if kind := not_a_regular_file(path):
                    out[path.name] = kind
            except FileNotFoundError:
                continue
        return out

    def _matching(self, landing: LandingFiles) -> list[Path]:
        # any name the pattern could match: a file whose date is not a date is quarantined, not ignored
        folder = self.root / landing.path
        return sorted(folder.glob(re.sub(r"\*+", "*", landing.pattern.replace("{date}", "*"))))

    def landing_path(self, landing: LandingFiles, name: str) -> Path:
        return self.root / landing.path / name

    def release(self, path) -> None:
        """A landing file has been read: nothing to do on local disk (an object store removes
        its staged copy)."""

    def origin(self, path) -> str:
        """What logs and metadata name a landing file by: its path (an object store names the
        object a local copy was made from)."""
        return str(path)

    def quarantine_file(
        self, source: Path, reason: str, dataset: str, *, move: bool = False
    ) -> Path:
        """Put a bad landing file in quarantine with a sidecar stating why.

        `move=False` copies (the original stays where it was); `move=True` takes it out of the
        landing folder so that the day's good files can go on without it. Nothing is deleted:
        a name already in quarantine gets a numbered suffix.
        """
        target_dir = self.folder("quarantine", dataset)
        target = free_name(target_dir / fitting_name(source.name))
        if not_a_regular_file(source):
            # a link, folder, pipe or device: the entry itself is moved, its target never read
            os.rename(source, target)
            move = True
        elif move:
            shutil.move(source, target)
            os.chmod(target, 0o600)  # it may hold personal data
        else:
            shutil.copy2(source, target)
            os.chmod(target, 0o600)
        sidecar = target.with_name(target.name + ".reason.json")
        sidecar.touch(mode=0o600)
        sidecar.write_text(quarantine_reason(str(source), move, reason))
        return target

    def quarantined(self, dataset: str) -> list[dict]:
        """The files waiting in quarantine (move them to quarantine/<dataset>/resolved once handled)."""
        folder = self.root / "quarantine" / dataset
        return quarantine_entries(sorted(folder.glob("*.reason.json")))

    def archive_file(self, source: Path, dataset: str, day: date) -> tuple[Path, str]:
        """Keep the version of a landing file that was ingested, as archive/<dataset>/<day>/<sha16>_<name>.

        A writer may overwrite the original later (a changed file); the archived copy keeps what
        the raw rows came from. Returns the copy and the SHA-256 of the bytes copied, so a caller
        can tell whether the file changed since it was read.
        """
        folder = self.folder("archive", dataset, day.isoformat())
        digest = hashlib.sha256()
        name = fitting_name(source.name)
        partial = folder / f".{name}.{os.getpid()}.partial"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
            while chunk := src.read(8 << 20):
                digest.update(chunk)
                dst.write(chunk)
        sha = digest.hexdigest()
        target = folder / f"{sha[:16]}_{name}"
        if target.exists():
            partial.unlink()
        else:
            shutil.copystat(source, partial)
            os.chmod(partial, 0o600)  # the archive keeps personal data: the owner's only
            partial.replace(target)
        return target, sha


class LocalModelRegistry(dg.ConfigurableResource):
    """The model registry: each dataset's versions under the data folder's models/ (a folder of
    the dataset's name when several datasets share the data folder)."""

    data_dir: str

    def for_dataset(self, spec: DatasetSpec) -> Registry:
        from ml_assets.names import dataset_folder

        return Registry(private_dir(Path(self.data_dir).joinpath(*dataset_folder(spec, "models"))))
