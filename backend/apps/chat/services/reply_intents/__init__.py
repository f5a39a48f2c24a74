"""Intent of a customer's WhatsApp reply to a collection message (Brazilian Portuguese).

    classify("Já paguei, segue o comprovante")  -> IntentResult("claims_paid", 0.95, ...)
    classify("", has_media=True)                -> IntentResult("claims_paid", 0.7, ("media",))

Pure code, like the business-hours schedule: no database, no network, no model to download;
the same text always gets the same answer. Intents: `opt_out`, `claims_paid`, `negotiate`,
`payment_info`, `wrong_person`, `talk_to_human`, `greeting`, `other`. What each looks like is
in `rules.py` (and `opt_out_phrases.py`); how text is read (accents, abbreviations, typos,
repeated letters, emoji) in `normalize.py`; how rules combine into one answer in
`classifier.py`. The labelled corpus in `apps/chat/tests/data/reply_corpus.jsonl` and
`bench/reply_intents_bench.py` measure it.
"""

from .classifier import IntentResult, classify
from .rules import (
    CLAIMS_PAID,
    GREETING,
    NEGOTIATE,
    OPT_OUT,
    OTHER,
    PAYMENT_INFO,
    TALK_TO_HUMAN,
    WRONG_PERSON,
)

INTENTS = (OPT_OUT, CLAIMS_PAID, NEGOTIATE, PAYMENT_INFO, WRONG_PERSON, TALK_TO_HUMAN, GREETING, OTHER)

__all__ = [
    "CLAIMS_PAID",
    "GREETING",
    "INTENTS",
    "IntentResult",
    "NEGOTIATE",
    "OPT_OUT",
    "OTHER",
    "PAYMENT_INFO",
    "TALK_TO_HUMAN",
    "WRONG_PERSON",
    "classify",
]
