"""Shared services used by several apps (the WhatsApp provider client lives here)."""
