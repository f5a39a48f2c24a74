from django.apps import AppConfig


class ChargesConfig(AppConfig):
    name = "apps.charges"
    label = "charges"
    verbose_name = "Charges and cadences"
    default_auto_field = "django.db.models.BigAutoField"
