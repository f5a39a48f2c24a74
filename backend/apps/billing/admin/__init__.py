"""Billing admin: every billing model, scoped to the staff member's tenant (superusers see all).

Split by subject: `api_keys` (issue once, revoke), `templates` (variations inline, preview),
`operations` (config, campaigns, queues, contacts), `callbacks` (suppression list, callback
delivery log), `replies` (what replies do, the answers sent in conversations).
"""

from apps.billing.admin import api_keys, callbacks, operations, replies, templates  # noqa: F401  (registers the admins)
