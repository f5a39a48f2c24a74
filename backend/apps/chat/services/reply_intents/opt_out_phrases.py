"""Opt-out (LGPD) phrases: "stop messaging me", recognised as a whole message.

The *entire* reply, once normalised (case, accents, punctuation, emoji and polite filler words
removed), must be one of the stop phrasings below. A keyword inside a longer sentence is not
enough, so "quero parar de pagar juros" or "vou sair mais cedo" never unsubscribe anyone, while
"SAIR", "Parar!", "não quero mais receber" or "STOP" do. False negatives cost little (the
customer writes again, or the tenant's staff add the number in the admin); a false positive
silences a debtor who only asked a question.

Matched against the plain form and the token form of the reply (`normalize.py`), so "naum
quero mais receber msg" and "SAIRRRR" count as well.
"""

from __future__ import annotations

import re

# Polite words around the request: "sair, por favor", "obrigado, pode parar".
_FILLERS = (
    r"por favor|por gentileza|pfv|pf|pls|please|plz|obrigad[oa]|obg|grat[oa]|valeu|ok|okay|"
    r"oi|ola|bom dia|boa tarde|boa noite|hi|hello|thanks|thank you|pode|podem|favor|ja"
)
_FILLER_EDGES = re.compile(rf"^(?:(?:{_FILLERS})\s+)+|(?:\s+(?:{_FILLERS}))+$")

# Building blocks. Optional parts always carry their own leading space: "(?: mais)?".
_MSGS = (
    r"(?:(?:essas|estas|as|suas|sua|tuas|nenhuma|mais) )?(?:mensagens|mensagem|msgs|msg|cobrancas|cobranca|"
    r"avisos|aviso|lembretes|notificacoes)(?: de (?:cobranca|voces|vcs))?"
)
_MSGS_OR_THIS = rf"(?:{_MSGS}|isso|isto|nada)"
_WHERE = (
    r"(?:por aqui|aqui|no whatsapp|no zap|pelo whatsapp|pelo zap|por whatsapp|neste numero|nesse numero|"
    r"de voces|de vcs|pra mim|para mim)"
)
_LIST = (
    r"(?:da|dessa|desta|de sua|da sua|do) (?:lista|cadastro|contatos|base)"
    r"(?: de (?:contatos|mensagens|envio|envios|cobranca|voces|vcs))?"
)
_NUMBER = r"(?:o )?meu (?:numero|contato|telefone|celular)"
_WANT = r"(?:eu )?(?:quero|queria|gostaria de|desejo|preciso)"
_DONT_WANT = r"(?:eu )?(?:nao|n) (?:quero|desejo|gostaria de|aceito)"
_SEND = r"(?:mande|mandem|manda|envie|enviem|envia|perturbe|perturbem|incomode|incomodem)"
_STOP_VERB = r"(?:mandar|enviar|mandarem|enviarem|ligar|ligarem|incomodar|perturbar)"
_STOP_WHAT = rf"{_STOP_VERB}(?: mais)?(?: {_MSGS_OR_THIS})?(?: {_WHERE})?"

# Each pattern must match the whole normalised reply.
_PATTERNS = [
    # Keywords alone (the SMS convention), possibly repeated: "SAIR", "stop stop".
    r"(?:sair|parar|pare|parem|para|stop|cancelar|cancela|descadastrar|descadastre|descadastro|remover|"
    r"unsubscribe|optout|opt out|bloquear|end|quit|chega)(?: (?:sair|parar|pare|stop|cancelar|chega))*"
    rf"(?: {_LIST})?",
    # "cancela essas mensagens", "bloquear as mensagens".
    rf"(?:cancela|cancele|cancelem|cancelar|bloqueia|bloquear) {_MSGS}(?: {_WHERE})?",
    # "quero sair", "gostaria de sair da lista", "quero me descadastrar", "quero cancelar as mensagens".
    rf"{_WANT} (?:sair|parar|me descadastrar|descadastrar|ser removid[oa]|ser excluid[oa]|me remover)"
    rf"(?: (?:{_LIST}|de receber(?: {_MSGS})?|das mensagens|dessas mensagens|disso|daqui|desse numero))?",
    rf"{_WANT} (?:cancelar|parar|bloquear) (?:o recebimento|o envio|{_MSGS})"
    rf"(?: (?:de mensagens|das mensagens|dessas mensagens|destas mensagens|{_WHERE}))?",
    rf"{_WANT} (?:nao|n) receber(?: mais)?(?: {_MSGS})?(?: mais)?(?: {_WHERE})?",
    # "não quero mais", "não quero mais receber", "não quero receber mais mensagens".
    rf"{_DONT_WANT} mais",
    rf"{_DONT_WANT}(?: mais)? receber(?: mais)?(?: {_MSGS_OR_THIS})?(?: mais)?(?: {_WHERE})?(?: mais)?",
    rf"{_DONT_WANT}(?: mais)? {_MSGS}(?: mais)?(?: {_WHERE})?",
    # "não me mande mais mensagens", "não me enviem mais nada", "nao mande mais", "não me incomode".
    rf"(?:nao|n)(?: me)? {_SEND}(?: mais)?(?: {_MSGS_OR_THIS})?(?: mais)?(?: {_WHERE})?",
    # "parem de me mandar mensagens", "pare de enviar mensagem", "parem de me ligar e de mandar mensagem".
    rf"(?:pare|parem|para|parar) de(?: me)? {_STOP_WHAT}(?: e(?: de)?(?: me)? {_STOP_WHAT})?",
    # "me tire da lista", "me remova da sua lista", "tirem meu número da lista", "remover meu numero".
    rf"(?:me )?(?:tire|tira|tirem|tirar|remova|remove|removam|remover|exclua|exclui|excluam|excluir|retire|"
    rf"retirem|retirar|descadastre|descadastra|descadastrem|descadastrar)(?: me)?(?: {_NUMBER})?(?: {_LIST})?",
    rf"(?:{_WANT} )?(?:remover|excluir|tirar|retirar|descadastrar) {_NUMBER}(?: {_LIST})?",
    rf"chega de {_MSGS_OR_THIS}(?: {_WHERE})?",
    # English.
    r"(?:please )?stop(?: (?:it|now|messaging me|messaging|texting me|texting|sending(?: me)?(?: messages| texts)?|"
    r"all messages|these messages|the messages|contacting me))?(?: please)?",
    r"(?:please )?unsubscribe(?: me)?(?: now)?",
    r"(?:please )?(?:remove|take) me (?:off|from)(?: (?:your|the|this|ur) (?:list|mailing list|contact list))?",
    r"(?:please )?remove me",
    r"(?:i )?(?:dont|do not) want (?:to (?:receive|get) )?(?:any )?(?:more )?(?:messages|texts|these messages)"
    r"(?: anymore| any more)?",
    r"(?:i )?(?:want|would like) to (?:unsubscribe|opt out|stop receiving(?: (?:messages|these messages|texts))?)",
    r"(?:dont|do not) (?:message|text|contact) me(?: again| anymore| any more)?",
    r"no more (?:messages|texts)",
]
_OPT_OUT = re.compile("|".join(f"(?:{pattern})" for pattern in _PATTERNS))
MAX_LENGTH = 160  # normalised characters: a stop request is short; long messages are conversations


def is_stop_phrase(words: str) -> bool:
    """Whether `words` (a normalised reply: lowercase ASCII words, single spaces) is, as a
    whole, a request to stop receiving messages."""
    if not words or len(words) > MAX_LENGTH:
        return False
    stripped = _FILLER_EDGES.sub("", words).strip()
    return bool(_OPT_OUT.fullmatch(stripped or words))
