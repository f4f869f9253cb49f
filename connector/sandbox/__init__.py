"""The embedded AWS sandbox: moto's server in-process plus what moto lacks (EKS access entries and
accessConfig, STS trust enforcement, fault injection, Lambda functions run by Python handlers, fast seeding).
Test and demo infrastructure only: production code never imports it (see .importlinter).

    from connector.sandbox import Sandbox, SeedSpec
    with Sandbox.start(seed=SeedSpec()) as sb:
        sb.endpoint, sb.env(), sb.root_session(), sb.seed_info, sb.faults.add(...), sb.faults.counts()
        sb.lambdas.register("fn-name", CredentialsFunction()), sb.lambdas.invocations("fn-name")
"""

from connector.sandbox.credentials_function import CredentialsFunction
from connector.sandbox.databases import DatabaseInfo, SeedDatabase
from connector.sandbox.faults import FaultRule, Faults
from connector.sandbox.lambdas import FunctionTimedOut, Invocation, LambdaContext, Lambdas
from connector.sandbox.seed import AccountInfo, ClusterInfo, IdentityCenterInfo, SeedInfo, SeedSpec
from connector.sandbox.server import ROOT_ACCESS_KEY_ID, ROOT_SECRET_ACCESS_KEY, Sandbox

__all__ = [
    "ROOT_ACCESS_KEY_ID",
    "ROOT_SECRET_ACCESS_KEY",
    "AccountInfo",
    "ClusterInfo",
    "CredentialsFunction",
    "DatabaseInfo",
    "FaultRule",
    "Faults",
    "FunctionTimedOut",
    "IdentityCenterInfo",
    "Invocation",
    "LambdaContext",
    "Lambdas",
    "Sandbox",
    "SeedDatabase",
    "SeedInfo",
    "SeedSpec",
]
