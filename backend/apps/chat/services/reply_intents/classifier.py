"""Combine the rules into one answer with a confidence."""

from __future__ import annotations

from dataclasses import dataclass

from . import rules
from .normalize import plain_text, tokens
from .opt_out_phrases import is_stop_phrase

MAX_INPUT = 4000  # characters read; a reply longer than this is a conversation, classified on its start
LONG_REPLY_WORDS = 40  # beyond this a reply says several things: every rule is less sure
AMBIGUITY_PENALTY = 0.1  # another intent matched too
MEDIA_ONLY = 0.7  # an image or document with no words: likely a receipt
MEDIA_WITH_CAPTION = 0.75  # ... with a caption that says nothing else
OTHER = 0.5
EMPTY = 0.3


@dataclass(frozen=True)
class IntentResult:
    """`rules` names what fired (for support and the benchmark; never the text itself)."""

    intent: str
    confidence: float
    rules: tuple[str, ...] = ()


def classify(text: str, *, has_media: bool = False) -> IntentResult:
    """The intent of one reply. `has_media`: an image or document came with it (a likely
    payment receipt). Pure and deterministic: no database, no network."""
    text = (text or "")[:MAX_INPUT]
    words = tokens(text)
    result = _classify_words(text, words)
    if has_media and result.intent in (rules.OTHER, rules.GREETING):
        confidence = MEDIA_WITH_CAPTION if words else MEDIA_ONLY
        return IntentResult(rules.CLAIMS_PAID, confidence, ("media",))
    return result


def _classify_words(text: str, words: tuple[str, ...]) -> IntentResult:
    if not words:
        return IntentResult(rules.OTHER, EMPTY)
    joined = " ".join(word for word in words if word not in ".?")
    if is_stop_phrase(plain_text(text)) or is_stop_phrase(joined):
        return IntentResult(rules.OPT_OUT, 0.97, ("stop_phrase",))
    line = " ".join(words)
    matches = [rule for rule in rules.RULES if _fires(rule, line)]
    vetoed = {veto.intent for veto in rules.VETOES if _vetoes(veto, line)}
    if rules.SARCASM.search(line):
        vetoed.add(rules.CLAIMS_PAID)
    matches = [rule for rule in matches if rule.intent not in vetoed]
    if not matches:
        if _is_greeting(words):
            return IntentResult(rules.GREETING, 0.9, ("greeting",))
        return IntentResult(rules.OTHER, OTHER)
    best = max(matches, key=lambda rule: (rule.priority, rule.confidence))
    winners = [rule for rule in matches if rule.intent == best.intent]
    confidence = max(rule.confidence for rule in winners)
    if any(rule.intent != best.intent for rule in matches):
        confidence -= AMBIGUITY_PENALTY
    if len(words) > LONG_REPLY_WORDS:
        confidence -= AMBIGUITY_PENALTY
    return IntentResult(best.intent, round(max(confidence, 0.0), 2), tuple(rule.name for rule in winners))


def _fires(rule: rules.Rule, line: str) -> bool:
    return any(
        not _cancelled(rule.negatable, rule.not_a_question, line, match.start(), match.end())
        for match in rule.pattern.finditer(line)
    )


def _vetoes(veto: rules.Veto, line: str) -> bool:
    return any(
        not _cancelled(veto.negatable, False, line, match.start(), match.end()) for match in veto.pattern.finditer(line)
    )


def _cancelled(negatable: bool, not_a_question: bool, line: str, start: int, end: int) -> bool:
    before = line[:start].split()
    after = line[end:].split()
    clause: list[str] = []
    for word in reversed(before):
        if word in rules.CLAUSE_BREAKS:
            break
        clause.append(word)
    recent = clause[:3]
    if negatable:
        if any(word in rules.NEGATORS for word in recent):
            return True
        if after and after[0] in rules.AFTER_NEGATORS and (len(after) == 1 or after[1] in ".?"):
            return True  # "paguei não", "paguei nada."
    if not not_a_question:
        return False
    if any(word in rules.HYPOTHETICAL for word in recent):
        return True
    # "paguei?" asks; "você não viu que eu já paguei?" still claims.
    return bool(after) and after[0] == "?" and not ({"que", "porque"} & set(recent))


def _is_greeting(words: tuple[str, ...]) -> bool:
    if not all(word in rules.GREETING_WORDS for word in words):
        return False
    pairs = {" ".join(words[i : i + 2]) for i in range(len(words) - 1)}
    return bool(rules.SALUTATIONS & (set(words) | pairs))
