"""Erasure of one person (GDPR art. 17): every row, line and file that holds them, following lineage.

`plan_erasure` finds the person and everything to change without changing anything (the dry
run prints it); `erase` carries the plan out:

1. the person: their entity id (`--entity`), or every entity whose personal column holds the
   keyed pseudonym of a value (`--personal`, e.g. an email); then their event ids from raw;
2. tables: every table an asset downstream of the raw assets names (Dagster's own asset graph),
   and any other warehouse table with the entity or an event-id column, loses the person's rows,
   in one transaction; rejected rows go too when their raw line holds the entity or an event id;
3. files: landing, archive and quarantine copies of every landing area and the annotation
   batches are rewritten without the person's lines (atomically, owner-only; archive copies are
   renamed to their new checksum);
4. what aggregated over them is made again for the days concerned: every daily asset downstream
   of the raw assets (the raw ones first, which records the rewritten files' new checksums, so
   the file sensors do not take them for changed files), then the unpartitioned reports; never
   the training set or the model, which the retraining policy decides on;
5. model versions whose training, validation or test windows held the person are marked on
   their card (`erasures`), and the retraining policy's `erased_since_training` condition
   retrains the one in use.

Everything is counted per table and per file; counts only, never a value, go to the audit log.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from ml_assets.governance.files import (
    file_root,
    files_under,
    models_folder,
    remove,
    rename,
    rewrite,
)
from ml_assets.names import (
    ANNOTATION_ID_COLUMN,
    LandingArea,
    asset_key,
    landing_areas,
)
from ml_assets.settings import governance_dir
from ml_assets.spec import DatasetSpec
from ml_assets.transforms.privacy import check_key, pseudonym
from ml_assets.transforms.sql import quote_ident

EVENT_ID_COLUMNS = ("event_id",)
# made again by the retraining policy only, never by an erasure
POLICY_ASSETS = ("training_set", "model")
# folders of the data folder whose files are handled on their own (or hold no event rows)
OWN_FOLDERS = {"dagster_home", "models", "reports", "governance", "backups", "annotation"}


class ErasureError(ValueError):
    pass


@dataclass
class ErasurePlan:
    entity_ids: list[str]
    event_ids: list[str]
    tables: dict[str, int] = field(default_factory=dict)  # table -> rows to delete
    files: dict[str, int] = field(default_factory=dict)  # file -> lines to remove
    days: list[date] = field(default_factory=list)  # partitions to make again
    models: list[str] = field(default_factory=list)  # versions whose data held the person
    unnamed_tables: list[str] = field(default_factory=list)  # tables no asset names

    def summary(self) -> dict:
        return {
            "entities": len(self.entity_ids),
            "events": len(self.event_ids),
            "rows": sum(self.tables.values()),
            "tables": {t: n for t, n in sorted(self.tables.items()) if n},
            "lines": sum(self.files.values()),
            "files": len([f for f, n in self.files.items() if n]),
            "days": len(self.days),
            "models_marked": len(self.models),
        }


# --- who ---------------------------------------------------------------------------------------


def find_person(
    warehouse,
    spec: DatasetSpec,
    raw_table: str,
    entity: str | None,
    personal: str | None,
    key: str | None,
) -> tuple[list[str], list[str]]:
    """(entity ids, event ids) of the person named by an entity id or a personal value."""
    id_col, entity_col = spec.id_column, spec.entity_column
    if entity is not None:
        if entity_col is None:
            raise ErasureError(
                f"the spec {spec.name!r} has no entity column: name the person with --personal"
            )
        entities = [entity]
        where, params = f"{quote_ident(entity_col)} = ?", [entity]
    else:
        if not spec.personal_columns:
            raise ErasureError(
                f"the spec {spec.name!r} has no personal column to look a value up in"
            )
        alias = pseudonym(personal, check_key(key))
        where = " OR ".join(f"{quote_ident(c)} = ?" for c in spec.personal_columns)
        params = [alias] * len(spec.personal_columns)
        entities = []
        if entity_col is not None:
            entities = [
                r[0]
                for r in warehouse.read(
                    f"SELECT DISTINCT CAST({quote_ident(entity_col)} AS VARCHAR) AS v FROM {raw_table} WHERE {where}",
                    params,
                ).rows()
            ]
            if entities:
                where = f"CAST({quote_ident(entity_col)} AS VARCHAR) IN (SELECT unnest(?))"
                params = [entities]
    events = [
        r[0]
        for r in warehouse.read(
            f"SELECT DISTINCT CAST({quote_ident(id_col)} AS VARCHAR) AS v FROM {raw_table} WHERE {where}",
            params,
        ).rows()
    ]
    return entities, events


# --- where -------------------------------------------------------------------------------------


def _match(table_columns: list[str], spec: DatasetSpec) -> tuple[str, str] | None:
    """(column, 'entity' | 'event') a table is searched by, or None."""
    if spec.entity_column and spec.entity_column in table_columns:
        return spec.entity_column, "entity"
    for c in (spec.id_column, spec.labels.event_id_column, *EVENT_ID_COLUMNS):
        if c is None:
            continue
        if c in table_columns:
            return c, "event"
    if "raw_line" in table_columns:
        return "raw_line", "line"
    return None


def _used(sql: str, params: dict) -> dict:
    """The named parameters the SQL uses (DuckDB refuses the others)."""
    return {k: v for k, v in params.items() if f"${k}" in sql}


def _where(column: str, kind: str, delimiter: str) -> str:
    if kind == "line":
        # a rejected line is stored with its personal fields pseudonymized: the entity and event
        # ids are in it as they came
        return (
            f"list_has_any(string_split(coalesce(raw_line, ''), '{delimiter}'), "
            "list_concat($entities, $events))"
        )
    values = "$entities" if kind == "entity" else "$events"
    return f"CAST({quote_ident(column)} AS VARCHAR) IN (SELECT unnest({values}))"


def tables_of_assets(defs, raw_keys: list) -> dict[str, list[str]]:
    """{asset: tables it names} for the raw assets and every asset downstream of them, from the
    asset graph (each asset names its tables in its definition metadata)."""
    import dagster as dg

    graph = defs.resolve_asset_graph()
    keys = dg.AssetSelection.assets(*raw_keys).downstream().resolve(graph)
    out = {}
    for key in sorted(keys, key=lambda k: k.to_user_string()):
        spec = graph.get(key)
        names = []
        for name, value in (spec.metadata or {}).items():
            text = getattr(value, "value", value)
            if (name == "table" or name.endswith("_table")) and isinstance(text, str):
                names.append(text)
        out[key.to_user_string()] = names
    return out


# --- the files ---------------------------------------------------------------------------------


def _area_files(root, area: LandingArea) -> list:
    """A landing area's landing, archive and quarantine files (not the quarantine sidecars)."""
    found = []
    for folder in (
        root / area.landing.path,
        root / "archive" / area.dataset,
        root / "quarantine" / area.dataset,
    ):
        found += [p for p in files_under(folder) if not p.name.endswith(".reason.json")]
    return found


