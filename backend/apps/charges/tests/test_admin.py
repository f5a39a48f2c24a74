"""The charges admin: spreadsheet import (mapping, preview with errors by row, the same upsert
as the API), the cadence date preview, the recovery report page, tenant scoping."""

from __future__ import annotations

import io
import re
from datetime import date

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from openpyxl import Workbook

from apps.billing.templating.date_calculator import today_in
from apps.charges.models import Charge
from apps.tenancy.models import Membership

from .conftest import charge, make_cadence, upsert

pytestmark = pytest.mark.django_db

CSV = (
    "Fatura;Nome;Celular;Valor;Vencimento;CPF\n"
    "F-1;Maria;(11) 99876-5432;1.234,56;10/12/2030;\n"
    "F-2;João;123;10,00;10/12/2030;\n"
    "F-3;Ana;(21) 98765-4321;50;2030-12-11;390.533.447-05\n"
)


@pytest.fixture
def staff(client, api, settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    user = get_user_model().objects.create_user("clinic-staff", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="charges"))
    Membership.objects.create(user=user, tenant=api.tenant)
    client.force_login(user)
    return client


def upload(staff, name: str, content: bytes):
    response = staff.post("/admin/charges/charge/import/", {"file": _file(name, content)})
    assert response.status_code == 302, response.content[:500]
    return response["Location"]


def _file(name: str, content: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, content)


def test_csv_import_guesses_the_mapping_previews_errors_by_row_and_imports(staff, api):
    url = upload(staff, "cobrancas.csv", CSV.encode("latin-1"))
    page = staff.get(url).content.decode()
    assert "2 valid" in re.sub(r"<[^>]+>", "", page) and "invalid_phone" in page
    assert not Charge.objects.exists()  # a preview writes nothing
    response = staff.post(
        url, {"external_id": 0, "name": 1, "phone": 2, "amount": 3, "due_date": 4, "document": 5, "action": "import"}
    )
    assert response.status_code == 302
    stored = {c.external_id: c for c in Charge.objects.filter(tenant=api.tenant)}
    assert set(stored) == {"F-1", "F-3"} and str(stored["F-1"].amount) == "1234.56"
    assert stored["F-3"].document == "39053344705" and stored["F-3"].due_date == date(2030, 12, 11)


def test_xlsx_import_reads_dates_and_numbers_from_cells(staff, api):
    book = Workbook()
    sheet = book.active
    sheet.append(["external_id", "name", "phone", "amount", "due_date"])
    sheet.append(["X-1", "Maria", "11998765432", 99.9, date(2030, 1, 31)])
    content = io.BytesIO()
    book.save(content)
    url = upload(staff, "cobrancas.xlsx", content.getvalue())
    staff.post(url, {"external_id": 0, "name": 1, "phone": 2, "amount": 3, "due_date": 4, "action": "import"})
    stored = Charge.objects.get(external_id="X-1")
    assert str(stored.amount) == "99.90" and stored.due_date == date(2030, 1, 31)


def test_a_file_that_is_not_a_table_is_refused_on_the_form(staff):
    response = staff.post("/admin/charges/charge/import/", {"file": _file("x.xlsx", b"not a workbook")})
    assert response.status_code == 200 and "not a readable .xlsx" in response.content.decode()


def test_cadence_page_previews_the_dates_of_a_charge_due_today(staff, api):
    from apps.charges.models import Cadence

    make_cadence(api, offsets=(-3, 0, 1))
    page = staff.get(f"/admin/charges/cadence/{Cadence.objects.get().pk}/change/").content.decode()
    assert "D-3 (upcoming)" in page and "D+1 (overdue)" in page and re.search(r"\d\d/\d\d/\d{4} \(", page)


def test_recovery_report_page_and_tenant_scoping(staff, api, other_api):
    upsert(api, [charge(1)])
    upsert(other_api, [charge(2)])
    api.post("/api/v1/billing/charges/INV-1/pay", {"paid_amount": "150"})
    today = today_in(api.tenant.timezone).strftime("%d/%m/%Y")  # the report's days are the tenant's
    page = staff.get("/admin/charges/charge/recovery/", {"date_from": today, "date_to": today}).content.decode()
    assert "R$ 150.00" in page
    listing = staff.get("/admin/charges/charge/").content.decode()
    assert "INV-1" in listing and "INV-2" not in listing
    other = Charge.objects.get(external_id="INV-2")
    assert staff.get(f"/admin/charges/charge/{other.pk}/change/").status_code in (302, 404)


def test_mark_paid_action_uses_the_status_service(staff, api):
    upsert(api, [charge(1), charge(2)])
    api.post("/api/v1/billing/charges/INV-2/cancel", {})
    ids = [c.pk for c in Charge.objects.order_by("external_id")]
    response = staff.post("/admin/charges/charge/", {"action": "mark_paid", "_selected_action": ids})
    assert response.status_code == 302
    assert dict(Charge.objects.values_list("external_id", "status")) == {"INV-1": "paid", "INV-2": "paid"}
    assert Charge.objects.get(external_id="INV-1").payment_source == "admin"


def test_settings_page_takes_a_write_only_asaas_token_and_shows_the_url(staff, api):
    from apps.charges.models import ChargeSettings

    settings_row = ChargeSettings.for_tenant(api.tenant)
    url = f"/admin/charges/chargesettings/{settings_row.pk}/change/"
    assert settings_row.asaas_url_token in staff.get(url).content.decode()
    form = {
        "debtor_daily_cap": 2,
        "escalation_age_days": 60,
        "conversion_window_days": 7,
        "default_cadence": "",
        "new_asaas_token": "t" * 20,
    }
    assert "32 to 255" in staff.post(url, form).content.decode()  # refused, shown on the form
    form["new_asaas_token"] = "admin-token-" + "a" * 30
    assert staff.post(url, form).status_code == 302
    settings_row.refresh_from_db()
    assert settings_row.debtor_daily_cap == 2 and settings_row.asaas_token_matches("admin-token-" + "a" * 30)
