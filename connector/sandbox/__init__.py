"""The embedded AWS sandbox: moto's server in-process plus what moto lacks (EKS access entries and
accessConfig, STS trust enforcement, fault injection, fast seeding). Test and demo infrastructure only:
production code never imports it (see .importlinter).

    from connector.sandbox import Sandbox, SeedSpec
    with Sandbox.start(seed=SeedSpec()) as sb:
        sb.endpoint, sb.env(), sb.root_session(), sb.seed_info, sb.faults.add(...), sb.faults.counts()
"""

from connector.sandbox.faults import FaultRule, Faults
from connector.sandbox.seed import AccountInfo, ClusterInfo, IdentityCenterInfo, SeedInfo, SeedSpec
from connector.sandbox.server import ROOT_ACCESS_KEY_ID, ROOT_SECRET_ACCESS_KEY, Sandbox

__all__ = [
    "ROOT_ACCESS_KEY_ID",
    "ROOT_SECRET_ACCESS_KEY",
    "AccountInfo",
    "ClusterInfo",
    "FaultRule",
    "Faults",
    "IdentityCenterInfo",
    "Sandbox",
    "SeedInfo",
    "SeedSpec",
]
