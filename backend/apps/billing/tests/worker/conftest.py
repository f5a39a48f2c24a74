from ..pipeline.conftest import pipeline_tenant, purge_broker  # noqa: F401  (shared fixtures)
