#!/usr/bin/env python3
"""Runs Debian's nginx with the stack's configuration in front of the real services.

deploy/nginx/templates/default.conf.template is rendered the way the nginx image
renders it (envsubst of the variables compose.yaml gives the nginx container), with
the upstreams pointed at Auth and the movies API started here on free loopback ports,
and included in an http {} block like the image's nginx.conf. nginx runs in the
foreground as a child process with its own prefix directory, and is stopped at the end.

The databases and roles are made by deploy/postgres/init.sh, the container's init
script, so the services migrate and serve as their own non-superuser roles (pg_partman
for Auth included). The services run as in compose.yaml: REQUIRE_REQUEST_ID=true and
nginx's address (127.0.0.1 here) as Auth's only trusted proxy.

Asserted: each routed prefix reaches the right service and the rest none (nginx's
access log names the upstream of every request); the services' operations listeners
(set as in compose.yaml) serve /metrics, which their API ports answer 404, and the
probes, which both serve, and the healthcheck command asks them; a generated X-Request-Id reaches the
service (its own log line carries it) and comes back, a well-formed client one passes
through, a malformed one is replaced; the movies API's introspection, with its client
credentials, confirms a viewer, while introspection is not routed through nginx; the client's address (and not a made-up
X-Forwarded-For) reaches Auth's rate limiter (its Redis keys) and the login history;
limit_req answers 429 problem+json when one address floods; nginx's own errors (413,
429, 502 and its refusals of malformed requests: 400, 414, 431, 501, 505) are
problem+json with a request id while the services' error bodies pass unchanged; the
docs pages work under their prefixes; a playback URL from the movies API's real answer
plays at /media/, the same URL with its signature, film or expiry changed is 403 and
one past its expiry (signed here with the same secret) is 410, its signature in no
log; a stopped service is a 502, and the services exit cleanly on SIGTERM; a social
sign-in callback's code and state are in no log, the error log included, on a 502 or
a 429; nginx's 413 has Auth's code, payload_too_large.

Needs: nginx and envsubst (deploy/tests/run.sh installs them), PostgreSQL and Redis
on their usual loopback ports, the debug binaries (cargo build -p auth -p movies).
"""

import base64
import datetime
import hashlib
import http.client
import json
import os
import pathlib
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

import yaml

