"""Billing models live in `models/` (one module per model) once the domain lands."""
