"""What the bench scripts share: paths, the release build, HTTP with a key, a multipart upload,
the services on RabbitMQ and S3, and a process's memory and descriptors. Standard library only.

It owns no measurement: each script says what it measures and prints it.
"""

import base64
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from xml.etree import ElementTree
from xml.sax.saxutils import escape

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
CORPUS = SHARED / "corpus"
MODEL = SHARED / "models" / "face_detection_yunet_2023mar.onnx"
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", pathlib.Path.home() / ".cache/asepsis/target"))
AMQP = os.environ.get("ASEPSIS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
S3 = os.environ.get("ASEPSIS_TEST_S3_URL", "http://127.0.0.1:9000")
SETTLED = ("published", "held", "rejected")


def release_binary():
    """Build the release `asepsis` and return its path."""
    env = dict(os.environ, CARGO_TARGET_DIR=str(TARGET))
    subprocess.run(["cargo", "build", "--release", "-q", "--bin", "asepsis"], cwd=ROOT, env=env, check=True)
    return TARGET / "release" / "asepsis"


def corpus_files():
    """The corpus images every format the pipeline takes, round-robin order."""
    return [p for d in ("jpeg", "png", "webp", "tiff", "heic", "avif") for p in sorted((CORPUS / d).glob("*")) if p.is_file()]


def face_photos():
    """The photos of ../shared/faces (multi-MB camera JPEGs among them)."""
    return sorted(p for p in (SHARED / "faces").glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def request(method, url, key=None, body=None, headers=None, timeout=60):
    """One HTTP request; returns (status, body), 4xx and 5xx included."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def multipart(fields, data):
    """A multipart/form-data body of text `fields` and the image `data` as `file`."""
    boundary = uuid.uuid4().hex
    head = "".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n" for k, v in fields.items())
    head += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n"
             "Content-Type: application/octet-stream\r\n\r\n")
    return head.encode() + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def consent(base, key, scope="identifiable"):
    """A new consent of `scope` for a made-up subject; returns its id."""
    body = {
        "subject_ref": "bench", "obtained_by": "bench", "obtained_at": "2026-01-01T00:00:00Z",
        "method": "electronic", "scope": scope, "purposes": ["benchmark"],
        "jurisdiction": "XX", "licence_version": "1", "minor": False,
    }
    status, answer = request("POST", f"{base}/v1/consents", key, json.dumps(body).encode(), {"Content-Type": "application/json"})
    if status != 201:
        sys.exit(f"POST /v1/consents answered {status}: {answer[:200]!r}")
    return json.loads(answer)["id"]


def published_at(base, key, asset):
    """When (epoch seconds) the asset's `published` event was recorded, by its provenance."""
    _, prov = request("GET", f"{base}/v1/assets/{asset}/provenance", key)
    acts = json.loads(prov)["activity"].values()
    return next(a["prov:startTime"] for a in acts if a["prov:type"] == "asepsis:published") / 1000


def wait_for(log, needle, proc, seconds=60):
    """The first line of `log` (a file the process writes) holding `needle`; exits when the
    process dies or the deadline passes first."""
    deadline = time.time() + seconds
    while True:
        log.seek(0)
        for line in log:
            if needle in line:
                return line
        if proc.poll() is not None or time.time() > deadline:
            sys.exit(f"a process did not log {needle!r}; see {log.name}")
        time.sleep(0.05)


def rabbit_s3_env(queue, bucket, s3=S3):
    """Settings for ingest and workers on RabbitMQ (queue `queue`) and S3 (bucket `bucket`)."""
    env = dict(os.environ, ASEPSIS__FACES__MODEL_PATH=str(MODEL))
    env.update({f"ASEPSIS__{k}": v for k, v in {
        "QUEUE__BACKEND__TYPE": "rabbitmq", "QUEUE__BACKEND__URL": AMQP, "QUEUE__BACKEND__QUEUE": queue,
        "QUEUE__EVENTS_EXCHANGE": f"{queue}.events", "STORE__TYPE": "s3", "STORE__BUCKET": bucket,
        "STORE__REGION": "us-east-1", "STORE__ENDPOINT": s3, "STORE__ALLOW_HTTP": "true",
        "STORE__ACCESS_KEY_ID": "test", "STORE__SECRET_ACCESS_KEY": "test",
        "WORKER__METRICS_LISTEN": "127.0.0.1:0",
    }.items()})
    return env


def delete_topology(queue):
    """Delete `queue`, the queues named after it (retries, dead letters) and its two exchanges."""
    names = subprocess.run(["rabbitmqctl", "-q", "list_queues", "name", "--no-table-headers"],
                           capture_output=True, text=True).stdout.split()
    for name in names:
        if name == queue or name.startswith(queue + "."):
            subprocess.run(["rabbitmqctl", "-q", "delete_queue", name], capture_output=True)
    for exchange in (f"{queue}.events", f"{queue}.dlx"):
        subprocess.run(["rabbitmqctl", "-q", "eval", f'rabbit_exchange:delete(rabbit_misc:r(<<"/">>, exchange, <<"{exchange}">>), false, <<"bench">>).'],
                       capture_output=True)


def list_bucket(bucket, prefix="", delimiter=None, s3=S3):
    """Every key (or, with `delimiter`, every common prefix) under `prefix` in the S3 bucket,
    through every ListObjectsV2 page."""
    found, token = [], None
    while True:
        query = {"list-type": "2", "prefix": prefix, **({"delimiter": delimiter} if delimiter else {})}
        if token:
            query["continuation-token"] = token
        status, body = request("GET", f"{s3}/{bucket}?{urllib.parse.urlencode(query)}")
        if status != 200:
            sys.exit(f"listing {prefix!r} in {bucket} answered {status}")
        root = ElementTree.fromstring(body)
        ns = {"s3": root.tag.split("}")[0].strip("{")}
        path = "s3:CommonPrefixes/s3:Prefix" if delimiter else "s3:Contents/s3:Key"
        found += [e.text for e in root.findall(path, ns)]
        token = root.findtext("s3:NextContinuationToken", None, ns)
        if not token:
            return found


def delete_bucket(bucket, s3=S3):
    """Empty the S3 bucket (DeleteObjects of up to 1,000 keys at a time) and delete it."""
    keys = list_bucket(bucket, s3=s3)
    for at in range(0, len(keys), 1000):
        doc = ("<Delete><Quiet>true</Quiet>"
               + "".join(f"<Object><Key>{escape(k)}</Key></Object>" for k in keys[at:at + 1000])
               + "</Delete>").encode()
        md5 = base64.b64encode(hashlib.md5(doc).digest()).decode()
        request("POST", f"{s3}/{bucket}?delete", body=doc, headers={"Content-MD5": md5, "Content-Type": "application/xml"})
    request("DELETE", f"{s3}/{bucket}")


def proc_status(pid, field):
    """A kB figure of /proc/PID/status (VmRSS, VmHWM), or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
    except (OSError, StopIteration):
        return None


def open_fds(pid):
    """How many file descriptors the process holds, or None once it is gone."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def slope(points):
    """Least-squares slope of (x, y) points."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0
