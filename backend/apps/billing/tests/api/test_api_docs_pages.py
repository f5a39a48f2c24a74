"""The API docs pages (Swagger UI, Redoc) load pinned bundles from our own static files
(drf-spectacular-sidecar), so they work offline and never change under us from a CDN."""

import re

import pytest
from django.test import Client

ASSET = re.compile(r'<(?:script|link)\b[^>]*?(?:src|href)="([^"]+)"')


def assets(page: bytes) -> list[str]:
    return ASSET.findall(page.decode())


@pytest.fixture
def static_client(settings) -> Client:
    """A client whose WhiteNoise serves from the apps' static folders, as `make run` does (DEBUG
    on); production serves the same files from `collectstatic`'s folder (Dockerfile)."""
    settings.WHITENOISE_USE_FINDERS = True
    return Client()


@pytest.mark.parametrize(
    "page,bundle",
    [
        ("/api/v1/billing/docs/", "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"),
        ("/api/v1/billing/redoc/", "/static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"),
    ],
)
def test_the_docs_page_loads_its_bundle_from_our_static_files(static_client, page, bundle):
    response = static_client.get(page)
    assert response.status_code == 200
    scripts = re.findall(r'<script\b[^>]*\bsrc="([^"]+)"', response.content.decode())
    assert bundle in scripts
    assert all(src.startswith("/static/") for src in scripts), scripts
    assert b"@latest" not in response.content and b"cdn.jsdelivr.net" not in response.content


def test_every_asset_of_the_swagger_page_is_served(static_client):
    page = static_client.get("/api/v1/billing/docs/")
    urls = assets(page.content)
    assert len(urls) >= 3 and all(url.startswith("/static/drf_spectacular_sidecar/") for url in urls), urls
    for url in urls:
        response = static_client.get(url)
        assert response.status_code == 200, url
        assert b"".join(response.streaming_content), url
