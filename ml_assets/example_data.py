"""Deterministic generator of the example dataset: card transactions and late chargebacks.

Same seed and arguments, same bytes. What it plants, so that every stage has work to do:

- personal data (name, email, card number) that cleaning must pseudonymize;
- ~1% missing amounts, ~2% missing devices, ~0.5% missing countries;
- ~0.5% exact duplicate rows, ~0.2% out-of-range amounts (negative or above 20,000);
- three malformed rows a day (unparseable amount, unparseable timestamp, an extra field);
- fraud (~1.5% of events) in bursts on one card, reported as chargebacks 1-13 days later,
  for ~95% of the frauds (the rest stay wrongly labelled negative, as in real life);
- a documented drift from ``DRIFT_START`` (2026-10-17): amounts inflate by 40%, a new merchant
  category (crypto_exchange) takes ~8% of events and the fraud pattern moves from night-time,
  foreign, high-amount electronics/travel to online crypto purchases of medium amounts.

Usage: ``python -m ml_assets.example_data --out data/landing`` (see ``--help``).
"""

from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from ml_assets.transforms.privacy import private_dir, write_private

DEFAULT_START = date(2026, 9, 1)
DEFAULT_DAYS = 60
DRIFT_START = date(2026, 10, 17)
DEFAULT_ROWS_PER_DAY = 2_000
DEFAULT_SEED = 20260901

CATEGORIES = [
    "grocery",
    "restaurants",
    "fuel",
    "electronics",
    "travel",
    "fashion",
    "entertainment",
    "online_services",
]
CATEGORY_MIX = np.array([0.28, 0.18, 0.10, 0.08, 0.06, 0.12, 0.08, 0.10])
DRIFT_CATEGORIES = CATEGORIES + ["crypto_exchange"]
DRIFT_CATEGORY_MIX = np.array([0.22, 0.15, 0.08, 0.12, 0.05, 0.10, 0.08, 0.12, 0.08])
CATEGORY_AMOUNT_MEAN = {  # log-EUR
    "grocery": 3.3,
    "restaurants": 3.4,
    "fuel": 3.9,
    "electronics": 5.0,
    "travel": 5.5,
    "fashion": 4.2,
    "entertainment": 3.6,
    "online_services": 3.0,
    "crypto_exchange": 5.2,
}
COUNTRIES = ["DE", "FR", "NL", "ES", "IT", "PL", "GB"]
FOREIGN_COUNTRIES = ["US", "BR", "NG", "CN"]
AGE_BANDS = ["18-25", "26-35", "36-50", "51-65", "66+"]
AGE_BAND_MIX = np.array([0.15, 0.27, 0.30, 0.18, 0.10])
FIRST_NAMES = [
    "Anna",
    "José",
    "Zoë",
    "Lukas",
    "Amélie",
    "Piotr",
    "Sofia",
    "Jonas",
    "Chloé",
    "Marco",
    "Ines",
    "Björn",
]
LAST_NAMES = [
    "Müller",
    "García",
    "Dubois",
    "Rossi",
    "Nowak",
    "Smith",
    "Jansen",
    "Silva",
    "Öztürk",
    "Novák",
]

TRANSACTION_COLUMNS = [
    "transaction_id",
    "event_time",
    "customer_id",
    "card_id",
    "amount",
    "merchant_category",
    "country",
    "channel",
    "device",
    "customer_name",
    "customer_email",
    "card_number",
    "age_band",
]


@dataclass(frozen=True)
class Customers:
    customer_id: np.ndarray
    name: np.ndarray
    email: np.ndarray
    card_id: np.ndarray
    card_number: np.ndarray
    age_band: np.ndarray
    home_country: np.ndarray


