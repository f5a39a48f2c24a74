"""The benchmarks import the product inside their functions (after Django is set up for their own
database), so a moved module breaks them only when someone runs them. Every `from apps… import`
in bench/ must name a module and an attribute that exist."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[4] / "bench"


def product_imports() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted(BENCH.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("apps", "config"):
                found += [(path.name, node.module, alias.name) for alias in node.names]
            elif isinstance(node, ast.Import):
                found += [(path.name, alias.name, "") for alias in node.names if alias.name.startswith("apps.")]
    return found


def test_the_benchmarks_are_found():
    assert len(product_imports()) > 20


@pytest.mark.parametrize(("bench", "module", "name"), product_imports())
def test_each_product_import_of_a_benchmark_resolves(bench, module, name):
    imported = importlib.import_module(module)
    if name and name != "*" and not hasattr(imported, name):
        importlib.import_module(f"{module}.{name}")  # a submodule, or the attribute is missing
