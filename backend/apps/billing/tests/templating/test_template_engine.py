"""BillingTemplateEngine: syntax, values, missing variables, errors with positions, limits."""

from __future__ import annotations

import pickle
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from apps.billing.templating.engine import (
    BillingTemplateEngine,
    CompiledTemplate,
    MissingVariablesError,
    TemplateError,
)
from apps.billing.templating.parser import MAX_DEPTH, MAX_TAGS, MAX_TEMPLATE_LENGTH
from apps.billing.templating.sanitizer import MAX_VALUE_LENGTH

render = BillingTemplateEngine.render


@pytest.mark.parametrize(
    ("template", "variables", "expected"),
    [
        ("Olá {{name}}!", {"name": "Maria"}, "Olá Maria!"),
        ("Olá {{ name }}!", {"name": "Maria"}, "Olá Maria!"),
        ("Sem variáveis.", {}, "Sem variáveis."),
        ("{{a}}{{b}}", {"a": "x", "b": "y"}, "xy"),
        ("{{nome_do_cliente}}", {"nome_do_cliente": "Ana"}, "Ana"),
        ("{{descrição}}", {"descrição": "Mensalidade"}, "Mensalidade"),
        # dotted names
        ("{{customer.name}}", {"customer": {"name": "Ana"}}, "Ana"),
        ("{{a.b.c}}", {"a": {"b": {"c": "fundo"}}}, "fundo"),
        ("{{customer.name}}", {"customer.name": "Bia"}, "Bia"),
        ("{{items.1}}", {"items": ["primeira", "segunda"]}, "segunda"),
        ("{{items.0.amount|money}}", {"items": [{"amount": 10}]}, "R$ 10,00"),
        # default formatting of typed values
        ("{{n}}", {"n": 7}, "7"),
        ("{{n}}", {"n": 0}, "0"),
        ("{{n}}", {"n": Decimal("2.50")}, "2,50"),
        ("{{n}}", {"n": 2.5}, "2,5"),
        ("{{flag}}", {"flag": True}, "sim"),
        ("{{flag}}", {"flag": False}, "não"),
        ("{{d}}", {"d": date(2025, 1, 31)}, "31/01/2025"),
        ("{{d}}", {"d": datetime(2024, 2, 29, 23, 59, tzinfo=UTC)}, "29/02/2024"),
        # symbols Brazilian messages use are left alone
        ("{{a}}", {"a": "R$ 1.234,56 & juros < 2%"}, "R$ 1.234,56 & juros < 2%"),
        ("*{{a}}* _{{b}}_ ~{{c}}~", {"a": "negrito", "b": "itálico", "c": "riscado"}, "*negrito* _itálico_ ~riscado~"),
    ],
)
def test_it_renders_variables(template, variables, expected):
    assert render(template, variables) == expected