def _area_match(area: LandingArea, spec: DatasetSpec) -> dict[str, str]:
    """{column: 'entity' | 'event'} by which a landing area's lines belong to a person."""
    names = {c.name for c in area.columns}
    out = {}
    if spec.entity_column in names:
        out[spec.entity_column] = "entity"
    for c in (spec.id_column, spec.labels.event_id_column, ANNOTATION_ID_COLUMN):
        if c is not None and c in names:
            out.setdefault(c, "event")
    return out


def _records(text: str) -> list[str]:
    """The CSV records of a text, each with its line ends: physical lines joined while a quoted
    value is open (ingestion reads a quoted newline as part of the value)."""
    records, current, quotes = [], [], 0
    for line in text.splitlines(keepends=True):
        current.append(line)
        quotes += line.count('"')
        if quotes % 2 == 0:
            records.append("".join(current))
            current, quotes = [], 0
    if current:
        records.append("".join(current))
    return records


def _drop_lines(
    text: str, delimiter: str, match: dict[str, str], values: dict[str, set[str]]
) -> tuple[str, int]:
    """The CSV text without the person's lines (a line of the wrong shape goes if any of its
    fields is theirs), and how many lines went."""
    lines = _records(text)
    if not lines:
        return text, 0
    header = next(csv.reader([lines[0].lstrip("\ufeff")], delimiter=delimiter), [])
    header = [h.strip() for h in header]
    at = {header.index(c): kind for c, kind in match.items() if c in header}
    anything = values["entity"] | values["event"]
    kept, dropped = [lines[0]], 0
    for line in lines[1:]:
        try:
            fields = next(csv.reader(io.StringIO(line), delimiter=delimiter), [])
        except csv.Error:
            fields = line.split(delimiter)
        if len(fields) == len(header):
            theirs = any(fields[i].strip() in values[kind] for i, kind in at.items())
        else:
            theirs = any(f.strip() in anything for f in fields)
        if theirs:
            dropped += 1
        else:
            kept.append(line)
    return "".join(kept), dropped


