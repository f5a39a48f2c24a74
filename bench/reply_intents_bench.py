#!/usr/bin/env python
"""Reply-intent benchmark: precision and recall per intent, accuracy, time per message.

Runs the classifier (`apps.chat.services.reply_intents`) over the labelled corpora in
`backend/apps/chat/tests/data/`: the development corpus (written before the rules), the
held-out corpus (written after them) and both together. Pure code: no database, no services.

    .venv/bin/python bench/reply_intents_bench.py [--repeat 20]

Prints one table per corpus and writes `bench/results/reply_intents.json` (git-ignored) and
`bench/results/reply_intents.md`. Times are per message with the normalisation caches cleared
before every pass (cold: every reply is new), and with them warm (the same short replies —
"ok", "sim", "já paguei" — arrive again and again in production).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "backend"))

from apps.chat.services.reply_intents import INTENTS, classify  # noqa: E402 - after backend/ is on sys.path
from apps.chat.services.reply_intents.evaluation import RECEIPT_MEDIA, Report, evaluate, load_corpus  # noqa: E402 - as above
from apps.chat.services.reply_intents.normalize import tokens  # noqa: E402 - as above
from apps.chat.services.reply_intents.spelling import correct  # noqa: E402 - as above

DATA = REPO / "backend" / "apps" / "chat" / "tests" / "data"
CORPORA = {
    "development": ["reply_corpus.jsonl"],
    "held-out": ["reply_corpus_holdout.jsonl"],
    "all": ["reply_corpus.jsonl", "reply_corpus_holdout.jsonl"],
}
GUARDED = ("opt_out", "claims_paid", "wrong_person")


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def table(name: str, report: Report) -> list[str]:
    lines = [
        f"### {name}: {report.total} messages, accuracy {_pct(report.accuracy)}",
        "",
        "| intent | precision | recall | support |",
        "|---|---:|---:|---:|",
    ]
    for intent in INTENTS:
        mark = " (guarded)" if intent in GUARDED else ""
        lines.append(
            f"| {intent}{mark} | {_pct(report.precision(intent))} | {_pct(report.recall(intent))} "
            f"| {report.support(intent)} |"
        )
    return lines


def timings(items, repeat: int) -> dict[str, float]:
    """Microseconds per message: median over `repeat` passes, cold and warm caches."""

    def one_pass(cold: bool) -> float:
        if cold:
            tokens.cache_clear()
            correct.cache_clear()
        started = time.perf_counter()
        for item in items:
            classify(item.text, has_media=item.media in RECEIPT_MEDIA)
        return 1e6 * (time.perf_counter() - started) / len(items)

    cold = [one_pass(cold=True) for _ in range(repeat)]
    warm = [one_pass(cold=False) for _ in range(repeat)]
    return {
        "cold_us_per_message_median": round(statistics.median(cold), 1),
        "cold_us_per_message_max": round(max(cold), 1),
        "warm_us_per_message_median": round(statistics.median(warm), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20, help="timed passes over the whole corpus")
    args = parser.parse_args()

    results: dict = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "corpora": {},
    }
    lines = [
        "# Reply intents: corpus benchmark",
        "",
        f"`bench/reply_intents_bench.py`, {results['generated_at']}, Python {results['python']}.",
        "",
    ]
    for name, files in CORPORA.items():
        items = [item for file in files for item in load_corpus(DATA / file)]
        report = evaluate(items)
        results["corpora"][name] = {
            **report.as_dict(),
            **timings(items, args.repeat),
            "mistakes": [
                {"text": item.text, "media": item.media, "expected": item.intent, "got": got}
                for item, got in report.mistakes
            ],
        }
        lines += table(name, report) + [""]
    speed = results["corpora"]["all"]
    lines += [
        f"Time per message (all): {speed['cold_us_per_message_median']} µs cold caches "
        f"(worst pass {speed['cold_us_per_message_max']} µs), "
        f"{speed['warm_us_per_message_median']} µs warm.",
        "",
    ]
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "reply_intents.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    (out / "reply_intents.md").write_text("\n".join(lines))
    print("\n".join(lines))
    mistakes = results["corpora"]["all"]["mistakes"]
    if mistakes:
        print(f"{len(mistakes)} mistakes (all corpora): see bench/results/reply_intents.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
