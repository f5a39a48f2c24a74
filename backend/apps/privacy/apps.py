from django.apps import AppConfig


class PrivacyConfig(AppConfig):
    name = "apps.privacy"
    label = "privacy"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Privacy (LGPD)"
