"""A loopback HTTP proxy in front of moto for tests that run `imgpipe` as a subprocess,
where botocore hooks cannot reach. It forwards every call to moto, and

- answers the VM Import calls moto lacks (ImportSnapshot, DescribeImportSnapshotTasks,
  CancelImportTask) itself, in the EC2 query API's XML: a task stays `active` until the
  test calls `complete_imports()`, then is `completed` with a snapshot made in moto;
- fills a moto gap the sweep depends on: RegisterImage's TagSpecifications are applied;
- can answer a named call with an error (`fail`), or HOLD it (`hold`): the call's arrival
  is signalled to the test, and it goes on only once the test releases it.

Calls are named as AWS names them (UploadPart, DescribeImportSnapshotTasks, GetParameter).
Listens on 127.0.0.1 only; every subprocess reaches it through AWS_ENDPOINT_URL."""

from __future__ import annotations

import http.client
import itertools
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from xml.sax.saxutils import escape

from tests.aws.conftest import SOURCE_REGION, plain

EC2_XMLNS = "http://ec2.amazonaws.com/doc/2016-11-15/"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "expect"}
HOLD_TIMEOUT = 30.0  # a test that forgets to release does not hang the suite


@dataclass
class Call:
    service: str  # ec2, s3, ssm (from the request's credential scope)
    operation: str
    region: str
    params: dict[str, str]  # EC2 query parameters, or S3 query string


@dataclass
class Hold:
    """A held call: `arrived` is set when it reaches the proxy; it waits for `release()`."""

    operation: str
    nth: int
    arrived: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()


@dataclass
class ImportTask:
    task_id: str
    region: str
    bucket: str
    key: str
    tags: dict[str, str]
    status: str = "active"
    snapshot_id: str | None = None


def _credential_scope(headers: Any) -> tuple[str, str]:
    """(region, service) from a SigV4 Authorization header."""
    found = re.search(r"Credential=[^/]+/\d+/([^/]+)/([^/]+)/", headers.get("Authorization", ""))
    return (found.group(1), found.group(2)) if found else (SOURCE_REGION, "?")


def _s3_operation(method: str, query: dict[str, str], path: str) -> str:
    if method == "PUT" and "partNumber" in query:
        return "UploadPart"
    if "uploads" in query:
        return "CreateMultipartUpload" if method == "POST" else "ListMultipartUploads"
    if "uploadId" in query:
        return {"POST": "CompleteMultipartUpload", "DELETE": "AbortMultipartUpload"}.get(method, "ListParts")
    has_key = path.strip("/").count("/") >= 1
    names = {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}
    return names.get(method, method) if has_key else f"{method}Bucket"


def _tag_params(params: dict[str, str], prefix: str) -> dict[str, str]:
    """Tags of a query-API TagSpecification list (`TagSpecification.1.Tag.1.Key` ...)."""
    tags = {}
    for name, value in params.items():
        found = re.fullmatch(rf"{prefix}\.(\d+)\.Tag\.(\d+)\.Key", name)
        if found:
            tags[value] = params.get(f"{prefix}.{found.group(1)}.Tag.{found.group(2)}.Value", "")
    return tags


def _xml(operation: str, body: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<{operation}Response xmlns="{EC2_XMLNS}">'
        f"<requestId>proxy</requestId>{body}</{operation}Response>"
    ).encode()


def _error_xml(code: str, message: str) -> bytes:
    return (
        f"<Response><Errors><Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"</Error></Errors><RequestID>proxy</RequestID></Response>"
    ).encode()


