"""TemplateSanitizer: XSS payloads never survive; WhatsApp text does."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from decimal import Decimal

import pytest

from apps.billing.templating.engine import BillingTemplateEngine, TemplateError
from apps.billing.templating.sanitizer import MAX_VALUE_LENGTH, TemplateSanitizer

clean_value = TemplateSanitizer.clean_value
clean_template = TemplateSanitizer.clean_template

# From the OWASP XSS Filter Evasion Cheat Sheet
# (https://cheatsheetseries.owasp.org/cheatsheets/XSS_Filter_Evasion_Cheat_Sheet.html).
OWASP_PAYLOADS = [
    "<SCRIPT SRC=https://cdn.jsdelivr.net/gh/Moksh45/host-xss.rocks/index.js></SCRIPT>",
    "javascript:/*--></title></style></textarea></script></xmp>"
    "<svg/onload='+/\"`/+/onmouseover=1/+/[*/[]/+alert(42);//'>",
    "<IMG SRC=\"javascript:alert('XSS');\">",
    "<IMG SRC=javascript:alert('XSS')>",
    "<IMG SRC=JaVaScRiPt:alert('XSS')>",
    "<IMG SRC=javascript:alert(&quot;XSS&quot;)>",
    "<IMG SRC=`javascript:alert(\"RSnake says, 'XSS'\")`>",
    '<a onmouseover="alert(document.cookie)">xxs link</a>',
    "<a onmouseover=alert(document.cookie)>xxs link</a>",
    '<IMG """><SCRIPT>alert("XSS")</SCRIPT>"\\>',
    "<IMG SRC=javascript:alert(String.fromCharCode(88,83,83))>",
    "<IMG SRC=# onmouseover=\"alert('xxs')\">",
    "<IMG SRC= onmouseover=\"alert('xxs')\">",
    "<IMG onmouseover=\"alert('xxs')\">",
    '<IMG SRC=/ onerror="alert(String.fromCharCode(88,83,83))"></img>',
    '<img src=x onerror="&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105&#0000112'
    "&#0000116&#0000058&#0000097&#0000108&#0000101&#0000114&#0000116&#0000040&#0000039&#0000088&#0000083"
    '&#0000083&#0000039&#0000041">',
    "<IMG SRC=&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;&#97;&#108;&#101;&#114;&#116;"
    "&#40;&#39;&#88;&#83;&#83;&#39;&#41;>",
    "<IMG SRC=&#x6A&#x61&#x76&#x61&#x73&#x63&#x72&#x69&#x70&#x74&#x3A&#x61&#x6C&#x65&#x72&#x74&#x28&#x27"
    "&#x58&#x53&#x53&#x27&#x29>",
    "<IMG SRC=\"jav\tascript:alert('XSS');\">",
    "<IMG SRC=\"jav&#x09;ascript:alert('XSS');\">",
    "<IMG SRC=\"jav&#x0A;ascript:alert('XSS');\">",
    "<IMG SRC=\"jav&#x0D;ascript:alert('XSS');\">",
    "<IMG SRC=\" &#14;  javascript:alert('XSS');\">",
    '<SCRIPT/XSS SRC="http://xss.rocks/xss.js"></SCRIPT>',
    '<BODY onload!#$%&()*~+-_.,:;?@[/|\\]^`=alert("XSS")>',
    '<<SCRIPT>alert("XSS");//\\<</SCRIPT>',
    "<SCRIPT SRC=http://xss.rocks/xss.js?< B >",
    "<SCRIPT SRC=//xss.rocks/.j>",
    "<IMG SRC=\"`<javascript:alert>`('XSS')\"",
    "<iframe src=http://xss.rocks/scriptlet.html <",
    '</TITLE><SCRIPT>alert("XSS");</SCRIPT>',
    '<INPUT TYPE="IMAGE" SRC="javascript:alert(\'XSS\');">',
    "<BODY BACKGROUND=\"javascript:alert('XSS')\">",
    "<IMG DYNSRC=\"javascript:alert('XSS')\">",
    "<IMG LOWSRC=\"javascript:alert('XSS')\">",
    "<svg/onload=alert('XSS')>",
    "<BODY ONLOAD=alert('XSS')>",
    "<BGSOUND SRC=\"javascript:alert('XSS');\">",
    "<BR SIZE=\"&{alert('XSS')}\">",
    '<LINK REL="stylesheet" HREF="javascript:alert(\'XSS\');">',
    "<STYLE>@import'http://xss.rocks/xss.css';</STYLE>",
    '<META HTTP-EQUIV="Link" Content="<http://xss.rocks/xss.css>; REL=stylesheet">',
    '<STYLE>BODY{-moz-binding:url("http://xss.rocks/xssmoz.xml#xss")}</STYLE>',
    "<IMG STYLE=\"xss:expr/*XSS*/ession(alert('XSS'))\">",
    "<STYLE TYPE=\"text/javascript\">alert('XSS');</STYLE>",
    '<META HTTP-EQUIV="refresh" CONTENT="0;url=javascript:alert(\'XSS\');">',
    '<META HTTP-EQUIV="refresh" CONTENT="0;url=data:text/html base64,PHNjcmlwdD5hbGVydCgnWFNTJyk8L3NjcmlwdD4K">',
    "<IFRAME SRC=\"javascript:alert('XSS');\"></IFRAME>",
    '<IFRAME SRC=# onmouseover="alert(document.cookie)"></IFRAME>',
    "<FRAMESET><FRAME SRC=\"javascript:alert('XSS');\"></FRAMESET>",
    "<TABLE BACKGROUND=\"javascript:alert('XSS')\">",
    "<TABLE><TD BACKGROUND=\"javascript:alert('XSS')\">",
    "<DIV STYLE=\"background-image: url(javascript:alert('XSS'))\">",
    "<DIV STYLE=\"width: expression(alert('XSS'));\">",
    "<BASE HREF=\"javascript:alert('XSS');//\">",
    '<OBJECT TYPE="text/x-scriptlet" DATA="http://xss.rocks/scriptlet.html"></OBJECT>',
    '<EMBED SRC="data:image/svg+xml;base64,PHN2ZyB4bWxuczpzdmc9Imh0dH A6Ly93d3cudzMub3JnLzIwMDAvc3ZnIiB4bWxucz0i" '
    'type="image/svg+xml" AllowScriptAccess="always"></EMBED>',
    '<SCRIPT a=">" SRC="httx://xss.rocks/xss.js"></SCRIPT>',
    '<SCRIPT "a=\'>\'" SRC="httx://xss.rocks/xss.js"></SCRIPT>',
    '<SCRIPT>document.write("<SCRI");</SCRIPT>PT SRC="httx://xss.rocks/xss.js"></SCRIPT>',
    "<A HREF=\"javascript:document.location='http://www.google.com/'\">XSS</A>",
    '<a href="jav&#x09;ascript:alert(1)">clique</a>',
    "<xss onafterscriptexecute=alert(1)><script>1</script>",
    "<!--[if gte IE 4]><SCRIPT>alert('XSS');</SCRIPT><![endif]-->",
    '<HEAD><META HTTP-EQUIV="CONTENT-TYPE" CONTENT="text/html; charset=UTF-7"> </HEAD>+ADw-SCRIPT+AD4-alert(\'XSS\');+ADw-/SCRIPT+AD4-',
    "&lt;script&gt;alert('XSS')&lt;/script&gt;",
    "&amp;lt;script&amp;gt;alert('XSS')&amp;lt;/script&amp;gt;",
    "<scr<script>ipt>alert('XSS')</scr</script>ipt>",
    "javascript:alert('XSS')",
    "\" onerror=\"alert('XSS')",
    "java\x00script:alert('XSS')",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgnWFNTJyk8L3NjcmlwdD4K",
    'vbscript:msgbox("XSS")',
    # encoded many times over: more layers than the sanitizer's passes
    "&amp;amp;amp;amp;amp;amp;amp;lt;script&amp;amp;amp;amp;amp;amp;amp;gt;alert(1)",
    "&" + "amp;" * 40 + "lt;img src=x onerror=alert(1)&" + "amp;" * 40 + "gt;",
]

