"""Fixtures of tests/factory: a real S3 server (moto's, on 127.0.0.1) and a fresh bucket on it, for inputs and
run directories on an object store."""

from __future__ import annotations

import logging
import uuid

import pyarrow.fs as pafs
import pytest


@pytest.fixture(scope="module")
def s3_server():
    server_mod = pytest.importorskip("moto.server", reason="needs moto[server] (the dev extra)")
    werkzeug = logging.getLogger("werkzeug")
    level = werkzeug.level
    werkzeug.setLevel(logging.WARNING)  # one line per request otherwise
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    try:
        server.start()
    except OSError as exc:  # pragma: no cover - sandboxes without loopback sockets
        pytest.skip(f"cannot start moto's S3 server on 127.0.0.1: {exc}")
    host, port = server.get_host_and_port()
    yield f"{host}:{port}"
    server.stop()
    werkzeug.setLevel(level)


@pytest.fixture
def s3(s3_server, monkeypatch, tmp_path):
    """Dummy credentials and a region for the AWS chain, nothing from the user's ~/.aws; one fresh bucket."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)  # curl would send 127.0.0.1 through a CI proxy
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    fs = pafs.S3FileSystem(
        access_key="testing",
        secret_key="testing",
        region="us-east-1",
        scheme="http",
        endpoint_override=s3_server,
        allow_bucket_creation=True,
    )
    fs.create_dir(bucket)
    return Store(fs, bucket, s3_server)


class Store:
    def __init__(self, fs, bucket: str, endpoint: str):
        self.fs, self.bucket, self.endpoint = fs, bucket, endpoint

    def put(self, files: dict[str, bytes]) -> None:
        for key, data in files.items():
            with self.fs.open_output_stream(f"{self.bucket}/{key}", compression=None) as out:
                out.write(data)

    def uri(self, key: str = "", query: bool = True) -> str:
        tail = f"?endpoint_override={self.endpoint}&scheme=http" if query else ""
        return f"s3://{self.bucket}/{key}{tail}"
