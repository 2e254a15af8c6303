"""boto3 clients, one per (provider settings, service, region), with standard retries.

boto3 is imported on first use: a plan over file targets never pays for it.
Throttling and 5xx answers are retried by botocore's standard mode (exponential
backoff with jitter, up to ``max_attempts``); errors that remain become
ProviderError with the AWS error code and message, never a traceback, through
``aws_errors`` — the one error mapping every AWS target uses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from reconciler.errors import ProviderError
from reconciler.model.observed import Unreachable
from reconciler.providers.aws.config import AwsProviderConfig


@lru_cache(maxsize=64)
def _client(
    service: str, region: str, profile: str | None, endpoint_url: str | None, max_attempts: int
) -> Any:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(profile_name=profile)
    config = Config(
        retries={"mode": "standard", "max_attempts": max_attempts},
        connect_timeout=5,
        read_timeout=30,
    )
    return session.client(service, region_name=region, endpoint_url=endpoint_url, config=config)


def client(provider: AwsProviderConfig, service: str, region: str | None = None) -> Any:
    """A boto3 client for ``service`` in ``region`` (default: the provider's)."""
    return _client(
        service,
        region or provider.region,
        provider.profile,
        provider.endpoint_url,
        provider.max_attempts,
    )


def error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("Error", {}).get("Code")
    return None


def describe_error(exc: BaseException) -> str:
    """``Code: Message`` of an AWS error, or its text; always one line."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        error = response["Error"]
        message = _page_title(str(error.get("Message") or ""), response)
        text = f"{error.get('Code', 'error')}: {message}".rstrip(": ")
    else:
        text = str(exc)
    return _one_line(text)


def _page_title(message: str, response: dict[str, Any]) -> str:
    """An HTML error page (what a proxy or a test server answers for a 5xx) as its
    title, with the HTTP status when the title lacks it."""
    if not message.lstrip().startswith("<"):
        return message
    import html
    import re

    title = re.search(r"<title>(.*?)</title>", message, re.IGNORECASE | re.DOTALL)
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    text = html.unescape(title.group(1)).strip() if title else "error page"
    return f"HTTP {status}: {text}" if status and str(status) not in text else text


def _one_line(text: str) -> str:
    """Error bodies from proxies or test servers can be whole HTML pages: keep a line."""
    import re

    if "<" in text and ">" in text:
        text = re.sub(r"<[^>]+>", " ", text)
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


@contextlib.contextmanager
def aws_errors(what: str, *, reading: bool = False) -> Iterator[None]:
    """The one mapping of botocore failures, for every AWS target, issuer and store.

    An AWS error (ClientError: access denied, throttled past the retries, a 5xx)
    or any other botocore failure becomes ProviderError naming ``what`` was
    being done, in one line.  With ``reading`` (a target's ``read``), failures
    that say nothing about the target (network, credentials) become
    ``Unreachable`` instead, which an observation reports as such."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        raise ProviderError(f"{what}: {describe_error(exc)}") from None
    except BotoCoreError as exc:
        if reading and is_unreachable(exc):
            raise Unreachable(str(exc)) from None
        raise ProviderError(f"{what}: {describe_error(exc)}") from None


def is_unreachable(exc: BaseException) -> bool:
    """True for failures that say nothing about the target (network, credentials)."""
    from botocore.exceptions import (
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    return isinstance(
        exc, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError | NoCredentialsError
    )
