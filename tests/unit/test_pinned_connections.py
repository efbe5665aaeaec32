"""Connections pinned to a checked address are pooled per host name: a second host on the same address
(a CDN) gets its own TLS handshake and its own certificate check, never the first host's connection."""

from __future__ import annotations

import datetime
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kling_pipeline.adapters.input_images import InputImagePolicy, InputImages
from kling_pipeline.adapters.pinned_http import PinnedTransport, pinned_client, pinned_request
from kling_pipeline.adapters.public_addresses import PinnedTarget
from kling_pipeline.adapters.webhook_sender import WebhookSender
from kling_pipeline.adapters.webhook_targets import WebhookPolicy


def _self_signed(host: str, directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / f"{host}.pem", directory / f"{host}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the connection stays open for the next request

    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def cdn(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """One TLS address on 127.0.0.1 that holds a certificate for a.test only."""
    cert_file, key_file = _self_signed("a.test", tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert_file
    finally:
        server.shutdown()
        server.server_close()


def test_a_second_host_on_the_same_address_gets_its_own_certificate_check(cdn: tuple[str, Path]) -> None:
    origin, cert_file = cdn
    trust = ssl.create_default_context(cafile=str(cert_file))
    with pinned_client(verify=trust) as client:
        # Given a request to a.test, pinned to its address, answered over a kept-alive connection
        first = client.send(pinned_request(client, "GET", PinnedTarget(f"{origin}/v.mp4", host="a.test")))
        assert first.status_code == 200
        # When b.test, which resolved to the same address, is asked next
        # Then it gets a handshake of its own, and the certificate (a.test's only) does not pass for it
        with pytest.raises(httpx.ConnectError, match=r"CERTIFICATE_VERIFY_FAILED|match"):
            client.send(pinned_request(client, "GET", PinnedTarget(f"{origin}/v.mp4", host="b.test")))
        # And a.test's own connection still serves a.test
        assert (
            client.send(pinned_request(client, "GET", PinnedTarget(f"{origin}/v.mp4", host="a.test"))).status_code
            == 200
        )


def test_the_webhook_sender_and_the_image_probe_use_per_host_pools() -> None:
    sender = WebhookSender("whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", WebhookPolicy(()))
    images = InputImages(
        InputImagePolicy.from_settings(input_bucket="", url_lifetime_s=600, image_url_hosts="*", production=True),
        s3=None,
    )
    assert isinstance(sender._http._transport, PinnedTransport)
    assert isinstance(images._http._transport, PinnedTransport)
