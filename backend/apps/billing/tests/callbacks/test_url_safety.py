"""SSRF: callback URLs that reach inside our network are refused at registration and at send."""

from __future__ import annotations

import socket

import pytest

from apps.billing.models import BillingCampaign
from apps.billing.services.callback_delivery import callback_client
from apps.billing.tests.support.api import contacts
from apps.common import http_client, url_safety
from apps.common.http_client import HTTPCallError
from apps.common.url_safety import UnsafeURL, validate_callback_url

REFUSED = [
    "http://127.0.0.1/hook",
    "http://127.8.9.10:8080/hook",
    "http://10.0.0.1/hook",
    "https://172.16.5.4/hook",
    "http://192.168.0.10/hook",
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://100.100.100.200/",  # Alibaba metadata
    "http://100.64.0.1/",  # carrier-grade NAT
    "http://0.0.0.0:8000/",
    "http://[::1]/hook",
    "http://[::]/",
    "http://[fc00::1]/",
    "http://[fd00:ec2::254]/",  # AWS metadata over IPv6
    "http://[fe80::1]/",
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped
    "http://[::ffff:a9fe:a9fe]/",  # IPv4-mapped 169.254.169.254
    "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
    "http://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
    "http://224.0.0.1/",  # multicast
    "http://240.0.0.1/",  # reserved
    "http://localhost:8000/hook",  # a name that resolves to loopback
    "ftp://93.184.215.14/",
    "http:///nohost",
]


@pytest.mark.parametrize("url", REFUSED)
def test_internal_targets_are_refused(url):
    with pytest.raises(UnsafeURL) as info:
        validate_callback_url(url)
    assert info.value.code == "unsafe_callback_url"


def test_a_name_that_resolves_to_a_private_address_is_refused(monkeypatch):
    def fake_getaddrinfo(host, port, *args, **kwargs):
        assert host == "erp.internal.example"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.20.30.40", port))]

    monkeypatch.setattr(url_safety.socket, "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(UnsafeURL, match="private"):
        validate_callback_url("https://erp.internal.example/hooks")


def test_one_bad_address_among_good_ones_refuses_the_name(monkeypatch):
    monkeypatch.setattr(
        url_safety.socket,
        "getaddrinfo",
        lambda host, port, *a, **k: [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0)),
        ],
    )
    with pytest.raises(UnsafeURL, match="loopback"):
        validate_callback_url("https://mixed.example/hooks")


@pytest.mark.parametrize("url", ["https://93.184.215.14/hooks", "http://[2606:4700:4700::1111]:8443/x"])
def test_public_addresses_pass(url):
    validate_callback_url(url)


def test_a_name_that_does_not_resolve_is_reported_as_such(monkeypatch):
    def fail(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(url_safety.socket, "getaddrinfo", fail)
    with pytest.raises(UnsafeURL) as info:
        validate_callback_url("https://not-yet-live.example/hooks")
    assert info.value.code == "unresolvable_callback_url"


def test_the_setting_lifts_the_address_rules_but_not_the_scheme(settings):
    settings.BILLING_CALLBACK_ALLOW_PRIVATE = True
    validate_callback_url("http://127.0.0.1:9/hook")
    with pytest.raises(UnsafeURL):
        validate_callback_url("file:///etc/passwd")


def post(url: str) -> http_client.HTTPResponse:
    return callback_client.request("POST", url, body=b"{}", deadline=2, connect_timeout=1, read_body=False)


def test_the_connection_itself_is_checked_against_dns_rebinding(receiver):
    """Even if a name passed the check a moment ago, the resolved address is checked again
    before the socket is opened: not one packet reaches it."""
    endpoint = receiver()
    with pytest.raises(HTTPCallError) as caught:
        post(endpoint.url)
    assert (caught.value.kind, caught.value.nothing_sent, caught.value.refused_because) == (
        http_client.REFUSED_ADDRESS,
        True,
        "loopback address",
    )
    assert endpoint.requests == []


def test_the_callback_client_ignores_proxy_settings(receiver, monkeypatch, settings):
    """A proxy would be the peer the guard checks: the environment's proxy is never used."""
    settings.BILLING_CALLBACK_ALLOW_PRIVATE = True
    endpoint = receiver()
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    assert post(endpoint.url).status == 200
    assert len(endpoint.requests) == 1


# ----------------------------------------------------------------------------- registration (API)
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest",
        "http://[::1]/hook",
        "http://localhost/hook",
    ],
)
def test_ingest_refuses_an_unsafe_callback_url_and_writes_nothing(api, url):
    response = api.send("notification", {"external_id": "ssrf-1", "callback_url": url, "contacts": contacts(1)})
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "unsafe_callback_url"
    assert not BillingCampaign.objects.exists()


def test_ingest_accepts_a_public_callback_url(api):
    response = api.send(
        "notification",
        {"external_id": "ssrf-2", "callback_url": "https://93.184.215.14/hooks", "contacts": contacts(1)},
    )
    assert response.status_code == 202, response.content
    assert BillingCampaign.objects.get().callback_url == "https://93.184.215.14/hooks"


def test_ingest_accepts_a_name_that_does_not_resolve_yet(api, monkeypatch):
    """Not unsafe in itself; the send-time check refuses it if it later resolves inward."""

    def fail(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(url_safety.socket, "getaddrinfo", fail)
    response = api.send(
        "notification",
        {"external_id": "ssrf-3", "callback_url": "https://erp.example.com/hooks", "contacts": contacts(1)},
    )
    assert response.status_code == 202, response.content
