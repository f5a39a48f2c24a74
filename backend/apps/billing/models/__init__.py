"""Billing models, one module per model (the seed's layout); import them from here."""

from apps.billing.models.billing_api_key import BillingAPIKey
from apps.billing.models.billing_campaign import BillingCampaign
from apps.billing.models.billing_config import BillingConfig
from apps.billing.models.billing_contact import BillingContact
from apps.billing.models.billing_queue import BillingQueue
from apps.billing.models.billing_template import BillingTemplate, BillingTemplateVariation
from apps.billing.models.callback_delivery import CallbackDelivery, CallbackEvent
from apps.billing.models.consumer_process import ConsumerProcess
from apps.billing.models.conversation_reply import ConversationReply
from apps.billing.models.reply_settings import ReplySettings
from apps.billing.models.suppressed_phone import SuppressedPhone

__all__ = [
    "BillingAPIKey",
    "BillingCampaign",
    "BillingConfig",
    "BillingContact",
    "BillingQueue",
    "BillingTemplate",
    "BillingTemplateVariation",
    "CallbackDelivery",
    "CallbackEvent",
    "ConsumerProcess",
    "ConversationReply",
    "ReplySettings",
    "SuppressedPhone",
]