_TAG = re.compile(r"<[a-z!/?]", re.IGNORECASE)  # what opens a tag in HTML
_HANDLER = re.compile(r"\bon[a-z]+\s*=", re.IGNORECASE)


def assert_harmless(text: str) -> None:
    squeezed = re.sub(r"[\s\x00-\x1f]+", "", text).lower()
    assert not _TAG.search(text), text
    assert not _HANDLER.search(text), text
    for marker in ("javascript:", "vbscript:", "data:text/html", "<script", "<iframe", "<svg", "<img", "<style"):
        assert marker not in squeezed, text
    for entity in ("&lt;", "&gt;", "&amp;", "&quot;", "&#"):
        assert entity not in text, text


def test_the_payload_table_is_large_enough():
    assert len(OWASP_PAYLOADS) >= 20


@pytest.mark.parametrize("payload", OWASP_PAYLOADS)
def test_no_owasp_payload_survives_as_a_value(payload):
    assert_harmless(clean_value(payload))
    assert_harmless(clean_value(f"Maria {payload} Silva"))


@pytest.mark.parametrize("payload", OWASP_PAYLOADS)
def test_no_owasp_payload_survives_rendering(payload):
    output = BillingTemplateEngine.render("Olá {{name?}}, seu boleto: {{link?}}", {"name": payload, "link": payload})
    assert_harmless(output)


