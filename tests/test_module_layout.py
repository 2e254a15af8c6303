"""Where things live: the pure core imports no edge, and issuer- and target-specific
rules sit with their issuer and target, not in the generic config and apply code.

Behaviour through the CLI is covered elsewhere (test_aws_acm_authority.py,
test_aws_end_to_end.py); these tests pin the layout so it cannot silently rot.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import reconciler
from reconciler.issuers.registry import issuer_named
from reconciler.providers.aws.alb import AlbListenerTarget
from reconciler.providers.aws.apigateway import ApiGatewayTarget
from reconciler.providers.aws.cloudfront import CloudFrontTarget
from reconciler.providers.base import Target
from reconciler.providers.files import FilesTarget

ROOT = Path(__file__).resolve().parent.parent
PURE = (
    "reconciler.model.desired",
    "reconciler.model.records",
    "reconciler.model.observed",
    "reconciler.model.material",
    "reconciler.plan.diff",
    "reconciler.plan.specs",
    "reconciler.policy.recheck",
    "reconciler.policy.guards",
    "reconciler.policy.reissue",
    "reconciler.pki.inspect",
)


def test_pure_core_imports_no_provider_engine_or_state_module() -> None:
    """Not even transitively (through the issuer registry): a fresh interpreter
    importing the diff, the policies and pki checks loads none of them."""
    code = (
        "import importlib, sys\n"
        f"for name in {PURE!r}: importlib.import_module(name)\n"
        "edges = ('reconciler.providers', 'reconciler.engine', 'reconciler.state')\n"
        "print(sorted(m for m in sys.modules if m.startswith(edges)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("old", ["desired", "state/records", "tls_probe"])
def test_no_module_left_at_an_old_path(old: str) -> None:
    """By file, not by import: an editable install's finder may resolve a module
    this tree no longer has to another checkout."""
    package = Path(reconciler.__file__).parent
    assert not (package / f"{old}.py").exists() and not (package / old).exists()


def _target(cls: type[Target], type_name: str, region: str | None) -> Target:
    target = object.__new__(cls)  # only the class's own answers are asked
    target.acm_region = lambda: region  # type: ignore[method-assign]
    assert target.type_name == type_name
    return target


def test_the_acm_binding_rule_belongs_to_the_aws_acm_issuer() -> None:
    acm = SimpleNamespace(type="aws-acm", provider="aws", region=None)
    config = SimpleNamespace(providers={"aws": SimpleNamespace(region="eu-west-1")})
    issuer = issuer_named("aws-acm")

    def error(target: Target) -> str | None:
        return issuer.binding_error("site", "acm", acm, config, target)

    assert error(_target(AlbListenerTarget, "aws-alb-listener", "eu-west-1")) is None
    assert error(_target(FilesTarget, "files", None)) == (
        "certificate 'site' is issued by ACM (acm), which never releases its private key: "
        "it can only be bound to AWS targets, not files; set exportable: true on authority "
        "'acm' for a certificate that can be exported and deployed anywhere"
    )
    assert error(_target(CloudFrontTarget, "aws-cloudfront", "us-east-1")) == (
        "certificate 'site' is issued by ACM in eu-west-1, but aws-cloudfront needs its "
        "certificate in us-east-1 (CloudFront and edge API Gateway use us-east-1)"
    )
    for other in ("private-root", "acme", "imported"):
        files = _target(FilesTarget, "files", None)
        assert issuer_named(other).binding_error("site", "ca", None, config, files) is None


def test_only_aws_targets_name_a_copy_to_retire() -> None:
    facts = {"certificate_arn": "arn:aws:acm:eu-west-1:1:certificate/x", "serial": "1"}
    for cls in (AlbListenerTarget, CloudFrontTarget, ApiGatewayTarget):
        assert cls.copy_id(facts) == facts["certificate_arn"]
        assert cls.copy_id({"serial": "1"}) is None
    assert FilesTarget.copy_id(facts) is None, "the base class's default: no copy"
