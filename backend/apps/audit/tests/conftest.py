from apps.billing.tests.api.conftest import ApiTenant, api, other_api  # noqa: F401 - fixtures (tenants A and B)
