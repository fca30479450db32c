#!/usr/bin/env python3
"""Runs nginx 1.28 with the stack's template rendered as compose renders it, its
upstreams resolved while running (`resolve`), against a DNS server and stand-in
services started here.

The nginx image is 1.28; Debian 12's nginx (nginx_test.py) is 1.22, without `resolve`
in upstreams, so deploy/tests/build_nginx.sh builds 1.28 from source and its path is
the first argument. The DNS server (dnslib) plays Docker's: it answers for the names
`auth` and `movies` what the test says, NXDOMAIN while a name has no address (its
container absent). The stand-ins answer every request with their own name.

Asserted: rendered without `resolve` (as before), nginx refuses to start while `auth`
has no address, which took the whole site down; with it, nginx starts and serves the
movies API while `auth` has no address, Auth's paths being 502 problem+json; once the
name has an address Auth's paths reach it, and after it moves to another address (a
recreated container) requests reach the new one, all without a restart of nginx.

Run by deploy/tests/run.sh (make test); needs envsubst and dnslib (run.sh installs them).
"""

import http.server
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

import yaml
from dnslib import QTYPE, RCODE, RR, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from nginx_test import DEPLOY, Client, Failure, expect, problem, wait_until

# Loopback addresses of the stand-ins: Auth's container before and after it is
# recreated, and the movies API's.
AUTH_FIRST, AUTH_RECREATED, MOVIES = "127.0.0.31", "127.0.0.32", "127.0.0.33"


class Names(BaseResolver):
    """Docker's DNS for the test: a name's address while its container exists."""

    def __init__(self):
        self.addresses = {}
        self.lock = threading.Lock()

    def set(self, name, address):
        with self.lock:
            if address is None:
                self.addresses.pop(name, None)
            else:
                self.addresses[name] = address

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).rstrip(".")
        with self.lock:
            address = self.addresses.get(name)
        if address is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.A:
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=1))
        return reply