def _rename_archive_copy(path, data: bytes) -> None:
    """An archive copy is named <sha16>_<name>: after a rewrite it takes its new checksum."""
    prefix, _, rest = path.name.partition("_")
    if len(prefix) != 16 or not rest:
        return
    target = path.with_name(f"{hashlib.sha256(data).hexdigest()[:16]}_{rest}")
    if str(target) == str(path):
        return
    if target.exists():
        remove(path)  # the same bytes are archived already
    else:
        rename(path, target)


def _batch_json(text: str, events: set[str]) -> tuple[str, int]:
    tasks = json.loads(text)
    kept = [
        t
        for t in tasks
        if str((t.get("meta") or {}).get("event_id")) not in events
        and str((t.get("data") or {}).get("event_id")) not in events
    ]
    return json.dumps(kept, indent=1, default=str), len(tasks) - len(kept)


def find_in_files(root, spec: DatasetSpec, value: str) -> tuple[list[str], list[str]]:
    """(entity ids, event ids) of the lines of the events' landing, archive and quarantine
    files whose personal columns hold `value` in clear (the only places a clear value lives)."""
    area = landing_areas(spec)[0]
    entities, events = set(), set()
    for path in _area_files(root, area):
        try:
            text = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if value not in text:
            continue
        reader = csv.DictReader(io.StringIO(text), delimiter=area.landing.delimiter)
        try:
            for row in reader:
                if any((row.get(c) or "").strip() == value for c in spec.personal_columns):
                    if spec.entity_column and row.get(spec.entity_column):
                        entities.add(row[spec.entity_column])
                    if row.get(spec.id_column):
                        events.add(row[spec.id_column])
        except csv.Error:
            continue
    return sorted(entities), sorted(events)


def file_changes(
    root, spec: DatasetSpec, entities: list[str], events: list[str], apply: bool
) -> dict[str, int]:
    """{file: lines (or tasks) of the person}; with `apply`, the files are rewritten without them.
    `root`: the data folder, or the object store's prefix (cluster profile)."""
    values = {"entity": set(entities), "event": set(events)}
    out: dict[str, int] = {}
    for area in landing_areas(spec):
        match = _area_match(area, spec)
        if not match:
            continue
        for path in _area_files(root, area):
            try:
                text = path.read_bytes().decode("utf-8")
            except (OSError, UnicodeDecodeError):
                continue  # not a file we can read as text: quarantined as such
            new, dropped = _drop_lines(text, area.landing.delimiter, match, values)
            if dropped:
                out[str(path.relative_to(root))] = dropped
                if apply:
                    data = new.encode("utf-8")
                    rewrite(path, data)
                    if "archive" in path.relative_to(root).parts[:1]:
                        _rename_archive_copy(path, data)
    # any other CSV of the data folder that names events or entities (exports, the example's
    # generator truth): every file, not only those the pipeline reads
    seen = {str(p) for area in landing_areas(spec) for p in _area_files(root, area)}
    id_columns = {spec.id_column: "event", ANNOTATION_ID_COLUMN: "event"}
    if spec.entity_column:
        id_columns[spec.entity_column] = "entity"
    for path in files_under(root, "*.csv"):
        parts = path.relative_to(root).parts
        if str(path) in seen or parts[0] in OWN_FOLDERS:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        new, dropped = _drop_lines(text, ",", id_columns, values)
        if dropped:
            out[str(path.relative_to(root))] = dropped
            if apply:
                rewrite(path, new.encode("utf-8"))
    for path in files_under(root / spec.annotation.batch_folder):
        if path.suffix == ".json":
            new, dropped = _batch_json(path.read_text(encoding="utf-8"), values["event"])
        elif path.suffix == ".csv":
            new, dropped = _drop_lines(
                path.read_text(encoding="utf-8"), ",", {ANNOTATION_ID_COLUMN: "event"}, values
            )
        else:
            continue
        if dropped:
            out[str(path.relative_to(root))] = dropped
            if apply:
                rewrite(path, new.encode("utf-8"))
    return out


