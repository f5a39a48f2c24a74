from django.apps import AppConfig


class BillingAppConfig(AppConfig):
    """Named *App*Config so it is never confused with the `BillingConfig` model."""

    name = "apps.billing"
    label = "billing"
    verbose_name = "Billing"
    default_auto_field = "django.db.models.BigAutoField"
