"""Measure the classifier on a labelled corpus: used by the corpus test and the benchmark.

A corpus is JSON Lines, one reply per line: `{"text": ..., "intent": ..., "media": "image"}`
(`media` optional: image, document, audio, sticker; image and document count as a likely
receipt, as `classify(has_media=True)` is told in production).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from . import INTENTS, classify

RECEIPT_MEDIA = frozenset({"image", "document"})


@dataclass(frozen=True)
class Labelled:
    text: str
    intent: str
    media: str | None = None


@dataclass
class Report:
    total: int
    correct: int
    seconds: float
    confusion: Counter = field(default_factory=Counter)  # (expected, predicted) → count
    mistakes: list[tuple[Labelled, str]] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    @property
    def microseconds_per_message(self) -> float:
        return 1e6 * self.seconds / self.total if self.total else 0.0

    def precision(self, intent: str) -> float | None:
        predicted = sum(n for (_, got), n in self.confusion.items() if got == intent)
        return self.confusion[(intent, intent)] / predicted if predicted else None

    def recall(self, intent: str) -> float | None:
        expected = sum(n for (wanted, _), n in self.confusion.items() if wanted == intent)
        return self.confusion[(intent, intent)] / expected if expected else None

    def support(self, intent: str) -> int:
        return sum(n for (wanted, _), n in self.confusion.items() if wanted == intent)

    def as_dict(self) -> dict:
        return {
            "messages": self.total,
            "accuracy": round(self.accuracy, 4),
            "microseconds_per_message": round(self.microseconds_per_message, 1),
            "per_intent": {
                intent: {
                    "precision": _round(self.precision(intent)),
                    "recall": _round(self.recall(intent)),
                    "support": self.support(intent),
                }
                for intent in INTENTS
            },
        }


def _round(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None


def load_corpus(path: Path) -> list[Labelled]:
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        if row["intent"] not in INTENTS:
            raise ValueError(f"{path.name}:{number}: unknown intent {row['intent']!r}")
        items.append(Labelled(row["text"], row["intent"], row.get("media")))
    return items


def evaluate(items: Iterable[Labelled]) -> Report:
    items = list(items)
    report = Report(total=len(items), correct=0, seconds=0.0)
    for item in items:
        started = time.perf_counter()
        got = classify(item.text, has_media=item.media in RECEIPT_MEDIA).intent
        report.seconds += time.perf_counter() - started
        report.confusion[(item.intent, got)] += 1
        if got == item.intent:
            report.correct += 1
        else:
            report.mistakes.append((item, got))
    return report
