"""Billing API routes (`/api/v1/billing/`)."""
from django.urls import path  # noqa: F401

app_name = "billing"
urlpatterns: list = []
