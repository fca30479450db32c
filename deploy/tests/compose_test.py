#!/usr/bin/env python3
"""Checks deploy/compose.yaml and the Dockerfiles without a Docker engine.

Parses the compose file and asserts its structure and wiring: every service, its
image or build, healthcheck, dependencies and their conditions, ports, networks, and
the environment that connects the services to each other (database and Redis URLs,
Jaeger, nginx's upstreams (resolved while running) and trusted address, the request-id requirement, the one
secret with which the movies API signs playback URLs and nginx verifies them; Auth's
rate limits in a Redis that never evicts, the caches in one that does). Every
service variable it sets must be one the service reads (documented in the root
.env.example), every ${...} it interpolates must be in deploy/.env.example, and no
secret value is written in it. The Dockerfiles are read for the stages compose
builds, cargo-chef caching, the non-root user and the bundled dataset.

Run by deploy/tests/run.sh (make test). Exit status 0 when every check holds.
"""

import ipaddress
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse

import yaml

DEPLOY = pathlib.Path(__file__).resolve().parent.parent
ROOT = DEPLOY.parent

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
    return condition


def interpolations(text):
    """Names of the ${NAME}, ${NAME:-x}, ${NAME:?x} in a compose value."""
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))


def resolve(value, env):
    """A compose value with its interpolations replaced: from env, else the default."""

    def one(match):
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if name in env and env[name] != "":
            return env[name]
        if op == ":-":
            return arg
        return ""

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\?|-|\?)([^}]*))?\}", one, str(value))


def env_file_names(path):
    names = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            names[key.strip()] = value.strip()
    return names


def documented_names(path):
    """Variable names a .env.example mentions: set, commented out or in its prose."""
    return set(re.findall(r"\b([A-Z][A-Z0-9]*_[A-Z0-9_]+)\b", path.read_text()))


def redis_option(service, name):
    """The value of `--<name>` on a Redis service's redis-server command line, or None."""
    command = " ".join(service.get("command", []))
    match = re.search(rf"redis-server .*--{re.escape(name)} (\S+)", command)
    return match.group(1) if match else None


def dockerfile_stages(path):
    stages = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
        if match:
            current = match.group(2) or match.group(1)
            stages[current] = {"from": match.group(1), "lines": []}
        elif current and line and not line.startswith("#"):
            stages[current]["lines"].append(line)
    return stages


