"""The tenant's suppression list (LGPD opt-out): phones that asked not to be messaged.

A row is written when a customer's reply asks to stop (services/opt_out.py) or by an admin.
Ingest refuses these phones (`opted_out`) and the worker skips them at send time. Only an
admin lifts a suppression (by deleting the row): a new request from the CRM never does.

When the person's data is erased (LGPD art. 18, apps/privacy), the row keeps only
`phone_hash`, the keyed hash of the phone (apps.common.keyed_hash.phone_hash), and `phone` is
NULL: the opt-out outlives the number, and every check matches a phone by either column.
"""

from __future__ import annotations

from django.db import models

from apps.contacts.utils import mask_phone


class SuppressedPhone(models.Model):
    class Source(models.TextChoices):
        INBOUND_REPLY = "inbound_reply", "Customer reply"
        ADMIN = "admin", "Admin"
        ERASURE = "erasure", "Data erased at the person's request"

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="suppressed_phones")
    phone = models.CharField(  # noqa: DJ001 - NULL once erased: the unique (tenant, phone) must not meet ""
        max_length=20, null=True, blank=True, help_text="E.164, e.g. +5511998765432"
    )
    phone_hash = models.CharField(  # noqa: DJ001 - NULL until erased (unique when set)
        max_length=64,
        null=True,
        blank=True,
        editable=False,
        help_text="Keyed hash of the phone, once the phone itself was erased.",
    )
    reason = models.CharField(max_length=200, blank=True, help_text="Why (never the customer's message text).")
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.ADMIN)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "suppressed phone"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "phone"], name="suppressed_phone_unique_per_tenant"),
            models.UniqueConstraint(fields=["tenant", "phone_hash"], name="suppressed_phone_hash_unique_per_tenant"),
            models.CheckConstraint(
                condition=models.Q(source__in=["inbound_reply", "admin", "erasure"]),
                name="suppressed_phone_source_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(phone__isnull=False) | models.Q(phone_hash__isnull=False),
                name="suppressed_phone_has_phone_or_hash",
            ),
        ]

    def __str__(self) -> str:
        return self.masked_phone

    def __repr__(self) -> str:  # no raw phone in debug output
        return f"<SuppressedPhone {self.pk} {self.masked_phone}>"

    @property
    def masked_phone(self) -> str:
        return mask_phone(self.phone) if self.phone else "(erased)"
