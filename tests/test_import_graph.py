"""The code's layers import one way only: no module imports from a layer above its own.

    kidjamo/cli  ->  dags, plugins, ingestion service and simulator, care-team app  ->  transforms/pipeline
      ->  ingestion/to_raw (auth, landing writer), transforms layers, transforms/alerts, expectations
      ->  kidjamo core (kidjamo/lake, kidjamo/warehouse, settings, notify)

Every import counts, including those inside functions (a late import is still a dependency); only
imports under ``if TYPE_CHECKING:`` (never run) do not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("kidjamo", "ingestion", "transforms", "expectations", "plugins", "dags", "care")

#: Module-name prefixes and their layer (the longest matching prefix decides), lowest first.
LAYERS = {
    "kidjamo.settings": 0, "kidjamo.lake": 0, "kidjamo.warehouse": 0, "kidjamo.notify": 0, "kidjamo": 0,
    "ingestion.to_raw": 1, "ingestion.auth": 1, "ingestion.landing_writer": 1, "ingestion": 1,
    "transforms": 1, "expectations": 1,
    "transforms.pipeline": 2,
    "dags": 3, "plugins": 3, "ingestion.service": 3, "ingestion.simulator": 3, "care": 3,
    "kidjamo.cli": 4,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    matches = [prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".")]
    return LAYERS[max(matches, key=len)]


def imported_modules(path: Path) -> set[str]:
    """Every project module ``path`` imports, at module level or inside a function (not for type hints only)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    type_only = {id(node) for block in ast.walk(tree)
                 if isinstance(block, ast.If) and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
                 for node in ast.walk(block)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from transforms import rights`` imports transforms.rights: count the deepest name that is a module.
            found |= {f"{node.module}.{alias.name}" if (ROOT / node.module.replace(".", "/") / alias.name).with_suffix(".py").exists()
                      or (ROOT / node.module.replace(".", "/") / alias.name).is_dir() else node.module
                      for alias in node.names}
    return {name for name in found if name.split(".")[0] in PACKAGES}


def project_files() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def import_edges() -> list[tuple[str, str]]:
    return [(module_name(path), target) for path in project_files() for target in sorted(imported_modules(path))]


def test_no_module_imports_from_a_layer_above_its_own():
    upward = [f"{source} (layer {layer_of(source)}) imports {target} (layer {layer_of(target)})"
              for source, target in import_edges() if layer_of(target) > layer_of(source)]
    assert upward == []


def test_no_two_modules_import_each_other():
    edges = set(import_edges())
    mutual = sorted(f"{a} <-> {b}" for a, b in edges if (b, a) in edges and a < b)
    assert mutual == []


@pytest.mark.parametrize("source, target", [("kidjamo.lake.storage", "transforms.bronze"),
                                            ("transforms.silver", "transforms.pipeline"),
                                            ("transforms.pipeline", "kidjamo.cli.commands.run")])
def test_the_layer_check_catches_an_upward_import(source, target):
    assert layer_of(target) > layer_of(source)


def test_every_project_module_is_in_a_known_layer():
    assert all(isinstance(layer_of(module_name(path)), int) for path in project_files())
