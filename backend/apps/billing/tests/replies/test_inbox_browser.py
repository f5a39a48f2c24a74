"""The staff inbox in a real browser: headless Chromium on the pages served by a real ASGI server
(uvicorn: HTTP and WebSocket), the sandbox's customer writing "quero parcelar" to a webhook that
server receives, and the real consumer process sending the staff member's reply.

A staff member logs in, keeps the inbox open, sees the conversation appear without reloading,
opens it, replies (the debtor — the sandbox — gets the words) and resolves it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.billing.tests.support.builders import build_staff
from apps.billing.tests.support.processes import wait_until
from apps.chat.models import Conversation

pytestmark = pytest.mark.slow

DEBTOR_DIGITS = "5511966665555"
REPLY = "Olá, Maria! Podemos parcelar em 3x de R$ 50,00 <sem juros>."


@pytest.fixture
def inbox_server(plain_http_cookies, web_server) -> str:
    return web_server


def read(devtools, expression: str) -> Any:
    return json.loads(devtools.evaluate(f"JSON.stringify({expression})") or "null")


def page_state(devtools) -> dict[str, Any]:
    return read(
        devtools,
        """{
      path: location.pathname, live: window.billingInbox ? window.billingInbox.connection : null,
      updates: window.billingInbox ? window.billingInbox.updates : 0, marker: window.__stillTheSamePage || null,
      opens: window.billingInbox ? window.billingInbox.opens : 0,
      pushes: window.billingInbox ? window.billingInbox.pushes : 0,
      rows: Array.from(document.querySelectorAll('[data-conversation-id]')).map(r => r.dataset.conversationId),
      notices: Array.from(document.querySelectorAll('.notice')).map(n => n.textContent.trim())
    }""",
    )


def navigate(devtools, url: str) -> None:
    devtools.call("Page.navigate", url=url)


def wait_on_page(devtools, predicate: Callable[[], Any], *, server_log: Path, what: str, **kwargs: Any) -> Any:
    """`wait_until`, and on a timeout what the page and the server saw (a CI run lost a live row
    once; this says next time whether the socket closed, a push arrived or the server refused)."""
    try:
        return wait_until(predicate, what=what, **kwargs)
    except AssertionError as failed:
        state = page_state(devtools)
        tail = server_log.read_text(errors="replace")[-4000:] if server_log.exists() else "(no log)"
        raise AssertionError(f"{failed}\npage: {state}\nserver log:\n{tail}") from None


def rows_shown(devtools, server_log: Path, *, what: str) -> dict[str, Any]:
    """The page's state once it lists a conversation."""
    return wait_on_page(
        devtools, lambda: (s := page_state(devtools))["rows"] and s, server_log=server_log, timeout=30, what=what
    )


def test_a_staff_member_sees_quero_parcelar_live_replies_and_the_debtor_gets_it(
    pipeline_tenant, inbox_server, browser, start_process, tmp_path
):
    server_log = tmp_path / "uvicorn.log"  # the web_server fixture's
    tenant = pipeline_tenant()
    build_staff(tenant.tenant, username="ana")
    # No JWT: the server's signing key is its own (the URL secret still authenticates the webhook).
    call_command(
        "configure_evolution_webhook",
        "--tenant",
        tenant.tenant.slug,
        "--instance",
        tenant.instance.name,
        "--base-url",
        inbox_server,
        "--no-jwt",
        stdout=None,
    )
    consumer = start_process("run_billing_consumer", "--concurrency", "2")

    # The staff member logs in and leaves the inbox open.
    navigate(browser, f"{inbox_server}/inbox/")
    wait_until(
        lambda: (
            page_state(browser)["path"] == "/inbox/login/"
            and read(browser, "document.readyState === 'complete' && !!document.getElementById('id_username')")
        ),
        timeout=20,
        what="the login page, loaded",
    )
    browser.evaluate("""document.getElementById('id_username').value = 'ana';
                        document.getElementById('id_password').value = 'pw';
                        document.querySelector('form.card').submit(); true""")
    wait_until(
        lambda: (s := page_state(browser))["path"] == "/inbox/" and s["live"] == "open",
        timeout=60,
        what="the inbox, live",
    )
    assert page_state(browser)["rows"] == []
    browser.evaluate("window.__stillTheSamePage = 'yes'")

    # A collection message goes out; the debtor answers it.
    due = (timezone.localdate() - timedelta(days=3)).isoformat()
    tenant.send(
        "overdue",
        [{"phone": f"+{DEBTOR_DIGITS}", "name": "Maria", "amount": "150.00", "due_date": due}],
        external_id="inbox-1",
    )
    first = wait_until(
        lambda: [m for m in tenant.messages() if m["number"] == DEBTOR_DIGITS],
        timeout=60,
        what="the collection message",
        alive=[consumer],
    )[0]
    tenant.sandbox.inbound(
        tenant.instance.instance_name,
        number=DEBTOR_DIGITS,
        text="quero parcelar",
        reply_to=first["id"],
        push_name="Maria",
    )

    conversation = wait_until(
        lambda: Conversation.objects.filter(tenant=tenant.tenant, needs_attention=True).first(),
        timeout=30,
        what="the conversation flagged",
    )
    state = rows_shown(browser, server_log, what="the row appearing live")
    assert state["rows"] == [str(conversation.pk)] and state["marker"] == "yes" and state["pushes"] >= 1
    assert "Quer negociar" in browser.evaluate("document.getElementById('conversations').textContent")

    # Open it, read the thread, reply.
    browser.evaluate(f"document.querySelector('[data-conversation-id=\"{conversation.pk}\"] a').click(); true")
    wait_until(
        lambda: page_state(browser)["path"] == f"/inbox/{conversation.pk}/" and page_state(browser)["live"] == "open",
        timeout=30,
        what="the thread page",
    )
    thread_text = browser.evaluate("document.getElementById('thread').textContent")
    assert "quero parcelar" in thread_text and "R$ 150,00" in thread_text  # the debt behind it
    browser.evaluate(f"""document.getElementById('reply-text').value = {json.dumps(REPLY)};
                         document.getElementById('reply-form').submit(); true""")
    wait_until(
        lambda: any("Resposta enviada" in n for n in page_state(browser)["notices"]),
        timeout=30,
        what="the reply accepted",
    )

    sent = wait_until(
        lambda: [m for m in tenant.messages() if m["number"] == DEBTOR_DIGITS and m["text"] != first["text"]],
        timeout=60,
        what="the reply at the debtor",
        alive=[consumer],
    )
    assert [m["text"] for m in sent] == ["Olá, Maria! Podemos parcelar em 3x de R$ 50,00 ."]  # plain text: no markup

    # Resolve: back to an empty inbox.
    browser.evaluate("document.getElementById('resolve').click(); true")
    wait_until(
        lambda: (s := page_state(browser))["path"] == "/inbox/" and s["rows"] == [],
        timeout=30,
        what="the inbox without it",
    )
    conversation.refresh_from_db()
    assert (conversation.needs_attention, conversation.closed_by) == (False, "agent")

    # A change no push announced (none reaches a closed socket): the page catches up when its
    # socket comes back.
    Conversation.objects.filter(pk=conversation.pk).update(needs_attention=True)
    before = wait_until(lambda: (s := page_state(browser))["live"] == "open" and s, timeout=30, what="live again")
    assert before["rows"] == []
    browser.evaluate("window.billingInbox.socket.close(); true")
    after = rows_shown(browser, server_log, what="the row after the reconnection")
    assert after["rows"] == [str(conversation.pk)] and after["opens"] == before["opens"] + 1
    assert after["pushes"] == before["pushes"]
