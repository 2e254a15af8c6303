"""The ``aws`` provider: where and as whom certform talks to AWS.

Credentials come from the usual AWS chain (environment, profile, instance
role); nothing secret is ever written in the config.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from reconciler.config.types import StrictModel

REGION_PATTERN = r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$"


class AwsProviderConfig(StrictModel):
    """Connection settings for AWS API calls."""

    type: Literal["aws"]
    region: str = Field(pattern=REGION_PATTERN, description="Default region, e.g. eu-west-1.")
    profile: str | None = Field(default=None, description="Named profile from ~/.aws/config.")
    endpoint_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="Alternative endpoint for every service (a test server, a VPC endpoint).",
    )
    certificates_per_listener: int = Field(
        default=25,
        ge=1,
        le=1000,
        description="Quota of certificates (default + SNI) per load balancer listener; "
        "validate refuses bindings beyond it (AWS default quota: 25).",
    )
    max_attempts: int = Field(
        default=8, ge=1, le=20, description="Attempts per call (botocore standard retry mode)."
    )
