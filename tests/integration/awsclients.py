"""boto3 clients at a test head node."""

from __future__ import annotations

import configparser
from typing import Any

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]

from tests.integration.cluster import Cluster


def batch_client(c: Cluster) -> Any:
    """boto3's client at the head node, with the head's own key when it has one."""
    key, secret = "AKIDEXAMPLE", "secret"
    creds = c.home / "credentials"
    if creds.exists():
        ini = configparser.ConfigParser()
        ini.read(creds)
        for section in ini.sections():
            if ini.has_option(section, "aws_access_key_id"):
                key = ini.get(section, "aws_access_key_id")
                secret = ini.get(section, "aws_secret_access_key")
                break
    return boto3.client(
        "batch",
        endpoint_url=c.url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}, read_timeout=30),
    )
