"""Is this reply a request to stop? Whole intent, not keywords: a table of phrases a Brazilian
customer (or an English-speaking one) actually writes, and look-alikes that must not count."""

from __future__ import annotations

import pytest

from apps.chat.services.reply_intents import OPT_OUT, classify
from apps.chat.services.reply_intents.normalize import plain_text


def is_opt_out_request(text: str) -> bool:
    return classify(text).intent == OPT_OUT


OPT_OUTS = [
    "SAIR",
    "sair",
    "Sair.",
    "  sair  ",
    "PARAR!!!",
    "Pare",
    "Parem",
    "STOP",
    "Stop please",
    "stop 🛑",
    "Cancelar",
    "Descadastrar",
    "Unsubscribe",
    "unsubscribe me",
    "opt out",
    "Sair sair",
    "Não quero mais receber",
    "não quero mais receber mensagens",
    "nao quero receber mais mensagens",
    "NÃO QUERO MAIS RECEBER ESSAS MENSAGENS",
    "Não quero mais",
    "não desejo mais receber cobranças por aqui",
    "Por favor, não me mande mais mensagens",
    "não me enviem mais nada",
    "Parem de me mandar mensagens!",
    "para de mandar isso",
    "Me tire da lista",
    "me remova da sua lista",
    "Tirem meu número da lista",
    "remover meu número",
    "Quero sair da lista",
    "quero sair",
    "Quero me descadastrar",
    "gostaria de sair da lista de contatos",
    "quero cancelar o recebimento",
    "sair, obrigado",
    "Ok, pode parar",
    "Chega de mensagens",
    "please stop messaging me",
    "remove me from your list",
    "I don't want any more messages",
    "Do not contact me again",
    "no more messages",
    # WhatsApp spellings: abbreviations and stretched letters.
    "naum quero mais receber msg",
    "SAIRRRR",
    "nao qro mais receber mensagem",
    "pode me tirar da lista?",
    "parem de me ligar e de mandar mensagem",
    "SAIR DA LISTA",
]

LOOK_ALIKES = [
    "quero parar de pagar juros",
    "Quero parar de pagar juros, tem desconto?",
    "não quero mais pagar juros",
    "posso parar de pagar?",
    "parar de cobrar juros?",
    "Já paguei",
    "vou sair mais cedo hoje",
    "como faço para sair do vermelho?",
    "não consigo sair de casa",
    "Quero sair do aluguel",
    "sair do cadastro positivo como faz",
    "quero cancelar a multa",
    "cancelar o plano",
    "quero pagar",
    "quero receber a segunda via",
    "não quero receber boleto por email",
    "Pode me mandar o boleto?",
    "me manda o pix",
    "não me mande o boleto por email",
    "para quando é o vencimento?",
    "Obrigado",
    "ok",
    "não",
    "não quero",
    "Não quero isso",
    "Por favor parem de cobrar juros abusivos",
    "stop by tomorrow",
    "I stopped at the bank",
    "stop charging me interest",
    "Vou parar no banco e pago",
    "",
]


def test_the_table_is_big_enough():
    assert len(OPT_OUTS) + len(LOOK_ALIKES) >= 30
    assert len(OPT_OUTS) >= 15 and len(LOOK_ALIKES) >= 15


@pytest.mark.parametrize("text", OPT_OUTS)
def test_stop_requests_are_recognised(text):
    assert is_opt_out_request(text) is True


@pytest.mark.parametrize("text", LOOK_ALIKES)
def test_look_alikes_are_not_opt_outs(text):
    assert is_opt_out_request(text) is False


def test_long_messages_are_conversations_not_stop_requests():
    assert is_opt_out_request("sair " * 200) is False


@pytest.mark.parametrize(
    "raw,normalized",
    [
        ("NÃO quero MAIS!!", "nao quero mais"),
        ("  Açúcar,  café… e pão ", "acucar cafe e pao"),
        ("don’t", "dont"),
        ("🛑 STOP 🛑", "stop"),
    ],
)
def test_normalisation(raw, normalized):
    assert plain_text(raw) == normalized