def _rng(seed: int, *salt: object) -> np.random.Generator:
    digest = hashlib.sha256(repr((seed, *salt)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def make_customers(n: int, seed: int) -> Customers:
    rng = _rng(seed, "customers")
    ids = np.array([f"C{i:07d}" for i in range(n)])
    first = rng.choice(FIRST_NAMES, n)
    last = rng.choice(LAST_NAMES, n)
    names = np.char.add(np.char.add(first, " "), last)
    emails = np.array([f"{f.lower()}.{i}@example.com" for i, f in enumerate(first)])
    cards = np.array([f"K{i:07d}" for i in range(n)])
    numbers = np.array([f"4{x:015d}" for x in rng.integers(0, 10**15, n)])
    return Customers(
        customer_id=ids,
        name=names,
        email=emails,
        card_id=cards,
        card_number=numbers,
        age_band=rng.choice(AGE_BANDS, n, p=AGE_BAND_MIX),
        home_country=rng.choice(COUNTRIES, n),
    )


def generate_day(
    day: date, rows: int, customers: Customers, seed: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One day of transactions (with dirt) and its fraud events (id, event time, card)."""
    rng = _rng(seed, "day", day.isoformat())
    drifted = day >= DRIFT_START
    n = max(1, int(rows * (0.85 if day.weekday() >= 5 else 1.0) * rng.uniform(0.95, 1.05)))

    who = rng.integers(0, len(customers.customer_id), n)
    # diurnal profile: few events at night
    hour_weights = np.array(
        [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1.5, 3, 4, 5, 5, 5.5, 6, 5.5, 5, 5, 5.5, 6, 6.5, 6, 5, 4, 3, 2]
    )
    hours = rng.choice(24, n, p=hour_weights / hour_weights.sum())
    seconds = hours * 3600 + rng.integers(0, 3600, n)

    cats, mix = (DRIFT_CATEGORIES, DRIFT_CATEGORY_MIX) if drifted else (CATEGORIES, CATEGORY_MIX)
    category = rng.choice(cats, n, p=mix / mix.sum())
    mean = np.array([CATEGORY_AMOUNT_MEAN[c] for c in category])
    amount = np.exp(rng.normal(mean, 0.8)) * (1.4 if drifted else 1.0)
    foreign = rng.random(n) < 0.05
    country = np.where(foreign, rng.choice(FOREIGN_COUNTRIES, n), customers.home_country[who])
    channel = rng.choice(["pos", "online", "atm"], n, p=[0.55, 0.38, 0.07])
    device = np.where(
        channel == "online", rng.choice(["mobile", "desktop"], n, p=[0.65, 0.35]), "terminal"
    )

    # fraud: a logistic score on the event, then a burst of follow-ups on the same card
    night = hours < 6
    if not drifted:
        logit = (
            -6.2
            + 2.2 * night
            + 1.8 * foreign
            + 1.1 * np.isin(category, ["electronics", "travel"])
            + 0.45 * (np.log(amount) - 4)
        )
    else:
        logit = (
            -6.0
            + 2.6 * (category == "crypto_exchange")
            + 1.2 * (channel == "online")
            + 0.3 * night
            + 0.3 * foreign
        )
    is_fraud = rng.random(n) < 1 / (1 + np.exp(-logit))

    burst_src = np.flatnonzero(is_fraud)
    burst_n = rng.integers(1, 4, len(burst_src))
    src = np.repeat(burst_src, burst_n)
    b_seconds = np.minimum(seconds[src] + rng.integers(30, 2400, len(src)), 86399)

    who = np.concatenate([who, who[src]])
    seconds = np.concatenate([seconds, b_seconds])
    category = np.concatenate([category, category[src]])
    amount = np.concatenate([amount, amount[src] * rng.uniform(0.5, 1.5, len(src))])
    country = np.concatenate([country, country[src]])
    channel = np.concatenate([channel, channel[src]])
    device = np.concatenate([device, device[src]])
    is_fraud = np.concatenate([is_fraud, np.ones(len(src), dtype=bool)])
    total = len(who)

    start = datetime.combine(day, datetime.min.time())
    frame = pl.DataFrame(
        {
            "event_time": pl.Series([start], dtype=pl.Datetime("us")).repeat_by(total).explode()
            + pl.Series(seconds * 1_000_000, dtype=pl.Int64).cast(pl.Duration("us")),
            "customer_id": customers.customer_id[who],
            "card_id": customers.card_id[who],
            "amount": np.round(amount, 2),
            "merchant_category": category,
            "country": country,
            "channel": channel,
            "device": device,
            "customer_name": customers.name[who],
            "customer_email": customers.email[who],
            "card_number": customers.card_number[who],
            "age_band": customers.age_band[who],
            "is_fraud": is_fraud,
        }
    ).sort("event_time", maintain_order=True)
    frame = frame.with_columns(
        transaction_id=pl.format(
            "T{}{}",
            pl.lit(day.strftime("%Y%m%d")),
            pl.int_range(pl.len()).cast(pl.String).str.zfill(7),
        )
    )

    # dirt: missing values and out-of-range amounts
    u = rng.random((3, len(frame)))
    frame = frame.with_columns(
        amount=pl.when(pl.Series(u[0] < 0.01))
        .then(None)
        .when(pl.Series(u[0] > 0.999))
        .then(-pl.col("amount"))
        .when(pl.Series((u[0] > 0.998) & (u[0] <= 0.999)))
        .then(pl.col("amount") * 0 + 50_000.0)
        .otherwise(pl.col("amount")),
        device=pl.when(pl.Series(u[1] < 0.02)).then(None).otherwise(pl.col("device")),
        country=pl.when(pl.Series(u[2] < 0.005)).then(None).otherwise(pl.col("country")),
    )
    frauds = frame.filter(pl.col("is_fraud")).select("transaction_id", "event_time")
    frame = frame.drop("is_fraud")
    # exact duplicates (a retried upload), placed right after their original
    dup_idx = np.flatnonzero(rng.random(len(frame)) < 0.005)
    order = np.sort(np.concatenate([np.arange(len(frame)), dup_idx]), kind="stable")
    frame = frame[order]
    return frame.select(TRANSACTION_COLUMNS), frauds


MALFORMED_TEMPLATES = [
    "{id}X,{ts},C0000003,K0000003,12.3.4,grocery,DE,pos,terminal,A,a@example.com,4000000000000000,26-35",  # amount
    "{id}Y,yesterday noon,C0000001,K0000001,10.00,grocery,DE,pos,terminal,A,a@example.com,4000000000000000,26-35",  # time
    "{id}Z,{ts},C0000002,K0000002,10.00,grocery,DE,pos,terminal,B,b@example.com,4000000000000001,26-35,EXTRA",  # extra field
]


def to_csv_bytes(
    frame: pl.DataFrame, malformed: list[str] | None = None, rng: np.random.Generator | None = None
) -> bytes:
    text = frame.write_csv(datetime_format="%Y-%m-%d %H:%M:%S", float_precision=2)
    if not malformed:
        return text.encode("utf-8")
    header, *lines = text.rstrip("\n").split("\n")
    positions = sorted(
        rng.choice(max(1, len(lines)), size=len(malformed), replace=len(lines) < len(malformed))
    )
    for offset, (pos, bad) in enumerate(zip(positions, malformed, strict=True)):
        lines.insert(int(pos) + offset, bad)
    return ("\n".join([header, *lines]) + "\n").encode("utf-8")


def generate(
    out: Path,
    start: date = DEFAULT_START,
    days: int = DEFAULT_DAYS,
    rows_per_day: int = DEFAULT_ROWS_PER_DAY,
    seed: int = DEFAULT_SEED,
    maturity_days: int = 14,
    overwrite: bool = False,
    truth_file: Path | None = None,
) -> dict[str, int]:
    """Write transactions_<day>.csv and chargebacks_<day>.csv under `out`; returns row counts.

    The generator's own record of which transactions were fraud (reported or not) goes to
    `truth_file` (default: example_truth/frauds.csv beside `out`), outside every landing folder:
    only the simulated annotators of `make demo` and the tests read it.
    """
    truth_file = truth_file or out.parent / "example_truth" / "frauds.csv"
    all_frauds: list[pl.DataFrame] = []
    tx_dir, cb_dir = out / "transactions", out / "chargebacks"
    # the data folder and the files with personal data are the owner's only
    for folder in (out.parent, out, tx_dir, cb_dir):
        private_dir(folder)
    customers = make_customers(max(300, rows_per_day // 4), seed)
    pending: list[pl.DataFrame] = []
    counts = {"transactions": 0, "chargebacks": 0}
    for i in range(days):
        day = start + timedelta(days=i)
        tx_path = tx_dir / f"transactions_{day}.csv"
        frame, frauds = generate_day(day, rows_per_day, customers, seed)
        rng = _rng(seed, "malformed", day.isoformat())
        ts = f"{day} 12:00:00"
        bad = [t.format(id=f"T{day:%Y%m%d}BAD", ts=ts) for t in MALFORMED_TEMPLATES]
        if overwrite or not tx_path.exists():
            write_private(tx_path, to_csv_bytes(frame, bad, rng))
        counts["transactions"] += len(frame)
        all_frauds.append(frauds.select("transaction_id", "event_time"))

        # ~95% of frauds are reported, 1..maturity-1 days later
        crng = _rng(seed, "chargebacks", day.isoformat())
        reported = frauds.filter(pl.Series(crng.random(len(frauds)) < 0.95))
        delay_days = np.clip(
            np.round(crng.gamma(2.0, 2.5, len(reported))), 1, maturity_days - 1
        ).astype(int)
        pending.append(
            reported.with_columns(
                reported_at=(
                    pl.col("event_time").dt.truncate("1d")
                    + pl.Series(delay_days, dtype=pl.Int64).cast(pl.Duration("us")) * 86_400_000_000
                    + pl.Series(
                        crng.integers(0, 86_400, len(reported)) * 1_000_000, dtype=pl.Int64
                    ).cast(pl.Duration("us"))
                ),
                reason_code=pl.Series(crng.choice(["10.4", "10.5", "4837", "4863"], len(reported))),
            )
        )

    chargebacks = pl.concat(pending).sort("reported_at", "transaction_id")
    chargebacks = chargebacks.with_columns(
        chargeback_id=pl.format("CB{}", pl.int_range(pl.len()).cast(pl.String).str.zfill(8))
    )
    for i in range(days):
        day = start + timedelta(days=i)
        cb_path = cb_dir / f"chargebacks_{day}.csv"
        today = chargebacks.filter(pl.col("reported_at").dt.date() == day).select(
            "chargeback_id", "transaction_id", "reported_at", "reason_code"
        )
        if overwrite or not cb_path.exists():
            write_private(cb_path, to_csv_bytes(today))
        counts["chargebacks"] += len(today)
    private_dir(truth_file.parent)
    if overwrite or not truth_file.exists():
        write_private(truth_file, pl.concat(all_frauds).write_csv().encode())
    return counts


def simulate_annotators(
    batch: pl.DataFrame,
    fraud_ids: set[str],
    accuracy: dict[str, float],
    share: float,
    seed: int,
) -> dict[str, pl.DataFrame]:
    """People filling in an annotation batch (a `batch_*.csv` of annotation_queue), for the demo.

    Each annotator labels a random `share` of the batch's events; a label is right (fraud per the
    generator's truth) with the annotator's `accuracy`, else flipped. Returns {annotator: the batch
    with label and annotator filled in, the lines not labelled left empty}.
    """
    out = {}
    truth = batch["event_id"].is_in(list(fraud_ids)).to_numpy()
    for name, acc in accuracy.items():
        rng = _rng(seed, "annotator", name, *batch["event_id"].head(1).to_list())
        labelled = rng.random(len(batch)) < share
        right = rng.random(len(batch)) < acc
        says_fraud = np.where(right, truth, ~truth)
        label = np.where(labelled, np.where(says_fraud, "positive", "negative"), "")
        out[name] = batch.with_columns(
            label=pl.Series(label, dtype=pl.String),
            annotator=pl.Series(np.where(labelled, name, ""), dtype=pl.String),
        )
    return out


def shrunk_example_spec(
    out: Path,
    start: date,
    days: int,
    maturity_days: int,
    training: dict | None = None,
    **blocks: dict,
) -> Path:
    """The example spec over `days` days from `start`, with a shorter label maturity and, when
    given, smaller training windows; each of `blocks` is merged into the spec's block of that
    name. Written to `out` (tests and benchmarks run the graph on a few days with it)."""
    import yaml

    from ml_assets.spec import DEFAULT_SPEC_PATH

    raw = yaml.safe_load(DEFAULT_SPEC_PATH.read_text())
    raw["partitions"] = {
        "start": start.isoformat(),
        "end": (start + timedelta(days=days)).isoformat(),
    }
    raw["labels"]["maturity_days"] = maturity_days
    if training is not None:
        raw["training"] = training
    for name, block in blocks.items():
        raw[name] = {**raw.get(name, {}), **block} if isinstance(block, dict) else block
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("data/landing"),
        help="landing folder (default data/landing)",
    )
    parser.add_argument("--start", type=date.fromisoformat, default=DEFAULT_START)
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS)
    parser.add_argument(
        "--rows-per-day", type=int, default=DEFAULT_ROWS_PER_DAY, help="e.g. 1000000 for a big day"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--maturity-days",
        type=int,
        default=14,
        help="chargebacks arrive 1..N-1 days after the fraud",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="rewrite files that exist (default: keep them)"
    )
    args = parser.parse_args(argv)
    counts = generate(
        args.out, args.start, args.days, args.rows_per_day, args.seed, overwrite=args.overwrite
    )
    print(
        f"example data in {args.out}: {counts['transactions']:,} transactions, {counts['chargebacks']:,} chargebacks over {args.days} days"
    )


if __name__ == "__main__":
    main()