# --- the plan and its execution ----------------------------------------------------------------


def _days_of(warehouse, spec: DatasetSpec, raw_table: str, events: list[str]) -> list[date]:
    if not events:
        return []
    rows = warehouse.read(
        f"SELECT DISTINCT CAST({quote_ident(spec.event_time_column)} AS DATE) AS d FROM {raw_table} "
        f"WHERE CAST({quote_ident(spec.id_column)} AS VARCHAR) IN (SELECT unnest(?)) ORDER BY 1",
        [events],
    ).rows()
    return [r[0] for r in rows]


def _models_with(models_dir: Path, days: list[date]) -> list[str]:
    """Versions whose train .. test windows include one of `days`."""
    from ml_assets.storage.registry import list_versions

    out = []
    if not models_dir.is_dir() or not days:
        return out
    for card in list_versions(models_dir):
        bounds = []
        for key in ("train_window", "validation_window", "test_window"):
            window = card.get(key)
            if isinstance(window, str) and " .. " in window:
                first, last = window.split(" .. ")
                bounds.append((date.fromisoformat(first), date.fromisoformat(last)))
        if any(first <= d <= last for first, last in bounds for d in days):
            out.append(card["version"])
    return out


def _count_tables(warehouse, spec: DatasetSpec, defs, plan: ErasurePlan) -> None:
    """The rows of the person in every table (named by an asset, or holding their columns)."""
    named = {
        table
        for tables in tables_of_assets(
            defs, [asset_key(spec, a.asset_name) for a in landing_areas(spec)]
        ).values()
        for table in tables
    }
    params = {"entities": plan.entity_ids, "events": plan.event_ids}
    for table, cols in sorted(warehouse.columns().items()):
        how = _match(cols, spec)
        if how is None:
            continue
        where = _where(*how, spec.landing.delimiter)
        count = warehouse.read(
            f"SELECT count(*) AS n FROM {table} WHERE {where}", _used(where, params)
        ).item()
        plan.tables[table] = count
        if table not in named and count:
            plan.unnamed_tables.append(table)


def plan_erasure(
    data_dir: Path,
    spec: DatasetSpec,
    defs,
    entity: str | None = None,
    personal: str | None = None,
    key: str | None = None,
) -> ErasurePlan:
    """What an erasure would change; changes nothing."""
    from ml_assets.names import Tables

    if (entity is None) == (personal is None):
        raise ErasureError("name the person with exactly one of --entity or --personal")
    t = Tables(spec)
    warehouse = warehouse_of(data_dir, defs)
    if not warehouse.exists(t.raw):
        raise ErasureError(f"no {t.raw} in {warehouse.describe()}: nothing was ingested yet")
    entities, events = find_person(warehouse, spec, t.raw, entity, personal, key)
    if not entities and not events and personal is not None:
        # retention may have removed the person's rows while archive, quarantine or landing
        # copies still hold them in clear: the files name their entity and events
        entities, events = find_in_files(file_root(data_dir, defs), spec, personal)
    if not entities and not events:
        raise ErasureError(
            "no such person in the stored data (an entity id is matched exactly; a personal "
            "value is matched through its pseudonym with ML_ASSETS_PSEUDONYM_KEY)"
        )
    plan = ErasurePlan(entities, events)
    _count_tables(warehouse, spec, defs, plan)
    plan.days = _days_of(warehouse, spec, t.raw, events)
    plan.files = file_changes(file_root(data_dir, defs), spec, entities, events, apply=False)
    plan.days = sorted(set(plan.days) | _file_days(plan.files, spec))
    plan.models = _models_with(models_folder(data_dir, spec, defs), plan.days)
    return plan


