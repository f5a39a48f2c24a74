"""Development tools (backend/devtools/) and test modules stay out of production: production
settings do not install the sandbox, and no production module or benchmark imports either."""

from pathlib import Path

from django.conf import settings

from config import settings as production_settings
from devtools.import_graph import imported_modules, python_files

REPO = Path(__file__).resolve().parents[3]


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
