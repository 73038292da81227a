"""Credentials that make the embedded moto answer as another AWS account.

moto maps the access key of a request to the account whose IAM holds that key
(``moto.iam.models.get_account_id_from``; an unknown key is the default account,
123456789012). :func:`create_credentials` creates an IAM user and an access key *in*
a given account (IAM calls sent with moto's ``x-moto-account-id`` header), so a client
signed with that key sees that account's ECR, S3, ... (``registryId`` included).

This does not work when ``MOTO_ACCOUNT_ID`` is set in the server's environment: it
overrides every request's account.

This module must not import Airflow.
"""

from __future__ import annotations

import os
import re
import uuid
from typing import Any

import boto3
from moto.iam.models import get_account_id_from

__all__ = ["ACCOUNT_HEADER", "create_credentials", "is_account_of"]

ACCOUNT_HEADER = "x-moto-account-id"
"""moto serves a request carrying this header as the account it names."""
_ACCOUNT_ID = re.compile(r"\d{12}")


def create_credentials(endpoint_url: str, account_id: str) -> tuple[str, str]:
    """Create an IAM user and an access key in ``account_id`` on the moto server at
    ``endpoint_url``; return the key's id and secret. Each call makes a new user."""
    if not _ACCOUNT_ID.fullmatch(account_id):
        raise ValueError(f"an AWS account id is 12 digits, not {account_id!r}")
    if "MOTO_ACCOUNT_ID" in os.environ:
        raise RuntimeError("MOTO_ACCOUNT_ID is set: moto serves every request as that account")
    iam = boto3.client(
        "iam",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )

    def name_the_account(request: Any, **_: Any) -> None:
        request.headers[ACCOUNT_HEADER] = account_id

    iam.meta.events.register("before-sign.iam", name_the_account)
    user = f"embedded-aws-{uuid.uuid4().hex[:12]}"
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return str(key["AccessKeyId"]), str(key["SecretAccessKey"])


def is_account_of(access_key_id: str, account_id: str) -> bool:
    """Whether this process's moto maps ``access_key_id`` to ``account_id`` (false once a
    reset dropped the key). Only meaningful for a server running in this process."""
    return bool(get_account_id_from(access_key_id) == account_id)