def _file_days(files: dict[str, int], spec: DatasetSpec) -> set[date]:
    """Days named by the landing files changed (label files are partitioned by report day)."""
    import re

    out = set()
    for name in files:
        if m := re.search(r"(\d{4}-\d{2}-\d{2})", Path(name).name):
            day = date.fromisoformat(m.group(1))
            if day >= spec.partitions.start and (
                spec.partitions.end is None or day < spec.partitions.end
            ):
                out.add(day)
    return out


def warehouse_of(data_dir: Path, defs):
    """The code location's warehouse resource (DuckDB file or Delta tables); without
    definitions, the embedded DuckDB file of `data_dir`."""
    if defs is not None:
        return defs.resources["warehouse"]
    from ml_assets.storage.assembly import embedded_warehouse

    return embedded_warehouse(data_dir)


def delete_rows(warehouse, spec: DatasetSpec, plan: ErasurePlan) -> dict[str, int]:
    """Delete the person's rows from every table of the plan (one transaction on the DuckDB
    file; one commit per table on Delta tables, redone by `erase --resume` if interrupted)."""
    columns = warehouse.columns()
    params = {"entities": plan.entity_ids, "events": plan.event_ids}
    deletes = {}
    for table in plan.tables:
        where = _where(*_match(columns[table], spec), spec.landing.delimiter)
        deletes[table] = (where, _used(where, params))
    return warehouse.delete_where(deletes)


def mark_models(models_dir, versions: list[str], rows: int, at: str) -> None:
    from ml_assets.storage.registry import load_card, version_folder

    for version in versions:
        card = load_card(models_dir, version)
        card.setdefault("erasures", []).append({"at": at, "rows_in_windows": rows})
        rewrite(
            version_folder(models_dir, version) / "model.json",
            json.dumps(card, indent=2, default=str).encode(),
        )


def consecutive(days: list[date]) -> list[tuple[date, date]]:
    ranges: list[list[date]] = []
    for d in sorted(days):
        if ranges and d == ranges[-1][1] + timedelta(days=1):
            ranges[-1][1] = d
        else:
            ranges.append([d, d])
    return [(a, b) for a, b in ranges]


def rebuildable_days(warehouse, spec: DatasetSpec, days: list[date]) -> tuple[list, list]:
    """(days to make again from their landing files, days to make again from raw only).

    A day raw no longer holds (retention removed it) is made again not at all: ingesting it
    from landing would bring back the other people's rows that retention deleted. A day whose
    landing files are gone (retention keeps landing shorter) keeps its raw rows, the person's
    deleted in place, and the assets after raw are made again from them."""
    if not days:
        return [], []
    area = landing_areas(spec)[0]
    logged = warehouse.read_if_exists(
        area.files_table,
        f"SELECT CAST(day AS DATE) AS day, file FROM {area.files_table} "
        "WHERE day >= $first AND day < $last + INTERVAL 1 DAY",
        {"first": min(days), "last": max(days)},
    )
    files_by_day: dict[date, list[str]] = {}
    for day, file in logged.iter_rows() if logged is not None else []:
        files_by_day.setdefault(day, []).append(file)
    from_landing, from_raw = [], []
    for day in sorted(set(days)):
        if day not in files_by_day:
            continue  # not in raw any more
        local = [f for f in files_by_day[day] if "://" not in f]
        (from_landing if all(Path(f).exists() for f in local) else from_raw).append(day)
    return from_landing, from_raw


