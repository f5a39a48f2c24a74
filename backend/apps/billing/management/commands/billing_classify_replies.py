"""Classify replies from stdin, one message per line, one JSON object per line on stdout.

For support ("why was this reply taken as a payment?") and for regression corpora:

    printf 'Já paguei\nme manda o pix\n' | python manage.py billing_classify_replies
    {"text": "Já paguei", "intent": "claims_paid", "confidence": 0.95}
    {"text": "me manda o pix", "intent": "payment_info", "confidence": 0.85}

`--explain` adds the names of the rules that fired. Nothing is read from or written to the
database, and no text is logged.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.chat.services.reply_intents import classify


class Command(BaseCommand):
    help = "Classify replies read from stdin (one per line); print one JSON object per line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--explain", action="store_true", help="Also print the rules that fired.")

    def handle(self, *args: Any, **options: Any) -> None:
        for line in sys.stdin:
            text = line.rstrip("\r\n")
            result = classify(text)
            row: dict[str, Any] = {"text": text, "intent": result.intent, "confidence": result.confidence}
            if options["explain"]:
                row["rules"] = list(result.rules)
            self.stdout.write(json.dumps(row, ensure_ascii=False))
