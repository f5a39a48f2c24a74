"""The tenant's staff set what replies do in the admin, for their tenant only."""

from __future__ import annotations

from apps.billing.models import ReplySettings
from apps.billing.tests.support.builders import build_template


def test_staff_change_their_tenants_reply_settings_with_its_notification_templates_only(
    staff_client, tenant, other_tenant
):
    settings = ReplySettings.for_tenant(tenant)
    mine = build_template(tenant, template_type="notification", name="Resposta PIX")
    overdue = build_template(tenant, template_type="overdue", name="Cobrança")
    build_template(other_tenant, template_type="notification", name="Deles")
    ReplySettings.for_tenant(other_tenant)

    page = staff_client.get(f"/admin/billing/replysettings/{settings.pk}/change/").content.decode()
    assert "Resposta PIX" in page and "Cobrança" not in page and "Deles" not in page
    response = staff_client.post(
        f"/admin/billing/replysettings/{settings.pk}/change/",
        {
            "min_confidence": "0.8",
            "hold_days_on_claims_paid": "5",
            "suppress_wrong_person": "on",
            "answer_payment_info": "on",
            "flag_negotiate": "on",
            "flag_talk_to_human": "",
            "callback_include_text": "",
            "payment_info_template": str(mine.pk),
            "staff_reply_template": str(overdue.pk),
        },
    )
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()  # not an overdue one
    staff_client.post(
        f"/admin/billing/replysettings/{settings.pk}/change/",
        {
            "min_confidence": "0.8",
            "hold_days_on_claims_paid": "5",
            "suppress_wrong_person": "on",
            "answer_payment_info": "on",
            "flag_negotiate": "on",
            "payment_info_template": str(mine.pk),
        },
    )
    settings.refresh_from_db()
    assert (settings.hold_days_on_claims_paid, settings.flag_talk_to_human, settings.payment_info_template) == (
        5,
        False,
        mine,
    )
    other = ReplySettings.objects.get(tenant=other_tenant)
    listing = staff_client.get("/admin/billing/replysettings/").content.decode()
    assert f"/replysettings/{settings.pk}/change/" in listing and f"/replysettings/{other.pk}/change/" not in listing
    assert staff_client.get(f"/admin/billing/replysettings/{other.pk}/change/").status_code == 302  # not theirs
