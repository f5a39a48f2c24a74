"""Typos in the words the rules depend on, one edit away ("pagei", "erado", "comprovamte").

Only words of five letters or more are touched, only toward a keyword of six letters or more
that starts with the same letter, and only when exactly one keyword is that close: a short or
ambiguous word is left as typed. Real words that sit one edit away from a keyword
(`KNOWN_WORDS`: "pague" next to "paguei", "pessoal" next to "pessoa") are never changed.
Damerau-Levenshtein distance 1 (one insertion, deletion, substitution or swap of neighbours).
"""

from __future__ import annotations

from functools import lru_cache

KEYWORDS = frozenset(
    {
        "paguei",
        "pagamento",
        "comprovante",
        "quitado",
        "quitada",
        "transferi",
        "transferencia",
        "depositei",
        "efetuei",
        "efetuado",
        "realizado",
        "regularizei",
        "regularizado",
        "parcelar",
        "parcelamento",
        "parcelado",
        "parcelas",
        "negociar",
        "negociacao",
        "renegociar",
        "desconto",
        "proposta",
        "desempregado",
        "desempregada",
        "dificuldade",
        "prorrogar",
        "boleto",
        "segunda",
        "codigo",
        "digitavel",
        "cartao",
        "credito",
        "debito",
        "vencimento",
        "vencido",
        "atualizado",
        "numero",
        "errado",
        "errada",
        "engano",
        "enganado",
        "conheco",
        "desconheco",
        "pessoa",
        "titular",
        "atendente",
        "atendimento",
        "humano",
        "gerente",
        "conversar",
        "cobranca",
        "indevida",
        "reconheco",
        "obrigado",
        "obrigada",
        "mensagem",
        "mensagens",
        "descadastrar",
        "whatsapp",
        "receber",
    }
)
KNOWN_WORDS = frozenset(
    {
        "pague",
        "pagues",
        "pagou",
        "pagar",
        "pagam",
        "pagamos",
        "pagaram",
        "pagando",
        "pagarei",
        "pagaria",
        "pessoal",
        "pessoas",
        "enganou",
        "enganar",
        "conhece",
        "conhecer",
        "conheceu",
        "conhecemos",
        "parcela",
        "parcelo",
        "numeros",
        "codigos",
        "boletos",
        "cartoes",
        "creditos",
        "vencida",
        "vencidos",
        "segundo",
        "segundos",
        "recebe",
        "recebeu",
        "recebem",
        "receba",
        "quitar",
        "quitou",
        "quitei",
        "errados",
        "erradas",
        "errando",
        "mensal",
        "humana",
        "humanos",
        "gerentes",
        "transferir",
        "transferiu",
        "transfere",
        "transferimos",
        "depositar",
        "depositou",
        "deposita",
        "efetuar",
        "efetuou",
        "realizar",
        "realizada",
        "realizou",
        "regularizar",
        "negocia",
        "negociou",
        "proposto",
        "propostas",
        "descontos",
        "conheci",
        "conhecido",
        "desconhecido",
        "codigo",
        "cobrancas",
        "indevido",
        "numerada",
    }
)


def _edits(word: str) -> set[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    deletes = {a + b[1:] for a, b in splits if b}
    swaps = {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    replaces = {a + c + b[1:] for a, b in splits if b for c in letters}
    inserts = {a + c + b for a, b in splits for c in letters}
    return deletes | swaps | replaces | inserts


@lru_cache(maxsize=8192)
def correct(token: str) -> str:
    """`token`, or the one keyword it is a typo of."""
    if len(token) < 5 or token in KEYWORDS or token in KNOWN_WORDS or not token.isalpha():
        return token
    close = [word for word in _edits(token) & KEYWORDS if len(word) >= 6 and word[0] == token[0]]
    return close[0] if len(close) == 1 else token
