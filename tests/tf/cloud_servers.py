"""Loopback servers for the gs:// and s3:// tests (nothing here listens beyond 127.0.0.1):

- moto_server (pip moto[server]): a real S3 API; with auth=True it checks SigV4 signatures against
  an IAM user created through it (INITIAL_NO_AUTH_ACTION_COUNT).
- gcp-storage-emulator (pip): a real Cloud Storage JSON API, reached via STORAGE_EMULATOR_HOST.
- FaultProxy: forwards to one of them and, by rule, answers 5xx, drops the connection before
  forwarding, after forwarding (the request took effect, the answer is lost) or in the middle of
  the answer's body; it records every request (method, path, Authorization).
- CredentialStub: the GCE metadata token endpoint, an OAuth2 token endpoint that checks a
  service-account JWT's RS256 signature, and an AWS container-credentials endpoint.
"""
import base64
import http.client
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, proc, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except Exception:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up in {timeout} s")


def tool(name):
    """An installed emulator's command; missing is a failure (never a skip)."""
    path = shutil.which(name)
    assert path, f"{name} is not installed: bash .ci/setup --tests (pip moto[server] gcp-storage-emulator)"
    return path


class Server:
    def __init__(self, args, url, env=None, log=None):
        self.log = open(log, "w") if log else subprocess.DEVNULL
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})})
        self.url = url
        wait_http(url + "/", self.proc)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        if self.log is not subprocess.DEVNULL:
            self.log.close()


