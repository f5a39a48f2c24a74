"""`python manage.py run_evolution_sandbox --host 127.0.0.1 --port 8081 [--instance demo:TOKEN]`

The same server as `python -m devtools.evolution_sandbox.server`; this entry point exists so the
local run can start everything through manage.py. It touches no database."""

from __future__ import annotations

import argparse

from django.core.management.base import BaseCommand, CommandError

from devtools.evolution_sandbox import server


class Command(BaseCommand):
    help = "Run the Evolution API sandbox (an in-memory fake WhatsApp provider) until Ctrl-C."
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        server.build_parser(parser)

    def handle(self, *args, **options) -> None:
        namespace = argparse.Namespace(
            **{
                key: options[key]
                for key in (
                    "host",
                    "port",
                    "api_key",
                    "instance",
                    "not_on_whatsapp",
                    "server_url",
                    "ready_file",
                    "log_level",
                )
            }
        )
        try:
            server.parse_instances(namespace.instance or [])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        try:
            server.serve(namespace, announce=lambda line: self.stdout.write(line))
        except OSError as exc:
            raise CommandError(f"cannot listen on {namespace.host}:{namespace.port}: {exc}") from exc
