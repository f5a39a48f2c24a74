"""Settings of a local run (`make run`, scripts/manage.sh) and of the tests: production settings
plus the development tools, so production never installs them. Today that is the provider sandbox,
installed only for its `run_evolution_sandbox` command (it has no models, so no migrations)."""

from .settings import *  # noqa: F403 - dev settings are production's plus the sandbox

INSTALLED_APPS = [*INSTALLED_APPS, "devtools.evolution_sandbox"]  # noqa: F405 - from the settings imported above
