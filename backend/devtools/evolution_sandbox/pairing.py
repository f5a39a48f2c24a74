"""The QR code a provider shows while a number waits to be paired: a real QR (segno) of the
instance's current pairing code, as a base64 PNG. Scanning it is simulated by the control API
(`POST /_sandbox/instances/{name}/scan`), which connects the instance."""

from __future__ import annotations

import base64
import io

import segno


def qr_png_base64(code: str) -> str:
    """The PNG of the QR of `code`, base64 (no `data:` prefix)."""
    buffer = io.BytesIO()
    segno.make(code, error="l").save(buffer, kind="png", scale=4, border=2)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def qr_data_url(code: str) -> str:
    return "data:image/png;base64," + qr_png_base64(code)
