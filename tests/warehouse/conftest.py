"""Fixtures of the warehouse tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from warehouse.support import REGISTRY_LINES, write_registry


@pytest.fixture
def registry_csv(tmp_path: Path) -> Path:
    return write_registry(tmp_path / "registry.csv", REGISTRY_LINES)


@pytest.fixture
def registered_url(fresh_database_url: str, registry_csv: Path) -> str:
    """A fresh database with the registry of REGISTRY_LINES imported."""
    from transforms.registry import import_registry

    import_registry(registry_csv, fresh_database_url, pseudonym_key="test-key")
    return fresh_database_url
