"""Imports inside billing point one way: the consumer process (`rabbitmq`) is the top and
nothing imports it but its command; the broker (publisher, topology, messages) sits below the
services; the template language imports nothing else of billing."""

from pathlib import Path

from devtools.import_graph import imported_modules, python_files

BILLING = Path(__file__).resolve().parents[1]


def imports_from(folder: str, prefix: str) -> set[str]:
    return {
        f"{path.relative_to(BILLING)}: {name}"
        for path in python_files(BILLING / folder)
        for name in imported_modules(path)
        if name == prefix or name.startswith(f"{prefix}.")
    }


def test_only_the_consumer_command_imports_the_consumer_package():
    importers = {
        f"{path.relative_to(BILLING)}"
        for path in python_files(BILLING)
        if "rabbitmq" not in path.relative_to(BILLING).parts
        and any(name.startswith("apps.billing.rabbitmq") for name in imported_modules(path))
    }
    assert importers == {"management/commands/run_billing_consumer.py"}


def test_the_broker_imports_no_service_dispatch_or_consumer():
    for upper in ("apps.billing.services", "apps.billing.dispatch", "apps.billing.rabbitmq"):
        assert imports_from("broker", upper) == set()


def test_the_template_language_imports_nothing_else_of_billing():
    outside = {
        line
        for line in imports_from("templating", "apps.billing")
        if not line.split(": ")[1].startswith("apps.billing.templating")
    }
    assert outside == set()


def test_the_engine_does_not_import_the_sanitizer():
    """The sanitizer validates with the engine; the engine cleans values with text_cleaning."""
    engine = imported_modules(BILLING / "templating" / "engine.py")
    source = (BILLING / "templating" / "engine.py").read_text()
    assert "apps.billing.templating.sanitizer" not in engine and "from .sanitizer" not in source