@pytest.mark.parametrize("payload", OWASP_PAYLOADS)
def test_no_owasp_payload_survives_in_a_saved_template(payload):
    try:
        cleaned = clean_template(f"Olá {{{{name}}}}!\n{payload}\nAté logo.")
    except TemplateError as error:  # refusing is fine too, as long as it says why
        assert error.code in {"unsafe_content", "empty_template"}
        return
    assert_harmless(cleaned)
    BillingTemplateEngine.validate(cleaned)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("*negrito* _itálico_ ~riscado~ ```monoespaçado```", "*negrito* _itálico_ ~riscado~ ```monoespaçado```"),
        ("`código` e > citação", "`código` e > citação"),
        ("Linha 1\nLinha 2\n\nLinha 4", "Linha 1\nLinha 2\n\nLinha 4"),
        ("Linha 1\r\nLinha 2\rLinha 3", "Linha 1\nLinha 2\nLinha 3"),
        ("- item 1\n- item 2\n1. um", "- item 1\n- item 2\n1. um"),
        ("Valor: R$ 1.234,56", "Valor: R$ 1.234,56"),
        ("Pix & boleto", "Pix & boleto"),
        ("juros < 2% e multa > 1%", "juros < 2% e multa > 1%"),
        ("te amo <3", "te amo <3"),
        ("P&D &copy", "P&D ©"),
        ("AT&T", "AT&T"),
        ("\"aspas\" e 'apóstrofo'", "\"aspas\" e 'apóstrofo'"),
        ("Data: 10/01/2025", "Data: 10/01/2025"),
        ("Acesse https://pagamento.exemplo.com.br/x?a=1&b=2", "Acesse https://pagamento.exemplo.com.br/x?a=1&b=2"),
        ("http://exemplo.com.br", "http://exemplo.com.br"),
        ("Olá 👋 família 👨‍👩‍👧 ✅", "Olá 👋 família 👨‍👩‍👧 ✅"),
        ("São João, Conceição, açaí", "São João, Conceição, açaí"),
        ("on time = true", "on time = true"),
        ("{{x}} fica {{#if y}}", "{{x}} fica {{#if y}}"),
    ],
)
def test_values_keep_whatsapp_formatting_and_ordinary_text(text, expected):
    assert clean_value(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<b>Olá</b> <i>Maria</i>", "Olá Maria"),
        ("<p>Um</p><p>Dois</p>", "Um\nDois"),
        ("Um<br>Dois<BR/>Três<br />Quatro", "Um\nDois\nTrês\nQuatro"),
        ("a<b", "ab"),  # `<` + letter could open a tag: it goes
        ("<iframe src=http://x.com <", "iframe src=http://x.com <"),
        ("Olá<!-- comentário -->!", "Olá!"),
        ("a\x00b\x07c\x1bd\x7fe\x85f", "abcde\nf"),
        ("a\tb", "a b"),
        ("abc\u202egpj.exe", "abcgpj.exe"),
        ("\u2066link\u2069", "link"),
        ("ftp://arquivos.exemplo.com/x.zip baixe", "baixe"),
        ("file:///etc/passwd", ""),
        ("whatsapp://send?text=oi ok", "ok"),
        ("  Maria  ", "Maria"),
        ("&amp;", "&"),
        ("&amp;amp;", "&"),
    ],
)
def test_values_lose_markup_control_characters_and_unsafe_links(text, expected):
    assert clean_value(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ""),
        (Decimal("1234.50"), "1234.50"),
        (12, "12"),
        (date(2024, 2, 29), "2024-02-29"),
        (["<b>x</b>"], "['x']"),
    ],
)
def test_values_of_any_type_become_clean_text(value, expected):
    assert clean_value(value) == expected


