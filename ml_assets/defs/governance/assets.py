"""Governance in the asset graph: the audit log, observed by every governance action."""

import dagster as dg

from ml_assets.governance.audit import AUDIT_ASSET


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(
        assets=[
            dg.AssetSpec(
                AUDIT_ASSET,
                group_name="governance",
                kinds={"jsonl"},
                description=(
                    "Every governance action (erasure, retention run, key rotation, backup, restore, "
                    "registry rollback): when, who, what and counts, never a personal value. Kept as "
                    "append-only JSON lines in data/governance/audit.jsonl; each action is an "
                    "observation here. `python -m ml_assets.governance audit` prints it."
                ),
            )
        ]
    )
