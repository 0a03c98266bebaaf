"""The ACME protocol (RFC 8555) with the reference ``acme``/``josepy`` packages.

Blocking (they use ``requests``): the manager runs :meth:`Issuer.obtain` in a thread.
One call is one attempt: account (created once, reused), order, one challenge per
authorization, finalize with a CSR for a fresh key, download the chain. The ``acme``
client already retries a ``badNonce`` once and honours Retry-After while polling; what
still fails raises :class:`AcmeFailure` with one line for the log and the delay the CA
asked for, if it said one (``rateLimited`` responses carry Retry-After, RFC 8555 §6.6).
"""

from __future__ import annotations

import datetime
import email.utils
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import ES256
from josepy.jwk import JWK, JWKEC

from gateway.acme.challenges import ChallengeFiles
from gateway.acme.storage import AcmeStorage, private_key_pem

log = logging.getLogger("gateway.error")

# Seconds to wait for the CA to validate and issue, per attempt.
ORDER_DEADLINE = 120.0
USER_AGENT = "asgigw-acme"


class AcmeFailure(Exception):
    """One attempt failed; ``str()`` is the log line, ``retry_after`` the CA's wish (s)."""

    def __init__(self, message: str, retry_after: float | None = None, final: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        # True for mistakes only the operator can fix (terms not agreed, bad EAB keys).
        self.final = final


@dataclass(frozen=True)
class AcmeAccountSettings:
    """What the account needs: ``--acme-email``, ``--acme-agree-tos``, EAB, the CA bundle."""

    directory_url: str
    email: str | None
    agree_tos: bool
    ca_bundle: str | None
    eab_kid: str | None
    eab_hmac: str | None


# acme 3+ dropped its tls-alpn-01 classes (they needed pyOpenSSL); the message format is the
# same as http-01's, so these two register the type with the package's own registries.
@challenges.ChallengeResponse.register
class TLSALPN01Response(challenges.KeyAuthorizationChallengeResponse):
    """The (empty) response that tells the CA to validate tls-alpn-01 (RFC 8737 §3)."""

    typ = "tls-alpn-01"


@challenges.Challenge.register
class TLSALPN01(challenges.KeyAuthorizationChallenge):
    """A tls-alpn-01 challenge (RFC 8737)."""

    response_cls = TLSALPN01Response
    typ = response_cls.typ

    def validation(self, account_key: JWK, **kwargs: Any) -> None:
        """The validation is a certificate served by the listener (challenges.py), not a value."""
        return None


class Issuer:
    """Obtains certificates from one CA for one account (blocking)."""

    def __init__(self, settings: AcmeAccountSettings, storage: AcmeStorage, answers: ChallengeFiles) -> None:
        self.settings = settings
        self.storage = storage
        self.answers = answers
        self._client: client.ClientV2 | None = None
        self._retry_after: float | None = None

    def terms_of_service(self) -> str | None:
        """The CA's terms URL from its directory (raises AcmeFailure when unreachable)."""
        try:
            # Reading the directory needs no account key: none is created for this.
            directory = client.ClientV2.get_directory(self.settings.directory_url, self._network(None))
        except (errors.Error, requests.RequestException, ValueError) as exc:
            raise AcmeFailure(f"cannot read the CA's directory {self.settings.directory_url}: {exc}") from None
        terms = directory.meta.terms_of_service if directory.meta else None
        return str(terms) if terms else None

    def suggested_renewal(self, cert_pem: bytes) -> datetime.datetime | None:
        """When the CA's renewal information (RFC 9773) says to renew; None if it offers none."""
        try:
            when, _ = self._acme_client(register=False).renewal_time(cert_pem)
        except (AcmeFailure, errors.Error, requests.RequestException, ValueError) as exc:
            log.warning("ACME: no renewal information from the CA (%s); renewing at 2/3 of the lifetime", exc)
            return None
        if when is None:
            return None
        return when if when.tzinfo is not None else when.astimezone(datetime.UTC)

    def obtain(self, names: list[str], challenge_type: str) -> tuple[bytes, bytes]:
        """One attempt at a certificate for ``names``: (chain PEM, key PEM)."""
        self._retry_after = None
        try:
            return self._obtain(names, challenge_type)
        except errors.ValidationError as exc:
            raise AcmeFailure(f"validation failed: {_validation_problems(exc)}") from None
        except messages.Error as exc:
            raise AcmeFailure(f"the CA refused: {_describe(exc)}", self._retry_after) from None
        except errors.TimeoutError:
            raise AcmeFailure(f"the CA did not finish the order within {ORDER_DEADLINE:g}s") from None
        except (errors.Error, requests.RequestException, ValueError) as exc:
            raise AcmeFailure(f"cannot talk to the CA at {self.settings.directory_url}: {exc}") from None

    def _obtain(self, names: list[str], challenge_type: str) -> tuple[bytes, bytes]:
        acme = self._acme_client(register=True)
        key_pem = private_key_pem(ec.generate_private_key(ec.SECP256R1()))
        order = acme.new_order(crypto_util.make_csr(key_pem, names))
        cleanups: list[Callable[[], None]] = []
        try:
            for authorization in order.authorizations:
                if authorization.body.status == messages.STATUS_VALID:
                    continue  # validated recently for this account: nothing to prove
                cleanups.append(self._answer(acme, authorization, challenge_type))
            deadline = datetime.datetime.now() + datetime.timedelta(seconds=ORDER_DEADLINE)
            finished = acme.poll_and_finalize(order, deadline)
        finally:
            for cleanup in cleanups:
                cleanup()
        return finished.fullchain_pem.encode("ascii"), key_pem

    def _answer(
        self, acme: client.ClientV2, authorization: messages.AuthorizationResource, kind: str
    ) -> Callable[[], None]:
        name = authorization.body.identifier.value
        account_key = acme.net.key
        assert account_key is not None
        for body in authorization.body.challenges:
            chall = body.chall
            if isinstance(chall, challenges.KeyAuthorizationChallenge) and chall.typ == kind:
                key_authorization = chall.key_authorization(account_key)
                cleanup: Callable[[], None]
                if kind == "http-01":
                    token = chall.encode("token")
                    self.answers.put_http01(token, key_authorization)
                    cleanup = functools.partial(self.answers.remove_http01, token)
                else:
                    self.answers.put_tlsalpn01(name, key_authorization)
                    cleanup = functools.partial(self.answers.remove_tlsalpn01, name)
                acme.answer_challenge(body, chall.response(account_key))
                return cleanup
        offered = ", ".join(sorted({body.chall.typ for body in authorization.body.challenges}))
        raise AcmeFailure(f"the CA offers no {kind} challenge for {name} (it offers: {offered})", final=True)

    def _acme_client(self, *, register: bool) -> client.ClientV2:
        if self._client is None:
            self._client = self._connect()
        if register and self._client.net.account is None:
            self._register(self._client)
        return self._client

    def _connect(self) -> client.ClientV2:
        try:
            return self._new_client()
        except (errors.Error, requests.RequestException, ValueError) as exc:
            raise AcmeFailure(f"cannot read the CA's directory {self.settings.directory_url}: {exc}") from None

    def _new_client(self) -> client.ClientV2:
        network = self._network(JWKEC(key=self._account_key()))
        directory = client.ClientV2.get_directory(self.settings.directory_url, network)
        return client.ClientV2(directory, network)

    def _network(self, key: JWK | None) -> client.ClientNetwork:
        network = client.ClientNetwork(key, alg=ES256, user_agent=USER_AGENT)
        if self.settings.ca_bundle:
            # ClientNetwork passes verify_ssl to requests as ``verify``, which also takes a
            # CA bundle path (a private CA such as Pebble or step-ca).
            setattr(network, "verify_ssl", self.settings.ca_bundle)  # noqa: B010
        network.session.hooks["response"].append(self._note_retry_after)
        return network

    def _account_key(self) -> ec.EllipticCurvePrivateKey:
        stored = self.storage.load_account_key()
        if stored is not None:
            key = serialization.load_pem_private_key(stored, password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise AcmeFailure(f"{self.storage.account_key_path}: not an EC account key", final=True)
            return key
        key = ec.generate_private_key(ec.SECP256R1())
        self.storage.save_account_key(private_key_pem(key))
        log.info("ACME: created an account key in %s", self.storage.account_key_path)
        return key

    def _register(self, acme: client.ClientV2) -> None:
        settings = self.settings
        url = self.storage.load_account_url()
        if url is not None:
            acme.net.account = messages.RegistrationResource(uri=url, body=messages.Registration())
            return
        if not settings.agree_tos:
            terms = self.terms_of_service()
            raise AcmeFailure(
                f"agree to the CA's terms of service ({terms or 'no URL given'}): add --acme-agree-tos", final=True
            )
        binding = None
        if settings.eab_kid and settings.eab_hmac:
            assert acme.net.key is not None
            binding = messages.ExternalAccountBinding.from_data(
                acme.net.key.public_key(), settings.eab_kid, settings.eab_hmac, acme.directory
            )
        elif acme.external_account_required():
            raise AcmeFailure(
                "this CA requires external account binding: give --acme-eab-kid and --acme-eab-hmac", final=True
            )
        registration = messages.NewRegistration.from_data(
            email=settings.email, terms_of_service_agreed=True, external_account_binding=binding
        )
        try:
            account = acme.new_account(registration)
        except errors.ConflictError as exc:  # the key is registered already (account.json lost)
            account = acme.query_registration(
                messages.RegistrationResource(uri=exc.location, body=messages.Registration())
            )
        self.storage.save_account_url(account.uri)
        log.info("ACME: registered account %s", account.uri)

    def _note_retry_after(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        value = response.headers.get("Retry-After")
        if response.status_code < 400 or not value:
            return
        if value.isdigit():
            self._retry_after = float(value)
            return
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return
        self._retry_after = max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())


def _describe(error: messages.Error) -> str:
    kind = (error.typ or "").rsplit(":", 1)[-1]
    return f"{kind}: {error.detail}" if error.detail else kind or str(error)


def _validation_problems(exc: errors.ValidationError) -> str:
    problems = []
    for authorization in exc.failed_authzrs:
        name = authorization.body.identifier.value
        for body in authorization.body.challenges:
            if body.error is not None:
                problems.append(f"{name} ({body.chall.typ}): {_describe(body.error)}")
    return "; ".join(problems) or str(exc)
