from django.apps import AppConfig


class EvolutionSandboxConfig(AppConfig):
    """Registered only for its management command; the sandbox has no models."""

    name = "devtools.evolution_sandbox"
    label = "evolution_sandbox"
    verbose_name = "Evolution API sandbox"