# what the command-line's runs log: each step's failure is printed by the command itself
QUIET_RUN = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def rematerialize(
    defs, instance, spec: DatasetSpec, days: list[date], warehouse=None
) -> tuple[int, int]:
    """Every daily asset downstream of the raw assets for `days` (consecutive days in one run),
    then the unpartitioned assets that aggregate them, but the training set and the model.
    Days are split by `rebuildable_days`. A failed run raises ErasureError naming the step,
    its message and the way on (`--resume` once fixed, or `--abandon`)."""
    import dagster as dg
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from ml_assets.metadata import run_notes

    graph = defs.resolve_asset_graph()
    raw = [asset_key(spec, a.asset_name) for a in landing_areas(spec)]
    downstream = dg.AssetSelection.assets(*raw).downstream().resolve(graph)
    executable = {k for k in downstream if graph.get(k).is_materializable}
    daily = sorted(k for k in executable if graph.get(k).is_partitioned)
    policy = {asset_key(spec, name) for name in POLICY_ASSETS}
    later = sorted(k for k in executable if not graph.get(k).is_partitioned and k not in policy)
    assets = [*defs.assets, *(defs.asset_checks or [])]
    from_landing, from_raw = rebuildable_days(warehouse or warehouse_of(None, defs), spec, days)
    after_raw = sorted(set(daily) - set(raw))

    def run(selection, tags) -> None:
        result = dg.materialize(
            assets,
            selection=dg.AssetSelection.assets(*selection),
            instance=instance,
            resources=defs.resources,
            tags={**tags, "ml_assets/erasure": "true"},
            run_config=QUIET_RUN,
            raise_on_error=False,
        )
        if not result.success:
            notes = "; ".join(n.strip() for n in run_notes(instance, result) if "FAILED" in n)
            raise ErasureError(
                f"the person is gone from every table and file, but making their days again "
                f"failed (run {result.run_id}): {notes or 'see the run in the UI'}. Fix the "
                "cause, then finish with `python -m ml_assets.governance erase --resume`, or "
                "leave those days as they are with `erase --abandon`"
            )

    runs = 0
    for selection, chosen in ((daily, from_landing), (after_raw, from_raw)):
        for first, last in consecutive(chosen):
            run(
                selection,
                {
                    ASSET_PARTITION_RANGE_START_TAG: first.isoformat(),
                    ASSET_PARTITION_RANGE_END_TAG: last.isoformat(),
                },
            )
            runs += 1
    if later and days:
        run(later, {})
        runs += 1
    # (runs, days made again): a day never ingested, or one retention took from raw, is not
    return runs, len(from_landing) + len(from_raw)


def pending_path(data_dir: Path) -> Path:
    return governance_dir(data_dir) / "erasure_pending.json"


def pending(data_dir: Path) -> dict | None:
    """The erasure that stopped half-way, if any: its entity and event ids and its days. Kept in
    a file of the owner's only under governance/ (not in backups) until the erasure has ended,
    so that `erase --resume` can do every step again: the files, the rows, the days."""
    path = pending_path(data_dir)
    return json.loads(path.read_text()) if path.exists() else None


LEDGER = "erasure_ledger.jsonl"


def ledger_path(data_dir: Path) -> Path:
    """The erasure ledger: one line per erasure, the keyed pseudonyms of the entity and event
    ids it erased (never an id or value in clear). Under governance/, which no snapshot holds,
    so a restore keeps it and re-applies what was erased after the snapshot."""
    return governance_dir(data_dir) / LEDGER


def record_in_ledger(data_dir: Path, plan: ErasurePlan, at: str) -> None:
    from ml_assets.settings import PSEUDONYM_KEY_ENV_VAR

    if not os.environ.get(PSEUDONYM_KEY_ENV_VAR):
        return  # no key, no pseudonyms: nothing may be written (a run without a key writes none)
    key = check_key(os.environ.get(PSEUDONYM_KEY_ENV_VAR))
    entry = {
        "at": at,
        "entities": sorted(pseudonym(e, key) for e in plan.entity_ids),
        "events": sorted(pseudonym(e, key) for e in plan.event_ids),
    }
    path = ledger_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def ledger_since(data_dir: Path, since: str) -> list[dict]:
    """The ledger's erasures made at or after `since` (ISO time, UTC)."""
    path = ledger_path(data_dir)
    if not path.exists():
        return []
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in entries if e["at"] >= since]


def people_in_ledger(warehouse, spec: DatasetSpec, entries: list[dict], key: str) -> list[str]:
    """The entity ids of the restored raw table whose pseudonyms the ledger names."""
    from ml_assets.names import Tables

    wanted = {p for e in entries for p in e["entities"]}
    raw = Tables(spec).raw
    if not wanted or not spec.entity_column or not warehouse.exists(raw):
        return []
    column = quote_ident(spec.entity_column)
    ids = warehouse.read(f"SELECT DISTINCT CAST({column} AS VARCHAR) AS v FROM {raw}")["v"]
    key_bytes = check_key(key)
    return sorted(v for v in ids.drop_nulls().to_list() if pseudonym(v, key_bytes) in wanted)


