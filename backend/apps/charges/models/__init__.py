"""Charges models, one module per subject; import them from here."""

from apps.charges.models.asaas_event import AsaasEvent
from apps.charges.models.cadence import Cadence, CadenceStep
from apps.charges.models.charge import Charge
from apps.charges.models.charge_event import ChargeEvent
from apps.charges.models.charge_settings import ChargeSettings
from apps.charges.models.step_run import ChargeStepRun

__all__ = ["AsaasEvent", "Cadence", "CadenceStep", "Charge", "ChargeEvent", "ChargeSettings", "ChargeStepRun"]