@pytest.mark.parametrize(
    ("template", "variables", "expected"),
    [
        ("{{#if vip}}VIP{{/if}}", {"vip": True}, "VIP"),
        ("a{{#if vip}}VIP{{/if}}b", {"vip": False}, "ab"),
        ("{{#if vip}}sim{{else}}não{{/if}}", {"vip": True}, "sim"),
        ("{{#if vip}}sim{{else}}não{{/if}}", {}, "não"),
        ("{{#unless paid}}pague{{/unless}}", {"paid": False}, "pague"),
        ("{{#unless paid}}pague{{/unless}}.", {"paid": True}, "."),
        ("{{#unless paid}}pague{{else}}obrigado{{/unless}}", {"paid": True}, "obrigado"),
        ("{{# if vip }}x{{/ if }}", {"vip": 1}, "x"),
        ("{{#if customer.vip}}x{{/if}}", {"customer": {"vip": True}}, "x"),
        # nested blocks
        ("{{#if a}}A{{#if b}}B{{else}}nb{{/if}}{{/if}}", {"a": 1, "b": 1}, "AB"),
        ("{{#if a}}A{{#if b}}B{{else}}nb{{/if}}{{/if}}", {"a": 1}, "Anb"),
        ("{{#if a}}A{{#if b}}B{{else}}nb{{/if}}{{/if}}", {"b": 1}, ""),
        ("{{#if a}}{{#unless b}}{{#if c}}abc{{/if}}{{/unless}}{{/if}}", {"a": 1, "c": 1}, "abc"),
        ("{{#if a}}{{else}}{{#if b}}b{{else}}nenhum{{/if}}{{/if}}", {}, "nenhum"),
        # condition values that are false
        ("{{#if x}}T{{else}}F{{/if}}", {"x": 0}, "F"),
        ("{{#if x}}T{{else}}F{{/if}}", {"x": Decimal("0.00")}, "F"),
        ("{{#if x}}T{{else}}F{{/if}}", {"x": ""}, "F"),
        ("{{#if x}}T{{else}}F{{/if}}", {"x": "   "}, "F"),
        ("{{#if x}}T{{else}}F{{/if}}", {"x": None}, "F"),
        ("{{#if x}}T{{else}}F{{/if}}", {"x": []}, "F"),
        ("{{#if x}}T{{else}}F{{/if}}", {"x": {}}, "F"),
        ("{{#if x}}T{{else}}F{{/if}}", {"x": "<script></script>"}, "F"),  # nothing left once cleaned
        # condition values that are true
        ("{{#if x}}T{{else}}F{{/if}}", {"x": "0"}, "T"),
        ("{{#if x}}T{{else}}F{{/if}}", {"x": 3}, "T"),
        ("{{#if x}}T{{else}}F{{/if}}", {"x": [1]}, "T"),
        ("{{#if x}}T{{else}}F{{/if}}", {"x": {"k": 1}}, "T"),
    ],
)
def test_it_renders_conditionals(template, variables, expected):
    assert render(template, variables) == expected


@pytest.mark.parametrize(
    ("template", "variables", "expected"),
    [
        ("Olá{{nickname?}}!", {}, "Olá!"),
        ("Olá {{nickname?}}!", {"nickname": "Bia"}, "Olá Bia!"),
        ("Olá {{ nickname? }}!", {"nickname": "Bia"}, "Olá Bia!"),
        ("[{{nickname?}}]", {"nickname": None}, "[]"),
        ("[{{amount?|money}}]", {}, "[]"),
        ("[{{amount?|money}}]", {"amount": "10"}, "[R$ 10,00]"),
        ("[{{customer.nickname?}}]", {"customer": {}}, "[]"),
    ],
)
def test_optional_variables_render_empty_when_missing(template, variables, expected):
    assert render(template, variables) == expected


@pytest.mark.parametrize(
    ("template", "value", "expected"),
    [
        ("{{v|money}}", Decimal("1234.56"), "R$ 1.234,56"),
        ("{{v|money}}", 1234, "R$ 1.234,00"),
        ("{{v|money}}", 1234.5, "R$ 1.234,50"),
        ("{{v|money}}", "1234.56", "R$ 1.234,56"),
        ("{{v|money}}", "R$ 1.234,56", "R$ 1.234,56"),
        ("{{v|money}}", Decimal("-10"), "-R$ 10,00"),
        ("{{v|date}}", date(2024, 2, 29), "29/02/2024"),
        ("{{v|date}}", "2025-12-31", "31/12/2025"),
        ("{{v|date}}", "31/12/2025", "31/12/2025"),
        ("{{v|date}}", "2025-01-31T23:30:00-03:00", "31/01/2025"),
        ("{{v|first_name}}", "MARIA da silva", "Maria"),
        ("{{v|first_name}}", "  joão   pedro ", "João"),
        ("{{v|first_name}}", "ANA-CLARA souza", "Ana-Clara"),
        ("{{v|title}}", "MARIA DA SILVA", "Maria da Silva"),
        ("{{v|upper}}", "Maria", "MARIA"),
        ("{{v|lower}}", "MARIA", "maria"),
        ("{{v|days}}", 1, "1 dia"),
        ("{{v|days}}", 5, "5 dias"),
        ("{{v|days}}", "0", "0 dias"),
        ("{{v|first_name|upper}}", "maria silva", "MARIA"),
        ("{{ v | money | lower }}", 10, "r$ 10,00"),
        ("{{v|money|money}}", "1234.5", "R$ 1.234,50"),  # idempotent: safe to format twice
        ("{{v|upper}}", True, "SIM"),
    ],
)
def test_filters_format_brazilian_values(template, value, expected):
    assert render(template, {"v": value}) == expected


