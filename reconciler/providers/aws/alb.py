"""``aws-alb-listener``: an ALB/NLB listener's default certificate, or one of its SNI
certificates (``sni: true``).

Deploy imports the certificate into ACM in the provider's region (re-importing
into the same ARN on renewal) and points the listener at it.  Observe reads the
listener (DescribeListeners / DescribeListenerCertificates) and the ACM
certificate: a certificate swapped in the console, or an ARN re-imported by
hand, is drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from reconciler.config.types import EntryName, StrictModel
from reconciler.errors import ProviderError
from reconciler.model.material import CertificateMaterial
from reconciler.model.observed import Facts, Missing
from reconciler.providers.aws import acm
from reconciler.providers.aws.config import AwsProviderConfig
from reconciler.providers.aws.iam import Statement, partition
from reconciler.providers.aws.session import aws_errors, client, error_code
from reconciler.providers.base import Problem, Target
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


@dataclass(frozen=True)
class _Served:
    """What ``read`` found: the listener, what it serves, and the ACM copy's drift."""

    listener: str
    default: str | None
    sni: set[str]
    copy_problems: list[str]


class AlbListenerTarget(acm.AcmCopyTarget):
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

    # -- IAM: what the calls below need -------------------------------------------
    def listener_arns(self) -> list[str]:
        """ARN patterns of this binding's listener, known before it is looked up:
        from the load balancer's ARN when given, else from its name (an ALB or an
        NLB: ``listener/app/NAME/*`` and ``listener/net/NAME/*``)."""
        name = self.config.load_balancer
        if name.startswith("arn:"):
            # arn:PARTITION:elasticloadbalancing:REGION:ACCOUNT:loadbalancer/app/NAME/ID
            head, _, path = name.partition(":loadbalancer/")
            return [f"{head}:listener/{path}/*"]
        region = self.provider.region
        prefix = f"arn:{partition(region)}:elasticloadbalancing:{region}:*:listener"
        return [f"{prefix}/app/{name}/*", f"{prefix}/net/{name}/*"]

    def iam_statements(self) -> list[Statement]:
        """Describe* take no resource; the listener is changed with ModifyListener
        (default certificate) or Add/RemoveListenerCertificates (SNI); the ACM copy
        lives in the provider's region."""
        changes = (
            ["elasticloadbalancing:AddListenerCertificates",
             "elasticloadbalancing:RemoveListenerCertificates"]
            if self.config.sni
            else ["elasticloadbalancing:ModifyListener"]
        )  # fmt: skip
        describe = [
            "elasticloadbalancing:DescribeListenerCertificates",
            "elasticloadbalancing:DescribeListeners",
            "elasticloadbalancing:DescribeLoadBalancers",
        ]
        return [
            Statement.of("ElbDescribe", describe, ["*"]),
            Statement.of("ElbListeners", changes, self.listener_arns()),
            *acm.copy_statements(self.provider.region),
        ]

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
                raise Missing(f"load balancer {name} not found") from None
            raise
        if not balancers:
            raise Missing(f"load balancer {name} not found")
        listeners = elb.describe_listeners(LoadBalancerArn=balancers[0]["LoadBalancerArn"])
        for listener in listeners["Listeners"]:
            if listener["Port"] == self.config.port:
                return str(listener["ListenerArn"])
        raise Missing(f"load balancer {name} has no listener on port {self.config.port}")

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

    # -- validation -------------------------------------------------------------
    def acm_region(self) -> str | None:
        return getattr(self.provider, "region", None)

    @classmethod
    def validate_together(cls, bound: Sequence[tuple[int, Target]]) -> list[tuple[int, Problem]]:
        """A listener holds at most ``certificates_per_listener`` certificates (AWS
        quota: 25 by default); the binding that would exceed it is the error."""
        problems: list[tuple[int, Problem]] = []
        counts: dict[tuple[str, str, int], int] = {}
        for index, target in bound:
            config = target.config
            assert isinstance(config, AlbListenerTargetConfig)
            quota = getattr(target.provider, "certificates_per_listener", None)
            if quota is None:
                continue  # unknown provider, or not an aws one: reported by validate
            key = (config.provider, config.load_balancer, config.port)
            counts[key] = counts.get(key, 0) + 1
            if counts[key] == quota + 1:
                message = (
                    f"listener {config.load_balancer}:{config.port} would hold more than "
                    f"{quota} certificates "
                    f"(providers.{config.provider}.certificates_per_listener); "
                    "spread the certificates over more listeners or raise the quota"
                )
                problems.append((index, (("target",), message)))
        return problems

    # -- contract -----------------------------------------------------------------
    def read(self, facts: Facts) -> _Served:
        where = f"{self.config.load_balancer}:{self.config.port}"
        with aws_errors(f"reading listener {where}", reading=True):
            listener = self._listener_arn()
            default, sni = self._served(listener)
            arn = facts.get("certificate_arn")
            copy_problems = acm.copy_drift(self._acm, self._endpoint_key(), arn, facts)
        return _Served(listener, default, sni, copy_problems)

    def compare(self, seen: _Served, facts: Facts) -> list[str]:
        arn = facts.get("certificate_arn")
        problems = []
        if self.config.sni and arn not in seen.sni:
            problems.append(f"{arn} is not in the SNI certificates of listener {seen.listener}")
        if not self.config.sni and seen.default != arn:
            problems.append(f"listener serves {seen.default} instead of {arn}")
        return problems + seen.copy_problems

    def deploy(
        self, material: CertificateMaterial, previous: Facts | None, snapshot: Any = None
    ) -> Facts:
        # The listener first: a missing one must fail before anything is imported.
        try:
            with aws_errors(f"reading listener {self.config.load_balancer}:{self.config.port}"):
                listener = self._listener_arn()
        except Missing as exc:
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
        except Missing:
            return True
        with aws_errors(f"removing {arn} from listener {listener}"):
            self._elb().remove_listener_certificates(
                ListenerArn=listener, Certificates=[{"CertificateArn": arn}]
            )
        return True

    def retire(self, facts: Facts) -> str | None:
        arn = facts.get("certificate_arn")
        return acm.retire(self._acm(), arn) if arn else None
