"""At most 15 CreateAccountAssignment calls of this process outstanding at once (Identity Center's quota)."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from connector.errors import ConnectorError, ErrorCode
from connector.integrations.identity_center import assignments


def test_the_sixteenth_outstanding_create_waits_and_then_times_out():
    assert assignments.MAX_OUTSTANDING_CREATES == 15
    with ExitStack() as held:
        for _ in range(15):
            held.enter_context(assignments.outstanding_create(1.0))
        with pytest.raises(ConnectorError) as err, assignments.outstanding_create(1.0):
            pass
        assert err.value.code == ErrorCode.TIMEOUT
    with assignments.outstanding_create(1.0):  # all released: a slot again
        pass
