"""Charges and dunning cadences: debts a tenant wants collected, the plan of messages that
collects them, payments (API, Asaas webhooks) that silence them, and the recovery report.
Sits above `billing`: it materialises steps through billing's ingest service and skips unsent
messages through a billing service; billing never imports this app."""
