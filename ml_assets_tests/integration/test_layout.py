"""The layering the code relies on: stages import shared layers only, transforms no Dagster."""

from __future__ import annotations

import ast
from pathlib import Path

import ml_assets

PACKAGE = Path(ml_assets.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def stage_imports_of_other_stages() -> list[str]:
    offences = []
    for path in sorted((PACKAGE / "defs").rglob("*.py")):
        stage = path.relative_to(PACKAGE / "defs").parts[0]
        for module in imported_modules(path):
            parts = module.split(".")
            if parts[:2] == ["ml_assets", "defs"] and len(parts) > 2 and parts[2] != stage:
                offences.append(f"{path.relative_to(PACKAGE)} imports {module}")
    return sorted(set(offences))


def test_no_stage_imports_another_stage():
    assert stage_imports_of_other_stages() == []


def test_the_import_walk_finds_a_stage_to_stage_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from ml_assets.defs.labels.assets import build\n")
    assert "ml_assets.defs.labels.assets" in imported_modules(probe)


def test_transforms_do_not_import_dagster():
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in sorted((PACKAGE / "transforms").rglob("*.py"))
        if any(m == "dagster" or m.startswith("dagster.") for m in imported_modules(path))
    ]
    assert offenders == []


MAX_ASSET_LINES = 60


def asset_function_lengths() -> dict[str, int]:
    """Lines of every function decorated with an asset decorator under defs/."""
    lengths = {}
    for path in sorted((PACKAGE / "defs").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.FunctionDef):
                continue
            for decorator in node.decorator_list:
                call = decorator.func if isinstance(decorator, ast.Call) else decorator
                name = call.attr if isinstance(call, ast.Attribute) else getattr(call, "id", "")
                if name in {"asset", "multi_asset"}:
                    where = f"{path.relative_to(PACKAGE)}::{node.name}"
                    lengths[where] = node.end_lineno - node.lineno + 1
    return lengths


def test_every_asset_body_reads_calls_checks_writes_and_returns_in_sixty_lines():
    lengths = asset_function_lengths()
    assert len(lengths) >= 14  # every stage's assets were found (the raw assets share one)
    assert {k: v for k, v in lengths.items() if v > MAX_ASSET_LINES} == {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def storage_imports() -> dict[str, set[str]]:
    """{storage module: the ml_assets modules it imports}, function-level imports included."""
    return {
        module_name(path): {m for m in imported_modules(path) if m.startswith("ml_assets.")}
        for path in sorted((PACKAGE / "storage").rglob("*.py"))
    }


# what storage may build on: the spec, settings, names and the Dagster-free transforms
BELOW_STORAGE = (
    "ml_assets.storage",
    "ml_assets.spec",
    "ml_assets.settings",
    "ml_assets.names",
    "ml_assets.transforms",
)


def test_storage_imports_no_layer_above_it():
    above = {
        module: sorted(m for m in found if not m.startswith(BELOW_STORAGE))
        for module, found in storage_imports().items()
    }
    assert len(above) >= 10  # every backend module was read
    assert {k: v for k, v in above.items() if v} == {}


def test_only_the_assembly_names_a_backend_outside_storage():
    backends = (
        "ml_assets.storage.duckdb_file",
        "ml_assets.storage.delta_lake",
        "ml_assets.storage.object_store",
        "ml_assets.storage.local_files",
    )
    offenders = sorted(
        f"{path.relative_to(PACKAGE)} imports {m}"
        for path in PACKAGE.rglob("*.py")
        if "storage" not in path.relative_to(PACKAGE).parts
        for m in imported_modules(path)
        if m.startswith(backends)
    )
    assert offenders == []