@pytest.mark.parametrize(
    ("template", "value"),
    [
        ("{{v|money}}", "abc"),
        ("{{v|money}}", "12,34,56"),
        ("{{v|money}}", True),
        ("{{v|money}}", float("nan")),
        ("{{v|money}}", date(2025, 1, 1)),
        ("{{v|date}}", "31/02/2025"),
        ("{{v|date}}", "amanhã"),
        ("{{v|date}}", Decimal("10")),
        ("{{v|days}}", "muitos"),
        ("{{v}}", {"nested": "dict"}),
        ("{{v}}", ["a", "list"]),
    ],
)
def test_values_a_filter_cannot_format_are_errors_that_point_at_the_tag(template, value):
    with pytest.raises(TemplateError) as info:
        render("Linha 1\n  " + template, {"v": value})
    error = info.value
    assert error.code == "invalid_value"
    assert (error.line, error.column) == (2, 3)
    assert "'v'" in str(error)


@pytest.mark.parametrize(
    ("template", "variables", "missing"),
    [
        ("{{a}}", {}, ["a"]),
        ("{{b}} {{a}} {{b}} {{a|upper}}", {}, ["a", "b"]),
        ("{{a}} {{b}}", {"a": "ok"}, ["b"]),
        ("{{a}}", {"a": None}, ["a"]),
        ("{{a}}", {"a": ""}, ["a"]),
        ("{{a}}", {"a": "  \n "}, ["a"]),
        ("{{customer.name}}", {"customer": {}}, ["customer.name"]),
        ("{{customer.name}}", {"customer": "not a dict"}, ["customer.name"]),
        ("{{items.5}}", {"items": ["x"]}, ["items.5"]),
        ("{{#if show}}{{a}}{{/if}}", {"show": True}, ["a"]),
        ("{{#if show}}{{a}}{{else}}{{b}}{{/if}}", {}, ["b"]),
        ("{{#unless paid}}{{link}}{{/unless}} {{name}}", {"paid": False}, ["link", "name"]),
    ],
)
def test_missing_variables_are_listed_by_name(template, variables, missing):
    with pytest.raises(MissingVariablesError) as info:
        render(template, variables)
    assert info.value.missing == missing
    assert info.value.code == "missing_variables"
    assert str(info.value) == "Missing variables: " + ", ".join(missing)
    assert BillingTemplateEngine.missing_variables(template, variables) == missing


@pytest.mark.parametrize(
    ("template", "variables"),
    [
        ("{{#if show}}{{a}}{{/if}}", {}),  # not printed: not needed
        ("{{#if show}}{{a}}{{else}}ok{{/if}}", {"show": False}),
        ("{{#unless paid}}{{link}}{{/unless}}", {"paid": True}),
        ("{{#if link}}Pague: {{link}}{{/if}}", {}),
        ("{{a?}}", {}),
    ],
)
def test_variables_in_branches_not_taken_are_not_missing(template, variables):
    render(template, variables)
    assert BillingTemplateEngine.missing_variables(template, variables) == []


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"name": "{{secret}}", "secret": "s3nh4"}, "Olá {{secret}}"),
        ({"name": "{{#if x}}y{{/if}}", "x": True}, "Olá {{#if x}}y{{/if}}"),
        ({"name": "<script>alert(1)</script>Maria"}, "Olá Maria"),
        ({"name": "<b>Maria</b>"}, "Olá Maria"),
        ({"name": "Maria\x00\x07\u202e"}, "Olá Maria"),
        ({"name": "javascript:alert(1)"}, "Olá"),
    ],
)
def test_values_are_cleaned_and_never_parsed_as_templates(variables, expected):
    assert render("Olá {{name?}}", variables) == expected


