"""A second OS process for the cross-process circuit-breaker test.

    python breaker_worker.py '<instance JSON>'

Sets Django up (settings from the environment, like any worker), builds the same
WhatsAppInstance in memory (no database row needed: the breaker is keyed by the instance id),
prints {"ready": true}, then answers one JSON line per command read from stdin:
    {"op": "send", "phone": ..., "text": ...} → {"ok": true, "id": ...} | {"ok": false, "error": ..., "code": ...}
    {"op": "state"}                           → {"state": "closed" | "open" | "half_open"}
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # backend/
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from apps.common.services.evolution_api_service import EvolutionAPIService, ProviderError  # noqa: E402 - after django.setup()
from apps.connections.models import WhatsAppInstance  # noqa: E402 - after django.setup()


def main() -> int:
    spec = json.loads(sys.argv[1])
    service = EvolutionAPIService(WhatsAppInstance(**spec))
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "send":
            try:
                result = service.send(command["phone"], command["text"], max_retries=0)
                answer = {"ok": True, "id": result.provider_message_id}
            except ProviderError as error:
                answer = {"ok": False, "error": type(error).__name__, "code": error.code}
        elif command["op"] == "state":
            answer = {"state": service.breaker.state()}
        else:
            answer = {"error": f"unknown op {command['op']!r}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
