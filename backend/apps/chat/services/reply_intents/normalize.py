"""Text as the intent rules read it.

Two forms of one reply:

* `plain_text` — lowercase ASCII words separated by single spaces: accents, punctuation and
  emoji gone. The opt-out phrase table is matched against it (and against the token form).
* `tokens` — what every other rule reads: the plain words after a few repairs that WhatsApp
  writing needs, plus two punctuation tokens kept on purpose: `?` (a question changes the
  meaning of "paguei") and `.` (a clause boundary: a negation does not reach across it).

Repairs, in order: emoji that carry meaning become words (👍 → ok, 🙄 → ironia, 😂 → kkk);
`c/` and `p/` become "com" and "para"; laughter (kkkk, hahaha, rsrs) becomes `kkk`; letters
repeated three times or more collapse to one and a doubled last letter to one ("jaaa" → "ja",
"oii" → "oi", "pixx" → "pix"); abbreviations are spelled out ("vc" → "voce", "hj" → "hoje",
"msg" → "mensagem"); and a few words the rules depend on are spelled right again when a typo
is one edit away (`spelling.correct`: "pagei" → "paguei", "erado" → "errado").
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from .spelling import correct

# Emoji with a meaning for the rules; every other symbol is dropped like punctuation.
_EMOJI_WORDS = {
    "👍": "ok",
    "👌": "ok",
    "✅": "ok",
    "✔": "ok",
    "☑": "ok",
    "🆗": "ok",
    "🙄": "ironia",
    "😒": "ironia",
    "🤡": "ironia",
    "😂": "kkk",
    "🤣": "kkk",
    "😆": "kkk",
    "😅": "kkk",
    "😡": "raiva",
    "🤬": "raiva",
    "😠": "raiva",
    "👋": "oi",
}
_EMOJI = re.compile("|".join(map(re.escape, _EMOJI_WORDS)))

# Abbreviations and spellings of WhatsApp Portuguese, token → words.
ABBREVIATIONS = {
    "vc": "voce",
    "vcs": "voces",
    "oce": "voce",
    "q": "que",
    "ki": "que",
    "oq": "o que",
    "pq": "porque",
    "porq": "porque",
    "n": "nao",
    "naum": "nao",
    "nn": "nao",
    "nope": "nao",
    "ñ": "nao",
    "s": "sim",
    "ss": "sim",
    "tb": "tambem",
    "tbm": "tambem",
    "hj": "hoje",
    "amnh": "amanha",
    "amn": "amanha",
    "td": "tudo",
    "tds": "todos",
    "blz": "beleza",
    "obg": "obrigado",
    "obgd": "obrigado",
    "obgda": "obrigada",
    "brigado": "obrigado",
    "vlw": "valeu",
    "msg": "mensagem",
    "msgs": "mensagens",
    "pfv": "por favor",
    "pf": "por favor",
    "pfvr": "por favor",
    "plz": "por favor",
    "pls": "por favor",
    "pra": "para",
    "pro": "para o",
    "pras": "para as",
    "pros": "para os",
    "p": "para",
    "cmg": "comigo",
    "dps": "depois",
    "qto": "quanto",
    "qnto": "quanto",
    "qnt": "quanto",
    "qt": "quanto",
    "qro": "quero",
    "qero": "quero",
    "cmo": "como",
    "kd": "cade",
    "qdo": "quando",
    "qnd": "quando",
    "nmr": "numero",
    "nro": "numero",
    "nr": "numero",
    "num": "numero",
    "tel": "telefone",
    "cel": "celular",
    "zap": "whatsapp",
    "zapzap": "whatsapp",
    "wpp": "whatsapp",
    "whats": "whatsapp",
    "wats": "whatsapp",
    "pgto": "pagamento",
    "pagto": "pagamento",
    "pgmto": "pagamento",
    "mt": "muito",
    "mto": "muito",
    "agr": "agora",
    "msm": "mesmo",
    "ctz": "certeza",
    "vdd": "verdade",
    "eh": "e",
    "tah": "ta",
    "vo": "vou",
}
_LAUGH = re.compile(r"^(?:k{2,}|(?:ha){2,}h?|(?:he){2,}|(?:rs){2,}|(?:hua){2,})$")
_RUNS = re.compile(r"([a-z])\1{2,}")
_FINAL_DOUBLE = re.compile(r"([a-km-rt-z])\1$")  # not s, l: "stress", "all"
_SLASHED = re.compile(r"\b([cp])/")
_NOT_WORD = re.compile(r"[^a-z0-9?.]+")
_CLAUSE = re.compile(r"[.!;:,\n]+")
_QUESTION = re.compile(r"\?+")


def _fold(text: str) -> str:
    """Accents off and lowercase: NFKD also turns `ª`/`º` into letters ("2ª via" → "2a via")."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    folded = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()
    return folded.replace("'", "").replace("\u2019", "")  # don't → dont


def plain_text(text: str) -> str:
    """Lowercase ASCII words separated by single spaces: accents, punctuation and emoji gone."""
    words = re.sub(r"[^a-z0-9]+", " ", _fold(text))
    return re.sub(r"\s+", " ", words).strip()


def _repair(token: str) -> str:
    if _LAUGH.match(token):
        return "kkk"
    token = _RUNS.sub(r"\1", token)
    if len(token) > 2:
        token = _FINAL_DOUBLE.sub(r"\1", token)
    return ABBREVIATIONS.get(token) or correct(token)


@lru_cache(maxsize=4096)
def tokens(text: str) -> tuple[str, ...]:
    """The reply as the rules read it (see the module docstring). Cached: the same short
    replies ("sim", "ok", "já paguei") arrive again and again."""
    text = _EMOJI.sub(lambda match: f" {_EMOJI_WORDS[match.group(0)]} ", text or "")
    text = _SLASHED.sub(lambda match: " com " if match.group(1) == "c" else " para ", _fold(text))
    text = _QUESTION.sub(" ? ", _CLAUSE.sub(" . ", text))
    words: list[str] = []
    for raw in _NOT_WORD.sub(" ", text).split():
        words.extend(_repair(raw).split() if raw not in ".?" else [raw])
    while words and words[0] == ".":
        words.pop(0)
    collapsed = [word for i, word in enumerate(words) if not (word == "." and (i == 0 or words[i - 1] in ".?"))]
    while collapsed and collapsed[-1] == ".":
        collapsed.pop()
    return tuple(collapsed)