class StandIn(http.server.ThreadingHTTPServer):
    """A service's stand-in: answers every request 200 with its name in X-Who."""

    daemon_threads = True

    def __init__(self, address, port, who):
        self.who = who

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                body = json.dumps({"who": who}).encode()
                self.send_response(200)
                self.send_header("X-Who", who)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = answer

            def log_message(self, *args):
                pass

        super().__init__((address, port), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def port_free_on(addresses):
    """A TCP port free on every one of the addresses (the services keep theirs when recreated)."""
    while True:
        with socket.socket() as s:
            s.bind((addresses[0], 0))
            port = s.getsockname()[1]
        try:
            for address in addresses[1:]:
                with socket.socket() as s:
                    s.bind((address, port))
            return port
        except OSError:
            continue


def udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    def __init__(self, binary, directory):
        self.binary, self.dir = binary, directory
        self.process = None

    def configure(self, variables):
        """The template rendered as the image renders it (envsubst of the defined names)."""
        template = (DEPLOY / "nginx/templates/default.conf.template").read_text()
        shell_format = " ".join(f"${{{name}}}" for name in variables)
        rendered = subprocess.run(["envsubst", shell_format], input=template, capture_output=True, text=True, check=True,
                                  env={"PATH": os.environ["PATH"], **{k: str(v) for k, v in variables.items()}}).stdout
        expect("${" not in rendered, "a variable of the template was left unrendered")
        (self.dir / "default.conf").write_text(rendered)
        mime = pathlib.Path(self.binary).resolve().parent.parent / "conf/mime.types"
        (self.dir / "nginx.conf").write_text(f"""
worker_processes 1;
pid {self.dir}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    include {mime};
    default_type application/octet-stream;
    client_body_temp_path {self.dir}/client_body;
    proxy_temp_path {self.dir}/proxy;
    fastcgi_temp_path {self.dir}/fastcgi;
    uwsgi_temp_path {self.dir}/uwsgi;
    scgi_temp_path {self.dir}/scgi;
    include {self.dir}/default.conf;
}}
""")

    def command(self):
        return [self.binary, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"), "-e", str(self.dir / "error.log")]

    def start(self):
        with open(self.dir / "nginx.out", "ab") as out:
            self.process = subprocess.Popen(self.command() + ["-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def get(client, path):
    try:
        return client.request("GET", path)
    except OSError:
        client.close()
        return None


def answers(client, path):
    response = get(client, path)
    return response is not None and response.status == 200


def reaches(client, path, who):
    """Whether a request to `path` through nginx is answered by the stand-in `who`."""
    response = get(client, path)
    return response is not None and response.status == 200 and response.header("X-Who") == who


def main():
    if len(sys.argv) != 2:
        print("usage: nginx_resolve_test.py <nginx 1.28 binary> (deploy/tests/build_nginx.sh prints it)", file=sys.stderr)
        return 2
    binary = sys.argv[1]
    version = subprocess.run([binary, "-v"], capture_output=True, text=True).stderr.strip()
    directory = pathlib.Path(tempfile.mkdtemp(prefix="cinema-nginx-resolve-test-"))
    directory.chmod(0o755)  # nginx's workers (nobody when run as root) use its temp dirs
    names = Names()
    dns_port = udp_port()
    dns = DNSServer(names, port=dns_port, address="127.0.0.1", logger=DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data", False))
    dns.start_thread()
    port = port_free_on([AUTH_FIRST, AUTH_RECREATED, MOVIES])
    stand_ins = [StandIn(MOVIES, port, "movies"), StandIn(AUTH_FIRST, port, "auth-first"), StandIn(AUTH_RECREATED, port, "auth-recreated")]
    nginx = Nginx(binary, directory)
    ok = False
    try:
        compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
        variables = dict(compose["services"]["nginx"]["environment"])
        listen = port_free_on(["127.0.0.1"])
        # The compose values but for where things are here: the names stay `auth` and
        # `movies`, and NGINX_UPSTREAM_RESOLVE stays compose's.
        variables.update({"NGINX_LISTEN": f"127.0.0.1:{listen}", "AUTH_UPSTREAM": f"auth:{port}", "MOVIES_UPSTREAM": f"movies:{port}",
                          "NGINX_RESOLVER": f"127.0.0.1:{dns_port}", "NGINX_LIMIT_RATE": "1000r/s", "NGINX_LIMIT_BURST": "1000",
                          "STREAM_SIGNING_SECRET": "0" * 64})
        expect(variables.get("NGINX_UPSTREAM_RESOLVE") == "resolve", f"compose resolves the upstreams while running: {variables.get('NGINX_UPSTREAM_RESOLVE')!r}")
        names.set("movies", MOVIES)

        # Without `resolve`, the names are looked up once, at start, by the system's
        # resolver, which (like Docker's for an absent container) knows no `auth`.
        nginx.configure(variables | {"NGINX_UPSTREAM_RESOLVE": ""})
        check = subprocess.run(nginx.command() + ["-t"], capture_output=True, text=True, timeout=120)
        expect(check.returncode != 0 and "host not found in upstream" in check.stderr,
               f"{version} without `resolve` refuses to start while `auth` has no address: {check.returncode} {check.stderr}")

        nginx.configure(variables)
        check = subprocess.run(nginx.command() + ["-t"], capture_output=True, text=True, timeout=60)
        expect(check.returncode == 0, f"{version} -t refused the configuration:\n{check.stderr}")
        nginx.start()
        client = Client(listen)
        wait_until("nginx to answer while `auth` has no address", lambda: answers(client, "/nginx/health"),
                   process=nginx.process, log=directory / "error.log")
        wait_until("the movies API to be reached by its name", lambda: reaches(client, "/api/v1/films", "movies"), timeout=30)
        response = client.request("GET", "/api/v1/oauth/providers", {"X-Request-Id": "auth-absent"})
        problem(response, 502, "upstream_unavailable")
        expect(response.header("X-Request-Id") == "auth-absent", f"the 502 carries the request id: {response!r}")
        print(f"nginx_resolve_test: {version} starts and serves the movies API while `auth` has no address (Auth's paths 502)")

        # Auth's container starts: its paths reach it, nginx not restarted. (nginx
        # asks again after the resolver's valid=, 10 s.)
        names.set("auth", AUTH_FIRST)
        wait_until("Auth's paths to reach the container once `auth` resolves", lambda: reaches(client, "/api/v1/oauth/providers", "auth-first"),
                   timeout=40, process=nginx.process)
        # Recreated with another address: requests follow it.
        names.set("auth", AUTH_RECREATED)
        wait_until("Auth's paths to reach the recreated container's new address",
                   lambda: reaches(client, "/api/v1/oauth/providers", "auth-recreated"), timeout=40, process=nginx.process)
        expect(reaches(client, "/api/v1/films", "movies"), "the movies API is still served")
        expect(nginx.process.poll() is None, "nginx was never restarted")
        client.close()
        print("nginx_resolve_test: Auth's paths reach its container once it has an address, and its new address when recreated")
        ok = True
    except Failure as e:
        print(f"nginx_resolve_test: FAILED: {e}", file=sys.stderr)
        error_log = directory / "error.log"
        if error_log.exists():
            print(f"--- nginx error.log ---\n{error_log.read_text()[-2000:]}", file=sys.stderr)
    finally:
        nginx.stop()
        dns.stop()
        for stand_in in stand_ins:
            stand_in.shutdown()
            stand_in.server_close()
        if ok:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            print(f"nginx_resolve_test: files kept in {directory}", file=sys.stderr)
    if ok:
        print("nginx_resolve_test: passed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
