"""HS256 JSON Web Tokens with the standard library only (hmac + base64 + json).

The real server turns a webhook header `jwt_key` into `Authorization: Bearer <JWT>` signed with
that key (contract §4, `generateJwtToken()`). `decode` exists so tests and the project's
webhook receiver can check such a token without a JWT dependency.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

_HEADER = {"alg": "HS256", "typ": "JWT"}


class InvalidToken(ValueError):
    """Malformed, wrongly signed or expired token."""


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=False).encode("utf-8")


def encode(payload: dict[str, Any], key: str) -> str:
    signing_input = f"{_b64encode(_json(_HEADER))}.{_b64encode(_json(payload))}"
    signature = hmac.new(key.encode("utf-8"), signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{_b64encode(signature)}"


def decode(token: str, key: str, *, verify_exp: bool = True, leeway: int = 0) -> dict[str, Any]:
    """Verify the signature (constant time) and `exp`, then return the payload."""
    try:
        header_part, payload_part, signature_part = token.split(".")
        header = json.loads(_b64decode(header_part))
        payload = json.loads(_b64decode(payload_part))
        signature = _b64decode(signature_part)
    except (ValueError, TypeError) as exc:
        raise InvalidToken("malformed token") from exc
    if not isinstance(header, dict) or header.get("alg") != "HS256" or not isinstance(payload, dict):
        raise InvalidToken("not an HS256 token")
    expected = hmac.new(key.encode("utf-8"), f"{header_part}.{payload_part}".encode("ascii"), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise InvalidToken("bad signature")
    if verify_exp and "exp" in payload and time.time() > float(payload["exp"]) + leeway:
        raise InvalidToken("token expired")
    return payload


def webhook_token(key: str, *, now: float | None = None) -> str:
    """The token Evolution sends with webhooks: `{iat, exp: iat+600, app, action}`."""
    iat = int(now if now is not None else time.time())
    return encode({"iat": iat, "exp": iat + 600, "app": "evolution", "action": "webhook"}, key)
