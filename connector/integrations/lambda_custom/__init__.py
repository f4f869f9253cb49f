"""The lambda_custom integration type and its kind: the customer's own function grants, revokes, makes
credentials (provisioner.py, at most once per grant) and lists resources (sync.py); the grant records live in
SSM beside the function (records.py); integration.py holds the settings and talks to the function."""

from connector.integrations.capabilities import IntegrationSpec, KindSpec
from connector.integrations.lambda_custom.integration import RESOURCE_TYPE, LambdaCustomIntegration
from connector.integrations.lambda_custom.provisioner import LambdaGrants
from connector.integrations.lambda_custom.sync import RESOURCE_TYPES, LambdaSync

INTEGRATION = IntegrationSpec(LambdaCustomIntegration, syncer=LambdaSync)
KIND = KindSpec(LambdaCustomIntegration.type_id, RESOURCE_TYPE, LambdaGrants)

__all__ = ["INTEGRATION", "KIND", "RESOURCE_TYPE", "RESOURCE_TYPES", "LambdaCustomIntegration", "LambdaGrants"]
