"""Every path under /api/ answers errors in the API's shape, whatever DEBUG says (`make run` has
it on, production off); other paths keep Django's pages."""

import pytest
from django.test import Client


@pytest.fixture(params=[True, False], ids=["debug-on", "debug-off"])
def debug(request, settings) -> bool:
    settings.DEBUG = request.param
    return request.param


@pytest.mark.parametrize(
    "method,path",
    [
        ("get", "/api/v1/billing/no-such-route"),
        ("post", "/api/v1/billing/send/nothing"),
        ("get", "/api/v2/anything"),
    ],
)
def test_an_unknown_api_route_answers_the_json_not_found(debug, client, method, path):
    response = getattr(client, method)(path)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {"error": {"code": "not_found", "message": "Not found.", "details": None}}
    # replaced inside the chain: the outer middleware still stamp their headers
    assert response["X-Request-ID"] and response["X-Content-Type-Options"] == "nosniff"


def test_a_missing_trailing_slash_still_redirects(debug, client):
    response = client.get("/api/v1/billing/docs")
    assert response.status_code == 301
    assert response["Location"] == "/api/v1/billing/docs/"


def test_an_unknown_page_outside_the_api_keeps_django_s_page(settings, client):
    settings.DEBUG = True
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.urls("apps.common.tests.failing_api_urls")
@pytest.mark.parametrize("path", ["/api/v1/billing/failing", "/api/v1/billing/failing-drf"])
def test_a_bug_in_an_api_view_answers_the_json_internal_error(debug, caplog, path):
    client = Client(raise_request_exception=False)
    response = client.get(path)
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "a bug in a view" not in response.content.decode()
    assert any(record.exc_info for record in caplog.records)  # logged, never silenced


@pytest.mark.urls("apps.common.tests.failing_api_urls")
@pytest.mark.parametrize(
    "path,status,code",
    [
        ("/api/v1/billing/missing-drf", 404, "not_found"),
        ("/api/v1/billing/forbidden-drf", 403, "permission_denied"),
    ],
)
def test_django_s_own_exceptions_in_an_api_view_answer_the_error_shape(debug, client, path, status, code):
    response = client.get(path)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
