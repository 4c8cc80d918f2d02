"""Real servers for notification tests: a local HTTP webhook receiver and moto_server (SNS + SQS)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3


class WebhookReceiver:
    """Records every POST; answers ``fail_next`` requests with HTTP 503 first."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.fail_next = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    failing = receiver.fail_next > 0
                    if failing:
                        receiver.fail_next -= 1
                    else:
                        receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                                  "json": json.loads(body)})
                self.send_response(503 if failing else 200)
                self.end_headers()
                self.wfile.write(b"busy" if failing else b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "WebhookReceiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoServer:
    """``moto_server`` on a free loopback port, as a child process."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "MotoServer":
        executable = Path(sys.executable).parent / "moto_server"
        self.process = subprocess.Popen([str(executable), "-H", "127.0.0.1", "-p", str(self.port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.2)
        self.process.kill()
        raise RuntimeError("moto_server did not start within 30 s")

    def __exit__(self, *exc) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(timeout=10)


@dataclass
class SnsTopic:
    """An SNS topic on moto_server with one SQS queue subscribed to it (what a care team's pager reads)."""

    url: str
    topic_arn: str
    sqs: object
    queue_url: str

    def messages(self) -> list[dict]:
        """The messages waiting in the subscribed queue (up to 10)."""
        return self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])


@contextmanager
def sns_topic_with_queue(monkeypatch) -> Iterator[SnsTopic]:
    """moto_server with the topic ``kidjamo-alerts`` and the queue ``care-team`` subscribed, on test credentials."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    with MotoServer() as moto:
        sns = boto3.client("sns", region_name="us-east-1", endpoint_url=moto.url)
        sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=moto.url)
        topic_arn = sns.create_topic(Name="kidjamo-alerts")["TopicArn"]
        queue_url = sqs.create_queue(QueueName="care-team")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        yield SnsTopic(moto.url, topic_arn, sqs, queue_url)
