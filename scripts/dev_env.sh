# Sourced by scripts/run.sh and scripts/manage.sh: the local services' addresses
# (scripts/local_env.sh) and the settings of a local run. Any value set beforehand wins.
# shellcheck source=scripts/local_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/local_env.sh"
# The development settings: production's plus the dev tools (the sandbox's manage.py command).
export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-config.dev_settings}"
# DEBUG on: no SECRET_KEY needed, static files served from the apps, plain-text logs.
export DEBUG="${DEBUG:-1}" SECURE_SSL_REDIRECT="${SECURE_SSL_REDIRECT:-0}" LOG_FORMAT="${LOG_FORMAT:-text}"
# The sandbox listens on loopback: allow it as a private provider host (docs/security.md).
export EVOLUTION_ALLOWED_NETWORKS="${EVOLUTION_ALLOWED_NETWORKS:-127.0.0.0/8,::1/128}"
export BILLING_EXPECTED_PROCESSES="${BILLING_EXPECTED_PROCESSES:-consumer,periodic,callbacks,charges}"
