"""The CloudFormation templates: cfn-lint clean, every IAM statement explained, least privilege, and
created for real (moto over HTTP) with the permissions they declare."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from cfnlint.api import ManualArgs, lint

from connector.jobs.guardrails import load_guardrails
from tests.deploy.deploy_paths import ECS_TEMPLATE, MANAGEMENT_TEMPLATE, MEMBER_TEMPLATE, TEMPLATES, load_template

pytestmark = [
    pytest.mark.timeout(300),
    # moto has no CloudFormation support for AWS::SecretsManager::Secret (see AWS_FACTS.md): it skips it.
    pytest.mark.filterwarnings("ignore:Tried to parse AWS.+SecretsManager.+Secret:UserWarning"),
]

ACCOUNT = "123456789012"  # moto's default account

# What the connector calls, per role (the brief's list). A policy may ask for these and nothing else.
ALLOWED_ACTIONS = {
    "TaskRole": {
        "sts:AssumeRole",
        "lambda:InvokeFunction",
        "lambda:GetFunction",
        "lambda:ListTags",
        # the Lambda custom kind's grant records (SSM parameters beside the function)
        "ssm:GetParameter",
        "ssm:PutParameter",
        "ssm:DeleteParameter",
        "ssm:GetParametersByPath",
        "secretsmanager:GetSecretValue",
        # standalone database integrations with auth_type iam-auth (the connector's own database user)
        "rds-db:connect",
    },
    "ExecutionRole": {
        "ecr:GetAuthorizationToken",
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "secretsmanager:GetSecretValue",
        "ssm:GetParameters",
    },
    "ManagementAccountRole": {
        "sts:AssumeRole",
        *(
            f"organizations:{a}"
            for a in [
                "DescribeOrganization",
                "ListRoots",
                "ListOrganizationalUnitsForParent",
                "ListAccountsForParent",
                "ListChildren",
                "ListParents",
                "ListAccounts",
                "DescribeAccount",
                "ListTagsForResource",
            ]
        ),
        *(f"identitystore:{a}" for a in ["ListUsers", "ListGroups", "DescribeUser", "DescribeGroup"]),
        *(
            f"sso:{a}"
            for a in [
                "ListInstances",
                "ListPermissionSets",
                "DescribePermissionSet",
                "ListManagedPoliciesInPermissionSet",
                "GetInlinePolicyForPermissionSet",
                "ListCustomerManagedPolicyReferencesInPermissionSet",
                "ListTagsForResource",
                "TagResource",
                "UntagResource",
                "ListAccountAssignments",
                "ListAccountsForProvisionedPermissionSet",
                "CreateAccountAssignment",
                "DeleteAccountAssignment",
                "DescribeAccountAssignmentCreationStatus",
                "DescribeAccountAssignmentDeletionStatus",
            ]
        ),
        # Dependent actions of Create/DeleteAccountAssignment, scoped to Identity Center's reserved roles.
        *(
            f"iam:{a}"
            for a in [
                "GetRole",
                "CreateRole",
                "DeleteRole",
                "AttachRolePolicy",
                "DetachRolePolicy",
                "PutRolePolicy",
                "DeleteRolePolicy",
                "ListAttachedRolePolicies",
                "ListRolePolicies",
                "GetSAMLProvider",
            ]
        ),
        # S3 / SNS / SQS discovery through Resource Explorer (read only).
        *(
            f"resource-explorer-2:{a}"
            for a in [
                "ListIndexes",
                "ListIndexesForMembers",
                "ListViews",
                "GetDefaultView",
                "ListSupportedResourceTypes",
                "GetIndex",
                "GetView",
                "Search",
            ]
        ),
    },
    "MemberAccountRole": {
        "ec2:DescribeRegions",
        *(
            f"eks:{a}"
            for a in [
                "ListClusters",
                "DescribeCluster",
                "ListAccessEntries",
                "DescribeAccessEntry",
                "ListAssociatedAccessPolicies",
                "ListAccessPolicies",
                "CreateAccessEntry",
                "DeleteAccessEntry",
                "UpdateAccessEntry",
                "AssociateAccessPolicy",
                "DisassociateAccessPolicy",
                "TagResource",
            ]
        ),
        *(
            f"iam:{a}"
            for a in ["ListRoles", "GetRole", "ListRoleTags", "PutRolePolicy", "DeleteRolePolicy", "GetRolePolicy"]
        ),
        # database discovery, the tagged databases' secrets, IAM auth as the connector's database user
        "rds:DescribeDBInstances",
        "rds:DescribeDBClusters",
        "redshift:DescribeClusters",
        "secretsmanager:GetSecretValue",
        "rds-db:connect",
        # grant records as role tags; the inline-size check and the drift report; the EC2 sync's reasons
        *(f"iam:{a}" for a in ["TagRole", "UntagRole", "ListRolePolicies", "GetInstanceProfile"]),
        "iam:ListAttachedRolePolicies",
        # EC2 through Systems Manager: discovery, and ending sessions on revoke
        "ec2:DescribeInstances",
        "ssm:DescribeInstanceInformation",
        "ssm:DescribeSessions",
        "ssm:TerminateSession",
        # S3 / SNS / SQS discovery (opt-in), and what an IAM grant on a bucket reads (its key)
        "s3:ListAllMyBuckets",
        "s3:GetBucketLocation",
        "s3:GetEncryptionConfiguration",
        "s3:GetBucketTagging",
        "kms:DescribeKey",
        "sns:ListTopics",
        "sns:ListTagsForResource",
        "sqs:ListQueues",
        "sqs:ListQueueTags",
        "tag:GetResources",  # IAM grants by tag
        "resource-explorer-2:GetIndex",  # doctor: an index in each region
        # the delegated administrator's view (parameter ResourceExplorerAdministrator=true only)
        *(
            f"resource-explorer-2:{a}"
            for a in [
                "ListIndexes",
                "ListIndexesForMembers",
                "ListViews",
                "GetDefaultView",
                "ListSupportedResourceTypes",
            ]
        ),
        "resource-explorer-2:GetView",
        "resource-explorer-2:Search",
        "cloudtrail:LookupEvents",  # audit trail of IAM grants
        "logs:FilterLogEvents",  # audit trail of EKS grants (the clusters' audit log groups only)
    },
}
READ_ONLY_PREFIXES = ("List", "Describe", "Get", "Lookup", "Search")  # LookupEvents, Search: reads
LINT_REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2"]


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_cfn_lint_reports_no_errors_and_no_warnings(template: Path) -> None:
    # cfn-lint's default rule set: errors (E) and warnings (W), checked in a few regions.
    matches = lint(template.read_text(encoding="utf-8"), config=ManualArgs(regions=LINT_REGIONS))
    assert not matches, "\n".join(f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches)


def test_cfn_lint_catches_a_broken_template() -> None:
    # The lint call above can fail: a template with an unused parameter and a bad property is reported.
    broken = (
        "AWSTemplateFormatVersion: '2010-09-09'\nParameters:\n  Unused:\n    Type: String\n"
        "Resources:\n  G:\n    Type: AWS::Logs::LogGroup\n    Properties:\n      RetentionInDays: 4\n"
    )
    ids = {m.rule.id for m in lint(broken, config=ManualArgs(regions=LINT_REGIONS))}
    assert "W2001" in ids and "E3030" in ids, ids


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_every_policy_statement_is_commented(template: Path) -> None:
    lines = template.read_text(encoding="utf-8").splitlines()
    in_policy = False
    missing = []
    for number, line in enumerate(lines, start=1):
        if re.match(r"^\s*PolicyDocument:\s*$", line):
            in_policy = True
        elif re.match(r"^\s*(Tags|Outputs|ManagedPolicyArns):", line) or re.match(r"^  [A-Za-z]+:\s*$", line):
            in_policy = False
        if in_policy and re.match(r"^\s*- (Sid|Effect): ", line):
            previous = next(p for p in reversed(lines[: number - 1]) if p.strip())
            conditions = ("HasGuardrails", "IsResourceExplorerAdministrator")  # the !If branches, commented above
            if (
                not previous.strip().startswith("#")
                and "!If" not in previous
                and not any(c in previous for c in conditions)
            ):
                missing.append(f"{template.name}:{number}: {line.strip()}")
    assert not missing, "IAM statements without a comment saying what they are for:\n" + "\n".join(missing)


def _statements(template: dict[str, Any], logical_id: str) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = []
    for policy in template["Resources"][logical_id]["Properties"].get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            if "Fn::If" in statement:  # conditional statement: check the branch that adds it
                statement = statement["Fn::If"][1]
            statements.append(statement)
    return statements


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize(
    ("template", "logical_id"),
    [
        (ECS_TEMPLATE, "TaskRole"),
        (ECS_TEMPLATE, "ExecutionRole"),
        (MANAGEMENT_TEMPLATE, "ManagementAccountRole"),
        (MEMBER_TEMPLATE, "MemberAccountRole"),
    ],
)
def test_policies_ask_only_for_what_the_connector_calls(template: Path, logical_id: str) -> None:
    allowed = ALLOWED_ACTIONS[logical_id]
    for statement in _statements(load_template(template), logical_id):
        actions = _as_list(statement["Action"])
        assert all("*" not in a for a in actions), f"wildcard action in {statement}"
        assert set(actions) <= allowed, f"{logical_id}: not used by the connector: {set(actions) - allowed}"
        if statement["Effect"] == "Allow" and _as_list(statement["Resource"]) == ["*"]:
            writes = [a for a in actions if not a.split(":")[1].startswith(READ_ONLY_PREFIXES)]
            assert not writes or "Condition" in statement, f"{logical_id}: write on Resource '*': {writes}"


# ---------------------------------------------------------------------------------------------------------
# Created for real: moto's CloudFormation over HTTP, then read back through the service APIs.


def _network(aws: Any) -> tuple[str, str]:
    ec2 = aws("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.40.1.0/24")["Subnet"]["SubnetId"]
    return vpc, subnet


def _create(aws: Any, name: str, template: Path, params: dict[str, str]) -> dict[str, Any]:
    cfn = aws("cloudformation")
    cfn.create_stack(
        StackName=name,
        TemplateBody=template.read_text(encoding="utf-8"),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    resources = cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]
    return {
        "outputs": {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])},
        "physical": {r["LogicalResourceId"]: r.get("PhysicalResourceId") for r in resources},
    }


def _document(value: Any) -> dict[str, Any]:
    """A policy document as IAM returns it (URL-encoded JSON; moto's CloudFormation stores a Python repr)."""
    if isinstance(value, dict):
        return value
    text = unquote(value)
    try:
        return dict(json.loads(text))
    except json.JSONDecodeError:
        return dict(ast.literal_eval(text))


def _inline_policy(aws: Any, role_name: str) -> dict[str, Any]:
    iam = aws("iam")
    names = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    assert len(names) == 1, names
    return _document(iam.get_role_policy(RoleName=role_name, PolicyName=names[0])["PolicyDocument"])


def _actions_by_sid(document: dict[str, Any]) -> dict[str, set[str]]:
    return {s.get("Sid", str(i)): set(_as_list(s["Action"])) for i, s in enumerate(document["Statement"])}


def _declared(template: Path, logical_id: str, *, guardrails: bool = True) -> dict[str, set[str]]:
    statements = []
    for policy in load_template(template)["Resources"][logical_id]["Properties"]["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            if "Fn::If" in statement:
                if not guardrails:
                    continue
                statement = statement["Fn::If"][1]
            statements.append(statement)
    return {s.get("Sid", str(i)): set(_as_list(s["Action"])) for i, s in enumerate(statements)}


GUARDRAILS_JSON = '{"version": 1, "max_duration": "8h", "clusters": ["prod-*"]}'
ECS_PARAMS = {
    "ControlPlaneUrl": "https://control-plane.example.com",
    "ConnectorToken": "tok-not-a-real-token",
    "Image": f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/access-connector:0.1.0",
}


def test_ecs_stack_creates_the_connector_service_with_declared_permissions(aws: Any, tmp_path: Path) -> None:
    vpc, subnet = _network(aws)
    stack = _create(
        aws,
        "connector-ecs",
        ECS_TEMPLATE,
        ECS_PARAMS
        | {
            "ConnectorId": "conn-ecs",
            "VpcId": vpc,
            "SubnetIds": subnet,
            "DesiredCount": "3",
            "LogRetentionDays": "30",
            "GuardrailsPolicy": GUARDRAILS_JSON,
            "HttpsProxy": "http://proxy.corp.example:3128",
            "ProxyPort": "3128",
        },
    )
    physical = stack["physical"]
    iam = aws("iam")

    # Roles: trust ECS tasks of this account only; inline policies exactly as declared.
    task_role = iam.get_role(RoleName=physical["TaskRole"])["Role"]
    assert stack["outputs"]["ConnectorRoleArn"] == task_role["Arn"]
    trust = task_role["AssumeRolePolicyDocument"]
    trust = _document(trust)
    assert trust["Statement"][0]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert trust["Statement"][0]["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    task_policy = _inline_policy(aws, physical["TaskRole"])
    assert _actions_by_sid(task_policy) == _declared(ECS_TEMPLATE, "TaskRole")
    by_sid = {s["Sid"]: s for s in task_policy["Statement"]}
    assert by_sid["AssumeManagementAccountRole"]["Resource"] == "arn:aws:iam::*:role/access-connector-management"
    assert by_sid["InvokeTaggedLambdaFunctions"]["Condition"] == {
        "StringEquals": {"aws:ResourceTag/apono-connector-access": "true"}
    }
    assert by_sid["ReadSecretsTaggedForThisConnector"]["Condition"] == {
        "StringEquals": {"secretsmanager:ResourceTag/apono-connector-id": "conn-ecs"}
    }
    assert by_sid["ConnectToDatabasesAsTheConnectorUser"]["Resource"] == (
        f"arn:aws:rds-db:*:{ACCOUNT}:dbuser:*/apono_connector"
    )
    execution_policy = _inline_policy(aws, physical["ExecutionRole"])
    assert _actions_by_sid(execution_policy) == _declared(ECS_TEMPLATE, "ExecutionRole")

    # Log group with the chosen retention.
    groups = aws("logs").describe_log_groups(logGroupNamePrefix="/access-connector/conn-ecs")["logGroups"]
    assert [(g["logGroupName"], g["retentionInDays"]) for g in groups] == [("/access-connector/conn-ecs", 30)]

    # Security group: no ingress at all. Egress HTTPS only - checked on the template, because moto 5.2.5
    # ignores SecurityGroupEgress in CloudFormation and keeps the default allow-all rule.
    group = aws("ec2").describe_security_groups(GroupIds=[physical["SecurityGroup"]])["SecurityGroups"][0]
    assert group["VpcId"] == vpc
    assert group["IpPermissions"] == []
    declared = load_template(ECS_TEMPLATE)["Resources"]["SecurityGroup"]["Properties"]
    assert "SecurityGroupIngress" not in declared
    assert [(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in declared["SecurityGroupEgress"]] == [
        ("tcp", 443, 443)
    ]
    # Database egress only when DatabaseCidr is given, only to it, only on the three engines' ports.
    resources = load_template(ECS_TEMPLATE)["Resources"]
    database_egress = {
        r["Properties"]["FromPort"]: r
        for r in resources.values()
        if r["Type"] == "AWS::EC2::SecurityGroupEgress" and r.get("Condition") == "HasDatabaseCidr"
    }
    assert sorted(database_egress) == [3306, 5432, 5439]
    for rule in database_egress.values():
        assert rule["Condition"] == "HasDatabaseCidr" and rule["Properties"]["CidrIp"] == {"Ref": "DatabaseCidr"}
        assert rule["Properties"]["ToPort"] == rule["Properties"]["FromPort"]
    assert "DatabaseEgressPostgres" not in physical  # no DatabaseCidr given

    # Guardrail policy delivered through SSM; the file the init container writes from it loads with the
    # connector's own loader.
    parameter = aws("ssm").get_parameter(Name="/access-connector/conn-ecs/guardrails")["Parameter"]
    assert parameter["Value"] == GUARDRAILS_JSON
    policy_file = tmp_path / "guardrails.yaml"
    policy_file.write_text(parameter["Value"], encoding="utf-8")
    guardrails = load_guardrails(policy_file)
    assert guardrails is not None and guardrails.clusters == ("prod-*",) and guardrails.max_duration == "8h"

    # Cluster, task definition and service.
    ecs = aws("ecs")
    cluster_arn = ecs.describe_clusters(clusters=[physical["Cluster"]])["clusters"][0]["clusterArn"]
    task = ecs.describe_task_definition(taskDefinition=physical["TaskDefinition"])["taskDefinition"]
    # moto 5.2.5 keeps only family, containers, volumes and memory of a CloudFormation task definition:
    # the task-level settings are checked on the template.
    assert task["family"] == "access-connector-conn-ecs" and task["memory"] == "1024"
    assert {v["name"] for v in task["volumes"]} == {"tmp", "guardrails"}
    task_props = load_template(ECS_TEMPLATE)["Resources"]["TaskDefinition"]["Properties"]
    assert task_props["RequiresCompatibilities"] == ["FARGATE"] and task_props["NetworkMode"] == "awsvpc"
    assert task_props["TaskRoleArn"] == {"Fn::GetAtt": ["TaskRole", "Arn"]}
    assert task_props["ExecutionRoleArn"] == {"Fn::GetAtt": ["ExecutionRole", "Arn"]}
    containers = {c["name"]: c for c in task["containerDefinitions"]}
    assert set(containers) == {"connector", "guardrails-init"}
    connector = containers["connector"]
    assert connector["readonlyRootFilesystem"] is True and connector["user"] == "10001"
    assert connector["stopTimeout"] == 120
    env = {e["name"]: e["value"] for e in connector["environment"]}
    assert env["CONNECTOR_ID"] == "conn-ecs" and env["CONNECTOR_HEALTH_ADDR"] == "0.0.0.0:8080"
    assert float(env["CONNECTOR_DRAIN_GRACE_SECONDS"]) < connector["stopTimeout"]
    assert env["CONNECTOR_GUARDRAILS_FILE"] == "/etc/connector/guardrails/guardrails.yaml"
    # The proxy and what bypasses it (the metadata and task-credentials addresses by default); its port (not 443
    # here) gets its own egress rule, only with a proxy.
    assert env["HTTPS_PROXY"] == "http://proxy.corp.example:3128"
    assert env["NO_PROXY"] == "169.254.169.254,169.254.170.2"
    template = load_template(ECS_TEMPLATE)
    assert template["Resources"]["ProxyPortEgress"]["Condition"] == "ExtraProxyPort"
    assert "CONNECTOR_TOKEN" not in env and [s["name"] for s in connector["secrets"]] == ["CONNECTOR_TOKEN"]
    assert "healthz" in " ".join(connector["healthCheck"]["command"])
    assert connector["dependsOn"] == [{"containerName": "guardrails-init", "condition": "SUCCESS"}]
    service = ecs.describe_services(cluster=cluster_arn, services=[physical["Service"]])["services"][0]
    assert service["serviceName"] == "access-connector-conn-ecs" and service["desiredCount"] == 3
    assert service["taskDefinition"] == task["taskDefinitionArn"]
    # moto keeps desired count and task definition only: the rest is checked on the template.
    service_props = load_template(ECS_TEMPLATE)["Resources"]["Service"]["Properties"]
    assert service_props["LaunchType"] == "FARGATE"
    assert service_props["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    network = service_props["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["SecurityGroups"] == [{"Fn::GetAtt": ["SecurityGroup", "GroupId"]}]
    assert network["AssignPublicIp"] == {"Ref": "AssignPublicIp"}
    assert load_template(ECS_TEMPLATE)["Parameters"]["AssignPublicIp"]["Default"] == "DISABLED"


def test_ecs_stack_without_guardrails_in_an_existing_cluster(aws: Any) -> None:
    vpc, subnet = _network(aws)
    ecs = aws("ecs")
    ecs.create_cluster(clusterName="shared-cluster")
    stack = _create(
        aws,
        "connector-ecs-plain",
        ECS_TEMPLATE,
        ECS_PARAMS
        | {"ConnectorId": "conn-plain", "VpcId": vpc, "SubnetIds": subnet, "ExistingClusterName": "shared-cluster"},
    )
    assert "Cluster" not in stack["physical"] and "GuardrailsParameter" not in stack["physical"]
    assert stack["outputs"]["ClusterName"] == "shared-cluster"
    assert _actions_by_sid(_inline_policy(aws, stack["physical"]["ExecutionRole"])) == _declared(
        ECS_TEMPLATE, "ExecutionRole", guardrails=False
    )
    task = ecs.describe_task_definition(taskDefinition=stack["physical"]["TaskDefinition"])["taskDefinition"]
    (connector,) = task["containerDefinitions"]
    assert not {"CONNECTOR_GUARDRAILS_FILE", "HTTPS_PROXY", "NO_PROXY"} & {e["name"] for e in connector["environment"]}
    assert not connector.get("dependsOn")
    services = ecs.list_services(cluster="shared-cluster")["serviceArns"]
    assert [s.rsplit("/", 1)[1] for s in services] == ["access-connector-conn-plain"]


def test_role_chain_connector_to_management_to_member(aws: Any) -> None:
    vpc, subnet = _network(aws)
    connector = _create(
        aws, "chain-ecs", ECS_TEMPLATE, ECS_PARAMS | {"ConnectorId": "conn-chain", "VpcId": vpc, "SubnetIds": subnet}
    )
    connector_role_arn = connector["outputs"]["ConnectorRoleArn"]
    management = _create(
        aws,
        "chain-management",
        MANAGEMENT_TEMPLATE,
        {
            "AponoConnectorId": "conn-chain",
            "ConnectorRoleArn": connector_role_arn,
            "OrganizationalUnitId": "ou-ab12-abcdefgh",
        },
    )
    iam = aws("iam")
    role = iam.get_role(RoleName="access-connector-management")["Role"]
    assert management["outputs"]["ManagementAccountRoleArnOutput"] == role["Arn"]
    assert role["MaxSessionDuration"] == 3600
    trust = role["AssumeRolePolicyDocument"]
    trust = _document(trust)
    assert trust["Statement"] == [
        {
            "Sid": "TrustConnectorRoleWithExternalId",
            "Effect": "Allow",
            "Principal": {"AWS": connector_role_arn},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": "conn-chain"}},
        }
    ]
    policy = _inline_policy(aws, "access-connector-management")
    assert _actions_by_sid(policy) == _declared(MANAGEMENT_TEMPLATE, "ManagementAccountRole")
    hop = {s["Sid"]: s for s in policy["Statement"]}["AssumeMemberAccountRole"]
    assert hop["Resource"] == "arn:aws:iam::*:role/access-connector-member"
    assert hop["Condition"] == {"ForAnyValue:StringLike": {"aws:ResourceOrgPaths": "*/ou-ab12-abcdefgh/*"}}

    _create(aws, "chain-member", MEMBER_TEMPLATE, {"ManagementAccountId": ACCOUNT, "ConnectorId": "conn-chain"})
    member = iam.get_role(RoleName="access-connector-member")["Role"]
    member_trust = member["AssumeRolePolicyDocument"]
    member_trust = _document(member_trust)
    assert member_trust["Statement"][0]["Principal"] == {"AWS": role["Arn"]}
    member_policy = _inline_policy(aws, "access-connector-member")
    # By default without the Resource Explorer administrator's statements (the !If branches) ...
    assert _actions_by_sid(member_policy) == _declared(MEMBER_TEMPLATE, "MemberAccountRole", guardrails=False)
    # ... which only the delegated administrator's account gets.
    params = {"ManagementAccountId": ACCOUNT, "ConnectorId": "conn-chain", "RoleName": "access-connector-member-re"}
    _create(aws, "chain-member-re", MEMBER_TEMPLATE, params | {"ResourceExplorerAdministrator": "true"})
    admin_policy = _inline_policy(aws, "access-connector-member-re")
    assert _actions_by_sid(admin_policy) == _declared(MEMBER_TEMPLATE, "MemberAccountRole")
    assert "resource-explorer-2:Search" in _actions_by_sid(admin_policy)["SearchResourceExplorerViews"]
    member_sids = {s["Sid"]: s for s in member_policy["Statement"]}
    deny = member_sids["DenyInlinePoliciesOnProtectedRoles"]
    assert deny["Effect"] == "Deny" and f"arn:aws:iam::{ACCOUNT}:role/access-connector-member" in deny["Resource"]
    # Databases: describe only in this account; secrets only when tagged for this connector; IAM auth only as
    # the connector's own database user.
    discover = member_sids["DiscoverDatabases"]
    assert all(f":{ACCOUNT}:" in r for r in discover["Resource"])
    assert member_sids["ReadDatabaseSecretsTaggedForThisConnector"]["Condition"] == {
        "StringEquals": {"secretsmanager:ResourceTag/apono-connector-id": "conn-chain"}
    }
    assert member_sids["ConnectToDatabasesAsTheConnectorUser"]["Resource"] == (
        f"arn:aws:rds-db:*:{ACCOUNT}:dbuser:*/apono_connector"
    )
