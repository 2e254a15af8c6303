"""A real AWS API endpoint for tests: moto in server mode on 127.0.0.1.

Tests talk to it over HTTP through boto3 exactly as certform does; nothing is
mocked inside the process.  ``AwsLab.reset()`` gives each test an empty account.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

from reconciler.pki.builder import Subject, build_ca_certificate, certificate_to_pem
from reconciler.pki.keys import generate_private_key, private_key_to_pem

REGION = "eu-west-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class AwsLab:
    url: str
    process: subprocess.Popen[bytes]

    @classmethod
    def start(cls) -> AwsLab:
        port = free_port()
        env = dict(os.environ, MOTO_ACM_VALIDATION_WAIT="1")  # ISSUED after 1 s
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.05)
        return cls(url, process)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10)

    def client(self, service: str, region: str = REGION) -> Any:
        return boto3.client(
            service,
            region_name=region,
            endpoint_url=self.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def provider_yaml(self, name: str = "aws", region: str = REGION) -> str:
        return f"  {name}: {{type: aws, region: {region}, endpoint_url: '{self.url}'}}\n"

    def placeholder_certificate(self) -> str:
        """A self-signed certificate in ACM, as a listener needs one to exist."""
        key = generate_private_key("ec-p256")
        now = datetime.now(UTC)
        cert = build_ca_certificate(
            public_key=key.public_key(),
            subject=Subject("placeholder.example.test"),
            issuer_cert=None,
            issuer_key=key,
            not_before=now,
            not_after=now + timedelta(days=30),
            path_length=0,
        )
        response = self.client("acm").import_certificate(
            Certificate=certificate_to_pem(cert).encode(), PrivateKey=private_key_to_pem(key)
        )
        return str(response["CertificateArn"])

    def https_load_balancer(self, name: str = "prod-alb", port: int = 443) -> tuple[str, str]:
        """An ALB with an HTTPS listener serving a placeholder; (listener ARN, placeholder ARN)."""
        ec2 = self.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=zone)[
                "Subnet"
            ]["SubnetId"]
            for i, zone in enumerate((f"{REGION}a", f"{REGION}b"), start=1)
        ]
        elb = self.client("elbv2")
        balancer = elb.create_load_balancer(Name=name, Subnets=subnets)["LoadBalancers"][0]
        group = elb.create_target_group(Name=f"{name}-tg", Protocol="HTTP", Port=80, VpcId=vpc)
        placeholder = self.placeholder_certificate()
        listener = elb.create_listener(
            LoadBalancerArn=balancer["LoadBalancerArn"],
            Protocol="HTTPS",
            Port=port,
            Certificates=[{"CertificateArn": placeholder}],
            DefaultActions=[
                {"Type": "forward", "TargetGroupArn": group["TargetGroups"][0]["TargetGroupArn"]}
            ],
        )["Listeners"][0]
        return str(listener["ListenerArn"]), placeholder

    def listener_certificates(self, listener_arn: str) -> tuple[str | None, set[str]]:
        certificates = self.client("elbv2").describe_listener_certificates(
            ListenerArn=listener_arn
        )["Certificates"]
        default = next((c["CertificateArn"] for c in certificates if c.get("IsDefault")), None)
        return default, {c["CertificateArn"] for c in certificates if not c.get("IsDefault")}

    def acm_serial(self, arn: str) -> str:
        from cryptography import x509

        pem = self.client("acm").get_certificate(CertificateArn=arn)["Certificate"]
        return format(x509.load_pem_x509_certificate(pem.encode()).serial_number, "x")

    def arn_for(self, address: str) -> str | None:
        acm = self.client("acm")
        # moto lists every key type without Includes (and answers 500 to Includes once
        # an ACM-issued EC certificate exists).
        for summary in acm.list_certificates()["CertificateSummaryList"]:
            tags = acm.list_tags_for_certificate(CertificateArn=summary["CertificateArn"])["Tags"]
            if {"Key": "certform:address", "Value": address} in tags:
                return str(summary["CertificateArn"])
        return None
