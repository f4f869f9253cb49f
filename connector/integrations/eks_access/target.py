"""The `target` of an EKS access-entry grant or revoke job, validated before any call."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from connector.aws.partitions import PARTITION, eks_access_policy_arn, partition_of
from connector.errors import InvalidJob
from connector.integrations import validation

DEFAULT_USERNAME = "apono:{{SessionName}}"  # per the product docs (seed 001)
POLICY_ARN = re.compile(rf"^arn:({PARTITION}):eks::aws:cluster-access-policy/([A-Za-z0-9]{{1,100}})$")
POLICY_NAME = re.compile(r"^[A-Za-z0-9]{1,100}$")
PRINCIPAL_ARN = re.compile(rf"^arn:({PARTITION}):iam::(\d{{12}}):(role|user)/[\w+=,.@/-]{{1,512}}$")
ASSUMED_ROLE_ARN = re.compile(rf"^arn:({PARTITION}):sts::(\d{{12}}):assumed-role/([\w+=,.@-]+)/")
NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
CLUSTER_NAME = re.compile(r"^[0-9A-Za-z][A-Za-z0-9\-_]{0,99}$")
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
# Kubernetes group and user names: printable, no white space (the API server accepts more; people don't need it).
K8S_IDENTITY = re.compile(r"^[^\s]{1,253}$")

Scope = tuple[str, ...] | None  # None = cluster-wide; a tuple = those namespaces


def policy_name(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


class EksTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    resource_type: Literal["eks_cluster"] = "eks_cluster"
    account_id: str = Field(pattern=r"^\d{12}$")
    region: str
    cluster: str
    access_policies: tuple[str, ...] = Field(min_length=1, max_length=10)
    scope: Literal["cluster", "namespace"]
    namespaces: tuple[str, ...] = Field(default=(), validate_default=True)  # checked against scope
    username: str = Field(default=DEFAULT_USERNAME, min_length=1, max_length=256)
    kubernetes_groups: tuple[str, ...] = Field(default=(), max_length=20)

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not REGION.match(value):
            raise ValueError("must be an AWS region such as eu-west-1")
        try:
            partition_of(value)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("cluster")
    @classmethod
    def _cluster(cls, value: str) -> str:
        if not CLUSTER_NAME.match(value):
            raise ValueError("must be an EKS cluster name (letters, digits, - and _, up to 100)")
        return value

    @field_validator("access_policies")
    @classmethod
    def _policies(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        region = info.data.get("region")  # validated before: fields are checked in the order they are declared
        partition = partition_of(region) if isinstance(region, str) else None
        for policy in value:
            m = POLICY_ARN.match(policy)
            if not (POLICY_NAME.match(policy) or m):
                raise ValueError(
                    f"{policy[:120]!r} is not an EKS access policy: give its name (AmazonEKSViewPolicy) or "
                    "arn:<partition>:eks::aws:cluster-access-policy/<Name>"
                )
            if m is not None and partition is not None and m.group(1) != partition:
                raise ValueError(f"{policy} is in partition {m.group(1)}, but region {region} is in {partition}")
        return tuple(dict.fromkeys(value))

    @field_validator("namespaces")
    @classmethod
    def _namespaces(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        for ns in value:
            if not NAMESPACE.match(ns):
                raise ValueError(f"{ns[:80]!r} is not a Kubernetes namespace name (DNS-1123 label)")
        scope = info.data.get("scope")
        if scope == "namespace" and not value:
            raise ValueError("scope 'namespace' needs at least one entry in namespaces")
        if scope == "cluster" and value:
            raise ValueError("scope 'cluster' takes no namespaces; use scope 'namespace' to limit it")
        return tuple(sorted(set(value)))

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if not K8S_IDENTITY.match(value):
            raise ValueError("must be a Kubernetes user name without white space")
        return value

    @field_validator("kubernetes_groups")
    @classmethod
    def _groups(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for group in value:
            if not K8S_IDENTITY.match(group):
                raise ValueError(f"{group[:80]!r} is not a Kubernetes group name")
        return tuple(dict.fromkeys(value))

    @property
    def partition(self) -> str:
        return partition_of(self.region)

    @property
    def grant_scope(self) -> Scope:
        return None if self.scope == "cluster" else self.namespaces

    @property
    def policy_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(policy_name(p) for p in self.access_policies))

    @property
    def policy_arns(self) -> dict[str, str]:
        """Policy name -> ARN in the cluster's partition."""
        return {name: eks_access_policy_arn(self.partition, name) for name in self.policy_names}


def parse_target(raw: Mapping[str, Any]) -> EksTarget:
    return validation.parse_target(EksTarget, raw)


def validate_principal(principal: str, partition: str) -> str:
    m = ASSUMED_ROLE_ARN.match(principal)
    if m is not None:
        raise InvalidJob(
            f"principal {principal[:200]!r} is an assumed-role session ARN; EKS access entries take the IAM role "
            f"ARN instead: arn:{m.group(1)}:iam::{m.group(2)}:role/{m.group(3)}"
        )
    m = PRINCIPAL_ARN.match(principal)
    if m is None:
        raise InvalidJob(f"principal must be an IAM role (or user) ARN, got {principal[:200]!r}")
    if m.group(1) != partition:
        raise InvalidJob(f"principal {principal[:200]!r} is in partition {m.group(1)}, the cluster in {partition}")
    return principal