def start_moto(log=None, auth=False):
    port = free_port()
    # auth: the first requests (the caller's IAM set-up) go unchecked, see enforce_auth
    env = {"INITIAL_NO_AUTH_ACTION_COUNT": "8"} if auth else {}
    return Server([tool("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                  f"http://127.0.0.1:{port}", env, log)


def enforce_auth(url):
    """Spends moto's remaining unchecked requests: returns once a bogus key is refused."""
    import boto3
    from botocore.exceptions import ClientError
    s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                      aws_access_key_id="bogus", aws_secret_access_key="bogus")
    for _ in range(20):
        try:
            s3.list_buckets()
        except ClientError:
            return
    raise RuntimeError("moto does not check credentials")


def start_gcs(log=None):
    port = free_port()
    return Server([tool("gcp-storage-emulator"), "start", "--host", "127.0.0.1", "--port",
                   str(port), "--in-memory", "-q"], f"http://127.0.0.1:{port}", None, log)


def gcs_create_bucket(base, name):
    req = urllib.request.Request(f"{base}/storage/v1/b?project=test", method="POST",
                                 data=json.dumps({"name": name}).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()


def gcs_list(base, bucket, prefix=""):
    q = urllib.parse.urlencode({"prefix": prefix})
    with urllib.request.urlopen(f"{base}/storage/v1/b/{bucket}/o?{q}", timeout=10) as r:
        return {o["name"]: int(o["size"]) for o in json.load(r).get("items", [])}


def gcs_put(base, bucket, name, data):
    q = urllib.parse.urlencode({"uploadType": "media", "name": name})
    req = urllib.request.Request(f"{base}/upload/storage/v1/b/{bucket}/o?{q}", method="POST",
                                 data=data, headers={"Content-Type": "application/octet-stream"})
    urllib.request.urlopen(req, timeout=10).read()


def gcs_get(base, bucket, name):
    q = urllib.parse.quote(name, safe="")
    with urllib.request.urlopen(f"{base}/storage/v1/b/{bucket}/o/{q}?alt=media", timeout=10) as r:
        return r.read()


# ---- the fault proxy -------------------------------------------------------------------------

class Rule:
    """When a request matches (method, regex on the path with query), `action` happens to the
    matches after the first `skip`, `times` times (-1: always): "503"/"500"/"429"/... (answer that
    status with `body`, not forwarded), "drop" (close before forwarding), "drop-after" (forward, then close
    without answering), "drop-mid" (forward, send half of the answer's body, close)."""

    def __init__(self, method, path_re, action, times=1, skip=0, body=None):
        self.method, self.path_re, self.action = method, re.compile(path_re), action
        self.body = body   # for a status action: the answer's body (default a JSON error)
        self.times, self.skip, self.fired = times, skip, 0

    def take(self, method, path):
        if method != self.method or not self.path_re.search(path):
            return False
        if self.skip > 0:
            self.skip -= 1
            return False
        if self.times == 0:
            return False
        self.times -= 1
        self.fired += 1
        return True


class FaultProxy:
    def __init__(self, upstream):
        u = urllib.parse.urlsplit(upstream)
        self.upstream = (u.hostname, u.port)
        self.rules, self.seen, self.lock = [], [], threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle_one(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                with proxy.lock:
                    proxy.seen.append((self.command, self.path,
                                       self.headers.get("Authorization", "")))
                    rule = next((r for r in proxy.rules if r.take(self.command, self.path)), None)
                action = rule.action if rule else None
                if action == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if action and action.isdigit():
                    msg = rule.body or json.dumps({"error": {"code": int(action),
                                                             "message": "injected"}})
                    self.send_response(int(action))
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg.encode())
                    return
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in self.headers.items():
                    if k.lower() not in ("connection", "content-length"):
                        conn.putheader(k, v)
                if body or self.command in ("PUT", "POST"):
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                if action == "drop-after":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length",
                                         "server", "date"):
                        self.send_header(k, v)
                # HEAD: the length of the body a GET would have
                self.send_header("Content-Length", resp.getheader("Content-Length", "0")
                                 if self.command == "HEAD" else str(len(data)))
                self.end_headers()
                if action == "drop-mid":
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_one

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, *args, **kw):
        rule = Rule(*args, **kw)
        with self.lock:
            self.rules.append(rule)
        return rule

    def reset(self):
        with self.lock:
            self.rules.clear()
            self.seen.clear()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# ---- credential endpoints --------------------------------------------------------------------

def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class CredentialStub:
    """GET /computeMetadata/v1/instance/service-accounts/default/token (Metadata-Flavor: Google)
    -> metadata_token; POST /token with a JWT signed by public_key_pem -> sa_token, else 400;
    GET /aws-creds with Authorization aws_auth -> aws_creds (a dict), else 403."""

    def __init__(self):
        self.metadata_token, self.sa_token = "md-token-1", "sa-token-1"
        self.public_key_pem, self.aws_creds, self.aws_auth = None, None, None
        self.jwt_claims, self.requests = [], []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                stub.requests.append(("GET", self.path))
                if self.path.startswith("/computeMetadata/v1/instance/service-accounts/default/token"):
                    if self.headers.get("Metadata-Flavor") != "Google":
                        return self.reply(403, {"error": "Metadata-Flavor missing"})
                    return self.reply(200, {"access_token": stub.metadata_token,
                                            "expires_in": 3599, "token_type": "Bearer"})
                if self.path == "/aws-creds":
                    if self.headers.get("Authorization") != stub.aws_auth:
                        return self.reply(403, {"message": "bad authorization token"})
                    return self.reply(200, stub.aws_creds)
                self.reply(404, {})

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(n).decode())
                stub.requests.append(("POST", self.path))
                if self.path != "/token":
                    return self.reply(404, {})
                ok = False
                try:
                    assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
                    head, claims, sig = form["assertion"][0].split(".")
                    from cryptography.hazmat.primitives import hashes, serialization
                    from cryptography.hazmat.primitives.asymmetric import padding
                    key = serialization.load_pem_public_key(stub.public_key_pem)
                    key.verify(b64url_decode(sig), f"{head}.{claims}".encode(),
                               padding.PKCS1v15(), hashes.SHA256())
                    assert json.loads(b64url_decode(head)) == {"alg": "RS256", "typ": "JWT"}
                    stub.jwt_claims.append(json.loads(b64url_decode(claims)))
                    ok = True
                except Exception:
                    pass
                if not ok:
                    return self.reply(400, {"error": "invalid_grant",
                                            "error_description": "Invalid JWT Signature."})
                self.reply(200, {"access_token": stub.sa_token, "expires_in": 3599,
                                 "token_type": "Bearer"})

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def make_service_account(path, token_uri):
    """A fresh RSA key as a service-account JSON key file; returns the public key (PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    with open(path, "w") as f:
        json.dump({"type": "service_account", "project_id": "test", "private_key_id": "k1",
                   "private_key": pem, "client_email": "trainer@test.iam.gserviceaccount.com",
                   "client_id": "1", "token_uri": token_uri}, f)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


# ---- the programs ----------------------------------------------------------------------------

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(os.environ.get("BUILD_DIR", os.path.join(REPO, "build")), "bin")

# Variables of the environment that would send requests elsewhere: cleared for every run.
CLOUD_VARS = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
              "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "S3_ENDPOINT", "AWS_REGION",
              "AWS_DEFAULT_REGION", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
              "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN",
              "AWS_SHARED_CREDENTIALS_FILE", "GOOGLE_APPLICATION_CREDENTIALS",
              "STORAGE_EMULATOR_HOST", "GCE_METADATA_HOST", "GCE_METADATA_ROOT",
              "CNN_FS_RETRIES", "CNN_FS_RETRY_BASE_MS", "CNN_FS_READ_BYTES", "CNN_FS_PART_BYTES",
              "SM_MODEL_DIR", "TF_CONFIG", "AIP_MODEL_DIR", "AIP_CHECKPOINT_DIR",
              "AIP_TENSORBOARD_LOG_DIR", "CLOUD_ML_TRIAL_ID", "CLOUD_ML_HP_METRIC_FILE"]


def binary(name):
    path = os.path.join(BIN, name)
    assert os.access(path, os.X_OK), f"{path} is missing: build the project first"
    return path


def run(args, env, expect=0, cwd=None):
    """Runs a program with env on top of a cleaned environment (HOME = cwd, so no credentials
    file of the machine is read); expect: its exit status, None for any failure."""
    full = {k: v for k, v in os.environ.items() if k not in CLOUD_VARS}
    full.update({"AWS_EC2_METADATA_DISABLED": "true", "HOME": cwd or full.get("HOME", "/tmp"),
                 "CNN_FS_RETRY_BASE_MS": "20"})
    full.update(env)
    p = subprocess.run(args, capture_output=True, text=True, env=full, cwd=cwd, timeout=300)
    ok = p.returncode != 0 if expect is None else p.returncode == expect
    assert ok, (f"{args}: exit {p.returncode}, expected {expect or 'failure'}\n"
                                    f"stdout: {p.stdout[-3000:]}\nstderr: {p.stderr[-5000:]}")
    return p


def write_idx(tmp, n, images="t10k-images-idx3-ubyte.gz", labels="t10k-labels-idx1-ubyte.gz"):
    """The first n images of the shipped MNIST as IDX files; returns their paths."""
    import gzip
    import struct
    mnist = os.path.join(REPO, "data", "mnist")
    img = gzip.open(os.path.join(mnist, images)).read()[16:16 + n * 784]
    lab = gzip.open(os.path.join(mnist, labels)).read()[8:8 + n]
    ip, lp = os.path.join(tmp, f"img{n}.idx"), os.path.join(tmp, f"lab{n}.idx")
    with open(ip, "wb") as f:
        f.write(struct.pack(">IIII", 2051, n, 28, 28) + img)
    with open(lp, "wb") as f:
        f.write(struct.pack(">II", 2049, n) + lab)
    return ip, lp


TRAIN_FLAGS = ["--batch-size", "8", "--threads", "1", "--log-step-count-steps", "1"]


@pytest.fixture(scope="session")
def shared_tmp(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cloud"))