class AwsProxy:
    def __init__(self, moto_url: str) -> None:
        self.moto = urllib.parse.urlsplit(moto_url)
        self.calls: list[Call] = []
        self.tasks: dict[str, ImportTask] = {}
        self.cancelled: list[str] = []
        self._holds: list[Hold] = []
        self._faults: list[tuple[str, int, int, str]] = []
        self._seen: dict[str, int] = {}
        self._complete = False
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    # -- what tests call

    def reset(self) -> None:
        with self._lock:
            for hold in self._holds:
                hold.release()
            self.calls.clear()
            self.tasks.clear()
            self.cancelled.clear()
            self._holds.clear()
            self._faults.clear()
            self._seen.clear()
            self._complete = False

    def hold(self, operation: str, nth: int = 1) -> Hold:
        """Hold the `nth` call of `operation` (1-based) until the test releases it."""
        hold = Hold(operation, nth)
        with self._lock:
            self._holds.append(hold)
        return hold

    def fail(self, operation: str, code: str, *, status: int = 400, nth: int = 1) -> None:
        """Answer the `nth` call of `operation` with an AWS error instead of forwarding it."""
        with self._lock:
            self._faults.append((operation, nth, status, code))

    def complete_imports(self) -> None:
        """Every import task, running or started later, completes: its snapshot is made in moto."""
        with self._lock:
            self._complete = True
            for task in self.tasks.values():
                self._finish(task)

    def count(self, operation: str) -> int:
        with self._lock:
            return self._seen.get(operation, 0)

    def close(self) -> None:
        self.reset()
        self.server.shutdown()
        self.server.server_close()

    # -- serving

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, and `Expect: 100-continue` for S3 bodies

            def do_request(self) -> None:
                try:
                    proxy._serve(self)
                except (BrokenPipeError, ConnectionResetError):  # a killed client
                    self.close_connection = True

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_request

            def log_message(self, *_: Any) -> None:
                pass

        return Handler

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        body = self._read_body(request)
        region, service = _credential_scope(request.headers)
        url = urllib.parse.urlsplit(request.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        if service == "ec2":
            params = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
            operation = params.get("Action", "?")
        elif service == "s3":
            params, operation = query, _s3_operation(request.command, query, url.path)
        else:
            params = {}
            operation = request.headers.get("X-Amz-Target", "?").rsplit(".", 1)[-1]
        with self._lock:
            nth = self._seen[operation] = self._seen.get(operation, 0) + 1
            self.calls.append(Call(service, operation, region, params))
            hold = next((h for h in self._holds if (h.operation, h.nth) == (operation, nth)), None)
            fault = next((f for f in self._faults if f[:2] == (operation, nth)), None)
        if hold is not None:
            hold.arrived.set()
            hold.released.wait(HOLD_TIMEOUT)
        if fault is not None:
            return self._answer(
                request, fault[2], {"Content-Type": "text/xml"}, _error_xml(fault[3], "injected")
            )
        own = {
            "ImportSnapshot": self._import_snapshot,
            "DescribeImportSnapshotTasks": self._describe_import_tasks,
            "CancelImportTask": self._cancel_import_task,
        }
        if service == "ec2" and operation in own:
            status, answer = own[operation](params, region)
            return self._answer(request, status, {"Content-Type": "text/xml"}, answer)
        status, headers, answer = self._forward(request, body)
        if service == "ec2" and operation == "RegisterImage" and status == 200:
            self._tag_registered_image(answer, params, region)
        self._answer(request, status, headers, answer)

    @staticmethod
    def _read_body(request: BaseHTTPRequestHandler) -> bytes:
        if request.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(request.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(request.rfile.read(size))
                request.rfile.readline()
            while request.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(chunks)
        return request.rfile.read(int(request.headers.get("Content-Length") or 0))

    def _forward(self, request: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        connection = http.client.HTTPConnection(self.moto.hostname, self.moto.port, timeout=60)
        try:
            connection.request(request.command, request.path, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            kept = {k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP}
            return response.status, kept, answer
        finally:
            connection.close()

    @staticmethod
    def _answer(request: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes) -> None:
        request.send_response(status)
        for name, value in headers.items():
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(body)

    # -- VM Import, as AWS answers it

    def _import_snapshot(self, params: dict[str, str], region: str) -> tuple[int, bytes]:
        bucket = params["DiskContainer.UserBucket.S3Bucket"]
        key = params["DiskContainer.UserBucket.S3Key"]
        try:
            plain("s3", region).head_object(Bucket=bucket, Key=key)  # VM Import reads a complete object
        except Exception as exc:  # noqa: BLE001 - answered as AWS would
            return 400, _error_xml("InvalidParameter", f"s3://{bucket}/{key} is not readable: {exc}")
        with self._lock:
            task = ImportTask(
                f"import-snap-{next(self._ids):017x}",
                region,
                bucket,
                key,
                _tag_params(params, "TagSpecification"),
            )
            self.tasks[task.task_id] = task
            if self._complete:
                self._finish(task)
        return 200, _xml("ImportSnapshot", f"<importTaskId>{task.task_id}</importTaskId>{self._detail(task)}")

    def _describe_import_tasks(self, params: dict[str, str], region: str) -> tuple[int, bytes]:
        wanted = [v for k, v in params.items() if k.startswith("ImportTaskId.")]
        with self._lock:
            unknown = [t for t in wanted if t not in self.tasks]
            if unknown:
                return 400, _error_xml("InvalidConversionTaskId.Malformed", f"no such task {unknown[0]}")
            tasks = [
                t for t in self.tasks.values() if t.region == region and (not wanted or t.task_id in wanted)
            ]
            items = "".join(
                f"<item><importTaskId>{t.task_id}</importTaskId>{self._detail(t)}{self._tag_set(t)}</item>"
                for t in tasks
            )
        return 200, _xml(
            "DescribeImportSnapshotTasks", f"<importSnapshotTaskSet>{items}</importSnapshotTaskSet>"
        )

    def _cancel_import_task(self, params: dict[str, str], region: str) -> tuple[int, bytes]:
        with self._lock:
            task = self.tasks.get(params.get("ImportTaskId", ""))
            if task is None:
                return 400, _error_xml("InvalidConversionTaskId.Malformed", "no such task")
            if task.status != "active":
                return 400, _error_xml("IncorrectState", f"task {task.task_id} is {task.status}")
            previous, task.status = task.status, "deleted"
            self.cancelled.append(task.task_id)
        body = f"<importTaskId>{task.task_id}</importTaskId><previousState>{previous}</previousState>"
        return 200, _xml("CancelImportTask", body + "<state>deleting</state>")

    def _finish(self, task: ImportTask) -> None:
        if task.status != "active":
            return
        ec2 = plain("ec2", task.region)
        volume = ec2.create_volume(Size=8, AvailabilityZone=f"{task.region}a")["VolumeId"]
        task.snapshot_id = ec2.create_snapshot(VolumeId=volume)["SnapshotId"]
        ec2.delete_volume(VolumeId=volume)
        task.status = "completed"

    @staticmethod
    def _detail(task: ImportTask) -> str:
        snapshot = f"<snapshotId>{task.snapshot_id}</snapshotId>" if task.snapshot_id else ""
        progress = "100" if task.status == "completed" else "30"
        return (
            f"<snapshotTaskDetail><status>{task.status}</status><progress>{progress}</progress>{snapshot}"
            f"<userBucket><s3Bucket>{escape(task.bucket)}</s3Bucket><s3Key>{escape(task.key)}</s3Key>"
            f"</userBucket></snapshotTaskDetail>"
        )

    @staticmethod
    def _tag_set(task: ImportTask) -> str:
        items = "".join(
            f"<item><key>{escape(k)}</key><value>{escape(v)}</value></item>" for k, v in task.tags.items()
        )
        return f"<tagSet>{items}</tagSet>"

    @staticmethod
    def _tag_registered_image(answer: bytes, params: dict[str, str], region: str) -> None:
        """moto ignores RegisterImage's TagSpecifications; AWS applies them atomically."""
        tags = _tag_params(params, "TagSpecification")
        found = re.search(rb"<imageId>([^<]+)</imageId>", answer)
        if tags and found:
            plain("ec2", region).create_tags(
                Resources=[found.group(1).decode()], Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
            )
