"""Billing services: the operations other layers (admin, API, worker) call."""
