"""The staff inbox's pages and socket: who may see what, escaping, reply, resolve, live pushes."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client

from apps.billing.conversations.consumers import authorized_tenant
from apps.billing.conversations.live import issue_inbox_token, publish_conversation_update
from apps.billing.models import ConversationReply, SuppressedPhone
from apps.billing.tests.support.builders import build_staff
from apps.billing.tests.support.replies import post_reply, sent_collection
from apps.billing.tests.support.webhooks import PHONE
from apps.billing.tests.support.ws_client import WebsocketCommunicator
from apps.chat.models import Conversation

INBOX = "/inbox/"
TIMEOUT = 5


@pytest.fixture
def flagged(hook) -> Conversation:
    sent = sent_collection(hook)
    post_reply(hook, "quero parcelar <script>alert('x')</script>", quoted=sent.provider_message_id)
    return Conversation.objects.get(tenant=hook.tenant, contact_phone=PHONE)


@pytest.fixture
def staff_browser(hook) -> Client:
    browser = Client()
    browser.force_login(build_staff(hook.tenant))
    return browser


def test_the_inbox_asks_for_a_login_and_a_staff_member_logs_in(hook):
    browser = Client()
    response = browser.get(INBOX)
    assert response.status_code == 302 and response["Location"].startswith("/inbox/login/?next=/inbox/")
    build_staff(hook.tenant, username="ana")
    assert browser.get("/inbox/login/").status_code == 200
    wrong = browser.post("/inbox/login/", {"username": "ana", "password": "nope"})
    assert wrong.status_code == 200 and "incorretos" in wrong.content.decode()
    logged = browser.post("/inbox/login/", {"username": "ana", "password": "pw", "next": INBOX})
    assert logged.status_code == 302 and logged["Location"] == INBOX
    assert browser.get(INBOX).status_code == 200


def test_a_user_without_a_tenant_sees_nothing(hook, flagged):
    lost = Client()
    lost.force_login(get_user_model().objects.create_user("lost", password="pw", is_staff=True))
    response = lost.get(INBOX)
    assert response.status_code == 403 and "Sem acesso" in response.content.decode()
    assert lost.get(f"{INBOX}{flagged.pk}/").status_code == 403


def test_the_list_shows_the_tenants_conversations_waiting_for_a_person(hook, other_hook, flagged, staff_browser):
    quiet = sent_collection(hook, phone="+5511998760002")
    page = staff_browser.get(INBOX).content.decode()
    assert f'data-conversation-id="{flagged.pk}"' in page and "Quer negociar" in page
    assert quiet.phone not in page  # not waiting for anyone
    outsider = Client()
    outsider.force_login(build_staff(other_hook.tenant))
    assert f'data-conversation-id="{flagged.pk}"' not in outsider.get(INBOX).content.decode()
    assert outsider.get(f"{INBOX}{flagged.pk}/").status_code == 404
    assert outsider.post(f"{INBOX}{flagged.pk}/reply", {"text": "oi"}).status_code == 404
    assert outsider.post(f"{INBOX}{flagged.pk}/resolve").status_code == 404


def test_the_thread_renders_customer_text_escaped(flagged, staff_browser):
    page = staff_browser.get(f"{INBOX}{flagged.pk}/").content.decode()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "<script>alert(" not in page
    assert "Sua fatura venceu." in page and 'data-author="collection"' in page


def test_a_reply_from_the_inbox_is_queued_with_its_author_and_shown_as_queued(hook, flagged, staff_browser):
    response = staff_browser.post(f"{INBOX}{flagged.pk}/reply", {"text": "Podemos parcelar em 3x <b>sem juros</b>."})
    assert response.status_code == 302 and response["Location"] == f"{INBOX}{flagged.pk}/"
    reply = ConversationReply.objects.get()
    assert reply.author_user.username.startswith("staff-") and reply.kind == "staff"
    assert reply.contact.variables == {"message": "Podemos parcelar em 3x sem juros."}  # WhatsApp is plain text
    page = staff_browser.get(response["Location"]).content.decode()
    assert f'data-reply-id="{reply.pk}"' in page and "na fila" in page and "Resposta enviada" in page


def test_a_reply_to_an_opted_out_phone_is_refused_with_a_readable_message(hook, flagged, staff_browser):
    SuppressedPhone.objects.create(tenant=hook.tenant, phone=PHONE, source="admin")
    response = staff_browser.post(f"{INBOX}{flagged.pk}/reply", {"text": "oi"}, follow=True)
    assert "pediu para não receber mensagens" in response.content.decode()
    assert not ConversationReply.objects.exists()


def test_resolve_takes_it_off_the_list(flagged, staff_browser):
    response = staff_browser.post(f"{INBOX}{flagged.pk}/resolve")
    assert response.status_code == 302 and response["Location"] == INBOX
    assert f'data-conversation-id="{flagged.pk}"' not in staff_browser.get(INBOX).content.decode()
    flagged.refresh_from_db()
    assert (flagged.needs_attention, flagged.closed_by) == (False, "agent")


def test_forms_need_their_csrf_token(hook, flagged):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(build_staff(hook.tenant))
    assert browser.post(f"{INBOX}{flagged.pk}/resolve").status_code == 403
    assert browser.post(f"{INBOX}{flagged.pk}/reply", {"text": "oi"}).status_code == 403


def test_the_socket_token_belongs_to_an_active_staff_member_of_that_tenant(hook, staff_browser):
    token = staff_browser.get(f"{INBOX}ws-token").json()["ws_token"]
    assert authorized_tenant(token) == str(hook.tenant.pk)
    user = get_user_model().objects.get(username__startswith="staff-")
    user.is_active = False
    user.save()
    assert authorized_tenant(token) is None
    assert authorized_tenant("junk") is None and authorized_tenant("") is None


@pytest.mark.django_db(transaction=True)
def test_pushes_reach_the_watchers_of_that_tenant_only(hook, other_hook):
    from config.asgi import application

    mine = issue_inbox_token(tenant_id=hook.tenant.pk, user_id=build_staff(hook.tenant).pk)
    theirs = issue_inbox_token(tenant_id=other_hook.tenant.pk, user_id=build_staff(other_hook.tenant).pk)

    async def run() -> tuple[list, bool, dict]:
        watcher = WebsocketCommunicator(application, f"/ws/billing/inbox/?token={mine}")
        other = WebsocketCommunicator(application, f"/ws/billing/inbox/?token={theirs}")
        forged = WebsocketCommunicator(application, "/ws/billing/inbox/?token=forged")
        assert (await watcher.connect(timeout=TIMEOUT))[0] and (await other.connect(timeout=TIMEOUT))[0]
        seen = [await watcher.receive_json_from(timeout=TIMEOUT)]
        await other.receive_json_from(timeout=TIMEOUT)
        assert await sync_to_async(publish_conversation_update)(tenant_id=hook.tenant.pk, conversation_id=42)
        seen.append(await watcher.receive_json_from(timeout=TIMEOUT))
        quiet = await other.receive_nothing(timeout=0.3)
        await forged.connect(timeout=TIMEOUT)
        refused = await forged.receive_output(timeout=TIMEOUT)
        for communicator in (watcher, other):
            await communicator.disconnect()
        return seen, quiet, refused

    seen, quiet, refused = async_to_sync(run)()
    assert seen == [{"type": "ready"}, {"type": "conversation", "conversation_id": 42}]
    assert quiet and (refused["type"], refused.get("code")) == ("websocket.close", 4401)


def test_a_failed_push_is_logged_and_never_raised(monkeypatch, caplog):
    from apps.billing.conversations import live

    def broken(*args, **kwargs):
        raise ConnectionError("redis down")

    monkeypatch.setattr(live, "_group_send", broken)
    assert publish_conversation_update(tenant_id="t", conversation_id=1) is False
    assert "billing inbox update not published" in caplog.text
