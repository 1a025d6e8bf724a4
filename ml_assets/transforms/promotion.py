"""The champion/challenger gate: when a newly trained version may replace the one in use.

No Dagster here. A challenger becomes the champion only when, on the same recent test slice,
it is at least as good as the champion within the configured tolerances, and it passes the
fairness and calibration checks. Every reason for the decision is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from ml_assets.spec import Promotion


def calibration_error(calibration: list[dict]) -> float:
    """Expected calibration error: the event-weighted mean gap between the mean score and the
    observed positive rate of each score bin."""
    total = sum(b["events"] for b in calibration)
    if not total:
        return 0.0
    return sum(b["events"] * abs(b["mean_score"] - b["observed_rate"]) for b in calibration) / total


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: list[str]

    def as_dict(self) -> dict:
        return {"promote": self.promote, "reasons": self.reasons}


def decide(
    challenger: dict,
    champion: dict | None,
    fairness_passed: bool,
    rules: Promotion,
) -> Decision:
    """challenger / champion: metrics (evaluate()'s dict) of each on the same test slice; champion
    None when there is none, or it cannot score today's inputs."""
    reasons, blocked = [], False
    ece = calibration_error(challenger.get("calibration", []))
    if ece > rules.max_calibration_error:
        blocked = True
        reasons.append(
            f"calibration error {ece:.4f} is above promotion.max_calibration_error {rules.max_calibration_error}"
        )
    else:
        reasons.append(f"calibration error {ece:.4f} within {rules.max_calibration_error}")
    if not fairness_passed:
        blocked = True
        reasons.append("the fairness check failed")
    if champion is None:
        reasons.append("no champion to compare with")
    else:
        for metric, tolerance in (
            ("pr_auc", rules.pr_auc_tolerance),
            ("roc_auc", rules.roc_auc_tolerance),
        ):
            new, old = challenger[metric], champion[metric]
            if new < old - tolerance:
                blocked = True
                reasons.append(
                    f"{metric} {new:.4f} is below the champion's {old:.4f} by more than {tolerance}"
                )
            else:
                reasons.append(
                    f"{metric} {new:.4f} vs the champion's {old:.4f} (tolerance {tolerance})"
                )
    return Decision(not blocked, reasons)
