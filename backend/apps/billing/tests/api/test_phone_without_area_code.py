"""A number sent without its area code (DDD) is refused saying so, through the real API."""

from apps.billing.models import BillingContact
from apps.billing.tests.support.api import contacts


def test_a_contact_without_area_code_is_rejected_as_missing_area_code(api):
    batch = contacts(1) + [{"phone": "99876-5432", "name": "Sem DDD", "variables": {"message": "Aviso"}}]
    response = api.send("notification", {"external_id": "ddd-1", "contacts": batch})
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["accepted"] == 1
    [rejected] = body["rejected"]
    assert (rejected["index"], rejected["code"]) == (1, "missing_area_code")
    assert "DDD" in rejected["message"]
    assert "99876-5432" not in rejected["phone"]  # masked, never the raw number
    assert BillingContact.objects.count() == 1
