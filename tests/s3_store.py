"""A real S3-compatible server on 127.0.0.1 (moto's server mode) for tests, with the environment
that points boto/s3fs (in this process, its subprocesses and its Ray workers) at it."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from typing import Iterator

S3_ENV_KEYS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


@contextmanager
def s3_server() -> Iterator[dict]:
    """Start the server on a free port; yield the environment a client needs; stop it."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    import s3fs

    saved = {k: os.environ.get(k) for k in S3_ENV_KEYS}
    os.environ.update(env)
    s3fs.S3FileSystem.clear_instance_cache()  # fsspec caches clients: one may point at an earlier server
    try:
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()
        s3fs.S3FileSystem.clear_instance_cache()


def new_bucket() -> str:
    """Create an empty bucket; return its `s3://` URI."""
    import s3fs

    name = f"sumpref-{uuid.uuid4().hex[:12]}"
    fs = s3fs.S3FileSystem()
    fs.mkdir(name)
    return f"s3://{name}"