def test_long_values_are_capped_by_the_sanitizer():
    assert render("{{v}}", {"v": "x" * 50_000}) == "x" * MAX_VALUE_LENGTH


def test_block_tags_alone_on_a_line_take_the_line_with_them():
    template = "Olá {{name}}\n{{#if link}}\n  Pague: {{link}}\n{{else}}\n  Responda esta mensagem.\n{{/if}}\nObrigado"
    assert render(template, {"name": "Ana", "link": "https://x.com"}) == "Olá Ana\n  Pague: https://x.com\nObrigado"
    assert render(template, {"name": "Ana"}) == "Olá Ana\n  Responda esta mensagem.\nObrigado"


def test_nested_standalone_blocks_and_crlf_lines_leave_no_blank_lines():
    template = "A\r\n{{#if a}}\r\n  {{#if b}}\r\nB\r\n  {{/if}}\r\n{{/if}}\r\nC"
    assert render(template, {"a": 1, "b": 1}) == "A\r\nB\r\nC"
    assert render(template, {}) == "A\r\nC"


def test_inline_block_tags_keep_their_line():
    assert render("Olá{{#if n}}, {{n}}{{/if}}!\nTchau", {"n": "Ana"}) == "Olá, Ana!\nTchau"
    assert render("{{#if a}}x{{/if}} {{#if b}}y{{/if}}\nz", {"a": 1, "b": 1}) == "x y\nz"


def test_output_is_trimmed_and_blank_line_runs_collapse():
    template = "\n\nOlá\n\n{{a?}}\n\n\n{{b?}}\n\nFim\n\n"
    assert render(template, {}) == "Olá\n\nFim"


@pytest.mark.parametrize(
    ("template", "code", "line", "column"),
    [
        ("{{#if a}}x", "unbalanced_block", 1, 1),
        ("Olá\n  {{#if a}}\nx", "unbalanced_block", 2, 3),
        ("{{#if a}}{{#unless b}}{{/unless}}", "unbalanced_block", 1, 1),
        ("x{{/if}}", "unbalanced_block", 1, 2),
        ("{{#if a}}x{{/unless}}", "unbalanced_block", 1, 11),
        ("{{#unless a}}\nx\n{{/if}}", "unbalanced_block", 3, 1),
        ("{{else}}", "unbalanced_block", 1, 1),
        ("{{#if a}}{{else}}{{else}}{{/if}}", "syntax_error", 1, 18),
        ("{{#each items}}{{this}}{{/each}}", "unknown_block", 1, 1),
        ("ok\n{{#with customer}}", "unknown_block", 2, 1),
        ("{{/each}}", "unknown_block", 1, 1),
        ("{{name|shout}}", "unknown_filter", 1, 1),
        ("{{name|money|nope}}", "unknown_filter", 1, 1),
        ("{{}}", "syntax_error", 1, 1),
        ("{{   }}", "syntax_error", 1, 1),
        ("{{1abc}}", "syntax_error", 1, 1),
        ("{{a b}}", "syntax_error", 1, 1),
        ("{{a-b}}", "syntax_error", 1, 1),
        ("{{a.}}", "syntax_error", 1, 1),
        ("{{a|}}", "syntax_error", 1, 1),
        ("{{a|money x}}", "syntax_error", 1, 1),
        ("{{{name}}}", "syntax_error", 1, 1),
        ("{{>partial}}", "syntax_error", 1, 1),
        ("{{!comment}}", "syntax_error", 1, 1),
        ("{{#if}}x{{/if}}", "syntax_error", 1, 1),
        ("{{#if a b}}x{{/if}}", "syntax_error", 1, 1),
        ("{{#if a|upper}}x{{/if}}", "syntax_error", 1, 1),
        ("{{#if a?}}x{{/if}}", "syntax_error", 1, 1),
        ("{{/if x}}", "syntax_error", 1, 1),
        ("Olá {{name", "syntax_error", 1, 5),
        ("Olá {{name {{other}}", "syntax_error", 1, 5),
        ("a\nb\n   {{ name", "syntax_error", 3, 4),
    ],
)
def test_invalid_templates_are_refused_with_line_and_column(template, code, line, column):
    with pytest.raises(TemplateError) as info:
        BillingTemplateEngine.validate(template)
    error = info.value
    assert (error.code, error.line, error.column) == (code, line, column)
    assert f"(line {line}, column {column})" in str(error)
    with pytest.raises(TemplateError):
        render(template, {})