def reapply_erasures(data_dir: Path, spec: DatasetSpec, defs, instance, since: str) -> dict:
    """After a restore: every erasure the ledger holds from `since` on, carried out again on
    the restored data. Returns {erasures, people, rows}."""
    from ml_assets.settings import PSEUDONYM_KEY_ENV_VAR

    entries = ledger_since(data_dir, since)
    if not entries:
        return {"erasures": 0, "people": 0, "rows": 0}
    key = os.environ.get(PSEUDONYM_KEY_ENV_VAR)
    people = people_in_ledger(warehouse_of(data_dir, defs), spec, entries, key)
    rows = 0
    for entity in people:
        plan = plan_erasure(data_dir, spec, defs, entity=entity, key=key)
        rows += erase(data_dir, spec, defs, instance, plan)["rows"]
    return {"erasures": len(entries), "people": len(people), "rows": rows}


def abandon(data_dir: Path) -> dict | None:
    """Forget the erasure that stopped half-way: its rows and file lines are already gone; the
    days it had still to make again stay as they are. Returns what was pending (counts)."""
    found = pending(data_dir)
    if found is None:
        return None
    pending_path(data_dir).unlink()
    return {"days_left_as_they_are": len(found["days"]), "entities": len(found["entity_ids"])}


def pending_days(data_dir: Path) -> list[date]:
    found = pending(data_dir)
    return [date.fromisoformat(d) for d in found["days"]] if found else []


def resumed_plan(data_dir: Path, spec: DatasetSpec, defs) -> ErasurePlan | None:
    """The plan of the erasure that stopped, counted again on the data as it is now."""
    found = pending(data_dir)
    if found is None:
        return None
    plan = ErasurePlan(found["entity_ids"], found["event_ids"])
    _count_tables(warehouse_of(data_dir, defs), spec, defs, plan)
    plan.days = [date.fromisoformat(d) for d in found["days"]]
    plan.files = file_changes(
        file_root(data_dir, defs), spec, plan.entity_ids, plan.event_ids, apply=False
    )
    plan.models = found.get("models", [])
    return plan


def erase(data_dir: Path, spec: DatasetSpec, defs, instance, plan: ErasurePlan) -> dict:
    """Carry out a plan; returns what was done, as counts. Who and which days are written down
    before anything changes and cleared once all is done, so an erasure that stops half-way (a
    failed run, a killed process) is finished by `erase --resume`."""
    data_dir = Path(data_dir)
    at = datetime.now(UTC).isoformat(timespec="seconds")
    earlier = pending(data_dir)
    if earlier is not None:
        # an erasure that stopped half-way never blocks the next one: both are finished here
        plan.entity_ids = sorted({*plan.entity_ids, *earlier["entity_ids"]})
        plan.event_ids = sorted({*plan.event_ids, *earlier["event_ids"]})
        plan.days = [*plan.days, *(date.fromisoformat(d) for d in earlier["days"])]
        plan.models = sorted({*plan.models, *earlier.get("models", [])})
    days = sorted(set(plan.days))
    record = pending_path(data_dir)
    record.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(record, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(
            {
                "since": at,
                "days": [d.isoformat() for d in days],
                "entity_ids": plan.entity_ids,
                "event_ids": plan.event_ids,
                "models": plan.models,
            },
            f,
        )
    # the sources first: once no file holds the person, every later step can be redone from them
    files = file_changes(
        file_root(data_dir, defs), spec, plan.entity_ids, plan.event_ids, apply=True
    )
    warehouse = warehouse_of(data_dir, defs)
    rows = delete_rows(warehouse, spec, plan)
    mark_models(
        models_folder(data_dir, spec, defs),
        plan.models,
        sum(rows.values()),
        at,
    )
    runs, made = rematerialize(defs, instance, spec, days, warehouse)
    # deleted rows stay in the DuckDB file's free blocks, and in Delta's replaced files and
    # log statistics, until purged
    warehouse.purge_deleted([t for t, n in rows.items() if n])
    record_in_ledger(data_dir, plan, at)
    record.unlink()
    return {
        "rows": sum(rows.values()),
        "tables": {t: n for t, n in sorted(rows.items()) if n},
        "lines": sum(files.values()),
        "files": len(files),
        "days_rematerialized": made,
        "runs": runs,
        "models_marked": len(plan.models),
    }
