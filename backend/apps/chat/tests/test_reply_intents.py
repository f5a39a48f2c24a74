"""The reply classifier: the labelled corpus, and the behaviours a collector relies on.

Two corpora, both written by hand as Brazilian debtors write on WhatsApp: `reply_corpus.jsonl`
(520 replies, written before the rules) and `reply_corpus_holdout.jsonl` (154, written after
the rules and measured before any change: 91.6 % accuracy, 100 % precision on the guarded
intents; the misses were then fixed as classes, e.g. "tirar" besides "tire", never sentence
by sentence).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from apps.chat.services.reply_intents import (
    CLAIMS_PAID,
    GREETING,
    INTENTS,
    NEGOTIATE,
    OPT_OUT,
    OTHER,
    PAYMENT_INFO,
    TALK_TO_HUMAN,
    WRONG_PERSON,
    classify,
)
from apps.chat.services.reply_intents.evaluation import evaluate, load_corpus
from apps.chat.services.reply_intents.normalize import tokens
from apps.chat.services.reply_intents.spelling import correct

DATA = Path(__file__).parent / "data"
GUARDED = (OPT_OUT, CLAIMS_PAID, WRONG_PERSON)  # a false one silences, pauses or drops a debtor


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(DATA / "reply_corpus.jsonl") + load_corpus(DATA / "reply_corpus_holdout.jsonl")


def test_the_corpus_is_big_varied_and_labelled_with_every_intent(corpus):
    assert len(corpus) >= 400
    assert {item.intent for item in corpus} == set(INTENTS)
    assert len({item.text for item in corpus if item.text}) >= 600
    assert {item.media for item in corpus} >= {None, "image", "document", "audio", "sticker"}
    hard = {"ainda não paguei", "não quero sair", "paguei? quanto era?"}
    assert hard <= {item.text for item in corpus}


def test_precision_on_the_guarded_intents_and_overall_accuracy(corpus):
    report = evaluate(corpus)
    for intent in GUARDED:
        assert report.precision(intent) >= 0.97, (intent, report.precision(intent), report.mistakes)
    assert report.accuracy >= 0.93, report.mistakes


@pytest.mark.parametrize(
    "text,intent",
    [
        ("Já paguei, segue o comprovante", CLAIMS_PAID),
        ("ainda não paguei", OTHER),
        ("Não sei se paguei", OTHER),
        ("se eu já paguei", OTHER),
        ("paguei?", OTHER),
        ("você não viu que eu já paguei?", CLAIMS_PAID),  # a rhetorical question still claims
        ("paguei não", OTHER),
        ("ainda não paguei, mas pago sexta", NEGOTIATE),  # the negation stays in its clause
        ("já pago amanhã", NEGOTIATE),  # "já pago" + a day is a promise, not a payment
        ("não quero sair", OTHER),
        ("quero sair", OPT_OUT),
        ("não sou eu que pago, é meu marido", OTHER),
        ("não sou eu", WRONG_PERSON),
        ("o número do protocolo está errado", TALK_TO_HUMAN),
        ("número errado", WRONG_PERSON),
        ("já recebi o boleto, obrigado", OTHER),
        ("não recebi o boleto", PAYMENT_INFO),
        ("Vou pagar hoje, me manda o pix", PAYMENT_INFO),  # a request for the data beats a promise
        ("quero parcelar, me manda o boleto", NEGOTIATE),  # an agreement needs a person first
        ("o pix não funciona", TALK_TO_HUMAN),
        ("Oi, boa tarde, já paguei", CLAIMS_PAID),
        ("Oi, boa tarde!", GREETING),
    ],
)
def test_meaning_not_keywords(text, intent):
    assert classify(text).intent == intent


@pytest.mark.parametrize(
    "text",
    [
        "ah tá, já paguei sim... só que não",
        "já paguei sim 🙄",
        "claro, paguei com o dinheiro que não tenho",
    ],
)
def test_irony_is_not_a_payment(text):
    assert classify(text).intent == OTHER


@pytest.mark.parametrize(
    "text,intent",
    [
        ("JA PAGUEIIII", CLAIMS_PAID),
        ("jaaa paguei", CLAIMS_PAID),
        ("pagei ontem", CLAIMS_PAID),
        ("ja pguei", CLAIMS_PAID),
        ("numero erado", WRONG_PERSON),
        ("nmr errado", WRONG_PERSON),
        ("n sou eu", WRONG_PERSON),
        ("vc me manda o pix pfv", PAYMENT_INFO),
        ("2ª via", PAYMENT_INFO),
        ("qro parcelar em 5x", NEGOTIATE),
        ("qro falar c/ alguem", TALK_TO_HUMAN),
        ("Oláááá", GREETING),
        ("pago ✅", CLAIMS_PAID),
        ("👋", GREETING),
        ("👍", OTHER),
    ],
)
def test_whatsapp_spelling(text, intent):
    assert classify(text).intent == intent


def test_an_image_or_document_is_a_likely_receipt_with_less_confidence():
    written = classify("Já paguei")
    image = classify("", has_media=True)
    captioned = classify("olha aí", has_media=True)
    assert (image.intent, captioned.intent) == (CLAIMS_PAID, CLAIMS_PAID)
    assert image.confidence < captioned.confidence < written.confidence
    assert classify("não sou eu", has_media=True).intent == WRONG_PERSON  # the caption wins when it says more
    assert classify("").intent == OTHER and classify("").confidence < classify("ok").confidence


def test_confidence_drops_when_a_reply_says_two_things():
    assert classify("Já paguei o boleto").confidence < classify("Já paguei").confidence
    long_reply = "Já paguei " + "e queria dizer mais uma coisa sobre isso tudo " * 5
    assert classify(long_reply).intent == CLAIMS_PAID
    assert classify(long_reply).confidence < classify("Já paguei").confidence


def test_the_answer_names_the_rules_that_fired_and_never_the_text():
    result = classify("Já paguei, segue o comprovante")
    assert set(result.rules) == {"paid_verb", "receipt"}
    assert "paguei" not in " ".join(result.rules)


def test_any_size_or_script_is_safe_and_fast():
    for text in (
        "😀" * 10_000,
        "пожалуйста остановите",
        "支払い済み",
        "\x00\u202e\ufeff",
        "a" * 1_000_000,
        "sair " * 10_000,
        "?" * 5000,
    ):
        assert classify(text).intent in INTENTS
    started = time.perf_counter()
    classify("x " * 1_000_000)
    assert time.perf_counter() - started < 1.0  # the input is cut at MAX_INPUT characters


def test_normalisation_keeps_questions_and_clauses():
    assert tokens("Já paguei, não receberam?") == ("ja", "paguei", ".", "nao", "receberam", "?")
    assert tokens("vc q mandou p/ mim c/ o boleto") == ("voce", "que", "mandou", "para", "mim", "com", "o", "boleto")
    assert tokens("kkkkkk simmm") == ("kkk", "sim")


@pytest.mark.parametrize(
    "typed,meant",
    [
        ("pagei", "paguei"),
        ("paquei", "paguei"),
        ("erado", "errado"),
        ("comprovamte", "comprovante"),
        ("pague", "pague"),
        ("pessoal", "pessoal"),
        ("transferir", "transferir"),  # real words stay
        ("papel", "papel"),
        ("boa", "boa"),  # not one edit from a keyword, or too short
    ],
)
def test_typos_of_keywords_only(typed, meant):
    assert correct(typed) == meant
