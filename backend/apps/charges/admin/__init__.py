"""Charges admin, scoped to the staff member's tenant (superusers see all): charges (read-only,
with pay/cancel actions, the timeline, a spreadsheet import and the recovery report), cadences
(steps inline, with the dates a charge due today would get) and per-tenant settings."""

from apps.charges.admin import cadences, charges, settings  # noqa: F401  (registers the admins)
