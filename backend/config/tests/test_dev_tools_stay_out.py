"""Development tools (backend/devtools/) and test modules stay out of production: production
settings do not install the sandbox, and no production module or benchmark imports either."""

import ast
from pathlib import Path

from django.conf import settings

from config import settings as production_settings

REPO = Path(__file__).resolve().parents[3]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def python_files(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.rglob("*.py")) if "tests" not in p.relative_to(REPO).parts]


def is_test_module(name: str) -> bool:
    return ".tests." in f".{name}."


def test_production_settings_do_not_install_the_sandbox():
    assert "devtools.evolution_sandbox" not in production_settings.INSTALLED_APPS
    assert "devtools.evolution_sandbox" in settings.INSTALLED_APPS  # the tests' settings do


def test_no_production_module_imports_a_dev_tool_or_a_test_module():
    offenders = {
        f"{path.relative_to(REPO)}: {name}"
        for path in python_files(REPO / "backend" / "apps") + python_files(REPO / "backend" / "config")
        for name in imported_modules(path)
        if name.split(".")[0] == "devtools" or is_test_module(name)
    }
    assert offenders == set()


def test_no_benchmark_imports_the_sandbox_or_a_test_module():
    """Benchmarks start the sandbox as a process (devtools.sandbox_process), as the tests do."""
    offenders = {
        f"{path.relative_to(REPO)}: {name}"
        for path in python_files(REPO / "bench")
        for name in imported_modules(path)
        if name.startswith("devtools.evolution_sandbox") or is_test_module(name)
    }
    assert offenders == set()
