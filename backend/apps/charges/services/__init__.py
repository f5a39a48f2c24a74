"""Charges services: typed, keyword-only functions named for what they do."""