def test_values_are_capped_whatever_their_size():
    assert clean_value("a" * 5_000_000) == "a" * MAX_VALUE_LENGTH
    assert len(clean_value("<b>x</b>" * 200_000)) <= MAX_VALUE_LENGTH


def test_the_sanitizer_is_safe_to_use_from_many_threads():
    payloads = OWASP_PAYLOADS * 5
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(clean_value, payloads))
    assert results == [clean_value(payload) for payload in payloads]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Olá {{name}}!", "Olá {{name}}!"),
        ("<p>Olá <b>{{name|first_name}}</b></p>", "Olá {{name|first_name}}"),
        (
            "*Fatura* de {{amount|money}}\n_vence_ {{due_date|date}}",
            "*Fatura* de {{amount|money}}\n_vence_ {{due_date|date}}",
        ),
        ("{{#if link}}\nPague: {{link}}\n{{/if}}\r\nObrigado", "{{#if link}}\nPague: {{link}}\n{{/if}}\nObrigado"),
        ("  \n Olá {{name}} \n\n", "Olá {{name}}"),
        ("Olá<script>alert(1)</script> {{name}}", "Olá {{name}}"),
        ('<a href="javascript:alert(1)">Pague aqui</a>: {{link}}', "Pague aqui: {{link}}"),
        ("Pix & boleto < R$ 100", "Pix & boleto < R$ 100"),
        ("Acesse https://exemplo.com.br", "Acesse https://exemplo.com.br"),
        ("Data: {{due_date}}", "Data: {{due_date}}"),
    ],
)
def test_templates_are_cleaned_and_keep_their_syntax(template, expected):
    assert clean_template(template) == expected


@pytest.mark.parametrize(
    ("template", "code", "line", "column"),
    [
        ("Olá {{name}}\n{{#if link}}\nPague", "unbalanced_block", 2, 1),
        ("Olá\nPague{{/if}}", "unbalanced_block", 2, 6),
        ("{{#if a}}\n  {{#unless b}}\n  {{/if}}\n{{/unless}}", "unbalanced_block", 3, 3),
        ("Olá\n\n   {{#each parcelas}}x{{/each}}", "unknown_block", 3, 4),
        ("{{name|gritar}}", "unknown_filter", 1, 1),
        ("Olá {{name", "syntax_error", 1, 5),
        ("Baixe em ftp://arquivos.exemplo.com", "unsafe_content", 1, 10),
        ("Linha\nAbra file:///c:/boleto.pdf", "unsafe_content", 2, 6),
        ("Abra whatsapp://send?phone=1", "unsafe_content", 1, 6),
    ],
)
def test_template_problems_are_reported_with_line_and_column(template, code, line, column):
    with pytest.raises(TemplateError) as info:
        clean_template(template)
    assert (info.value.code, info.value.line, info.value.column) == (code, line, column)
    assert f"line {line}, column {column}" in str(info.value)


def test_a_block_broken_by_stripping_html_is_reported():
    with pytest.raises(TemplateError) as info:
        clean_template('<a title="{{#if x}}">Olá</a> {{/if}}')
    assert info.value.code == "unbalanced_block"


@pytest.mark.parametrize("template", ["", "   \n ", "<script>alert(1)</script>", "<img src=x onerror=alert(1)>"])
def test_a_template_with_nothing_left_is_refused(template):
    with pytest.raises(TemplateError) as info:
        clean_template(template)
    assert info.value.code == "empty_template"


def test_a_huge_template_is_refused_before_cleaning():
    with pytest.raises(TemplateError) as info:
        clean_template("<b>x</b>" * 100_000)
    assert info.value.code == "too_large"


def test_a_template_over_the_limit_after_cleaning_is_refused():
    with pytest.raises(TemplateError) as info:
        clean_template("x" * (BillingTemplateEngine.MAX_TEMPLATE_LENGTH + 1))
    assert info.value.code == "too_large"


def test_cleaning_a_clean_template_changes_nothing():
    template = clean_template("<b>Olá</b> {{name|first_name}}!\n{{#if link}}\nPague: {{link}}\n{{/if}}")
    assert clean_template(template) == template
