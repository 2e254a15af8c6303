"""certform's ACME client (RFC 8555) on top of certbot's ``acme`` library.

The library does the protocol and the JWS; this module adds what a production
client inside plan/apply needs and the library leaves out:

* ``badNonce`` retried as often as needed (the library retries once; Pebble
  rejects 5% of nonces), ``rateLimited`` and 5xx retried after ``Retry-After``
  or with exponential backoff, all bounded by the order's deadline;
* polling authorizations and the order with a short, growing interval (the
  library's ``poll_and_finalize`` sleeps a whole second per poll);
* every challenge answer withdrawn after the authorization is final, whether
  it succeeded, failed or timed out;
* errors as one line with the CA's problem detail and the name concerned,
  classified so that fallback issuers know what happened.

One ``AcmeAccount`` per directory and account key; each worker thread gets its
own ``ClientNetwork`` (nonces are per connection pool).

Why the retries live here and not in urllib3's ``Retry`` (``reconciler/http.py``,
which the webhook sink uses): almost every ACME request is a POST carrying a
one-time nonce, so repeating the same bytes below the library can only earn a
``badNonce``; a retry must re-sign with a fresh nonce, which only the ``acme``
library's call does.  And this loop knows the CA's problem types and the order's
deadline, which a transport-level retry cannot.  ``Retry-After`` is parsed by
the one parser in ``reconciler/http.py``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import josepy as jose
import requests
from acme import challenges, crypto_util, errors, messages
from acme.client import ClientNetwork, ClientV2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from reconciler import http
from reconciler.acme import solvers as solver_factory
from reconciler.durations import parse_duration
from reconciler.errors import ProviderError
from reconciler.fsutil import config_path
from reconciler.pki.names import is_ip_address

T = TypeVar("T")
Reporter = Callable[[str], None]

NONCE_RETRIES = 20
HTTP_TIMEOUT = 30
"""Seconds one HTTP request to the CA may take (the library's default is 45)."""
TIMEOUT_RETRIES = 2
POLL_FIRST = 0.01
POLL_MAX = 1.0
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
REVOCATION_REASONS = {
    "unspecified": 0,
    "keyCompromise": 1,
    "cACompromise": 2,
    "affiliationChanged": 3,
    "superseded": 4,
    "cessationOfOperation": 5,
    "certificateHold": 6,
    "removeFromCRL": 8,
    "privilegeWithdrawn": 9,
    "aACompromise": 10,
}


class AcmeError(ProviderError):
    """An ACME failure, with ``kind``: unreachable, rate-limited, invalid, timeout, error."""

    def __init__(self, message: str, kind: str = "error") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class AcmeIssued:
    """A certificate an ACME CA issued for a key certform generated."""

    authority: str
    certificate_pem: str
    chain_pem: str
    certificate: x509.Certificate

    @property
    def serial(self) -> str:
        return format(self.certificate.serial_number, "x")

    @property
    def fingerprint(self) -> str:
        return self.certificate.fingerprint(hashes.SHA256()).hex()


def new_account_key_der() -> bytes:
    """Account keys are EC P-256 (ES256): accepted by every CA, cheap to sign with."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class _Network(ClientNetwork):
    """Remembers the last response's status and Retry-After (the library's errors
    carry neither) for the backoff."""

    last_status: int = 0
    last_retry_after: str | None = None

    def _send_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        response = super()._send_request(method, url, *args, **kwargs)
        self.last_status = response.status_code
        self.last_retry_after = response.headers.get("Retry-After")
        return response


@dataclass
class _Published:
    """One challenge answer that must be withdrawn."""

    withdraw: Callable[[], None]
    wait: Callable[[float], None] | None = None


@dataclass
class AcmeAccount:
    """An account at one ACME directory, used by any number of threads."""

    name: str
    spec: dict[str, Any]
    root: Path
    key_der: bytes = field(repr=False)
    url: str | None = None
    _directory: messages.Directory | None = field(default=None, repr=False)
    _local: threading.local = field(default_factory=threading.local, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- plumbing -----------------------------------------------------------------------
    @property
    def jwk(self) -> jose.JWK:
        key = serialization.load_der_private_key(self.key_der, None)
        return jose.JWKEC(key=key)

    def _verify(self) -> bool | str:
        bundle = self.spec.get("ca_bundle")
        if not bundle:
            return True
        return str(config_path(self.root, bundle))

    def _client(self) -> tuple[ClientV2, _Network]:
        cached = getattr(self._local, "client", None)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        net = _Network(
            self.jwk,
            alg=jose.ES256,
            verify_ssl=self._verify(),
            user_agent="certform",
            timeout=HTTP_TIMEOUT,
        )
        if self.url:
            net.account = messages.RegistrationResource(uri=self.url, body=messages.Registration())
        directory = self._directory_for(net)
        pair = (ClientV2(directory, net), net)
        self._local.client = pair
        return pair

    def _directory_for(self, net: _Network) -> messages.Directory:
        with self._lock:
            if self._directory is None:
                url = self.spec["directory"]
                self._directory = self._call(
                    net, f"reading the directory {url}", lambda: ClientV2.get_directory(url, net),
                    time.monotonic() + 60,
                )  # fmt: skip
            return self._directory

    def _call(self, net: _Network, what: str, action: Callable[[], T], deadline: float) -> T:
        """Run one protocol call with the retries a production client needs."""
        backoff = BACKOFF_FIRST
        nonces = 0
        timeouts = 0
        while True:
            try:
                return action()
            except messages.Error as exc:
                code = exc.code or ""
                if code == "badNonce" and nonces < NONCE_RETRIES:
                    nonces += 1
                    continue
                retryable = code in ("rateLimited", "serverInternal") or net.last_status >= 500
                if retryable:
                    wait = _retry_after(net.last_retry_after) or backoff
                    if time.monotonic() + wait < deadline:
                        time.sleep(wait)
                        backoff = min(backoff * 2, BACKOFF_MAX)
                        continue
                kind = "rate-limited" if code == "rateLimited" else "error"
                raise AcmeError(f"{self.name}: {what}: {_problem(exc)}", kind) from None
            except errors.ConflictError:
                raise
            except requests.exceptions.Timeout:
                # A slow answer is retried within the deadline (a refused connection
                # is not: fallback issuers must not wait for a CA that is down).
                timeouts += 1
                if timeouts <= TIMEOUT_RETRIES and time.monotonic() + backoff < deadline:
                    time.sleep(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX)
                    continue
                raise AcmeError(f"{self.name}: {what}: timed out", "unreachable") from None
            except requests.exceptions.ConnectionError as exc:
                reason = _connection_reason(exc)
                raise AcmeError(f"{self.name}: {what}: {reason}", "unreachable") from None
            except requests.exceptions.RequestException as exc:
                raise AcmeError(f"{self.name}: {what}: {type(exc).__name__}", "error") from None
            except errors.Error as exc:
                if net.last_status >= 500 and time.monotonic() + backoff < deadline:
                    time.sleep(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX)
                    continue
                raise AcmeError(f"{self.name}: {what}: {exc}") from None

    # -- account ------------------------------------------------------------------------
    def register(self) -> str:
        """Create the account (or find the one this key already has); its URL."""
        client, net = self._client()
        deadline = time.monotonic() + 60
        contact = tuple(self.spec["contact"])
        eab = None
        binding = self.spec.get("external_account_binding")
        if binding:
            hmac_key = solver_factory.secret_from_env(
                binding["hmac_key_env"], "external_account_binding.hmac_key_env"
            )
            eab = messages.ExternalAccountBinding.from_data(
                account_public_key=self.jwk.public_key(),
                kid=binding["kid"],
                hmac_key=hmac_key,
                directory=client.directory,
            )
        registration = messages.NewRegistration(
            contact=contact, terms_of_service_agreed=True, external_account_binding=eab
        )
        try:
            regr = self._call(
                net, "creating the account", lambda: client.new_account(registration), deadline
            )
        except errors.ConflictError as conflict:
            regr = messages.RegistrationResource(
                uri=conflict.location, body=messages.Registration()
            )
        self.url = regr.uri
        net.account = regr
        return str(regr.uri)

    def update_contact(self) -> None:
        client, net = self._client()
        regr = messages.RegistrationResource(uri=self.url, body=messages.Registration())
        update = messages.Registration(contact=tuple(self.spec["contact"]))
        self._call(
            net,
            "updating the account contact",
            lambda: client.update_registration(regr, update),
            time.monotonic() + 60,
        )

    # -- issuance -----------------------------------------------------------------------
    def issue(self, names: list[str], key_pem: bytes, report: Reporter) -> AcmeIssued:
        """One order, end to end, within the authority's ``timeout``."""
        client, net = self._client()
        timeout = parse_duration(self.spec.get("timeout", "5m")).total_seconds()
        deadline = time.monotonic() + timeout
        dns_names = [n for n in names if not is_ip_address(n)]
        ips = [ipaddress.ip_address(n) for n in names if is_ip_address(n)]
        csr_pem = crypto_util.make_csr(key_pem, dns_names or None, ipaddrs=ips or None)
        profile = self.spec.get("profile")
        orderr = self._call(
            net, "creating the order", lambda: client.new_order(csr_pem, profile), deadline
        )
        self._authorize(client, net, orderr, deadline)
        orderr = self._finalize(client, net, orderr, deadline)
        fullchain = self._pick_chain(client, net, orderr, deadline)
        pems = x509.load_pem_x509_certificates(fullchain.encode())
        leaf = pems[0]
        chain = "".join(p.public_bytes(serialization.Encoding.PEM).decode() for p in pems[1:])
        leaf_pem = leaf.public_bytes(serialization.Encoding.PEM).decode()
        return AcmeIssued(self.name, leaf_pem, chain, leaf)

    def _authorize(
        self, client: ClientV2, net: _Network, orderr: messages.OrderResource, deadline: float
    ) -> None:
        """Publish every answer, wait until visible, answer, poll to a final status;
        withdraw every answer on the way out, whatever happened."""
        published: list[_Published] = []
        pending: list[tuple[str, messages.AuthorizationResource]] = []
        closers: list[Any] = []
        try:
            answers = []
            for authzr in orderr.authorizations:
                if authzr.body.status == messages.STATUS_VALID:
                    continue
                name = authzr.body.identifier.value
                if authzr.body.wildcard:
                    name = "*." + name
                answers.append(self._publish(name, authzr, published, closers))
                pending.append((name, authzr))
            for item in published:
                if item.wait is not None:
                    item.wait(max(1.0, deadline - time.monotonic()))
            for challb, response in answers:
                self._call(
                    net,
                    f"answering {challb.chall.typ}",
                    lambda c=challb, r=response: client.answer_challenge(c, r),
                    deadline,
                )
            self._poll_authorizations(client, net, pending, deadline)
        finally:
            for item in published:
                with contextlib.suppress(Exception):
                    item.withdraw()
            for closer in closers:
                with contextlib.suppress(Exception):
                    closer.close()

    def _publish(
        self,
        name: str,
        authzr: messages.AuthorizationResource,
        published: list[_Published],
        closers: list[Any],
    ) -> tuple[messages.ChallengeBody, challenges.ChallengeResponse]:
        choice = solver_factory.choose(self.spec["solvers"], name)
        wanted = challenges.DNS01 if choice.kind == "dns-01" else challenges.HTTP01
        challb = next((c for c in authzr.body.challenges if isinstance(c.chall, wanted)), None)
        if challb is None:
            raise AcmeError(f"{self.name}: the CA offers no {choice.kind} challenge for {name}")
        response, validation = challb.response_and_validation(self.jwk)
        if choice.kind == "dns-01":
            writer = solver_factory.dns_writer(choice.settings)
            record = writer.record_name(name)
            propagation = solver_factory.propagation_timeout(choice.settings)
            writer.present(record, validation)
            published.append(
                _Published(
                    lambda: writer.cleanup(record, validation),
                    lambda left: writer.wait_visible(record, validation, min(left, propagation)),
                )
            )
        else:
            sink = solver_factory.http_sink(choice.settings, self.root)
            closers.append(sink)
            token = challb.chall.encode("token")
            sink.put(token, validation)
            published.append(_Published(lambda: sink.remove(token)))
        return challb, response

    def _poll_authorizations(
        self,
        client: ClientV2,
        net: _Network,
        pending: list[tuple[str, messages.AuthorizationResource]],
        deadline: float,
    ) -> None:
        interval = POLL_FIRST
        while pending:
            still: list[tuple[str, messages.AuthorizationResource]] = []
            for name, authzr in pending:
                updated, _ = self._call(
                    net, f"polling the authorization of {name}", lambda a=authzr: client.poll(a),
                    deadline,
                )  # fmt: skip
                status = updated.body.status
                if status == messages.STATUS_VALID:
                    continue
                if status == messages.STATUS_INVALID:
                    raise AcmeError(
                        f"{self.name}: validation of {name} failed: {_authz_problem(updated)}",
                        "invalid",
                    )
                still.append((name, updated))
            pending = still
            if pending:
                if time.monotonic() + interval > deadline:
                    names = ", ".join(n for n, _ in pending)
                    raise AcmeError(f"{self.name}: {names} not validated in time", "timeout")
                time.sleep(interval)
                interval = min(interval * 1.5, POLL_MAX)

    def _finalize(
        self, client: ClientV2, net: _Network, orderr: messages.OrderResource, deadline: float
    ) -> messages.OrderResource:
        orderr = self._call(
            net, "finalizing the order", lambda: client.begin_finalization(orderr), deadline
        )
        interval = POLL_FIRST
        while True:
            response = self._call(
                net, "polling the order", lambda: client._post_as_get(orderr.uri), deadline
            )
            body = messages.Order.from_json(response.json())
            if body.status == messages.STATUS_VALID and body.certificate:
                return orderr.update(body=body)
            if body.status == messages.STATUS_INVALID:
                detail = _problem(body.error) if body.error else "no detail given"
                raise AcmeError(f"{self.name}: the order failed: {detail}", "invalid")
            if time.monotonic() + interval > deadline:
                raise AcmeError(f"{self.name}: the order was not issued in time", "timeout")
            time.sleep(interval)
            interval = min(interval * 1.5, POLL_MAX)

    def _pick_chain(
        self, client: ClientV2, net: _Network, orderr: messages.OrderResource, deadline: float
    ) -> str:
        """The default chain, or the alternate whose top issuer is ``preferred_chain``."""
        response = self._call(
            net,
            "downloading the certificate",
            lambda: client._post_as_get(orderr.body.certificate),
            deadline,
        )
        preferred = self.spec.get("preferred_chain")
        if not preferred:
            return str(response.text)
        candidates = [str(response.text)]
        for url in client._get_links(response, "alternate"):
            alternate = self._call(
                net, "downloading an alternate chain", lambda u=url: client._post_as_get(u),
                deadline,
            )  # fmt: skip
            candidates.append(str(alternate.text))
        for chain in candidates:
            top = x509.load_pem_x509_certificates(chain.encode())[-1]
            names = top.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
            if names and names[0].value == preferred:
                return chain
        return candidates[0]

    # -- revocation ---------------------------------------------------------------------
    def revoke(self, certificate_pem: str, reason: str) -> None:
        client, net = self._client()
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
        code = REVOCATION_REASONS[reason]
        self._call(
            net,
            "revoking the certificate",
            lambda: client.revoke(certificate, code),
            time.monotonic() + 60,
        )


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (``http.retry_after``), at most ``BACKOFF_MAX``."""
    delay = http.retry_after(value)
    return None if delay is None else min(delay.total_seconds(), BACKOFF_MAX)


def _problem(error: messages.Error) -> str:
    """The CA's problem document in one line: type, detail, subproblems."""
    code = error.code or str(error.typ)
    text = f"{code}: {error.detail}" if error.detail else code
    for sub in error.subproblems or ():
        identifier = sub.identifier.value if sub.identifier else "?"
        text += f"; {identifier}: {sub.detail}"
    return text


def _authz_problem(authzr: messages.AuthorizationResource) -> str:
    for challb in authzr.body.challenges:
        if challb.error is not None:
            return f"{challb.chall.typ}: {_problem(challb.error)}"
    return "the CA gave no detail"


def _connection_reason(exc: requests.exceptions.RequestException) -> str:
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "certificate verify failed"):
        if marker in text:
            return f"unreachable ({marker})"
    return "unreachable (connection failed)"
