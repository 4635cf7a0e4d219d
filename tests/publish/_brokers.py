"""Real brokers and subscribers for the publishing tests: mosquitto on a free port, paho clients, certificates."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from rt_physio.publish.schema import Prediction


def sample_prediction(seq: int = 0, session: str = "s1") -> Prediction:
    """A valid prediction message for publisher tests."""
    return Prediction(
        session=session, seq=seq, t_start=10.0 + seq, t_end=15.0 + seq, t_wall=time.time(),
        outputs={"arousal": 0.25, "valence": 0.5}, model_name="m", model_sha256="ab" * 32, trained=False,
        modalities=["eeg", "ecg"], quality={"eeg": 0.9, "ecg": 0.8}, latency_ms={"infer": 1.5, "total": 3.25},
    )


def _mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if found is None:
        pytest.fail("mosquitto is not installed (make test installs Debian's mosquitto)", pytrace=False)
    return found


class Mosquitto:
    """A real mosquitto broker on 127.0.0.1:``port`` with a generated config; stop/start/kill at will."""

    def __init__(self, folder: Path, port: int, *, users: dict[str, str] | None = None,
                 tls: tuple[Path, Path] | None = None, persistence: bool = False) -> None:
        self.folder = folder
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        lines = [f"listener {port} 127.0.0.1", "log_dest stderr", "log_type error", "log_type warning",
                 "log_type notice"]
        if persistence:  # sessions and queued messages survive a clean restart (saved on SIGTERM)
            lines += ["persistence true", f"persistence_location {folder}/", f"persistence_file mosquitto-{port}.db"]
        else:
            lines.append("persistence false")
        if os.geteuid() == 0:
            lines.append("user root")  # mosquitto drops root for 'mosquitto', who cannot read pytest's tmp files
        if users:
            passwd = folder / "passwd"
            for i, (user, password) in enumerate(users.items()):
                args = ["mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), str(passwd), user, password]
                subprocess.run(args, check=True, capture_output=True)
            passwd.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        if tls is not None:
            lines += [f"certfile {tls[0]}", f"keyfile {tls[1]}"]
        self.config = folder / f"mosquitto-{port}.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.log = folder / f"mosquitto-{port}.log"

    def start(self, timeout: float = 10.0) -> Mosquitto:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([_mosquitto_binary(), "-c", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"mosquitto exited: {self.log.read_text()}", pytrace=False)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"mosquitto did not listen on {self.port}: {self.log.read_text()}", pytrace=False)

    def stop(self, kill: bool = False) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        self.proc.wait(timeout=10)


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float  # time.monotonic()


class Subscriber:
    """A real MQTT subscriber (paho, its own network thread) that keeps everything it receives."""

    def __init__(self, port: int, topic: str = "#", *, username: str | None = None, password: str | None = None,
                 cafile: Path | None = None, persistent: bool = False) -> None:
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        # persistent: the broker keeps the subscription and queues QoS 1 messages while this client is away
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:10]}",
                                  clean_session=not persistent)
        self.client.reconnect_delay_set(0.05, 0.2)
        if username is not None:
            self.client.username_pw_set(username, password)
        if cafile is not None:
            self.client.tls_set(ca_certs=str(cafile))
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("subscriber did not get SUBACK")

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain), time.monotonic()))
            self._cond.notify_all()

    def on(self, suffix: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def wait_for(self, check: Callable[[list[Received]], bool], timeout: float) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not check(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"condition not met in {timeout} s; got {[m.topic for m in self.messages]}")
                self._cond.wait(left)
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def count(suffix: str, n: int) -> Callable[[list[Received]], bool]:
    return lambda msgs: sum(m.topic.endswith(suffix) for m in msgs) >= n


def last_is(suffix: str, payload: bytes) -> Callable[[list[Received]], bool]:
    def check(msgs: list[Received]) -> bool:
        mine = [m for m in msgs if m.topic.endswith(suffix)]
        return bool(mine) and mine[-1].payload == payload

    return check


def status_state(payload: bytes) -> str | None:
    """The ``state`` of an ``rt_physio.status/1`` payload (JSON or msgpack); None for anything else."""
    from rt_physio.publish.schema import decode

    for fmt in ("json", "msgpack"):
        try:
            message = decode(payload, fmt)  # type: ignore[arg-type]
        except Exception:
            continue
        if isinstance(message, dict) and message.get("schema") == "rt_physio.status/1":
            return str(message.get("state"))
    return None


def last_state(suffix: str, state: str) -> Callable[[list[Received]], bool]:
    """The newest message on a topic ending with ``suffix`` is a status message in ``state``."""
    def check(msgs: list[Received]) -> bool:
        mine = [m for m in msgs if m.topic.endswith(suffix)]
        return bool(mine) and status_state(mine[-1].payload) == state

    return check


def make_certificates(folder: Path) -> tuple[Path, Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1/localhost signed by it; also an unrelated CA.

    Returns (ca.pem, server.pem, server.key, other-ca.pem).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False, key_agreement=False,
                                             key_cert_sign=True, crl_sign=True, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        return key, cert

    ca_key, ca_cert = ca("rt_physio test CA")
    _, other_cert = ca("some other CA")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = (folder / "ca.pem", folder / "server.pem", folder / "server.key", folder / "other-ca.pem")
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    paths[2].chmod(0o600)
    paths[3].write_bytes(other_cert.public_bytes(serialization.Encoding.PEM))
    return paths
