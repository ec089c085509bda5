"""Kafka connection security: settings refused by name before any client tries them, and a
broker whose certificate is not trusted stops a process with one line, not a silent retry loop."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from suqiu.base.config import Settings
from suqiu.base.kafka_security import KafkaSecurity, KafkaSecurityError, check_broker
from tests.support.tls import self_signed


@pytest.mark.parametrize(("env", "named"), [
    ({"SUQIU_KAFKA_SECURITY_PROTOCOL": "SASL_TLS"}, "SUQIU_KAFKA_SECURITY_PROTOCOL=SASL_TLS"),
    ({"SUQIU_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "SUQIU_KAFKA_USERNAME": "suqiu"}, "SUQIU_KAFKA_PASSWORD"),
    ({"SUQIU_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "SUQIU_KAFKA_USERNAME": "u", "SUQIU_KAFKA_PASSWORD": "p",
      "SUQIU_KAFKA_SASL_MECHANISM": "GSSAPI"}, "SUQIU_KAFKA_SASL_MECHANISM=GSSAPI"),
    ({"SUQIU_KAFKA_SECURITY_PROTOCOL": "SSL", "SUQIU_KAFKA_CA_FILE": "/nowhere/ca.pem"}, "SUQIU_KAFKA_CA_FILE"),
    ({"SUQIU_KAFKA_SECURITY_PROTOCOL": "SSL", "SUQIU_KAFKA_CERT_FILE": __file__}, "SUQIU_KAFKA_KEY_FILE"),
    ({"SUQIU_KAFKA_CA_FILE": __file__}, "uses no TLS"),
    ({"SUQIU_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "SUQIU_KAFKA_USERNAME": "u",
      "SUQIU_KAFKA_PASSWORD_FILE": "/nowhere/pw"}, "SUQIU_KAFKA_PASSWORD_FILE"),
])
def test_settings_that_cannot_work_are_refused_by_name(env: dict[str, str], named: str) -> None:
    with pytest.raises(KafkaSecurityError) as refused:
        Settings.from_env(env)
    assert named in str(refused.value) and "\n" not in str(refused.value)


def test_each_client_gets_the_same_settings_in_its_own_spelling(tmp_path: Path) -> None:
    ca, _ = self_signed(tmp_path, "ca")
    password = tmp_path / "pw"
    password.write_text("s3cret\n", "utf-8")
    s = Settings.from_env({"SUQIU_KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "SUQIU_KAFKA_USERNAME": "suqiu",
                           "SUQIU_KAFKA_PASSWORD_FILE": str(password), "SUQIU_KAFKA_CA_FILE": str(ca),
                           "SUQIU_KAFKA_SASL_MECHANISM": "scram-sha-256"})
    k = s.kafka_security
    assert (k.protocol, k.mechanism, k.password) == ("SASL_SSL", "SCRAM-SHA-256", "s3cret")
    assert "s3cret" not in repr(k)
    aio = k.client_kwargs()
    assert aio["security_protocol"] == "SASL_SSL" and isinstance(aio["ssl_context"], ssl.SSLContext)
    assert (aio["sasl_mechanism"], aio["sasl_plain_username"], aio["sasl_plain_password"]) == \
        ("SCRAM-SHA-256", "suqiu", "s3cret")
    assert k.confluent()["ssl.ca.location"] == str(ca)
    # Children of `suqiu up` get the same settings.
    assert Settings.from_env(s.to_env()).kafka_security == k
    assert KafkaSecurity().client_kwargs() == {"security_protocol": "PLAINTEXT"}


@pytest.fixture
async def tls_listener(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    """A TLS server on loopback with a certificate no client trusts; and another CA's file."""
    cert, key = self_signed(tmp_path, "broker")
    other_ca, _ = self_signed(tmp_path, "other-ca")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    yield server.sockets[0].getsockname()[1], other_ca
    server.close()
    await server.wait_closed()


async def test_an_untrusted_broker_certificate_is_one_line_naming_the_ca_setting(
        tls_listener: tuple[int, Path]) -> None:
    port, other_ca = tls_listener
    security = KafkaSecurity("SSL", ca_file=str(other_ca))
    with pytest.raises(KafkaSecurityError) as refused:
        await check_broker(f"127.0.0.1:{port}", security, timeout=10)
    assert str(refused.value).startswith("SUQIU_KAFKA_CA_FILE: the broker's certificate is not trusted")


async def test_a_process_stops_on_an_untrusted_broker_instead_of_retrying(
        tls_listener: tuple[int, Path], settings: Settings) -> None:
    port, other_ca = tls_listener
    env = {**os.environ, **settings.to_env(), "SUQIU_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}",
           "SUQIU_KAFKA_SECURITY_PROTOCOL": "SSL", "SUQIU_KAFKA_CA_FILE": str(other_ca)}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "suqiu", "relay", env=env,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode not in (0, None)
    lines = err.decode().strip().splitlines()
    assert lines[-1].startswith("SUQIU_KAFKA_CA_FILE: the broker's certificate is not trusted"), lines[-5:]
