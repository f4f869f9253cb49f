"""Fixtures of the control plane room (defined in cp_helpers, a uniquely named module other rooms cannot shadow)."""

from tests.controlplane.cp_helpers import channel, conn, cp

__all__ = ["channel", "conn", "cp"]
