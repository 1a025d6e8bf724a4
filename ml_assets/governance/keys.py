"""Rotating the pseudonym key: every stored day pseudonymized again with the new key, in one run.

Pseudonyms are one-way: they are made again from the clear values, which only the landing files
(and their archive copies) hold. The rotation re-ingests every stored day of the datasets with
personal columns with the new key and cleans them again, in one run whose tag names the old
key's fingerprint: the raw assets accept the new key only in that run, and record it as the key
in use once all its days are written. Until the rotation has run, the old key stays in use.
"""

from __future__ import annotations

from datetime import timedelta

KEY_ROTATION_TAG = "ml_assets/rotate_key_from"
NEW_KEY_ENV_VAR = "ML_ASSETS_NEW_PSEUDONYM_KEY"


class KeyRotationError(ValueError):
    pass


def refuse_days_without_landing(warehouse, spec, first, last) -> None:
    """A stored day whose landing files are gone (retention keeps landing shorter than raw)
    cannot be pseudonymized again: its clear values are only in the archive now. Refused
    before anything changes, naming the days and where their files are."""
    from ml_assets.governance.erasure import rebuildable_days

    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    _, gone = rebuildable_days(warehouse, spec, days)
    if gone:
        shown = ", ".join(d.isoformat() for d in gone[:5]) + (" ..." if len(gone) > 5 else "")
        raise KeyRotationError(
            f"{len(gone)} stored day(s) have no landing files any more ({shown}), and a pseudonym "
            "can only be made again from the clear value; nothing was changed. Fix: copy those "
            f"days' files back to landing from the archive (archive/{spec.name}/<day>/, each "
            "named <checksum>_<file name>: drop the prefix), or let retention remove those days "
            "from raw first (`retention.raw_days` at most `landing_days`), then rotate again"
        )


def rotate_key(data_dir, spec, old_key: str, new_key: str, instance) -> dict:
    """Re-pseudonymize every stored day with `new_key`; returns counts. `old_key` must be the
    key the stored days were made with (or the new one, to finish a rotation that stopped)."""
    import os

    import dagster as dg
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from ml_assets.definitions import build_definitions
    from ml_assets.governance.erasure import QUIET_RUN
    from ml_assets.metadata import run_notes
    from ml_assets.names import Tables, asset_key
    from ml_assets.settings import PSEUDONYM_KEY_ENV_VAR, Settings
    from ml_assets.storage.assembly import build_warehouse
    from ml_assets.transforms.privacy import key_fingerprint

    old, new = key_fingerprint(old_key), key_fingerprint(new_key)  # both checked for strength
    if old == new:
        raise KeyRotationError("the new key is the key in use: nothing to rotate")
    t = Tables(spec)
    key_table = f"governance.{spec.name}_pseudonym_key"
    warehouse = build_warehouse(Settings.from_env())
    if not (warehouse.exists(key_table) and warehouse.exists(t.raw)):
        raise KeyRotationError("nothing is stored yet: set the new key and start")
    stored = warehouse.read(f"SELECT fingerprint FROM {key_table}").item(0, 0)
    first, last, rows = warehouse.read(
        f"SELECT min(CAST({spec.event_time_column} AS DATE)) AS a, "
        f"max(CAST({spec.event_time_column} AS DATE)) AS b, count(*) AS n FROM {t.raw}"
    ).row(0)
    if stored not in (old, new):
        raise KeyRotationError(
            f"the stored days were pseudonymized with key {stored}, neither the current ({old}) "
            f"nor the new one ({new}): set ML_ASSETS_PSEUDONYM_KEY to the key in use"
        )
    refuse_days_without_landing(warehouse, spec, first, last)
    previous = os.environ.get(PSEUDONYM_KEY_ENV_VAR)
    os.environ[PSEUDONYM_KEY_ENV_VAR] = new_key
    try:
        defs = build_definitions()
        result = dg.materialize(
            [*defs.assets, *(defs.asset_checks or [])],
            selection=dg.AssetSelection.assets(
                asset_key(spec, spec.raw_asset), asset_key(spec, spec.cleaned_asset)
            ),
            instance=instance,
            resources=defs.resources,
            tags={
                KEY_ROTATION_TAG: stored,
                ASSET_PARTITION_RANGE_START_TAG: first.isoformat(),
                ASSET_PARTITION_RANGE_END_TAG: last.isoformat(),
            },
            run_config=QUIET_RUN,
            raise_on_error=False,
        )
        if not result.success:
            notes = "; ".join(n.strip() for n in run_notes(instance, result) if "FAILED" in n)
            raise KeyRotationError(
                f"the rotation run {result.run_id} failed: {notes or 'see the run in the UI'}. "
                f"The key in use is still the old one ({stored}); fix the cause and run "
                "rotate-key again"
            )
    finally:
        if previous is None:
            os.environ.pop(PSEUDONYM_KEY_ENV_VAR, None)
        else:
            os.environ[PSEUDONYM_KEY_ENV_VAR] = previous
    return {
        "days": (last - first + timedelta(days=1)).days,
        "rows": rows,
        "from_key": stored,
        "to_key": new,
    }
