"""A private CA's CRL in S3: put on publish, observed on refresh.

AWS Private CA publishes its CRLs to an S3 bucket that relying parties (or a
CloudFront distribution in front of it) read; certform does the same for its
own CAs: one object, DER, ``Content-Type: application/pkix-crl`` (RFC 5280's
and RFC 2585's media type).  What was put is recorded like a published file:
``s3://bucket/key`` -> ``[size, ETag, sha256]``.  Refresh asks HeadObject (one
cheap call when nothing changed) and reads the object back only when the ETag
moved, so an overwrite with the same bytes (SSE-KMS gives a new ETag) is not
drift but any other change is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from reconciler.providers.aws.config import AwsProviderConfig
from reconciler.providers.aws.iam import Statement, partition
from reconciler.providers.aws.session import aws_errors, client, error_code

CONTENT_TYPE = "application/pkix-crl"
PROVIDER = "aws"
"""Key of the provider settings inside the ``s3`` publish settings of a CRL spec
(put there by ``issuers/private_ca.py``)."""
_ABSENT = ("404", "NoSuchKey", "NotFound", "NoSuchBucket")

Stamp = list[int | str]


def iam_statements(provider: AwsProviderConfig, bucket: str, key: str) -> list[Statement]:
    """PutObject to publish; GetObject for HeadObject and the read-back on refresh;
    ListBucket on the bucket, because without it S3 answers HeadObject on a
    deleted object with 403 instead of 404, and a missing CRL would be an error
    instead of drift (that implicit check carries no ``s3:prefix`` to narrow it
    by).  ``{key_id}`` in the key is any key id."""
    where = partition(provider.region)
    pattern = key.replace("{key_id}", "*")
    return [
        Statement.of(
            "S3CrlObjects",
            ["s3:GetObject", "s3:PutObject"],
            [f"arn:{where}:s3:::{bucket}/{pattern}"],
        ),
        Statement.of("S3CrlBuckets", ["s3:ListBucket"], [f"arn:{where}:s3:::{bucket}"]),
    ]


def location(settings: Mapping[str, Any], key_id: str) -> str:
    """``s3://bucket/key`` for a CA key (``{key_id}`` in the key filled in)."""
    return f"s3://{settings['bucket']}/{settings['key'].replace('{key_id}', key_id)}"


def put_crl(settings: Mapping[str, Any], key_id: str, der: bytes) -> tuple[str, Stamp]:
    """PutObject the DER CRL; returns its location and stamp.  Raises ProviderError."""
    where = location(settings, key_id)
    bucket, key = _split(where)
    with aws_errors(f"publishing the CRL to {where}"):
        response = _s3(settings).put_object(
            Bucket=bucket, Key=key, Body=der, ContentType=CONTENT_TYPE
        )
    return where, [len(der), str(response.get("ETag", "")), hashlib.sha256(der).hexdigest()]


def object_problems(settings: Mapping[str, Any], where: str, stamp: Stamp) -> list[str]:
    """What changed about the object certform put at ``where`` (empty: in sync).

    Raises ProviderError or Unreachable when S3 cannot be asked."""
    from botocore.exceptions import ClientError

    bucket, key = _split(where)
    s3 = _s3(settings)
    size, etag, digest = stamp
    with aws_errors(f"reading {where}", reading=True):
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) in _ABSENT:
                return [f"{where} missing"]
            raise
    problems = []
    if head.get("ETag") != etag or head.get("ContentLength") != size:
        with aws_errors(f"reading {where}", reading=True):
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        if hashlib.sha256(body).hexdigest() != digest:
            problems.append(f"{where} changed in S3")
    content_type = head.get("ContentType")
    if content_type != CONTENT_TYPE:
        problems.append(f"{where} has Content-Type {content_type}, expected {CONTENT_TYPE}")
    return problems


def _split(where: str) -> tuple[str, str]:
    bucket, _, key = where.removeprefix("s3://").partition("/")
    return bucket, key


def _s3(settings: Mapping[str, Any]) -> Any:
    provider = AwsProviderConfig.model_validate(settings[PROVIDER])
    return client(provider, "s3")
