"""What the command-line tools print: their own lines, not Dagster's notes to its developers.

Dagster warns of its own beta parameters (BetaWarning, PreviewWarning: the APIs are pinned and
chosen) and logs engine warnings through Python's logging (e.g. a blocking check that a
waiting asset did not run); a tool prints what failed, waited or warned itself
(`metadata.run_notes`), with the fix."""

from __future__ import annotations

import logging
import warnings


def quiet_dagster() -> None:
    """Silence Dagster's beta notes and engine warnings in this process; errors still show."""
    import dagster as dg

    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    logging.getLogger("dagster._core").setLevel(logging.ERROR)
