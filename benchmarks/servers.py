"""The servers of a benchmark run, each in its own process on loopback.

* the zero-cost S3 sink: nginx (:func:`start_nginx_sink`, HTTP and HTTPS
  with a throw-away CA), or the asyncio sink of :mod:`benchmarks.sink`
  (``start_script("sink.py")``, HTTP only) where nginx is missing;
* :func:`start_moto` — moto's S3 server (the emulator's embedded S3,
  :mod:`aioims.emulator.s3server`), with the benchmark bucket created;
* :func:`start_script` — any of our scripts that print ``READY <url>``
  (the fixed-response API server);
* :func:`start_emulator` — ``python -m aioims.emulator --port 0``.

Every handle has ``.url``, ``.kind`` and ``.stop()``; children get a stdin
pipe and exit when it closes, so none outlives the harness.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
NGINX_CONF = HERE / "nginx-s3-sink.conf"
BUCKET = "bench"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"server exited with status {process.returncode}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on port {port} after {timeout} s") from None
            time.sleep(0.02)


class Server:
    """A server child process."""

    def __init__(
        self,
        kind: str,
        url: str,
        process: subprocess.Popen[bytes],
        cleanup: str | None = None,
        version: str = "",
    ) -> None:
        self.kind = kind
        self.url = url
        self.process = process
        self.cleanup = cleanup
        self.extra_cleanup: str | None = None
        self.version = version
        #: nginx sink only: its HTTPS listener and the throw-away CA that signed it.
        self.tls_url: str | None = None
        self.ca_file: str | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        proc = self.process
        if proc.stdin is not None:
            proc.stdin.close()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        for path in (self.cleanup, self.extra_cleanup):
            if path:
                shutil.rmtree(path, ignore_errors=True)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _read_ready(proc: subprocess.Popen[bytes], prefix: str, timeout: float) -> str:
    """The URL of the first stdout line starting with ``prefix``."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        raw = proc.stdout.readline()
        if not raw:
            break
        line = raw.decode(errors="replace").strip()
        lines.append(line)
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    proc.kill()
    proc.wait()
    raise RuntimeError(f"server did not start: {lines[-5:]!r}")


def _spawn(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=HERE.parent,
    )


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def nginx_version(binary: str) -> str:
    try:
        out = subprocess.run(
            [binary, "-v"], capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return ""
    return (out.stderr or out.stdout).strip().rpartition("/")[2]


ECHO_MODULE_DIRS = ("/usr/lib/nginx/modules", "/usr/share/nginx/modules", "/etc/nginx/modules")


def echo_module() -> str | None:
    for directory in ECHO_MODULE_DIRS:
        candidate = Path(directory) / "ngx_http_echo_module.so"
        if candidate.exists():
            return str(candidate)
    return None


def make_throwaway_pki(directory: str) -> tuple[str, str, str]:
    """A private CA and a certificate for IP 127.0.0.1 signed by it, made
    for this run only (in ``directory``): ``(ca_file, cert_file, key_file)``."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aioims bench CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = [os.path.join(directory, name) for name in ("ca.pem", "cert.pem", "key.pem")]
    Path(paths[0]).write_bytes(ca.public_bytes(pem))
    Path(paths[1]).write_bytes(leaf.public_bytes(pem))
    Path(paths[2]).write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    os.chmod(paths[2], 0o600)
    return paths[0], paths[1], paths[2]


def start_nginx_sink() -> Server:
    """nginx as the sink (``nginx-s3-sink.conf``, a copy of the shared config:
    it answers only after reading the whole body; needs the echo module),
    plain HTTP at ``.url`` and HTTPS at ``.tls_url``, whose certificate (for
    IP 127.0.0.1) is signed by a throw-away CA made for this run
    (``.ca_file``)."""
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed")
    module = echo_module()
    if module is None:
        raise RuntimeError("nginx's echo module is missing (libnginx-mod-http-echo)")
    workdir = tempfile.mkdtemp(prefix="aioims-bench-nginx-")
    os.chmod(workdir, 0o711)  # nginx's workers (often "nobody") write bodies > 32 MiB below it
    ca_file, cert_file, key_file = make_throwaway_pki(workdir)
    port, tls_port = free_port(), free_port()
    conf = (
        NGINX_CONF.read_text()
        .replace("__ECHO_MODULE__", module)
        .replace("__DIR__", workdir)
        .replace("__TLS_PORT__", str(tls_port))
        .replace("__PORT__", str(port))
        .replace("__CERT__", cert_file)
        .replace("__KEY__", key_file)
    )
    conf_path = Path(workdir) / "nginx.conf"
    conf_path.write_text(conf)
    proc = subprocess.Popen(
        [binary, "-c", str(conf_path), "-p", workdir],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = Server("nginx", f"http://127.0.0.1:{port}", proc, workdir, nginx_version(binary))
    server.tls_url = f"https://127.0.0.1:{tls_port}"
    server.ca_file = ca_file
    try:
        wait_port(port, 15, proc)
        wait_port(tls_port, 15, proc)
    except BaseException:
        server.stop()
        raise
    return server


def start_script(script: str, *args: str, kind: str, timeout: float = 30.0) -> Server:
    """Start ``python benchmarks/<script> --port 0 ...`` and wait for READY."""
    proc = _spawn([sys.executable, str(HERE / script), "--port", "0", *args])
    return Server(kind, _read_ready(proc, "READY ", timeout), proc)


def create_bucket(url: str, bucket: str = BUCKET) -> None:
    request = urllib.request.Request(f"{url}/{bucket}", method="PUT")
    with urllib.request.urlopen(request, timeout=30) as answer:
        answer.read()


def start_moto() -> Server:
    from aioims.emulator.s3server import start_sync

    handle = start_sync()
    server = Server("moto", handle.url, handle.process)  # type: ignore[arg-type]
    try:
        create_bucket(server.url)
    except BaseException:
        server.stop()
        raise
    return server


def start_emulator() -> Server:
    env = dict(os.environ)
    env.setdefault("PYTHONWARNINGS", "ignore")
    proc = _spawn(
        [
            sys.executable,
            "-m",
            "aioims.emulator",
            "--port",
            "0",
            "--exit-with-stdin",
            "--log-level",
            "WARNING",
        ],
        env=env,
    )
    return Server("emulator", _read_ready(proc, "IMS emulator ready at ", 90), proc)
