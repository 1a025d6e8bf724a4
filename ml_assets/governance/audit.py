"""The audit log: one JSON line per governance action, appended, never rewritten.

Each line says when, who (`ML_ASSETS_ACTOR`, else the OS user), what, and counts; never a
personal value (an erasure names the person by the pseudonym of the entity only when asked to
keep it, and by default not at all). The same entry is reported to the Dagster instance as an
observation of the `audit_log` asset, so the UI shows it beside the lineage.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from ml_assets.settings import actor

AUDIT_ASSET = "audit_log"


def audit_path(data_dir: Path) -> Path:
    from ml_assets.settings import governance_dir

    return governance_dir(data_dir) / "audit.jsonl"


def record(data_dir: Path, action: str, counts: dict, **details) -> dict:
    """Append one entry (and fsync it: an action done is an action recorded) and return it."""
    entry = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "actor": actor(),
        "action": action,
        "counts": counts,
        **details,
    }
    path = audit_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(entry, sort_keys=True, default=str) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    _observe(entry)
    return entry


def read(data_dir: Path) -> list[dict]:
    path = audit_path(data_dir)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _observe(entry: dict) -> None:
    """The entry as an observation of `audit_log` in the instance under DAGSTER_HOME, if any."""
    if not os.environ.get("DAGSTER_HOME"):
        return
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        instance.report_runless_asset_event(
            dg.AssetObservation(
                asset_key=AUDIT_ASSET,
                description=f"{entry['action']} by {entry['actor']}",
                metadata={
                    "action": entry["action"],
                    "actor": entry["actor"],
                    "at": entry["at"],
                    "counts": dg.MetadataValue.json(entry["counts"]),
                },
            )
        )
