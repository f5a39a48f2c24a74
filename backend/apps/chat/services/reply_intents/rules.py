"""What each intent looks like, as patterns over the token form of a reply (`normalize.tokens`).

A rule names its intent, a priority (which intent wins when several match), a confidence and
whether a negation ("não paguei") cancels it, and, for a claim, whether a condition ("se já
paguei") or a direct question ("paguei?") does. Priorities, highest first — the order a collector would act on:

    100 wrong_person         the message reached someone else: nothing else in it matters
     90 claims_paid          "já paguei", a receipt
     80 negotiate            installments, agreement, discount, "não consigo pagar"
     75 talk_to_human        the payment data does not work ("o pix não funciona")
     70 payment_info         asks for pix, boleto, link, value, due date, how to pay
     65 negotiate (promise)  "pago sexta", "vou pagar amanhã" (loses to a request for the data)
     60 talk_to_human        a person, a call, a dispute ("valor errado", "não reconheço")

Vetoes remove an intent when a look-alike phrase is present ("não sou eu que pago" is not a
wrong number; "já recebi o boleto" is not a request for it). Greetings and opt-outs are whole-
message tests (`classifier.py`, `opt_out_phrases.py`), not rules here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

OPT_OUT = "opt_out"
CLAIMS_PAID = "claims_paid"
NEGOTIATE = "negotiate"
PAYMENT_INFO = "payment_info"
WRONG_PERSON = "wrong_person"
TALK_TO_HUMAN = "talk_to_human"
GREETING = "greeting"
OTHER = "other"


@dataclass(frozen=True)
class Rule:
    name: str
    intent: str
    priority: int
    confidence: float
    pattern: re.Pattern[str]
    negatable: bool = False  # "não", "nunca" just before (or "não"/"nada" just after) cancel it
    not_a_question: bool = False  # a claim: "paguei?" asks, "se paguei" supposes; neither claims


@dataclass(frozen=True)
class Veto:
    intent: str
    pattern: re.Pattern[str]
    negatable: bool = False


def _words(pattern: str) -> re.Pattern[str]:
    """`pattern` matched on whole tokens (the text is tokens joined by single spaces)."""
    return re.compile(rf"(?<!\S)(?:{pattern})(?!\S)")


def _rule(name: str, intent: str, priority: int, confidence: float, pattern: str, **flags: bool) -> Rule:
    return Rule(name, intent, priority, confidence, _words(pattern), **flags)


_THE = r"(?:o |a |os |as |um |uma )?"
_TIME = (
    r"(?:amanha|depois|semana|no dia|dia|ate|assim que|quando|sexta|segunda|terca|quarta|quinta|sabado|"
    r"domingo|mes que vem|no mes|na sexta|na segunda|logo|sem falta|hoje a tarde|hoje a noite|mais tarde|"
    r"no fim|no final)"
)
_PAYMENT_DATA = (
    r"(?:pix|boleto|boletos|qr ?code|chave|copia e cola|segunda via|2a via|2 via|codigo de barras|"
    r"linha digitavel|link|links|dados bancarios|dados para (?:deposito|pagamento|transferencia)|"
    r"conta para (?:deposito|depositar|transferir|transferencia)|formas? de pagamento|cartao|"
    r"(?:no|em|com|de) (?:debito|credito))"
)

RULES: tuple[Rule, ...] = (
    # ------------------------------------------------------------------ wrong_person
    _rule(
        "wrong_number",
        WRONG_PERSON,
        100,
        0.95,
        r"numero (?:errado|trocado|equivocado)|wrong number|pessoa errada|contato errado"
        r"|(?:errou|erraram|errei|errado) (?:o |de )?numero",
    ),
    _rule(
        "not_me",
        WRONG_PERSON,
        100,
        0.93,
        r"nao sou (?:eu|ele|ela|essa pessoa|esta pessoa|a pessoa|o titular|a titular|o \S+|a \S+)|sou eu nao",
    ),
    _rule(
        "dont_know_them",
        WRONG_PERSON,
        100,
        0.9,
        r"(?:nao conheco|desconheco)(?: (?:essa|esta|esse|este|nenhum|nenhuma|ninguem|a|o|ela|ele) \S+)?",
    ),
    _rule("mistake", WRONG_PERSON, 100, 0.9, r"engano|enganad[oa]s?"),
    _rule(
        "number_changed_hands",
        WRONG_PERSON,
        100,
        0.93,
        r"(?:esse|este|o) (?:numero|telefone|whatsapp|celular|chip) (?:agora )?e (?:meu|novo)"
        r"|(?:esse|este) (?:numero|telefone|whatsapp|celular|chip) (?:nao (?:e|pertence)|agora e)"
        r"|(?:esse|este) nao e o (?:numero|telefone|whatsapp|celular)"
        r"|nao e (?:mais )?(?:o )?(?:numero|telefone|whatsapp|celular) d\S+|nao e mais del[ae]"
        r"|comprei (?:esse|este|o) (?:numero|chip)|chip novo"
        r"|(?:trocou|trocaram|mudou|mudaram) de (?:numero|telefone|celular|whatsapp)",
    ),
    _rule(
        "nobody_here",
        WRONG_PERSON,
        100,
        0.9,
        r"nao tem (?:nenhum|nenhuma|ninguem)|ninguem com esse nome|nao mora (?:mais )?aqui"
        r"|(?:essa|esta) pessoa nao (?:existe|mora|usa)|(?:a pessoa|ela|ele) nao usa mais"
        r"|nao usa mais (?:esse|este) (?:numero|telefone|whatsapp|celular|chip)"
        r"|nunca ouvi falar (?:dessa|desta|desse|deste|da|do) (?:pessoa|nome)|nao e (?:o )?meu nome|nao e aqui",
    ),
    # ------------------------------------------------------------------ claims_paid
    _rule(
        "paid_verb",
        CLAIMS_PAID,
        90,
        0.95,
        r"paguei|pagamos|quitei|quitamos|transferi|depositei|regularizei|efetuei",
        negatable=True,
        not_a_question=True,
    ),
    _rule(
        "made_the_payment",
        CLAIMS_PAID,
        90,
        0.93,
        rf"(?:fiz|fizemos|realizei|mandei|enviei) {_THE}(?:pagamento|pix|transferencia|deposito)"
        r"|acabei de (?:pagar|transferir|depositar|quitar|fazer (?:o |a )?(?:pix|pagamento|transferencia|deposito))",
        negatable=True,
        not_a_question=True,
    ),
    _rule(
        "payment_done",
        CLAIMS_PAID,
        90,
        0.93,
        r"pagamento (?:ja )?(?:foi )?(?:efetuado|realizado|feito|confirmado|concluido|aprovado)"
        r"|(?:ja )?(?:esta|ta|foi|estao|tao|foram) (?:ja )?(?:tudo )?(?:pag[oa]s?|quitad[oa]s?|regularizad[oa]s?)"
        r"|(?:foi|ja foi) (?:feito|efetuado|realizado) o pagamento|pag[oa] desde"
        r"|(?:divida|conta|boleto|fatura|parcela) (?:ja )?(?:esta |ta |foi )?(?:pag[oa]|quitad[oa])"
        r"|quitad[oa]|regularizad[oa]|pago com sucesso",
        negatable=True,
        not_a_question=True,
    ),
    _rule(
        "already_paid_ambiguous", CLAIMS_PAID, 90, 0.85, rf"ja pag[oa](?! {_TIME})", negatable=True, not_a_question=True
    ),
    _rule("paid_alone", CLAIMS_PAID, 90, 0.85, r"^pag[oa](?: ok)?$"),
    _rule(
        "receipt",
        CLAIMS_PAID,
        90,
        0.9,
        r"(?:segue|seguem|mandei|enviei|mando|envio|anexei|anexo|encaminhei|encaminho|tenho|ta ai|aqui esta)"
        r"(?: o| os| a)? (?:comprovante|comprovantes|recibo)|comprovante (?:em )?anexo|comprovante (?:segue|ai|aqui)",
        negatable=True,
    ),
    # ------------------------------------------------------------------ negotiate
    _rule(
        "installments_or_deal",
        NEGOTIATE,
        80,
        0.9,
        r"parcel\S*|renegoci\S*|negoci\S*|acordo|proposta|desconto|abatimento|\d+ ?x|\d+ vezes|em \S+ vezes",
    ),
    _rule(
        "cannot_pay",
        NEGOTIATE,
        80,
        0.9,
        r"(?:nao|nem) (?:consigo|tenho como|posso|vou conseguir|estou conseguindo|to conseguindo|"
        r"tenho condicoes de|da para|vai dar para) pagar"
        r"|sem (?:dinheiro|condicoes|condicao|trabalho|emprego|grana|renda)|desempregad[oa]|dificuldade\S*"
        r"|apertad[oa]|(?:salario|pagamento) (?:atrasou|atrasado)|nao tenho (?:dinheiro|condicoes|grana)"
        r"|nao da para pagar|esse mes nao da",
    ),
    _rule(
        "terms",
        NEGOTIATE,
        80,
        0.88,
        r"(?:mais|de) prazo|prorrog\S*|adiar|adiamento|dividir|metade|uma parte"
        r"|(?:so|somente|apenas) (?:consigo|posso|da para) pagar|consigo pagar (?:so|somente|apenas)"
        r"|\d+ (?:reais )?por mes|(?:juros|valor) (?:estao |sao |ta |esta |e )?(?:muito )?(?:alto|altos|abusivos?)"
        r"|(?:tirar|abaixar|baixar|diminuir|reduzir|tira) (?:o |os |a )?(?:juros|valor|multa)|valor menor"
        r"|condic\S* especia\S*|sair (?:dessa|desta|da) divida",
    ),
    _rule(
        "promise",
        NEGOTIATE,
        65,
        0.8,
        r"(?:vou|vamos|irei) (?:pagar|quitar|acertar|depositar|transferir|fazer o (?:pix|pagamento))"
        rf"|(?:pago|pagarei|pagamos|acerto|deposito|transfiro|quito) {_TIME}"
        r"|(?:amanha|depois|sexta|segunda|semana que vem|mes que vem|fim do mes|quando receber|assim que cair)"
        r" (?:eu )?(?:pago|acerto|quito|deposito)"
        r"|(?:posso|consigo|da para|daria para|poderia) (?:pagar|acertar) (?:dia|no dia|amanha|depois|semana|so|"
        r"somente|no mes|mes|sexta|segunda|ate|na)"
        r"|(?:assim|logo) que (?:eu )?receber|quando (?:eu )?receber|recebo dia|vou atrasar|esperar ate"
        r"|da para esperar|pode esperar|vou (?:passar |parar )?(?:no|na) (?:banco|loterica|agencia|caixa)",
        negatable=True,
    ),
    # ------------------------------------------------------------------ payment_info
    _rule("payment_data", PAYMENT_INFO, 70, 0.85, _PAYMENT_DATA),
    _rule(
        "how_to_pay",
        PAYMENT_INFO,
        70,
        0.9,
        r"como (?:eu )?(?:faco |faz |posso |devo |consigo |fazer )?(?:para |o )?(?:pagar|pago|pagamento)"
        r"|onde (?:eu )?(?:pago|pagar|posso pagar|faco o pagamento)|(?:quero|queria|gostaria de|preciso) pagar",
        negatable=True,
    ),
    _rule(
        "how_much",
        PAYMENT_INFO,
        70,
        0.88,
        r"(?:qual|quanto) (?:e |ta |esta |fica |seria )?(?:o )?valor"
        r"|quanto (?:que )?(?:eu )?(?:e|ta|esta|fica|devo|deu|da|era|sai|custa|tenho|falta|ficou)"
        r"|valor (?:atualizado|total|da divida|com juros)"
        r"|(?:manda|mande|mandar|envia|envie|enviar|passa|passe|passar|fala|diz|informa|informe)(?: me)?"
        r"(?: o| a)? valor",
    ),
    _rule(
        "due_date",
        PAYMENT_INFO,
        70,
        0.85,
        r"(?:qual|quando) (?:e )?o vencimento|data de vencimento"
        r"|ate quando (?:eu )?(?:posso|da para|consigo|tenho para) pagar",
    ),
    # ------------------------------------------------------------------ talk_to_human
    _rule(
        "payment_data_broken",
        TALK_TO_HUMAN,
        75,
        0.85,
        r"(?:pix|boleto|link|codigo|codigo de barras|qr ?code|chave|site|aplicativo|app)\b.{0,40}?"
        r"(?:nao (?:esta |ta )?(?:funciona|abre|carrega|vai|passa|aceita|funcionou|abriu|passou|funcionando|"
        r"abrindo|passando)|(?:da|deu|dando|com) erro|invalid[oa])",
    ),
    _rule(
        "a_person",
        TALK_TO_HUMAN,
        60,
        0.88,
        r"(?:falar|conversar|falo|fala) com (?:um |uma |o |a |os |as )?(?:atendente|pessoa|humano|alguem|gerente|"
        r"responsavel|financeiro|voce|voces|dra|dr|doutor|doutora|setor|supervisor|dono|dona)"
        r"|atendente|atendimento humano|(?:preciso|quero|queria|gostaria) (?:de )?(?:um |uma )?(?:atendimento|ajuda)"
        r"|preciso de ajuda|me ajuda|humano|robo|maquina|pessoa de verdade|tem alguem ai"
        r"|alguem (?:pode|poderia) (?:me )?(?:atender|ajudar|explicar|ligar)|pode alguem me (?:atender|ajudar)"
        r"|me (?:atende|atenda)|o responsavel",
    ),
    _rule(
        "a_call",
        TALK_TO_HUMAN,
        60,
        0.85,
        r"me (?:liga|ligue|liguem|ligar)|(?:liga|ligue|liguem) (?:para|pra) mim|para eu ligar"
        r"|(?:qual|tem) (?:o |um |algum )?(?:telefone|numero|contato|whatsapp) "
        r"(?:de voces|para (?:eu )?(?:ligar|contato)|de contato|do financeiro)",
    ),
    _rule(
        "dispute",
        TALK_TO_HUMAN,
        60,
        0.8,
        r"(?:valor|cobranca|conta|divida|fatura) (?:esta |ta |e |veio )?(?:errad[oa]|indevid[oa]|incorret[oa])"
        r"|cobranca indevida|nao reconheco|(?:desconheco|nao conheco) (?:essa|esta|a|esse|este|o) "
        r"(?:divida|cobranca|conta|compra|contrato|valor)|cancelei|nunca (?:contratei|comprei|assinei|usei|pedi)"
        r"|nao devo|golpe|procon|processo|advogad\S*|justica|reclamacao|explicar (?:essa|esta|a) cobranca"
        r"|nao (?:estou |to )?entendendo|(?:esta|ta) errad[oa]",
    ),
)

VETOES: tuple[Veto, ...] = (
    # "não sou eu que pago, é minha esposa": the right household, not a wrong number.
    Veto(WRONG_PERSON, _words(r"nao sou eu (?:que|quem)")),
    # A debt they do not recognise is a dispute, not a stranger.
    Veto(
        WRONG_PERSON,
        _words(
            r"(?:desconheco|nao conheco) (?:essa|esta|a|esse|este|o) "
            r"(?:divida|cobranca|conta|compra|contrato|valor)"
        ),
    ),
    # "já recebi o boleto, obrigado" acknowledges the data; "não recebi o boleto" asks for it.
    Veto(PAYMENT_INFO, _words(r"recebi (?:o |a )?(?:boleto|pix|link|fatura|segunda via|codigo)"), negatable=True),
)

# Irony turns "já paguei sim" into its opposite: 🙄 (→ "ironia"), "só que não", "com que dinheiro".
SARCASM = _words(r"ironia|so que nao|dinheiro que nao tenho|com que dinheiro")

NEGATORS = frozenset({"nao", "nunca", "nem", "jamais"})
# A condition or a doubt before a claim: "se já paguei", "será que paguei".
HYPOTHETICAL = frozenset({"se", "caso", "sera"})
AFTER_NEGATORS = frozenset({"nao", "nada", "nunca"})
CLAUSE_BREAKS = frozenset({".", "?", "mas", "porem", "entao"})

SALUTATIONS = frozenset(
    {
        "oi",
        "ola",
        "oie",
        "opa",
        "eae",
        "eai",
        "salve",
        "hello",
        "hi",
        "hey",
        "bom dia",
        "boa tarde",
        "boa noite",
        "e ai",
    }
)
GREETING_WORDS = frozenset(
    {
        "oi",
        "ola",
        "oie",
        "opa",
        "eae",
        "eai",
        "salve",
        "hello",
        "hi",
        "hey",
        "e",
        "ai",
        "bom",
        "boa",
        "dia",
        "tarde",
        "noite",
        "tudo",
        "bem",
        "certo",
        "com",
        "voce",
        "voces",
        "moca",
        "moco",
        "senhor",
        "senhora",
        "pessoal",
        "gente",
        "joia",
        "tranquilo",
        "beleza",
        ".",
        "?",
    }
)