def test_nesting_deeper_than_the_limit_is_refused():
    ok = "{{#if a}}" * MAX_DEPTH + "x" + "{{/if}}" * MAX_DEPTH
    assert render(ok, {"a": True}) == "x"
    too_deep = "{{#if a}}" * (MAX_DEPTH + 1) + "x" + "{{/if}}" * (MAX_DEPTH + 1)
    with pytest.raises(TemplateError) as info:
        BillingTemplateEngine.validate(too_deep)
    assert info.value.code == "too_deep"
    assert (info.value.line, info.value.column) == (1, len("{{#if a}}") * MAX_DEPTH + 1)


@pytest.mark.parametrize(
    "template",
    [
        "a" * (MAX_TEMPLATE_LENGTH + 1),
        "{{a}}" * (MAX_TAGS + 1),
        "{{#if a}}{{/if}}" * (MAX_TAGS // 2 + 1),
        "{{a?}}" * 5000,
    ],
)
def test_huge_templates_are_refused(template):
    with pytest.raises(TemplateError) as info:
        BillingTemplateEngine.validate(template)
    assert info.value.code == "too_large"


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "template",
    [
        "{{" * (MAX_TEMPLATE_LENGTH // 2),  # every position opens a tag that never closes
        "{{a" + " " * (MAX_TEMPLATE_LENGTH - 3),  # the closing search is bounded by the tag length
        "{{#if a}}" * (MAX_TEMPLATE_LENGTH // 9),  # deep nesting stops at the depth limit
        "}}" * (MAX_TEMPLATE_LENGTH // 2),  # stray closers are text
        "{" * MAX_TEMPLATE_LENGTH,
    ],
)
def test_pathological_templates_fail_fast_or_render_bounded(template):
    try:
        compiled = BillingTemplateEngine.compile(template)
    except TemplateError as error:
        assert error.code in {"syntax_error", "too_deep", "too_large"}
        return
    assert compiled.node_count <= 2 * MAX_TAGS + 1
    assert len(compiled.render({})) <= len(template)


@pytest.mark.timeout(30)
def test_the_largest_valid_template_renders_with_output_bounded_by_its_tags():
    # MAX_DEPTH nested blocks, each holding a variable, repeated until the tag limit.
    unit = "{{#if a}}" * MAX_DEPTH + "{{v}}" + "{{/if}}" * MAX_DEPTH
    tags_per_unit = 2 * MAX_DEPTH + 1
    template = unit * (MAX_TAGS // tags_per_unit)
    assert len(template) <= MAX_TEMPLATE_LENGTH
    compiled = BillingTemplateEngine.compile(template)
    assert compiled.node_count <= 2 * MAX_TAGS + 1
    output = compiled.render({"a": True, "v": "y" * 10_000})
    tags = MAX_TAGS // tags_per_unit
    assert output == "y" * MAX_VALUE_LENGTH * tags
    assert len(output) <= len(template) + MAX_TAGS * MAX_VALUE_LENGTH


@pytest.mark.parametrize(
    ("template", "used", "referenced"),
    [
        ("Olá", set(), set()),
        ("{{a}} {{b?}} {{c|money}}", {"a", "c"}, {"a", "b", "c"}),
        ("{{#if x}}{{a}}{{/if}}", set(), {"x", "a"}),
        ("{{#if x}}{{a}} {{b}}{{else}}{{a}}{{/if}}", {"a"}, {"x", "a", "b"}),
        ("{{#if link}}Pague: {{link}}{{/if}}", set(), {"link"}),
        ("{{#unless x}}{{#if y}}{{a}}{{else}}{{a}}{{/if}}{{else}}{{a}}{{/unless}}", {"a"}, {"x", "y", "a"}),
        ("{{customer.name}} {{customer.name|upper}}", {"customer.name"}, {"customer.name"}),
    ],
)
def test_it_reports_the_variables_a_template_needs_and_mentions(template, used, referenced):
    assert BillingTemplateEngine.variables_used(template) == used
    assert BillingTemplateEngine.referenced_variables(template) == referenced
    # A request with only the needed names never fails for missing ones on the main path.
    assert BillingTemplateEngine.missing_variables(template, {name: "v" for name in used}) == []


def test_compile_parses_once_and_renders_per_contact():
    template = "Olá {{name|first_name}}, {{amount|money}}"
    compiled = BillingTemplateEngine.compile(template)
    assert isinstance(compiled, CompiledTemplate)
    assert BillingTemplateEngine.compile(template) is compiled  # cached by content
    assert compiled.render({"name": "ANA LIMA", "amount": 5}) == "Olá Ana, R$ 5,00"
    assert compiled.render({"name": "joão", "amount": "7.5"}) == "Olá João, R$ 7,50"


def test_compile_cache_is_bounded():
    from apps.billing.templating.engine import COMPILE_CACHE_SIZE, _compile_cached

    for index in range(COMPILE_CACHE_SIZE + 10):
        BillingTemplateEngine.compile(f"Mensagem {index} {{{{name}}}}")
    assert _compile_cached.cache_info().currsize <= COMPILE_CACHE_SIZE


@pytest.mark.parametrize("content", [None, 123, b"{{name}}"])
def test_non_text_templates_are_a_programming_error(content):
    with pytest.raises(TypeError):
        BillingTemplateEngine.validate(content)


def test_errors_are_value_errors_with_readable_text_and_survive_pickling():
    error = TemplateError("unbalanced_block", "Block never closed.", line=3, column=7)
    assert isinstance(error, ValueError)
    assert str(error) == "Block never closed. (line 3, column 7)"
    assert str(TemplateError("too_large", "Too long.")) == "Too long."
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.code, copy.message, copy.line, copy.column) == ("unbalanced_block", "Block never closed.", 3, 7)

    missing = MissingVariablesError(["b", "a", "b"])
    assert isinstance(missing, TemplateError)
    assert missing.missing == ["a", "b"]
    assert pickle.loads(pickle.dumps(missing)).missing == ["a", "b"]


def test_rendering_does_not_modify_the_variables():
    variables = {"name": "<b>Ana</b>", "d": date(2025, 1, 1), "nested": {"x": "1"}}
    snapshot = {"name": "<b>Ana</b>", "d": date(2025, 1, 1), "nested": {"x": "1"}}
    render("{{name}} {{d}} {{nested.x}}", variables)
    assert variables == snapshot


def test_sample_variables_render_the_documented_example():
    variables = BillingTemplateEngine.sample_variables("overdue", today=date(2025, 3, 10))
    text = render(
        "{{name|first_name}} deve {{amount|money}} desde {{due_date|date}} ({{days_overdue|days}})", variables
    )
    assert text == "Maria deve R$ 1.234,56 desde 05/03/2025 (5 dias)"
    assert variables["due_date"] == (date(2025, 3, 10) - timedelta(days=5)).strftime("%d/%m/%Y")