def main():
    compose_text = (DEPLOY / "compose.yaml").read_text()
    compose = yaml.safe_load(compose_text)
    services = compose.get("services", {})
    example = env_file_names(DEPLOY / ".env.example")

    expected = {"nginx", "auth", "movies", "catalogue-demo", "postgres", "redis", "redis-limits", "jaeger"}
    check(set(services) == expected, f"services are {sorted(services)}, expected {sorted(expected)}")
    long_running = expected - {"catalogue-demo"}

    # Every ${...} is documented in deploy/.env.example; required ones have no default there that looks real.
    for name in sorted(interpolations(compose_text)):
        check(name in example, f"compose.yaml interpolates ${{{name}}}, missing from deploy/.env.example")
    for name in ("POSTGRES_PASSWORD", "AUTH_DB_PASSWORD", "MOVIES_DB_PASSWORD", "REDIS_PASSWORD"):
        check(f"${{{name}:?" in compose_text, f"{name} must be required (${{{name}:?...}}), never defaulted")
        check(example.get(name) == "", f"deploy/.env.example must leave {name} empty (compose then refuses to start), not hold a value or a placeholder")
    # The Redis containers check the password, then start redis-server through the
    # image's entrypoint: it drops to the redis user only when its first argument is
    # redis-server, so `sh -c "...; exec redis-server"` ran the server as root. Run
    # here with the entrypoint and the server stubbed.
    stubs = pathlib.Path(tempfile.mkdtemp(prefix="compose-test-stubs-"))
    (stubs / "docker-entrypoint.sh").write_text('#!/bin/sh\necho "entrypoint $*"\n')
    (stubs / "redis-server").write_text('#!/bin/sh\necho "redis-server as $(id -u)"\n')
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    for name in ("redis", "redis-limits"):
        command = services.get(name, {}).get("command", [])
        check("$${#REDIS_PASSWORD} -ge 16" in " ".join(command), f"the {name} container refuses a password shorter than 16 characters")
        check(not services.get(name, {}).get("entrypoint") and not services.get(name, {}).get("user"), f"{name}: the image's entrypoint and user are kept")
        if command[:2] != ["sh", "-c"] or len(command) != 3:
            check(False, f"{name}: command is [sh, -c, <script>]: {command}")
            continue
        script = command[2].replace("$$", "$")
        env = {"PATH": f"{stubs}:{os.environ['PATH']}"}
        run = subprocess.run(["sh", "-c", script], env=env | {"REDIS_PASSWORD": "a" * 16}, capture_output=True, text=True)
        check(run.returncode == 0 and run.stdout.startswith("entrypoint redis-server --requirepass " + "a" * 16),
              f"{name}: redis-server must start through the image's entrypoint (docker-entrypoint.sh redis-server ...), which drops root: {run.stdout!r} {run.stderr!r}")
        run = subprocess.run(["sh", "-c", script], env=env | {"REDIS_PASSWORD": "change-me"}, capture_output=True, text=True)
        check(run.returncode == 1 and "at least 16 characters" in run.stderr and not run.stdout, f"{name}: started with a short password: {run.stdout!r}")
    shutil.rmtree(stubs, ignore_errors=True)
    # The postgres container checks its passwords at every start, then runs the image's entrypoint.
    entrypoint = services["postgres"].get("entrypoint", [])
    check(entrypoint[:2] == ["bash", "-c"] and entrypoint[2].endswith("exec docker-entrypoint.sh postgres"), "postgres checks its passwords, then execs the image's entrypoint")
    if entrypoint[:2] == ["bash", "-c"]:
        script = entrypoint[2].replace("$$", "$").replace("exec docker-entrypoint.sh postgres", "echo started")
        good = {"PATH": os.environ["PATH"], "POSTGRES_PASSWORD": "a" * 16, "AUTH_DB_PASSWORD": "b" * 24, "MOVIES_DB_PASSWORD": "c" * 24}
        run = subprocess.run(["bash", "-c", script], env=good, capture_output=True, text=True)
        check(run.returncode == 0 and run.stdout == "started\n", f"postgres refused good passwords: {run.stderr}")
        for short in good.keys() - {"PATH"}:
            run = subprocess.run(["bash", "-c", script], env=good | {short: "change-me"}, capture_output=True, text=True)
            check(run.returncode == 1 and f"{short} must be at least 16 characters" in run.stderr and "started" not in run.stdout,
                  f"the postgres container started with a short {short}")
    # One secret signs playback URLs in the movies API and verifies them in nginx: both get
    # the same required interpolation, and the template hashes exactly what Movies signs.
    required_secret = "${STREAM_SIGNING_SECRET:?set STREAM_SIGNING_SECRET in deploy/.env}"
    check(services["movies"].get("environment", {}).get("MOVIES_STREAM_SIGNING_SECRET") == required_secret,
          f"movies gets MOVIES_STREAM_SIGNING_SECRET as {required_secret}, never defaulted")
    check(services["nginx"].get("environment", {}).get("STREAM_SIGNING_SECRET") == required_secret,
          f"nginx gets STREAM_SIGNING_SECRET as {required_secret}, never defaulted")
    check(example.get("STREAM_SIGNING_SECRET") == "", "deploy/.env.example must leave STREAM_SIGNING_SECRET empty (compose then refuses to start)")
    check(not any("STREAM_SIGNING_SECRET" in str(v) for v in services["catalogue-demo"].get("environment", {}).values()),
          "catalogue-demo signs nothing and does not get the stream secret")
    # The init script refuses short passwords before it touches the database.
    for short in ("AUTH_DB_PASSWORD", "MOVIES_DB_PASSWORD", "POSTGRES_PASSWORD"):
        env = {"PATH": os.environ["PATH"], "AUTH_DB_PASSWORD": "a" * 24, "MOVIES_DB_PASSWORD": "b" * 24, "POSTGRES_PASSWORD": "c" * 24, short: "change-me"}
        init = subprocess.run(["bash", str(DEPLOY / "postgres/init.sh")], env=env | {"PGHOST": "/nonexistent"}, capture_output=True, text=True)
        check(init.returncode == 1 and f"{short} must be at least 16 characters" in init.stderr, f"init.sh accepted a short {short}: {init.returncode} {init.stderr}")
    # The introspection secret: required, and left empty like the passwords.
    check("${INTROSPECTION_SECRET:?" in compose_text, "INTROSPECTION_SECRET must be required (${INTROSPECTION_SECRET:?...}), never defaulted")
    check(example.get("INTROSPECTION_SECRET") == "", "deploy/.env.example must leave INTROSPECTION_SECRET empty (compose then refuses to start)")
    # The values an operator fills in, for resolving the services' settings below.
    fill = {"INTROSPECTION_SECRET": "0123456789abcdef0123456789abcdef", "STREAM_SIGNING_SECRET": "fedcba9876543210fedcba9876543210"}
    deployed = {k: (v or fill.get(k, "0123456789abcdef0123")) if k.endswith("PASSWORD") or k in fill else v for k, v in example.items()}
    gitignore = (DEPLOY / ".gitignore").read_text().split()
    check(".env" in gitignore and "secrets/*" in gitignore, "deploy/.gitignore must keep .env and secrets/ out of git")

    # Healthchecks and restarts.
    for name in sorted(long_running):
        service = services.get(name, {})
        health = service.get("healthcheck", {})
        test = health.get("test")
        check(isinstance(test, list) and test and test[0] in ("CMD", "CMD-SHELL"), f"{name}: healthcheck test must be CMD or CMD-SHELL")
        for key in ("interval", "timeout", "retries"):
            check(key in health, f"{name}: healthcheck without {key}")
        check(service.get("restart") == "unless-stopped", f"{name}: restart: unless-stopped")
    check(services["catalogue-demo"].get("restart") == "no", "catalogue-demo is one-shot (restart: \"no\")")
    # Resources are bounded: memory and processes per container, and PostgreSQL's
    # /dev/shm above Docker's 64 MB; each Redis' limit leaves room above its --maxmemory.
    def megabytes(size):
        match = re.fullmatch(r"(\d+)\s*([kmg])b?", str(size).lower())
        return int(match.group(1)) * {"k": 1 / 1024, "m": 1, "g": 1024}[match.group(2)] if match else None
    for name, service in sorted(services.items()):
        check(megabytes(service.get("mem_limit", "")) is not None, f"{name}: a mem_limit")
        check(isinstance(service.get("pids_limit"), int) and service["pids_limit"] > 0, f"{name}: a pids_limit")
    check((megabytes(services["postgres"].get("shm_size", "")) or 0) >= 128, "postgres: shm_size of at least 128 MB (Docker's 64 MB default fails parallel queries)")
    for name in ("redis", "redis-limits"):
        maxmemory = megabytes(redis_option(services[name], "maxmemory") or "")
        limit = megabytes(services[name].get("mem_limit", ""))
        check(maxmemory and limit and limit >= 1.25 * maxmemory, f"{name}: mem_limit {limit} MB leaves room above --maxmemory {maxmemory} MB")
    # Logs rotate: Docker's default json-file keeps every line, nginx's one per request.
    for name, service in sorted(services.items()):
        logging = service.get("logging") or {}
        options = logging.get("options") or {}
        check(logging.get("driver") in ("local", "json-file") and re.fullmatch(r"\d+[km]", str(options.get("max-size", "")))
              and str(options.get("max-file", "")).isdigit(),
              f"{name}: logs rotate (logging: driver local or json-file with max-size and max-file): {logging}")
    check(services["auth"]["healthcheck"]["test"] == ["CMD", "/usr/local/bin/auth", "healthcheck"], "auth's healthcheck runs `auth healthcheck`")
    check(services["movies"]["healthcheck"]["test"] == ["CMD", "/usr/local/bin/movies", "healthcheck"], "movies' healthcheck runs `movies healthcheck`")
    check("/nginx/health" in " ".join(services["nginx"]["healthcheck"]["test"]), "nginx's healthcheck asks its /nginx/health")
    check("13133" in " ".join(services["jaeger"]["healthcheck"]["test"]), "jaeger's healthcheck asks the health extension on 13133")
    check("-h" in services["postgres"]["healthcheck"]["test"] and "127.0.0.1" in services["postgres"]["healthcheck"]["test"],
          "postgres' healthcheck goes over TCP (not healthy during initdb)")

    # Dependencies wait for the storage each service needs (or for the one-shot to
    # finish). Nothing waits for Auth or for Jaeger to be healthy: if Auth fails the
    # site must not fail (movies serves anonymously, nginx still routes to it), and
    # tracing is optional. Those are "started, not required".
    optional = ("service_started", False)
    wanted = {
        "nginx": {"auth": optional, "movies": optional},
        "auth": {"postgres": ("service_healthy", True), "redis": ("service_healthy", True), "redis-limits": ("service_healthy", True), "jaeger": optional},
        "movies": {"postgres": ("service_healthy", True), "redis": ("service_healthy", True), "redis-limits": ("service_healthy", True), "jaeger": optional,
                   "catalogue-demo": ("service_completed_successfully", True)},
        "catalogue-demo": {"postgres": ("service_healthy", True), "redis": ("service_healthy", True)},
    }
    for name, deps in wanted.items():
        actual = services[name].get("depends_on", {})
        check(isinstance(actual, dict), f"{name}: depends_on must use the long form with conditions")
        got = {dep: ((spec or {}).get("condition"), (spec or {}).get("required", True)) for dep, spec in actual.items()}
        check(got == deps, f"{name}: depends_on {got}, expected {deps}")
    for name in ("postgres", "redis", "redis-limits", "jaeger"):
        check(not services[name].get("depends_on"), f"{name} depends on nothing")

    # Ports: nginx is the public entry; the rest only on the host's loopback.
    nginx_ports = services["nginx"].get("ports", [])
    check(len(nginx_ports) == 1 and str(nginx_ports[0]).endswith(":80"), f"nginx publishes its port 80: {nginx_ports}")
    # The services: their API and their operations listener (probes and /metrics).
    for name, container_ports in (("auth", (8000, 9000)), ("movies", (8001, 9000)), ("jaeger", (16686,))):
        ports = [str(p) for p in services[name].get("ports", [])]
        check(len(ports) == len(container_ports) and all(p.startswith("127.0.0.1:") for p in ports)
              and [int(p.rsplit(":", 1)[-1]) for p in ports] == list(container_ports),
              f"{name} publishes {container_ports} on 127.0.0.1 only: {ports}")
    host_ports = [resolve(str(p), example).split(":")[-2] for name in ("nginx", "auth", "movies", "jaeger") for p in services[name].get("ports", [])]
    check(len(host_ports) == len(set(host_ports)), f"every published host port is different: {host_ports}")
    check({"4317", "4318"} <= {str(p) for p in services["jaeger"].get("expose", [])}, "jaeger exposes OTLP 4317 and 4318")
    for name in ("postgres", "redis", "redis-limits", "catalogue-demo"):
        check(not services[name].get("ports"), f"{name} publishes no port")

    # Networks: nginx cannot reach the data stores; its address is fixed and trusted by Auth.
    networks = compose.get("networks", {})
    check(set(networks) == {"edge", "backend"}, f"networks edge and backend: {sorted(networks)}")
    nets = {name: services[name].get("networks") for name in services}
    nets = {name: set(v) if isinstance(v, (list, dict)) else set() for name, v in nets.items()}
    check(nets["nginx"] == {"edge"}, "nginx is on edge only")
    for name in ("auth", "movies"):
        check(nets[name] == {"edge", "backend"}, f"{name} is on edge and backend")
    for name in ("postgres", "redis", "redis-limits", "jaeger", "catalogue-demo"):
        check(nets[name] == {"backend"}, f"{name} is on backend only")
    subnet = ipaddress.ip_network(resolve(networks["edge"]["ipam"]["config"][0]["subnet"], example))
    nginx_ip = ipaddress.ip_address(resolve(services["nginx"]["networks"]["edge"]["ipv4_address"], example))
    check(nginx_ip in subnet, f"nginx's address {nginx_ip} is in the edge subnet {subnet}")
    ip_range = ipaddress.ip_network(resolve(networks["edge"]["ipam"]["config"][0]["ip_range"], example))
    check(ip_range.subnet_of(subnet) and nginx_ip not in ip_range,
          f"containers get addresses from {ip_range}, inside {subnet} and never nginx's {nginx_ip}")

    # nginx: the template and every variable it uses.
    nginx = services["nginx"]
    check(nginx["image"].startswith("nginx:") and "bookworm" in nginx["image"], "nginx: the official Debian-based image (renders templates, has curl)")
    check("./nginx/templates:/etc/nginx/templates:ro" in nginx.get("volumes", []), "nginx mounts deploy/nginx/templates read-only")
    template = (DEPLOY / "nginx/templates/default.conf.template").read_text()
    used = interpolations(template)
    provided = set(nginx.get("environment", {}))
    check(used == provided, f"the template uses {sorted(used)}, compose provides {sorted(provided)}")
    media = re.search(r"location /media/ \{\n(.*?)^    \}", template, re.M | re.S)
    check(media is not None, "the template has a location /media/")
    if media:
        check("secure_link $arg_sig,$arg_expires;" in media.group(1)
              and 'secure_link_md5 "$secure_link_expires$uri ${STREAM_SIGNING_SECRET}";' in media.group(1),
              "location /media/ checks secure_link in the movies API's format (crates/movies/src/playback.rs)")
    nenv = {k: resolve(v, deployed) for k, v in nginx.get("environment", {}).items()}
    check(nenv.get("NGINX_LISTEN") == "80", "nginx listens on 80 in the container")
    # The services' names are looked up while nginx runs (`resolve`, open-source nginx
    # >= 1.27.3), from Docker's DNS: looked up once at start, a missing Auth container
    # kept nginx from starting, and a recreated one was 502 until nginx restarted.
    version = re.match(r"nginx:(\d+)\.(\d+)", nginx["image"])
    check(version is not None and (int(version.group(1)), int(version.group(2))) >= (1, 28),
          f"nginx {nginx['image']}: `resolve` in an upstream needs nginx >= 1.27.3 (a stable 1.28 or later)")
    check(nenv.get("NGINX_RESOLVER") == "127.0.0.11", "nginx asks Docker's DNS (127.0.0.11) for the services' addresses")
    check(nenv.get("NGINX_UPSTREAM_RESOLVE") == "resolve", "nginx's upstreams are resolved while running (NGINX_UPSTREAM_RESOLVE=resolve)")
    check(re.search(r"^resolver \$\{NGINX_RESOLVER\} valid=\d+s ipv6=off;$", template, re.M) is not None,
          "the template has an http-level `resolver ${NGINX_RESOLVER} valid=...s ipv6=off;`")
    upstream_blocks = re.findall(r"^upstream (\w+) \{\n(.*?)^\}", template, re.M | re.S)
    check({name for name, _ in upstream_blocks} == {"auth", "movies"}, f"the template's upstreams: {[n for n, _ in upstream_blocks]}")
    for name, body in upstream_blocks:
        servers = re.findall(r"^\s*server (.*);$", body, re.M)
        check(re.search(r"^\s*zone \w+ \d+k;$", body, re.M) is not None, f"upstream {name}: a zone (`resolve` needs one)")
        check(servers and all(s.endswith(" ${NGINX_UPSTREAM_RESOLVE}") for s in servers),
              f"upstream {name}: every server takes ${{NGINX_UPSTREAM_RESOLVE}}: {servers}")

    # The services' environment.
    auth = {k: resolve(v, deployed) for k, v in services["auth"].get("environment", {}).items()}
    movies = {k: resolve(v, deployed) for k, v in services["movies"].get("environment", {}).items()}
    demo = {k: resolve(v, deployed) for k, v in services["catalogue-demo"].get("environment", {}).items()}
    auth_port = auth.get("AUTH_LISTEN", "").rsplit(":", 1)[-1]
    movies_port = movies.get("MOVIES_LISTEN", "").rsplit(":", 1)[-1]
    check(auth.get("AUTH_LISTEN") == "0.0.0.0:8000", "auth listens on all interfaces, port 8000")
    check(movies.get("MOVIES_LISTEN") == "0.0.0.0:8001", "movies listens on all interfaces, port 8001")
    check(nenv.get("AUTH_UPSTREAM") == f"auth:{auth_port}", "nginx's AUTH_UPSTREAM is auth's listen port")
    check(nenv.get("MOVIES_UPSTREAM") == f"movies:{movies_port}", "nginx's MOVIES_UPSTREAM is movies' listen port")
    # The operations listeners: the probes and /metrics outside the connection cap,
    # where the healthcheck asks; Prometheus' only, never routed by nginx.
    check(auth.get("AUTH_OPS_LISTEN") == "0.0.0.0:9000", "auth's operations listener on all interfaces, port 9000")
    check(movies.get("MOVIES_OPS_LISTEN") == "0.0.0.0:9000", "movies' operations listener on all interfaces, port 9000")
    ops_ports = {auth.get("AUTH_OPS_LISTEN", "").rsplit(":", 1)[-1], movies.get("MOVIES_OPS_LISTEN", "").rsplit(":", 1)[-1]}
    check(not ops_ports & {auth_port, movies_port}, f"the operations listeners' ports {ops_ports} are not the APIs'")
    for upstream in (nenv.get("AUTH_UPSTREAM", ""), nenv.get("MOVIES_UPSTREAM", "")):
        check(upstream.rsplit(":", 1)[-1] not in ops_ports, f"nginx's upstream {upstream} is not an operations listener")
    check(not any(re.search(rf"[:\s]{port}\b", template) for port in ops_ports), "nginx's template names no operations port")
    check(movies.get("AUTH_URL") == f"http://auth:{auth_port}", "movies reaches Auth by its service name and port")
    check(re.fullmatch(r"postgres://auth:[^@]+@postgres:5432/auth", auth.get("AUTH_DATABASE_URL", "")), "auth: its own role and database on postgres")
    for env, who in ((movies, "movies"), (demo, "catalogue-demo")):
        check(re.fullmatch(r"postgres://movies:[^@]+@postgres:5432/movies", env.get("MOVIES_DATABASE_URL", "")), f"{who}: movies' role and database")
        check(re.fullmatch(r"redis://:[^@]+@redis:6379", env.get("REDIS_URL", "")), f"{who}: Redis with its password")
        check(env.get("MOVIES_REDIS_KEY_PREFIX") == "movies", f"{who}: the movies key prefix (load-demo clears that cache)")
    check(re.fullmatch(r"redis://:[^@]+@redis:6379", auth.get("REDIS_URL", "")), "auth: Redis with its password")
    # The Redis holding Auth's rate limits never evicts: an evicting one, filled by
    # other keys (OAuth flows), dropped the sign-in counters. The cache Redis evicts.
    check(not auth.get("AUTH_RATE_LIMIT_REDIS_CLUSTER_NODES"), "auth: the limits on the compose Redis, not a cluster")
    for env, who, variable in ((auth, "auth", "AUTH_RATE_LIMIT_REDIS_URL"), (movies, "movies", "MOVIES_RATE_LIMIT_REDIS_URL")):
        limits_url = env.get(variable) or env.get("REDIS_URL", "")
        check(re.fullmatch(r"redis://:[^@]+@redis-limits:6379", limits_url), f"{who}: the limits in redis-limits, with its password: {limits_url}")
        limits_host = urllib.parse.urlsplit(limits_url).hostname
        check(limits_host in services and redis_option(services[limits_host], "maxmemory-policy") == "noeviction",
              f"the Redis holding {who}'s limits ({limits_host}) must run with --maxmemory-policy noeviction")
    check(redis_option(services["redis"], "maxmemory-policy") in ("volatile-lru", "allkeys-lru", "volatile-lfu", "allkeys-lfu"),
          "the cache Redis evicts (an LRU or LFU policy) rather than refuse writes")
    for name in ("redis", "redis-limits"):
        check(redis_option(services.get(name, {}), "maxmemory") is not None, f"{name}: bounded with --maxmemory")
    # Auth's hashing buffers (19 MiB each, AUTH_PASSWORD_HASH_CONCURRENCY at once) fit its
    # memory limit with room for the rest; left to its default, the host's core count,
    # they would not on a large host.
    concurrency = resolve(auth.get("AUTH_PASSWORD_HASH_CONCURRENCY", ""), {})
    check(concurrency.isdigit(), f"auth: AUTH_PASSWORD_HASH_CONCURRENCY is set, not left to the host's cores: {concurrency!r}")
    auth_limit = megabytes(str(services["auth"].get("mem_limit", "")))
    if concurrency.isdigit() and auth_limit:
        check(int(concurrency) * 19 + 256 <= auth_limit, f"auth: {concurrency} hashes of 19 MiB and 256 MB besides fit mem_limit {auth_limit} MB")
    # The counts survive a restart of the limits' Redis: forgotten, every account would
    # take a fresh 100 failed sign-ins an hour.
    limits = services.get("redis-limits", {})
    check(redis_option(limits, "appendonly") == "yes", "redis-limits: kept on disk (--appendonly yes)")
    data = [v for v in limits.get("volumes", []) if v.split(":")[1:2] == ["/data"] and v.split(":")[0] in (compose.get("volumes") or {})]
    check(bool(data), "redis-limits: /data on a named volume, so the append-only file outlives the container")
    for env, who in ((auth, "auth"), (movies, "movies")):
        check(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") == "http://jaeger:4317", f"{who}: traces to Jaeger's OTLP/gRPC port")
        check(env.get("OTEL_EXPORTER_OTLP_PROTOCOL") == "grpc", f"{who}: OTLP over gRPC")
        check(env.get("OTEL_SERVICE_NAME") == who, f"{who}: OTEL_SERVICE_NAME")
        check(env.get("REQUIRE_REQUEST_ID") == "true", f"{who}: REQUIRE_REQUEST_ID=true behind nginx")
    check(auth.get("AUTH_TRUSTED_PROXIES") == str(nginx_ip), "auth trusts exactly nginx's address")
    client = f"{movies.get('MOVIES_AUTH_CLIENT_ID')}:{movies.get('MOVIES_AUTH_CLIENT_SECRET')}"
    check(auth.get("AUTH_INTROSPECTION_CLIENTS") == client, "auth lists movies' introspection client id and secret, and nothing else")
    check(auth.get("AUTH_JWT_PRIVATE_KEY_FILE") == "/run/secrets/auth_jwt_signing_key", "auth reads its signing key from the secret")
    for variable in ("AUTH_JWT_ISSUER", "AUTH_JWT_AUDIENCE"):
        check(auth.get(variable) and auth.get(variable) == movies.get(variable), f"auth and movies get the same {variable}")
    check(services["auth"].get("secrets") == ["auth_jwt_signing_key"], "auth gets the signing key secret")
    secret = compose.get("secrets", {}).get("auth_jwt_signing_key", {})
    check(secret.get("file", "").startswith("./secrets/"), "the signing key comes from deploy/secrets/ (ignored by git)")
    for name in ("auth", "movies"):
        grace = int(str(services[name].get("stop_grace_period", "10s")).rstrip("s"))
        drain = int((auth if name == "auth" else movies).get(f"{name.upper()}_SHUTDOWN_TIMEOUT_SECONDS", "15"))
        check(grace > drain, f"{name}: stop_grace_period ({grace}s) must exceed the drain ({drain}s)")
        check(services[name].get("read_only") is True, f"{name}: read-only root filesystem")
    pg = {k: resolve(v, deployed) for k, v in services["postgres"].get("environment", {}).items()}
    check({"POSTGRES_PASSWORD", "AUTH_DB_PASSWORD", "MOVIES_DB_PASSWORD"} <= set(pg), "postgres gets the passwords its init script needs")
    check(services["catalogue-demo"].get("command") == ["load-demo"], "catalogue-demo runs `movies load-demo`")
    check(services["catalogue-demo"].get("image") == services["movies"].get("image"), "catalogue-demo uses the movies image")

    # Every service variable is one the services read (the root .env.example documents all).
    documented = documented_names(ROOT / ".env.example")
    for who, env in (("auth", auth), ("movies", movies), ("catalogue-demo", demo)):
        for name in env:
            if name.startswith(("AUTH_", "MOVIES_", "OAUTH_", "OTEL_")) or name in ("REDIS_URL", "REQUIRE_REQUEST_ID", "RUST_LOG"):
                check(name in documented, f"{who}: {name} is not a documented setting (root .env.example); a typo?")

    # No literal secret in the file: every password comes from an interpolation.
    for line in compose_text.splitlines():
        if re.search(r"(PASSWORD|SECRET)\s*:", line) and not line.strip().startswith("#"):
            check("${" in line, f"a secret written in compose.yaml: {line.strip()}")
    for url in re.findall(r"(?:postgres|redis)://[^\s\"']+", compose_text):
        check("${" in url, f"a credential written in a URL: {url}")

    # Builds and Dockerfiles.
    for name, target in (("auth", "auth"), ("movies", "movies")):
        build = services[name].get("build", {})
        check(build.get("context") == ".." and build.get("dockerfile") == "deploy/service.Dockerfile" and build.get("target") == target,
              f"{name}: built from the repository root with deploy/service.Dockerfile, target {target}")
    pg_build = services["postgres"].get("build", {})
    check(pg_build.get("context") == "." and pg_build.get("dockerfile") == "postgres.Dockerfile", "postgres: built from deploy/postgres.Dockerfile")
    for name in ("redis", "redis-limits"):
        check(services.get(name, {}).get("image", "").startswith("redis:7"), f"{name}: Redis 7")
    check(services["jaeger"]["image"].startswith("jaegertracing/jaeger:2."), "Jaeger v2 all-in-one")

    stages = dockerfile_stages(DEPLOY / "service.Dockerfile")
    for stage in ("chef", "planner", "builder", "runtime", "auth", "movies"):
        check(stage in stages, f"service.Dockerfile: stage {stage}")
    if all(s in stages for s in ("chef", "planner", "builder", "runtime", "auth", "movies")):
        builder = " ".join(stages["builder"]["lines"])
        check("cargo chef prepare" in " ".join(stages["planner"]["lines"]), "planner runs cargo chef prepare")
        cook = builder.find("cargo chef cook")
        copy_all = builder.find("COPY . .")
        check(0 <= cook < copy_all, "builder cooks the dependencies before copying the sources (their own cached layer)")
        check("--locked" in builder and "--release" in builder, "builder builds release with the lock file")
        # The services' packages only: a workspace build would put the tools beside them
        # (crates/partition-bench, which drops and fills databases; crates/loadgen).
        for step in ("cargo chef cook", "cargo build"):
            line = next((l for l in stages["builder"]["lines"] if step in l), "")
            packages = set(re.findall(r"(?:--package|-p)[ =](\S+)", line))
            check(packages == {"auth", "movies"} and not re.search(r"--workspace|--all\b", line),
                  f"builder's {step} names the packages auth and movies alone (it names {sorted(packages)})")
        check(stages["runtime"]["from"].startswith("debian:") and "slim" in stages["runtime"]["from"], "runtime is Debian slim")
        check(any(l.startswith("USER ") and not l.startswith(("USER root", "USER 0")) for l in stages["runtime"]["lines"]), "runtime runs as a non-root user")
        for stage in ("auth", "movies"):
            lines = stages[stage]["lines"]
            check(stages[stage]["from"] == "runtime", f"{stage} builds on the runtime stage")
            check(not any(l.startswith("USER") for l in lines), f"{stage} keeps the non-root user")
            check(not any(re.search(r"apt-get|curl|wget", l) for l in lines), f"{stage} fetches nothing")
            check(f'ENTRYPOINT ["/usr/local/bin/{stage}"]' in lines, f"{stage}: the binary is the entrypoint")
            check(any(l.startswith("HEALTHCHECK") and "healthcheck" in l for l in lines), f"{stage}: image healthcheck")
        workdir = next(l.split()[1] for l in stages["chef"]["lines"] if l.startswith("WORKDIR"))
        data = f"{workdir}/crates/movies/data"
        check(any(l.startswith("COPY --from=builder") and l.endswith(f"{data} {data}") for l in stages["movies"]["lines"]),
              f"the movies image keeps the bundled dataset at {data}, where `movies load-demo` reads it")
        check(not any("crates/movies/data" in l for l in stages["auth"]["lines"]), "the auth image has no dataset")
    ignore = (DEPLOY / "service.Dockerfile.dockerignore").read_text().split()
    for entry in ("target/", ".git/", "deploy/.env", "deploy/secrets/"):
        check(entry in ignore, f"service.Dockerfile.dockerignore keeps {entry} out of the build context")
    demo_rs = (ROOT / "crates/movies/src/demo.rs").read_text()
    check('concat!(env!("CARGO_MANIFEST_DIR"), "/data/movies.json")' in demo_rs, "the dataset path is still CARGO_MANIFEST_DIR/data (the image relies on it)")
    check((ROOT / "crates/movies/data/movies.json").is_file(), "the bundled dataset exists")

    pg_stages = dockerfile_stages(DEPLOY / "postgres.Dockerfile")
    pg_lines = " ".join(l for s in pg_stages.values() for l in s["lines"])
    check(any(s["from"].startswith("postgres:15") for s in pg_stages.values()), "PostgreSQL 15")
    check("postgresql-15-partman" in pg_lines, "the postgres image installs pg_partman")
    check("/docker-entrypoint-initdb.d/" in pg_lines and "postgres/init.sh" in pg_lines, "the postgres image runs deploy/postgres/init.sh on first start")

    if failures:
        print(f"compose_test: {len(failures)} check(s) failed:", file=sys.stderr)
        for failure in failures:
            print(f"  - {failure}", file=sys.stderr)
        return 1
    print("compose_test: deploy/compose.yaml, service.Dockerfile and postgres.Dockerfile hold together")
    return 0


if __name__ == "__main__":
    sys.exit(main())
