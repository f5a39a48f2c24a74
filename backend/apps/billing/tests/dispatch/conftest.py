"""In-process dispatch tests (helpers in `support/dispatch.py`): a tenant sending without a pace."""

from __future__ import annotations

import pytest


@pytest.fixture
def tenant(pipeline_tenant):
    t = pipeline_tenant()
    t.configure(messages_per_minute=60000)  # no pacing wait: count statements, not time
    return t