DEPLOY = pathlib.Path(__file__).resolve().parent.parent
ROOT = DEPLOY.parent
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
BIN = TARGET / os.environ.get("DEPLOY_TEST_PROFILE", "debug")
PG = urllib.parse.urlparse(os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
REDIS = urllib.parse.urlparse(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
FIXTURE = ROOT / "crates/movies/tests/fixtures/movies-small.json"

# The test's limit: one request a minute with a burst of 100 per address, so a flood
# is refused after a known number of requests however slow the machine is. (compose:
# 100r/s burst 200, which a test could only trip by racing the clock.)
LIMIT_RATE, LIMIT_BURST = "1r/m", 100
# Client addresses (all of 127.0.0.0/8 is loopback): one per scenario, so the
# per-address limit of one does not touch the others.
CLIENT, VIEWER, FLOODER, PLAYER = "127.0.0.5", "127.0.0.7", "127.0.0.99", "127.0.0.11"


class Failure(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise Failure(message)


def wait_until(what, predicate, timeout=60.0, process=None, log=None):
    """Polls `predicate` until it holds; fails after `timeout` s or when `process` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if process is not None and process.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise Failure(f"{what}: the process exited with {process.returncode}\n{tail}")
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(sql, database=None):
    cmd = ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", PG.hostname or "127.0.0.1", "-p", str(PG.port or 5432),
           "-U", PG.username or "postgres", "-d", database or PG.path.lstrip("/") or "postgres", "-c", sql]
    env = dict(os.environ, PGPASSWORD=urllib.parse.unquote(PG.password or ""))
    return subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout.strip()


def redis_cli(*args):
    cmd = ["redis-cli", "-h", REDIS.hostname or "127.0.0.1", "-p", str(REDIS.port or 6379)]
    env = dict(os.environ)
    if REDIS.password:
        env["REDISCLI_AUTH"] = urllib.parse.unquote(REDIS.password)
    return subprocess.run(cmd + list(args), check=True, capture_output=True, text=True, env=env).stdout


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.header_list = headers
        self.body = body

    def header(self, name):
        values = [v for k, v in self.header_list if k.lower() == name.lower()]
        expect(len(values) <= 1, f"header {name} sent {len(values)} times: {values}")
        return values[0] if values else None

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"{self.status} {self.header_list} {self.body[:300]!r}"


class Client:
    """HTTP/1.1 keep-alive connection to nginx from a chosen loopback address."""

    def __init__(self, port, source=CLIENT):
        self.port, self.source = port, source
        self.conn = None

    def request(self, method, path, headers=None, body=None):
        headers = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30, source_address=(self.source, 0))
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                result = Response(response.status, response.getheaders(), data)
                if response.will_close:
                    self.close()
                return result
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # nginx closed an idle keep-alive connection; a fresh one is another try.
                self.close()
                if attempt == 2:
                    raise

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Stack:
    def __init__(self):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="cinema-nginx-test-"))
        self.dir.chmod(0o755)  # nginx's workers (nobody when run as root) use its temp dirs
        suffix = secrets.token_hex(4)
        self.suffix = suffix
        self.auth_db, self.auth_role = f"deploytest_auth_{suffix}", f"deploytest_auth_{suffix}"
        self.movies_db, self.movies_role = f"deploytest_movies_{suffix}", f"deploytest_movies_{suffix}"
        self.auth_password, self.movies_password = secrets.token_hex(16), secrets.token_hex(16)
        self.redis_prefix = f"deploytest:{suffix}"
        # Shared by the movies API (signs playback URLs) and nginx (verifies them).
        self.stream_secret = secrets.token_hex(32)
        self.processes = {}
        self.logs = {}
        self.initialised = False

    # --- set-up -------------------------------------------------------------------

    def init_databases(self):
        env = dict(os.environ, POSTGRES_USER=PG.username or "postgres", POSTGRES_DB=PG.path.lstrip("/") or "postgres",
                   PGHOST=PG.hostname or "127.0.0.1", PGPORT=str(PG.port or 5432), PGPASSWORD=urllib.parse.unquote(PG.password or ""),
                   AUTH_DB_NAME=self.auth_db, AUTH_DB_USER=self.auth_role, AUTH_DB_PASSWORD=self.auth_password,
                   MOVIES_DB_NAME=self.movies_db, MOVIES_DB_USER=self.movies_role, MOVIES_DB_PASSWORD=self.movies_password)
        self.initialised = True
        result = subprocess.run(["bash", str(DEPLOY / "postgres/init.sh")], env=env, capture_output=True, text=True)
        expect(result.returncode == 0, f"deploy/postgres/init.sh failed:\n{result.stdout}\n{result.stderr}")
        for role in (self.auth_role, self.movies_role):
            expect(psql(f"SELECT rolsuper FROM pg_roles WHERE rolname = '{role}'") == "f", f"{role} must not be a superuser")

    def db_url(self, role, password, database):
        host = f"{PG.hostname or '127.0.0.1'}:{PG.port or 5432}"
        return f"postgres://{role}:{password}@{host}/{database}"

    def service_env(self, extra):
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
        env.update({"REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"), "REQUIRE_REQUEST_ID": "true",
                    # Every request's log line (with its request_id) from the standard middleware.
                    "RUST_LOG": "info,platform::http=debug"})
        env.update(extra)
        return env

    def start(self, name, args, env):
        log = self.dir / f"{name}.log"
        self.logs[name] = log
        with open(log, "ab") as out:
            self.processes[name] = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self.processes[name]

    def start_services(self):
        self.auth_port, self.movies_port = free_port(), free_port()
        # Their operations listeners (probes and /metrics), as compose.yaml sets them.
        self.auth_ops_port, self.movies_ops_port = free_port(), free_port()
        # The movies API's credentials for Auth's introspection, as compose.yaml passes them.
        introspection_secret = secrets.token_hex(32)
        self.auth_env = self.service_env({
            "AUTH_INTROSPECTION_CLIENTS": f"movies:{introspection_secret}",
            "AUTH_LISTEN": f"127.0.0.1:{self.auth_port}",
            "AUTH_OPS_LISTEN": f"127.0.0.1:{self.auth_ops_port}",
            "AUTH_DATABASE_URL": self.db_url(self.auth_role, self.auth_password, self.auth_db),
            "AUTH_DATABASE_MAX_CONNECTIONS": "4",
            "AUTH_REDIS_KEY_PREFIX": self.redis_prefix,
            "AUTH_JWT_DEV_KEY_FILE": str(self.dir / "auth-dev-key.pem"),
            # nginx connects from 127.0.0.1: the only address whose X-Forwarded-For counts.
            "AUTH_TRUSTED_PROXIES": "127.0.0.1",
            # The address checks read the limiter's keys in Redis: keep it from falling
            # back to in-process counting when the machine is busy (default 25 ms).
            "AUTH_RATE_LIMIT_REDIS_TIMEOUT_MS": "1000",
            # Tracing on (to a port nobody listens on: exports fail quietly), so Auth
            # answers with its server span's traceparent (check_trace_context).
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        })
        self.movies_env = self.service_env({
            "MOVIES_LISTEN": f"127.0.0.1:{self.movies_port}",
            "MOVIES_OPS_LISTEN": f"127.0.0.1:{self.movies_ops_port}",
            "MOVIES_DATABASE_URL": self.db_url(self.movies_role, self.movies_password, self.movies_db),
            "MOVIES_DATABASE_MAX_CONNECTIONS": "4",
            "MOVIES_REDIS_KEY_PREFIX": f"{self.redis_prefix}:movies",
            "AUTH_URL": f"http://127.0.0.1:{self.auth_port}",
            "MOVIES_AUTH_CLIENT_SECRET": introspection_secret,
            "MOVIES_TRUSTED_PROXIES": "127.0.0.1",
            # nginx's own limit_req is what check_limit_req measures: the movies API's
            # per-address limit (20/s, burst 40 by default) would refuse first.
            "MOVIES_RATE_LIMIT_API_ANONYMOUS": "1000/s burst 1000",
            "MOVIES_STREAM_SIGNING_SECRET": self.stream_secret,
        })
        auth = self.start("auth", [str(BIN / "auth"), "serve"], self.auth_env)
        # As the catalogue-demo one-shot does (with the small test fixture): migrate, load.
        load = subprocess.run([str(BIN / "movies"), "load-demo", "--file", str(FIXTURE)], env=self.movies_env, capture_output=True, text=True)
        expect(load.returncode == 0, f"movies load-demo failed:\n{load.stdout}\n{load.stderr}")
        movies = self.start("movies", [str(BIN / "movies"), "serve"], self.movies_env)
        # The containers' healthcheck command, as compose runs it (it asks the
        # operations listener).
        for name, process, env in (("auth", auth, self.auth_env), ("movies", movies, self.movies_env)):
            wait_until(f"`{name} healthcheck`", lambda: subprocess.run([str(BIN / name), "healthcheck"], env=env, capture_output=True).returncode == 0,
                       process=process, log=self.logs[name])

    def start_nginx(self):
        compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
        variables = dict(compose["services"]["nginx"]["environment"])
        self.nginx_port = free_port()
        variables.update({"NGINX_LISTEN": f"127.0.0.1:{self.nginx_port}", "AUTH_UPSTREAM": f"127.0.0.1:{self.auth_port}",
                          "MOVIES_UPSTREAM": f"127.0.0.1:{self.movies_port}", "NGINX_LIMIT_RATE": LIMIT_RATE, "NGINX_LIMIT_BURST": str(LIMIT_BURST),
                          "STREAM_SIGNING_SECRET": self.stream_secret,
                          # Debian's nginx 1.22 has no `resolve` in upstreams: the upstreams
                          # are addresses here, and nginx_resolve_test.py runs the
                          # resolving with nginx 1.28. The resolver is then never asked.
                          "NGINX_RESOLVER": "127.0.0.1", "NGINX_UPSTREAM_RESOLVE": ""})
        # What the image's 20-envsubst-on-templates.sh does: envsubst restricted to the
        # names of the defined variables.
        shell_format = " ".join(f"${{{name}}}" for name in variables)
        template = (DEPLOY / "nginx/templates/default.conf.template").read_text()
        rendered = subprocess.run(["envsubst", shell_format], input=template, capture_output=True, text=True, check=True,
                                  env={"PATH": os.environ["PATH"], **{k: str(v) for k, v in variables.items()}}).stdout
        expect("${" not in rendered, "a variable of the template was left unrendered")
        conf_d = self.dir / "conf.d"
        conf_d.mkdir()
        (conf_d / "default.conf").write_text(rendered)
        # The image's nginx.conf, with paths inside the prefix directory.
        (self.dir / "nginx.conf").write_text(f"""
worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log notice;
events {{ worker_connections 512; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    client_body_temp_path {self.dir}/client_body;
    proxy_temp_path {self.dir}/proxy;
    fastcgi_temp_path {self.dir}/fastcgi;
    uwsgi_temp_path {self.dir}/uwsgi;
    scgi_temp_path {self.dir}/scgi;
    sendfile on;
    keepalive_timeout 65;
    include {conf_d}/*.conf;
}}
""")
        base = ["nginx", "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"), "-e", str(self.dir / "error.log")]
        check = subprocess.run(base + ["-t"], capture_output=True, text=True)
        expect(check.returncode == 0, f"nginx -t refused the configuration:\n{check.stderr}")
        nginx = self.start("nginx", base + ["-g", "daemon off;"], None)
        self.access_log = self.logs["nginx"]  # access_log /dev/stdout
        client = Client(self.nginx_port)
        wait_until("nginx to answer", lambda: self._answers(client), process=nginx, log=self.dir / "error.log")
        client.close()

    @staticmethod
    def _answers(client):
        try:
            return client.request("GET", "/nginx/health").status == 200
        except OSError:
            client.close()
            return False

    # --- reading what happened ----------------------------------------------------

    def access_entry(self, request_id):
        """nginx's access-log entry of a request, by its request id."""
        entry = {}

        def found():
            for line in self.access_log.read_text().splitlines():
                if line.startswith("{"):
                    record = json.loads(line)
                    if record.get("request_id") == request_id:
                        entry.update(record)
                        return True
            return False

        wait_until(f"nginx's log line of {request_id}", found, timeout=10)
        return entry

    def service_saw(self, name, request_id):
        """Whether the service logged a line of the request with this id (within a deadline)."""
        def logged():
            for line in self.logs[name].read_text().splitlines():
                if request_id in line and line.startswith("{"):
                    record = json.loads(line)
                    if record.get("request_id") == request_id or record.get("fields", {}).get("request_id") == request_id:
                        return True
            return False
        try:
            wait_until(f"{name}'s log line of {request_id}", logged, timeout=10)
            return True
        except Failure:
            return False

    def service_logged_ever(self, name, request_id):
        return request_id in self.logs[name].read_text()

    def movies_health(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.movies_port, timeout=10)
        try:
            conn.request("GET", "/health/ready")
            return conn.getresponse().read().decode()
        finally:
            conn.close()

    def upstream(self, name):
        return f"127.0.0.1:{self.auth_port if name == 'auth' else self.movies_port}"

    # --- tear-down ----------------------------------------------------------------

    def stop(self, name, sig=signal.SIGTERM, timeout=30):
        process = self.processes.get(name)
        if process is None or process.poll() is not None:
            return process.returncode if process else None
        process.send_signal(sig)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise Failure(f"{name} did not stop within {timeout}s of {sig.name}")

    def cleanup(self, keep_dir):
        for name in list(self.processes):
            try:
                self.stop(name, signal.SIGQUIT if name == "nginx" else signal.SIGTERM, timeout=20)
            except Failure:
                pass
        if self.initialised:
            for db in (self.auth_db, self.movies_db):
                try:
                    psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
                except subprocess.CalledProcessError as e:
                    print(f"nginx_test: could not drop {db}: {e.stderr}", file=sys.stderr)
            for role in (self.auth_role, self.movies_role):
                try:
                    psql(f'DROP ROLE IF EXISTS "{role}"')
                except subprocess.CalledProcessError as e:
                    print(f"nginx_test: could not drop role {role}: {e.stderr}", file=sys.stderr)
        try:
            keys = [k for k in redis_cli("--scan", "--pattern", f"{self.redis_prefix}:*").split() if k]
            for i in range(0, len(keys), 500):
                redis_cli("DEL", *keys[i:i + 500])
        except subprocess.CalledProcessError:
            pass
        if keep_dir:
            print(f"nginx_test: logs kept in {self.dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


# --- the checks ---------------------------------------------------------------------

def problem(response, status, code):
    expect(response.status == status, f"expected {status}, got {response!r}")
    expect(response.header("Content-Type") == "application/problem+json", f"problem+json expected: {response!r}")
    body = response.json()
    expect(body.get("code") == code and body.get("status") == status, f"expected code {code}: {body}")
    return body


def check_routing(stack):
    client = Client(stack.nginx_port)
    routes = [
        ("GET", "/api/v1/oauth/providers", None, "auth", 200),
        ("GET", "/.well-known/jwks.json", None, "auth", 200),
        ("POST", "/api/v1/auth/login", {"email": "nobody@example.com", "password": "not the password"}, "auth", 401),
        ("GET", "/api/v1/users/me", None, "auth", 401),
        ("GET", "/api/v1/roles", None, "auth", 401),
        ("GET", "/api/v1/films", None, "movies", 200),
        ("GET", "/api/v1/genres", None, "movies", 200),
        ("GET", "/api/v1/persons/search?query=spielberg", None, "movies", 200),
        # Not routed: the services' probes and metrics, other versions, look-alike prefixes.
        ("GET", "/metrics", None, None, 404),
        ("GET", "/health/ready", None, None, 404),
        ("GET", "/api/v2/films", None, None, 404),
        ("GET", "/api/v1/filmsx", None, None, 404),
        ("GET", "/api/openapi.json", None, None, 404),
        # Token introspection: the movies API calls Auth for it directly.
        ("POST", "/api/v1/auth/introspect", {"token": "x"}, None, 404),
    ]
    for n, (method, path, body, service, status) in enumerate(routes):
        request_id = f"route-{stack.suffix}-{n}"
        response = client.request(method, path, {"X-Request-Id": request_id}, body)
        expect(response.status == status, f"{method} {path}: expected {status}, got {response!r}")
        expect(response.header("X-Request-Id") == request_id, f"{method} {path}: X-Request-Id not returned: {response!r}")
        entry = stack.access_entry(request_id)
        expect(entry["path"] == path.split("?")[0] and "uri" not in entry,
               f"{method} {path}: the access log keeps the path, never the query: {entry}")
        if service is None:
            expect(entry["upstream"] == "", f"{method} {path} must not reach a service: {entry}")
            problem(response, 404, "not_found")
        else:
            expect(entry["upstream"] == stack.upstream(service), f"{method} {path} must reach {service}: {entry}")
            expect(stack.service_saw(service, request_id), f"{service} has no log line of {request_id}")
            other = "movies" if service == "auth" else "auth"
            expect(not stack.service_logged_ever(other, request_id), f"{other} saw {request_id}")
    # The services' own error bodies pass unchanged.
    response = client.request("POST", "/api/v1/auth/login", {"X-Request-Id": f"bad-login-{stack.suffix}"},
                              {"email": "nobody@example.com", "password": "not the password"})
    problem(response, 401, "invalid_credentials")
    expect(response.header("RateLimit-Policy") is not None, "Auth's rate-limit headers pass through")
    jwks = client.request("GET", "/.well-known/jwks.json", {"X-Request-Id": f"jwks-{stack.suffix}"}).json()
    expect(jwks.get("keys"), f"JWKS through nginx: {jwks}")
    films = client.request("GET", "/api/v1/films", {"X-Request-Id": f"films-{stack.suffix}"}).json()
    expect(films.get("items"), f"films through nginx: {films}")
    # Other spellings of the introspection path, which nginx decodes and merges first.
    for n, path in enumerate(("/api/v1/auth/%69ntrospect", "//api/v1/auth//introspect", "/api/v1/auth/introspect?token=x")):
        request_id = f"introspect-spelling-{stack.suffix}-{n}"
        response = client.request("POST", path, {"X-Request-Id": request_id}, {"token": "x"})
        problem(response, 404, "not_found")
        expect(stack.access_entry(request_id)["upstream"] == "", f"POST {path} must not reach Auth")
    client.close()
    print("nginx_test: routing of every prefix to its service, nothing else routed, introspection not at all")


def check_request_ids(stack):
    client = Client(stack.nginx_port)
    # None sent: nginx's $request_id reaches the service (which, with
    # REQUIRE_REQUEST_ID=true, would refuse a request without one) and comes back.
    response = client.request("GET", "/api/v1/genres")
    expect(response.status == 200, f"a request without X-Request-Id through nginx: {response!r}")
    generated = response.header("X-Request-Id")
    expect(generated and re.fullmatch(r"[0-9a-f]{32}", generated), f"nginx's generated id expected: {generated!r}")
    expect(stack.service_saw("movies", generated), f"the movies API did not log the generated id {generated}")
    expect(stack.access_entry(generated)["upstream"] == stack.upstream("movies"), "nginx logged the same id")
    response = client.request("GET", "/api/v1/oauth/providers")
    generated_auth = response.header("X-Request-Id")
    expect(re.fullmatch(r"[0-9a-f]{32}", generated_auth or "") and generated_auth != generated, f"a fresh id per request: {response!r}")
    expect(stack.service_saw("auth", generated_auth), f"Auth did not log the generated id {generated_auth}")
    # A well-formed one is passed through.
    client_id = f"client-abc.123_{stack.suffix}"
    response = client.request("GET", "/api/v1/oauth/providers", {"X-Request-Id": client_id})
    expect(response.header("X-Request-Id") == client_id, f"the client's id comes back: {response!r}")
    expect(stack.service_saw("auth", client_id), f"Auth did not log the client's id {client_id}")
    # A malformed one is replaced before it reaches a service.
    response = client.request("GET", "/api/v1/genres", {"X-Request-Id": "bad id <script>"})
    replaced = response.header("X-Request-Id")
    expect(response.status == 200 and re.fullmatch(r"[0-9a-f]{32}", replaced or ""), f"a malformed id is replaced: {response!r}")
    expect(stack.service_saw("movies", replaced), "the movies API logged the replacement id")
    expect("<script>" not in stack.logs["movies"].read_text(), "the malformed id never reaches the service's log")
    # nginx's own answers carry it too.
    response = client.request("GET", "/nowhere")
    expect(re.fullmatch(r"[0-9a-f]{32}", response.header("X-Request-Id") or ""), f"nginx's 404 carries an id: {response!r}")
    client.close()
    print("nginx_test: X-Request-Id generated, passed through, replaced when malformed, returned")


def check_trace_context(stack):
    # A client's traceparent would choose the trace id and force sampling past the
    # services' sampler: nginx drops it, and the trace starts at the service.
    client = Client(stack.nginx_port)
    forged = "0123456789abcdef0123456789abcdef"
    response = client.request("GET", "/api/v1/oauth/providers",
                              {"traceparent": f"00-{forged}-0123456789abcdef-01", "X-Request-Id": f"trace-{stack.suffix}"})
    answered = response.header("traceparent") or ""
    expect(response.status == 200 and re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[0-9a-f]", answered),
           f"Auth answers with its own traceparent: {response!r}")
    expect(forged not in answered, f"the client's traceparent reached Auth: {answered}")
    client.close()
    print("nginx_test: a client's traceparent does not reach the services")


def scrape(port):
    """The service's /metrics, straight from its operations listener's port (no
    X-Request-Id: probes and metrics need none)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        expect(response.status == 200, f"/metrics answered {response.status}")
        return response.read().decode()
    finally:
        conn.close()


def check_operations_listeners(stack):
    # As compose.yaml runs them: /metrics only on the operations listener (a 404 problem
    # on the API's port, which compose publishes), the probes on both, nothing else on
    # the operations listener. nginx routes neither (check_routing).
    for name, port, ops_port in (("auth", stack.auth_port, stack.auth_ops_port), ("movies", stack.movies_port, stack.movies_ops_port)):
        api, ops = Client(port), Client(ops_port)
        problem(api.request("GET", "/metrics"), 404, "not_found")
        expect("http_server_requests_total" in scrape(ops_port), f"{name}'s metrics on its operations listener")
        for path in ("/health/live", "/health/ready"):
            for client, where in ((api, "API"), (ops, "operations")):
                response = client.request("GET", path)
                expect(response.status == 200, f"{name}'s {path} on its {where} listener: {response!r}")
        problem(ops.request("GET", "/api/v1/films" if name == "movies" else "/api/v1/oauth/providers"), 404, "not_found")
        api.close()
        ops.close()
    print("nginx_test: /metrics on the operations listeners only, the probes on both")


def check_client_address(stack):
    # Auth connects to Redis lazily: its first limited request may find no connection
    # in time and count in-process until the next probe (docs/rate-limiting.md). Wait
    # until the limits are kept in Redis.
    wait_until("Auth's rate limits to be kept in Redis", lambda: re.search(r"^ratelimit_fallback_active 0$", scrape(stack.auth_ops_port), re.M), timeout=30)
    viewer = Client(stack.nginx_port, source=VIEWER)
    password = "correct horse battery"

    def signup(client, n, forged):
        email = f"viewer-{stack.suffix}-{n}@example.com"
        headers = {"X-Forwarded-For": forged, "X-Real-IP": forged, "X-Request-Id": f"signup-{stack.suffix}-{n}"}
        return email, client.request("POST", "/api/v1/auth/signup", headers, {"email": email, "password": password})

    # Every request carries a made-up address; Auth must see the real one.
    email, response = signup(viewer, 0, "203.0.113.9")
    expect(response.status == 201, f"signup through nginx: {response!r}")
    response = viewer.request("POST", "/api/v1/auth/login", {"X-Forwarded-For": "203.0.113.9", "X-Request-Id": f"login-{stack.suffix}"},
                              {"email": email, "password": password})
    expect(response.status == 200, f"login through nginx: {response!r}")
    token = response.json()["access_token"]
    response = viewer.request("GET", "/api/v1/users/me/login-history", {"Authorization": f"Bearer {token}", "X-Request-Id": f"history-{stack.suffix}"})
    expect(response.status == 200, f"login history: {response!r}")
    attempts = response.json()["items"]
    expect(attempts and attempts[0]["ip"] == VIEWER, f"the login history records the client's address {VIEWER}, not nginx's or a made-up one: {attempts}")
    # The movies API checks the token with Auth (keys, then introspection), both of
    # which require a request id at Auth (REQUIRE_REQUEST_ID=true) like everything else.
    films = viewer.request("GET", "/api/v1/films", {"X-Request-Id": f"films-token-{stack.suffix}"}).json()["items"]
    film = films[0]["id"]
    wait_until("the movies API to have Auth's keys", lambda: re.search(r'"auth":\s*"ok"', stack.movies_health()), timeout=30)
    response = viewer.request("GET", f"/api/v1/films/{film}", {"Authorization": f"Bearer {token}", "X-Request-Id": f"film-token-{stack.suffix}"})
    expect(response.status == 200 and response.header("X-Auth-Degraded") is None, f"a signed-in viewer's film through nginx, confirmed by Auth: {response!r}")
    expect(stack.service_saw("auth", f"film-token-{stack.suffix}"), "the movies API forwarded the request id to Auth")
    # Introspection is not routed (check_routing): the movies API asked Auth directly,
    # and through nginx a caller, even with a real token, finds nothing there.
    response = viewer.request("POST", "/api/v1/auth/introspect", {"X-Request-Id": f"introspect-{stack.suffix}"}, {"token": token})
    problem(response, 404, "not_found")

    # Auth's per-address signup limit (5/m, burst 10) counts the real address: a
    # different made-up X-Forwarded-For on each request does not escape it.
    refused = None
    for n in range(1, 40):
        _, response = signup(viewer, n, f"203.0.113.{n}")
        if response.status == 429:
            refused = response
            break
        expect(response.status == 201, f"signup {n}: {response!r}")
    expect(refused is not None, "Auth's signup limit never refused the address")
    problem(refused, 429, "rate_limited")
    expect("signup-ip" in (refused.header("RateLimit-Policy") or ""), f"the 429 is Auth's signup limit: {refused!r}")
    keys = redis_cli("--scan", "--pattern", f"{stack.redis_prefix}:rl:*").split()
    expect(f"{stack.redis_prefix}:rl:{{ip:{VIEWER}}}:signup-ip" in keys, f"Auth's limiter keeps the count under {VIEWER}: {keys}")
    expect(not any("203.0.113." in k for k in keys), f"a client's X-Forwarded-For never chooses the key: {keys}")
    expect(not any("{ip:127.0.0.1}" in k for k in keys), f"nginx's own address (127.0.0.1) is never taken for a client's: {keys}")
    # Another address has its own count.
    other = Client(stack.nginx_port, source="127.0.0.8")
    _, response = signup(other, 100, "203.0.113.9")
    expect(response.status == 201, f"another client address is not limited by the first one's signups: {response!r}")
    viewer.close()
    other.close()
    print(f"nginx_test: the client's address ({VIEWER}) reaches Auth's rate limiter and login history; a forged X-Forwarded-For does not")


def media_signature(secret, path, expires):
    """What nginx's `secure_link_md5 "$secure_link_expires$uri <secret>"` expects in `sig`."""
    digest = hashlib.md5(f"{expires}{path} {secret}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def check_signed_playback(stack):
    client = Client(stack.nginx_port, source=PLAYER)
    films = client.request("GET", "/api/v1/films", {"X-Request-Id": f"play-films-{stack.suffix}"}).json()["items"]
    free = [f["id"] for f in films if f["access_tier"] == "free"]
    expect(len(free) >= 2, f"two free films for an anonymous viewer: {films}")
    film, other = free[0], free[1]
    # The movies API's real answer, through nginx.
    answer = client.request("GET", f"/api/v1/films/{film}/stream", {"X-Request-Id": f"play-stream-{stack.suffix}"})
    expect(answer.status == 200, f"the stream answer of a free film: {answer!r}")
    descriptor = answer.json()
    url = descriptor["manifest_url"]
    parts = urllib.parse.urlsplit(url)
    path, query = parts.path, dict(urllib.parse.parse_qsl(parts.query))
    expect(path == f"/media/films/{film.replace('-', '')}/master.m3u8" and set(query) == {"expires", "sig"}, f"a signed manifest URL: {url}")
    expires, sig = int(query["expires"]), query["sig"]
    expires_at = datetime.datetime.fromisoformat(descriptor["expires_at"].replace("Z", "+00:00"))
    expect(expires_at.timestamp() == expires, f"expires_at is the signed expires: {descriptor}")

    # It plays: the placeholder playlist, private, with the request id.
    request_id = f"play-{stack.suffix}"
    response = client.request("GET", url, {"X-Request-Id": request_id})
    expect(response.status == 200 and response.body.startswith(b"#EXTM3U\n"), f"the signed URL plays: {response!r}")
    expect(response.header("Content-Type") == "application/vnd.apple.mpegurl", f"an HLS playlist: {response!r}")
    expect(response.header("Cache-Control") == "private", f"no shared cache keeps it: {response!r}")
    expect(response.header("X-Request-Id") == request_id, f"the request id comes back: {response!r}")
    entry = stack.access_entry(request_id)
    expect(entry["path"] == path and entry["status"] == 200 and entry["upstream"] == "", f"served by nginx, logged by path: {entry}")

    # Anything changed is 403. (The signature's first character: its last one holds two
    # bits only, and the other four may change without changing the decoded MD5.)
    tampered = ("A" if sig[0] != "A" else "B") + sig[1:]
    other_path = f"/media/films/{other.replace('-', '')}/master.m3u8"
    refused = [
        ("the signature changed", f"{path}?expires={expires}&sig={tampered}"),
        ("another film's path with this signature", f"{other_path}?expires={expires}&sig={sig}"),
        ("a later expiry with this signature", f"{path}?expires={expires + 3600}&sig={sig}"),
        ("signed under another secret", f"{path}?expires={expires}&sig={media_signature('0' * 64, path, expires)}"),
        ("no signature", f"{path}?expires={expires}"),
        ("no expiry", f"{path}?sig={sig}"),
        ("no query", path),
    ]
    for n, (what, target) in enumerate(refused):
        request_id = f"play-bad-{stack.suffix}-{n}"
        response = client.request("GET", target, {"X-Request-Id": request_id})
        expect(response.status == 403, f"{what}: 403 expected, got {response!r}")
        problem(response, 403, "media_link_invalid")
        expect(response.header("X-Request-Id") == request_id, f"{what}: nginx's 403 carries the request id")

    # Signed here with the same secret: in the future it plays (so nginx and this test
    # agree on the signature), in the past it is 410; a wrong signature is 403 either way.
    now = int(time.time())
    future, past = now + 300, now - 60
    response = client.request("GET", f"{path}?expires={future}&sig={media_signature(stack.stream_secret, path, future)}")
    expect(response.status == 200, f"a URL signed by the test with the stack's secret plays: {response!r}")
    request_id = f"play-expired-{stack.suffix}"
    response = client.request("GET", f"{path}?expires={past}&sig={media_signature(stack.stream_secret, path, past)}", {"X-Request-Id": request_id})
    problem(response, 410, "media_link_expired")
    expect(response.header("X-Request-Id") == request_id, "nginx's 410 carries the request id")
    response = client.request("GET", f"{path}?expires={past}&sig={media_signature('0' * 64, path, past)}")
    problem(response, 403, "media_link_invalid")
    # The location's own error pages keep the server's 413 as problem+json. (No query:
    # nginx's error log line of a refused body holds the request line, query included.)
    response = client.request("POST", path, {"Content-Type": "application/octet-stream"}, b"x" * 100_000)
    problem(response, 413, "payload_too_large")

    # The signatures never reach a log: nginx logs the path only.
    logs = {"nginx's access log": stack.access_log, "nginx's error log": stack.dir / "error.log", "the movies API's log": stack.logs["movies"]}
    for name, log in logs.items():
        text = log.read_text() if log.exists() else ""
        expect(sig not in text and "sig=" not in text, f"a playback signature in {name}")
    client.close()
    print("nginx_test: a signed playback URL plays at /media/; changed ones are 403, expired ones 410; no signature is logged")


def check_limit_req(stack):
    flooder = Client(stack.nginx_port, source=FLOODER)
    statuses = []
    refused = None
    for n in range(3 * LIMIT_BURST):
        response = flooder.request("GET", "/api/v1/genres", {"X-Request-Id": f"flood-{stack.suffix}-{n}"})
        statuses.append(response.status)
        if response.status == 429:
            refused = (n, response)
            break
    expect(refused is not None, f"no 429 after {len(statuses)} requests from one address: {sorted(set(statuses))}")
    n, response = refused
    expect(all(s == 200 for s in statuses[:-1]), f"before the limit everything is served: {statuses}")
    expect(n >= LIMIT_BURST + 1, f"the burst of {LIMIT_BURST} (plus the first) is allowed before a 429, refused at {n + 1}")
    problem(response, 429, "rate_limited")
    expect(response.header("Retry-After") is not None, "nginx's 429 carries Retry-After")
    expect(response.header("X-Request-Id") == f"flood-{stack.suffix}-{n}", f"nginx's 429 carries the request id: {response!r}")
    expect(response.header("RateLimit-Policy") is None, "this 429 is nginx's, not a service's")
    expect(stack.access_entry(f"flood-{stack.suffix}-{n}")["upstream"] == "", "a refused request never reaches the service")
    # Per address: everyone else is still served.
    other = Client(stack.nginx_port, source=CLIENT)
    expect(other.request("GET", "/api/v1/genres").status == 200, "another address is not limited by the flood")
    flooder.close()
    other.close()
    print(f"nginx_test: limit_req answers 429 problem+json at request {n + 1} of a flood from one address")


def check_nginx_errors_and_docs(stack):
    client = Client(stack.nginx_port)
    response = client.request("POST", "/api/v1/auth/login", {"X-Request-Id": f"big-{stack.suffix}", "Content-Type": "application/json"}, b"x" * 100_000)
    # The code Auth answers its own 413 with (and the contract names): one code for one error.
    problem(response, 413, "payload_too_large")
    expect(response.header("X-Request-Id") == f"big-{stack.suffix}", "nginx's 413 carries the request id")
    for service, title in (("auth", "Cinema Auth API"), ("movies", "Cinema Movies API")):
        page = client.request("GET", f"/docs/{service}/")
        expect(page.status == 200 and b"swagger-ui" in page.body, f"/docs/{service}/: {page!r}")
        init = client.request("GET", f"/docs/{service}/swagger-initializer.js")
        expect(init.status == 200 and f'"/docs/{service}/openapi.json"'.encode() in init.body and b'"/api/docs/openapi.json"' not in init.body,
               f"the docs page of {service} fetches its own spec: {init!r}")
        spec = client.request("GET", f"/docs/{service}/openapi.json")
        expect(spec.status == 200 and spec.json()["info"]["title"] == title, f"/docs/{service}/openapi.json: {spec!r}")
    client.close()
    print("nginx_test: nginx's own errors are problem+json with the request id; both docs pages work under /docs/")


def raw_request(port, data):
    """Sends bytes as they are (no HTTP library would send these requests) and reads
    the answer until nginx closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(CLIENT, 0)) as s:
        s.sendall(data)
        received = b""
        while chunk := s.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:] if ":" in line]
    return Response(int(lines[0].split()[1]), headers, body)


def check_nginx_refusals(stack):
    """What nginx refuses before any location answers problem+json with the request id,
    like the services' errors, not nginx's HTML page."""
    big = "a" * 9000  # over large_client_header_buffers (4 8k)
    cases = [
        ("two Host headers", 400, "bad_request", "GET /api/v1/films HTTP/1.1\r\nHost: a\r\nHost: b\r\n"),
        ("no request line", 400, "bad_request", "NONSENSE\r\n"),
        ("a Content-Length that is no number", 400, "bad_request", "POST /api/v1/auth/login HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n"),
        ("a 9 KB URI", 414, "uri_too_long", f"GET /api/v1/films?q={big} HTTP/1.1\r\nHost: a\r\n"),
        ("a 9 KB header", 431, "header_too_large", f"GET /api/v1/films HTTP/1.1\r\nHost: a\r\nCookie: {big}\r\n"),
        ("an unknown Transfer-Encoding", 501, "not_implemented", "POST /api/v1/auth/login HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n"),
        ("HTTP/2.0 in plain text", 505, "http_version_not_supported", "GET /api/v1/films HTTP/2.0\r\nHost: a\r\n"),
    ]
    for n, (what, status, code, head) in enumerate(cases):
        request_id = f"refused-{stack.suffix}-{n}"
        response = raw_request(stack.nginx_port, f"{head}X-Request-Id: {request_id}\r\nConnection: close\r\n\r\n".encode())
        expect(response.status == status, f"{what}: {status} expected, got {response!r}")
        problem(response, status, code)
        # Where nginx read the headers, the client's id comes back; else one of its own.
        answered = response.header("X-Request-Id") or ""
        expect(answered == request_id or re.fullmatch(r"[0-9a-f]{32}", answered), f"{what}: nginx's {status} carries a request id: {response!r}")
    # The error pages' own URIs are internal: from outside, a 404 like any unknown path.
    client = Client(stack.nginx_port)
    problem(client.request("GET", "/nginx/errors/400"), 404, "not_found")
    client.close()
    print("nginx_test: nginx's own refusals (400, 414, 431, 501, 505) are problem+json with a request id")


def check_upstream_keepalive_ends_first():
    """nginx must close an idle upstream connection before the service does (the
    service disconnects a client that sends no request headers for
    HEADER_READ_TIMEOUT), or a request sent on a connection being closed fails."""
    template = (DEPLOY / "nginx/templates/default.conf.template").read_text()
    server = (ROOT / "crates/platform/src/server.rs").read_text()
    service = re.search(r"HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs\((\d+)\)", server)
    expect(service is not None, "HEADER_READ_TIMEOUT not found in crates/platform/src/server.rs")
    upstreams = re.findall(r"^upstream (\w+) \{\n(.*?)^\}", template, re.MULTILINE | re.DOTALL)
    expect({name for name, _ in upstreams} == {"auth", "movies"}, f"upstreams: {upstreams}")
    for name, body in upstreams:
        timeout = re.search(r"keepalive_timeout (\d+)s;", body)
        expect(timeout is not None and int(timeout.group(1)) < int(service.group(1)),
               f"upstream {name}: keepalive_timeout must be set below the services' {service.group(1)} s header timeout")
    print("nginx_test: nginx closes idle upstream connections before the services would")


def check_upstream_down(stack):
    code = stack.stop("movies")
    expect(code == 0, f"the movies API exits 0 on SIGTERM, got {code}")
    client = Client(stack.nginx_port)
    response = client.request("GET", "/api/v1/films", {"X-Request-Id": f"down-{stack.suffix}"})
    problem(response, 502, "upstream_unavailable")
    expect(response.header("X-Request-Id") == f"down-{stack.suffix}", "nginx's 502 carries the request id")
    expect(client.request("GET", "/api/v1/oauth/providers").status == 200, "Auth is still served")
    client.close()
    code = stack.stop("auth")
    expect(code == 0, f"Auth exits 0 on SIGTERM, got {code}")
    print("nginx_test: a stopped service is a 502 problem; the services exit 0 on SIGTERM")


def check_callback_codes_stay_out_of_the_error_log(stack):
    """nginx's error log writes the whole request line, query included, with every
    upstream error and limit_req refusal: a social sign-in callback's code and state
    must not be in it. Run with Auth stopped (a 502), and from the address the flood
    used up (a 429, unless a minute gave it one more request: then a 502 too)."""
    expect(stack.processes["auth"].poll() is not None, "Auth is stopped for this check")
    code, state = f"SECRETCODE{secrets.token_hex(8)}", f"STATE{secrets.token_hex(8)}"
    marker = f"control{secrets.token_hex(8)}"
    client, flooder = Client(stack.nginx_port), Client(stack.nginx_port, source=FLOODER)
    for who, expected in ((client, (502,)), (flooder, (429, 502))):
        for provider in ("yandex", "vk"):
            response = who.request("GET", f"/api/v1/oauth/{provider}/callback?code={code}&state={state}")
            expect(response.status in expected, f"a callback from {who.source}: {expected} expected, got {response!r}")
            problem(response, response.status, "upstream_unavailable" if response.status == 502 else "rate_limited")
        # The same errors elsewhere are logged with their request line: the log is
        # written, so the absence below means something.
        response = who.request("GET", f"/api/v1/oauth/providers?{marker}={who.source}")
        expect(response.status in expected, f"another Auth path from {who.source}: {response!r}")
    error_log = stack.dir / "error.log"
    for source in (CLIENT, FLOODER):
        wait_until(f"nginx's error-log line of the control request from {source}", lambda: f"{marker}={source}" in error_log.read_text(), timeout=10)
    logs = {"nginx's error log": error_log, "nginx's standard output and error": stack.access_log}
    for name, log in logs.items():
        text = log.read_text()
        expect(code not in text and state not in text, f"a callback's code or state in {name}")
    client.close()
    flooder.close()
    print("nginx_test: a social sign-in callback's code and state reach no log, on a 502 or a 429 either")


def main():
    for binary in ("auth", "movies"):
        if not (BIN / binary).exists():
            print(f"nginx_test: {BIN / binary} is missing; build it with `cargo build -p auth -p movies`", file=sys.stderr)
            return 1
    stack = Stack()
    ok = False
    try:
        stack.init_databases()
        stack.start_services()
        stack.start_nginx()
        check_routing(stack)
        check_operations_listeners(stack)
        check_request_ids(stack)
        check_trace_context(stack)
        check_signed_playback(stack)
        check_client_address(stack)
        check_limit_req(stack)
        check_nginx_errors_and_docs(stack)
        check_nginx_refusals(stack)
        check_upstream_keepalive_ends_first()
        check_upstream_down(stack)
        check_callback_codes_stay_out_of_the_error_log(stack)
        ok = True
    except Failure as e:
        print(f"nginx_test: FAILED: {e}", file=sys.stderr)
        for name, log in stack.logs.items():
            if log.exists():
                print(f"--- the end of {name}'s log ---\n{log.read_text()[-2000:]}", file=sys.stderr)
        error_log = stack.dir / "error.log"
        if error_log.exists():
            print(f"--- nginx error.log ---\n{error_log.read_text()[-2000:]}", file=sys.stderr)
    finally:
        stack.cleanup(keep_dir=not ok)
    if ok:
        print("nginx_test: passed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
