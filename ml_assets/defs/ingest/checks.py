"""Ingest checks that look at the landing area rather than at the stored rows."""

import dagster as dg

from ml_assets.names import QUARANTINE_CHECK, asset_key, landing_areas
from ml_assets.settings import Settings
from ml_assets.spec import DatasetSpec
from ml_assets.storage.interfaces import FileStore


def quarantine_check(asset: dg.AssetKey, dataset: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset,
        name=QUARANTINE_CHECK,
        description=(
            f"No {dataset} file waits in data/quarantine/{dataset}. A file lands there (with a .reason.json) when "
            "it cannot be ingested; fix it and drop the fixed file into the landing folder, then move the "
            f"quarantined copy to data/quarantine/{dataset}/resolved. The file sensor also reports each file it "
            "quarantines as a failed evaluation of this check."
        ),
    )
    def _check(files: dg.ResourceParam[FileStore]) -> dg.AssetCheckResult:
        waiting = files.quarantined(dataset)
        return dg.AssetCheckResult(
            passed=not waiting,
            severity=dg.AssetCheckSeverity.WARN,
            description=(
                f"{len(waiting)} file(s) in quarantine: "
                + "; ".join(
                    f"{w['quarantined_as'].rsplit('/', 1)[-1]}: {w['reason']}" for w in waiting[:5]
                )
                if waiting
                else "no file in quarantine"
            ),
            metadata={"quarantined": dg.MetadataValue.json(waiting[:50]), "count": len(waiting)},
        )

    return _check


def build(spec: DatasetSpec, settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        asset_checks=[
            quarantine_check(asset_key(spec, a.asset_name), a.dataset) for a in landing_areas(spec)
        ]
    )
