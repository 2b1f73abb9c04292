"""A real S3 HTTP API on 127.0.0.1 for the object-storage tests: moto's ``ThreadedMotoServer``.

The server runs in a thread of the test process but is reached only over HTTP, by boto3 (to put
objects) and by Airflow's ``s3`` ObjectStoragePath (the amazon provider's filesystem, s3fs over
aiobotocore) exactly as a deployment reaches AWS: nothing of ours is patched. The Airflow
connection is an ``AIRFLOW_CONN_<ID>`` JSON env var of type ``aws``; the provider's S3 filesystem
takes its endpoint from the connection's ``extra.endpoint_url`` (``AwsConnectionWrapper``'s
``get_service_endpoint_url("s3")``) and its keys from login/password.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

ACCESS_KEY = "osds-test-access-key"
SECRET_KEY = "osds-test-secret-key"
REGION = "us-east-1"

_buckets = itertools.count()


def require_s3_stack() -> None:
    """Import what the S3 tests need; skip without it, but fail under CI (a missing component is a failure there)."""
    try:
        import boto3  # noqa: F401
        import s3fs  # noqa: F401
        from airflow.providers.amazon.aws.fs import s3  # noqa: F401 - registers s3:// for ObjectStoragePath
        from moto.server import ThreadedMotoServer  # noqa: F401
    except ImportError as exc:
        message = (f"the S3 source tests need moto[server], s3fs and apache-airflow-providers-amazon "
                   f"(the dev extra): {exc}")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@dataclass
class S3Server:
    """A running S3 server and the Airflow connection (``conn_id``) that reaches it."""

    endpoint_url: str
    conn_id: str
    client: Any = field(repr=False)

    def new_bucket(self) -> str:
        """A fresh, empty bucket (one per test: the ledger URIs then never collide across tests)."""
        name = f"osds-enriched-{next(_buckets)}"
        self.client.create_bucket(Bucket=name)
        return name

    def put(self, url: str, data: bytes) -> None:
        """Upload ``data`` to ``s3://bucket/key``."""
        bucket, _, key = url.removeprefix("s3://").partition("/")
        self.client.put_object(Bucket=bucket, Key=key, Body=data)


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """Start the server on a free port of 127.0.0.1, set its connection in the environment, stop it after."""
    require_s3_stack()
    import boto3
    from moto.server import ThreadedMotoServer

    # Port 0: the server binds a free port itself (no window between choosing it and binding it).
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        # One connection id per server: Airflow caches the filesystem of a connection id per process.
        conn_id = f"osds_moto_s3_{port}"
        client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                              aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
        connection = {"conn_type": "aws", "login": ACCESS_KEY, "password": SECRET_KEY,
                      "extra": {"endpoint_url": endpoint, "region_name": REGION}}
        with pytest.MonkeyPatch.context() as mp:
            # werkzeug logs every request at INFO: a failing test's output would be mostly that.
            mp.setattr(logging.getLogger("werkzeug"), "level", logging.WARNING)
            mp.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))
            yield S3Server(endpoint_url=endpoint, conn_id=conn_id, client=client)
    finally:
        server.stop()
