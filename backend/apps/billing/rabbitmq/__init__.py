"""The consumer process, the top of billing: it reads the broker (`apps.billing.broker`) and
drives `dispatch`. No service imports it."""
