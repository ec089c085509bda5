"""How every Kafka client connects: TLS and SASL from SUQIU_KAFKA_* settings, in one place.

Faust, aiokafka and kafka-python name the same settings differently; each client asks here for
its own spelling, so a deployment sets them once (docs/operations.md, Kafka security).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
_FILES = (("ca_file", "SUQIU_KAFKA_CA_FILE"), ("cert_file", "SUQIU_KAFKA_CERT_FILE"),
          ("key_file", "SUQIU_KAFKA_KEY_FILE"))


class KafkaSecurityError(SystemExit):
    """A setting that cannot work, or a broker that refused it: one line naming the setting."""


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"
    mechanism: str = "SCRAM-SHA-512"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> KafkaSecurity:
        protocol = (env.get("SUQIU_KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper()
        if protocol not in PROTOCOLS:
            raise KafkaSecurityError(f"SUQIU_KAFKA_SECURITY_PROTOCOL={protocol}: one of {', '.join(PROTOCOLS)}")
        mechanism = (env.get("SUQIU_KAFKA_SASL_MECHANISM") or "SCRAM-SHA-512").upper()
        if mechanism not in MECHANISMS:
            raise KafkaSecurityError(f"SUQIU_KAFKA_SASL_MECHANISM={mechanism}: one of {', '.join(MECHANISMS)}")
        password = env.get("SUQIU_KAFKA_PASSWORD") or None
        password_file = env.get("SUQIU_KAFKA_PASSWORD_FILE")
        if password_file:
            try:
                password = Path(password_file).read_text("utf-8").strip()
            except OSError as exc:
                raise KafkaSecurityError(f"SUQIU_KAFKA_PASSWORD_FILE={password_file}: {exc.strerror}") from None
        found = cls(protocol, mechanism, env.get("SUQIU_KAFKA_USERNAME") or None, password,
                    *(env.get(name) or None for _, name in _FILES))
        found.check()
        return found

    def check(self) -> None:
        """Refuse settings that cannot work, before any client tries them."""
        if self.sasl and not (self.username and self.password):
            raise KafkaSecurityError(f"SUQIU_KAFKA_SECURITY_PROTOCOL={self.protocol} needs SUQIU_KAFKA_USERNAME and "
                                     "SUQIU_KAFKA_PASSWORD (or SUQIU_KAFKA_PASSWORD_FILE)")
        for attr, name in _FILES:
            value = getattr(self, attr)
            if value and not Path(value).is_file():
                raise KafkaSecurityError(f"{name}={value}: no such file")
        if bool(self.cert_file) != bool(self.key_file):
            raise KafkaSecurityError("SUQIU_KAFKA_CERT_FILE and SUQIU_KAFKA_KEY_FILE go together (a client certificate)")
        if not self.tls and (self.ca_file or self.cert_file):
            raise KafkaSecurityError(f"SUQIU_KAFKA_CA_FILE is set but SUQIU_KAFKA_SECURITY_PROTOCOL={self.protocol} "
                                     "uses no TLS: set SSL or SASL_SSL")

    def to_env(self) -> dict[str, str]:
        env = {"SUQIU_KAFKA_SECURITY_PROTOCOL": self.protocol, "SUQIU_KAFKA_SASL_MECHANISM": self.mechanism}
        for name, value in (("SUQIU_KAFKA_USERNAME", self.username), ("SUQIU_KAFKA_PASSWORD", self.password),
                            *((n, getattr(self, a)) for a, n in _FILES)):
            if value:
                env[name] = value
        return env

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """Verifies the broker against the CA file (or the system's CAs), with a client
        certificate when one is set."""
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file and self.key_file:
            try:
                context.load_cert_chain(self.cert_file, self.key_file)
            except (ssl.SSLError, OSError) as exc:
                raise KafkaSecurityError(f"SUQIU_KAFKA_CERT_FILE/SUQIU_KAFKA_KEY_FILE: not a certificate and its key "
                                         f"({exc})") from None
        return context

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's clients (and so Faust's) and kafka-python's, which
        spell these settings the same way."""
        out: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            out["ssl_context"] = self.ssl_context()
        if self.sasl:
            out |= {"sasl_mechanism": self.mechanism, "sasl_plain_username": self.username,
                    "sasl_plain_password": self.password}
        return out

    def confluent(self) -> dict[str, Any]:
        """librdkafka's configuration keys (the confluent-kafka example consumer)."""
        out: dict[str, Any] = {"security.protocol": self.protocol}
        if self.sasl:
            out |= {"sasl.mechanism": self.mechanism, "sasl.username": self.username, "sasl.password": self.password}
        for key, value in (("ssl.ca.location", self.ca_file), ("ssl.certificate.location", self.cert_file),
                           ("ssl.key.location", self.key_file)):
            if value:
                out[key] = value
        return out

    def explain(self, exc: BaseException) -> str:
        """The setting a failed connection points at, in one line."""
        text = f"{type(exc).__name__}: {exc}"
        chain: list[BaseException] = [exc]
        while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
            nxt = chain[-1].__cause__ or chain[-1].__context__
            assert nxt is not None
            chain.append(nxt)
        if any(isinstance(e, ssl.SSLCertVerificationError) for e in chain) or "CERTIFICATE_VERIFY_FAILED" in text:
            return f"SUQIU_KAFKA_CA_FILE: the broker's certificate is not trusted ({text})"
        if any(isinstance(e, ssl.SSLError) for e in chain):
            return f"SUQIU_KAFKA_SECURITY_PROTOCOL={self.protocol}: the TLS handshake failed ({text})"
        if "authentication" in text.lower() or "sasl" in text.lower():
            return (f"SUQIU_KAFKA_USERNAME/SUQIU_KAFKA_PASSWORD: the broker refused {self.username!r} with "
                    f"{self.mechanism} ({text})")
        return f"SUQIU_KAFKA_BOOTSTRAP: cannot reach the broker with SUQIU_KAFKA_SECURITY_PROTOCOL={self.protocol} ({text})"


async def check_broker(bootstrap: str, security: KafkaSecurity, timeout: float = 15.0) -> None:
    """Connect once as every client will: an untrusted certificate or refused credentials stop
    the process with one line (never a silent retry loop). A broker not reachable yet, and plain
    connections, are left to the clients' own retries."""
    if security.protocol == "PLAINTEXT":
        return
    # aiokafka logs why a handshake failed and raises only "Unable to bootstrap": connect first.
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    host = host.strip("[]")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(
            host, int(port), ssl=security.ssl_context(), server_hostname=host if security.tls else None), timeout)
        writer.close()
    except (ssl.SSLError, ssl.CertificateError) as exc:
        raise KafkaSecurityError(security.explain(exc)) from None
    except (OSError, TimeoutError):
        return  # not reachable yet: the clients' own retries take it from here
    from aiokafka import AIOKafkaClient

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000), **security.client_kwargs())
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
    except Exception as exc:
        raise KafkaSecurityError(security.explain(exc)) from None
    finally:
        await client.close()
