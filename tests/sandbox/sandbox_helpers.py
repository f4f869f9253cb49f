"""Shared helpers for the sandbox's tests. Every test talks real botocore over HTTP to the sandbox."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from connector.sandbox import Sandbox

NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})


def session_from(creds: dict[str, Any], region: str = "us-east-1") -> boto3.Session:
    return boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=region,
    )


def connector_session(sb: Sandbox, region: str = "us-east-1") -> boto3.Session:
    """The connector identity exactly as a process started with sb.env() would see it."""
    env = sb.env(region)
    return boto3.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=env["AWS_SESSION_TOKEN"],
        region_name=region,
    )
