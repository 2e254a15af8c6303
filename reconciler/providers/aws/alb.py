"""``aws-alb-listener``: an ALB/NLB listener's default certificate, or one of its SNI
certificates (``sni: true``).

Deploy imports the certificate into ACM in the provider's region (re-importing
into the same ARN on renewal) and points the listener at it.  Observe reads the
listener (DescribeListeners / DescribeListenerCertificates) and the ACM
certificate: a certificate swapped in the console, or an ARN re-imported by
hand, is drift.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from reconciler.config.types import EntryName, StrictModel
from reconciler.errors import ProviderError
from reconciler.providers.aws import acm
from reconciler.providers.aws.config import AwsProviderConfig
from reconciler.providers.aws.session import (
    aws_errors,
    client,
    describe_error,
    error_code,
    is_unreachable,
)
from reconciler.providers.base import CertificateMaterial, Facts, Observation, Target
from reconciler.providers.batch import memo

# Elastic Load Balancing serves RSA 2048-4096 and ECDSA certificates; never Ed25519.
ALB_KEYS = frozenset({"rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384"})


class AlbListenerTargetConfig(StrictModel):
    """A TLS/HTTPS listener of an Application or Network Load Balancer."""

    type: Literal["aws-alb-listener"]
    provider: EntryName = Field(description="Name of an `aws` entry under providers.")
    load_balancer: str = Field(min_length=1, description="Load balancer name or ARN.")
    port: int = Field(default=443, ge=1, le=65535)
    sni: bool = Field(
        default=False,
        description="Add to the listener's SNI certificate list instead of replacing "
        "its default certificate.",
    )


_LISTENER_ARNS: dict[tuple[object, ...], str] = {}


class _ListenerMissing(Exception):
    """The load balancer or the listener does not exist (any more)."""


class AlbListenerTarget(Target):
    """Serves one certificate on one listener, as default or as an SNI certificate."""

    type_name = "aws-alb-listener"
    provider_type = "aws"
    config: AlbListenerTargetConfig
    provider: AwsProviderConfig

    @property
    def per_certificate(self) -> bool:
        return self.config.sni

    def identity(self) -> str:
        role = "sni" if self.config.sni else "default"
        return f"{self.config.provider}/{self.config.load_balancer}:{self.config.port}/{role}"

    def compatibility_error(self, key_algorithm: str) -> str | None:
        if key_algorithm not in ALB_KEYS:
            return (
                f"load balancer listeners cannot serve {key_algorithm} certificates "
                f"(accepted: {', '.join(sorted(ALB_KEYS))})"
            )
        return None

    # -- AWS calls ----------------------------------------------------------------
    def _elb(self) -> Any:
        return client(self.provider, "elbv2")

    def _acm(self) -> Any:
        return client(self.provider, "acm")

    def _listener_arn(self) -> str:
        """Listener ARNs never change: looked up once per process, not once per binding."""
        key = (self._endpoint_key(), self.config.load_balancer, self.config.port)
        if key not in _LISTENER_ARNS:
            # memo: during a plan, a failure (unreachable) is also met only once
            _LISTENER_ARNS[key] = memo(("alb-listener", *key), self._find_listener)
        return _LISTENER_ARNS[key]

    def _endpoint_key(self) -> tuple[str, str | None, str | None]:
        return (self.provider.region, self.provider.endpoint_url, self.provider.profile)

    def _find_listener(self) -> str:
        elb = self._elb()
        name = self.config.load_balancer
        query = {"LoadBalancerArns": [name]} if name.startswith("arn:") else {"Names": [name]}
        try:
            balancers = elb.describe_load_balancers(**query)["LoadBalancers"]
        except Exception as exc:
            if error_code(exc) == "LoadBalancerNotFound":
                raise _ListenerMissing(f"load balancer {name} not found") from None
            raise
        if not balancers:
            raise _ListenerMissing(f"load balancer {name} not found")
        listeners = elb.describe_listeners(LoadBalancerArn=balancers[0]["LoadBalancerArn"])
        for listener in listeners["Listeners"]:
            if listener["Port"] == self.config.port:
                return str(listener["ListenerArn"])
        raise _ListenerMissing(f"load balancer {name} has no listener on port {self.config.port}")

    def _served(self, listener_arn: str) -> tuple[str | None, set[str]]:
        """The listener's default certificate ARN and its SNI certificate ARNs."""
        key = ("alb-served", self._endpoint_key(), listener_arn)
        return memo(key, lambda: self._describe_served(listener_arn))

    def _describe_served(self, listener_arn: str) -> tuple[str | None, set[str]]:
        elb = self._elb()
        default = None
        sni: set[str] = set()
        pages = elb.get_paginator("describe_listener_certificates").paginate(
            ListenerArn=listener_arn
        )
        for page in pages:
            for certificate in page["Certificates"]:
                if certificate.get("IsDefault"):
                    default = certificate["CertificateArn"]
                else:
                    sni.add(certificate["CertificateArn"])
        return default, sni

    # -- contract -----------------------------------------------------------------
    def observe(self, facts: Facts) -> Observation:
        arn = facts.get("certificate_arn")
        try:
            listener = self._listener_arn()
            default, sni = self._served(listener)
            copy_problems = acm.copy_drift(self._acm, self._endpoint_key(), arn, facts)
        except _ListenerMissing as exc:
            return Observation("missing", (str(exc),))
        except Exception as exc:
            if is_unreachable(exc):
                return Observation("unreachable", (str(exc),))
            where = f"{self.config.load_balancer}:{self.config.port}"
            raise ProviderError(f"reading listener {where}: {describe_error(exc)}") from None
        problems = []
        if self.config.sni and arn not in sni:
            problems.append(f"{arn} is not in the SNI certificates of listener {listener}")
        if not self.config.sni and default != arn:
            problems.append(f"listener serves {default} instead of {arn}")
        problems += copy_problems
        return Observation("drifted", tuple(problems)) if problems else Observation("in_sync")

    def recorded_facts(self, material: CertificateMaterial, facts: Facts) -> Facts:
        return acm.recorded_facts(material, facts)

    def deploy(self, material: CertificateMaterial, previous: Facts | None) -> Facts:
        # The listener first: a missing one must fail before anything is imported.
        try:
            with aws_errors(f"reading listener {self.config.load_balancer}:{self.config.port}"):
                listener = self._listener_arn()
        except _ListenerMissing as exc:
            raise ProviderError(str(exc)) from None
        arn = acm.place(self._acm(), material, (previous or {}).get("certificate_arn"))
        with aws_errors(f"updating listener {listener}"):
            default, sni = self._served(listener)
            if self.config.sni and arn not in sni:
                self._elb().add_listener_certificates(
                    ListenerArn=listener, Certificates=[{"CertificateArn": arn}]
                )
            elif not self.config.sni and default != arn:
                self._elb().modify_listener(
                    ListenerArn=listener, Certificates=[{"CertificateArn": arn}]
                )
        return {
            "region": self.provider.region,
            "listener_arn": listener,
            "certificate_arn": arn,
            "serial": material.serial,
        }

    def remove(self, facts: Facts) -> bool:
        """Take an SNI certificate off the listener.  A listener's default
        certificate cannot be removed (HTTPS listeners need one): it stays until
        another binding replaces it."""
        arn = facts.get("certificate_arn")
        if not self.config.sni or not arn:
            return False
        try:
            with aws_errors(f"reading listener {self.config.load_balancer}:{self.config.port}"):
                listener = self._listener_arn()
        except _ListenerMissing:
            return True
        with aws_errors(f"removing {arn} from listener {listener}"):
            self._elb().remove_listener_certificates(
                ListenerArn=listener, Certificates=[{"CertificateArn": arn}]
            )
        return True

    def retire(self, facts: Facts) -> str | None:
        arn = facts.get("certificate_arn")
        return acm.retire(self._acm(), arn) if arn else None
