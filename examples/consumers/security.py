"""TLS and SASL for the example consumers, from the same SUQIU_KAFKA_* variables Suqiu reads
(docs/operations.md, Kafka security), in each client's own spelling. Unset: PLAINTEXT."""

from __future__ import annotations

import os
import ssl
from typing import Any


def _settings() -> dict[str, str | None]:
    return {name: os.environ.get(f"SUQIU_KAFKA_{name.upper()}") or None
            for name in ("security_protocol", "sasl_mechanism", "username", "password", "ca_file", "cert_file",
                         "key_file")}


def _context(s: dict[str, str | None]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=s["ca_file"])
    if s["cert_file"] and s["key_file"]:
        context.load_cert_chain(s["cert_file"], s["key_file"])
    return context


def python_client() -> dict[str, Any]:
    """For aiokafka and kafka-python, which spell these the same way."""
    s = _settings()
    protocol = (s["security_protocol"] or "PLAINTEXT").upper()
    out: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        out["ssl_context"] = _context(s)
    if protocol.startswith("SASL"):
        out |= {"sasl_mechanism": s["sasl_mechanism"] or "SCRAM-SHA-512", "sasl_plain_username": s["username"],
                "sasl_plain_password": s["password"]}
    return out


def librdkafka() -> dict[str, Any]:
    """For confluent-kafka."""
    s = _settings()
    protocol = (s["security_protocol"] or "PLAINTEXT").upper()
    out: dict[str, Any] = {"security.protocol": protocol}
    if protocol.startswith("SASL"):
        out |= {"sasl.mechanism": s["sasl_mechanism"] or "SCRAM-SHA-512", "sasl.username": s["username"],
                "sasl.password": s["password"]}
    for key, name in (("ssl.ca.location", "ca_file"), ("ssl.certificate.location", "cert_file"),
                      ("ssl.key.location", "key_file")):
        if s[name]:
            out[key] = s[name]
    return out
