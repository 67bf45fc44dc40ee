"""fpmd behind the FastCGI clients people actually run, from Debian: nginx,
Apache httpd's mod_proxy_fcgi, HAProxy's fcgi-app, lighttpd's mod_fastcgi
and libfcgi's cgi-fcgi.

Every client is tested the same way, over TCP and over a Unix socket, with
its connection-reuse setting on and off where it has one: a GET with a
query string, a POST whose body the echo page counts exactly, and a run of
sequential requests.  The run also reads fpmd's status page before and
after, so that "keep-conn on" is proven by fewer accepted connections than
requests (and "off" by one connection per request).  The client's own
error log must stay free of upstream errors.

A client whose binary is missing is skipped with the Debian package to
install.  tests/CONFORMANCE.md lists the versions and settings tested.
"""

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import fcgi_client as fc
from conftest import (IS_ROOT, START_TIMEOUT, Endpoint, HttpClientMixin,
                      ManagedProcess, Nginx, NGINX_BIN, _tail, free_port,
                      parse_echo, pool_conf, wait_tcp_listening)

APACHE_BIN = os.environ.get("APACHE_BIN", "/usr/sbin/apache2")
APACHE_MODULES = "/usr/lib/apache2/modules"
HAPROXY_BIN = os.environ.get("HAPROXY_BIN", "/usr/sbin/haproxy")
LIGHTTPD_BIN = os.environ.get("LIGHTTPD_BIN", "/usr/sbin/lighttpd")
CGI_FCGI_BIN = os.environ.get("CGI_FCGI_BIN", "/usr/bin/cgi-fcgi")

# Debian package of each client, for the skip message.
PACKAGES = {"nginx": ("nginx-light", NGINX_BIN),
            "apache": ("apache2", APACHE_BIN),
            "haproxy": ("haproxy", HAPROXY_BIN),
            "lighttpd": ("lighttpd", LIGHTTPD_BIN),
            "cgi-fcgi": ("libfcgi-bin", CGI_FCGI_BIN)}

STATUS_PATH = "/fpmd-status"
BODY_SIZE = 10 * 1024 * 1024 + 7
RUN_LENGTH = 60


def require(client):
    package, binary = PACKAGES[client]
    if not os.access(binary, os.X_OK):
        pytest.skip(f"{client}: {binary} not installed (Debian package "
                    f"{package})")


class HttpFront(HttpClientMixin, ManagedProcess):
    """A web server listening on 127.0.0.1:port, started in the foreground
    from a config file in its own directory and stopped by pid."""

    error_log = None

    def __init__(self, workdir, upstream, reuse):
        base = Path(workdir) / self.name
        base.mkdir(parents=True, exist_ok=True)
        super().__init__(base)
        self.upstream = upstream
        self.reuse = reuse
        self.port = free_port()

    def command(self):
        raise NotImplementedError

    def start(self, timeout=START_TIMEOUT):
        self._spawn(self.command(), env=self.env())
        return wait_tcp_listening(self, self.name, self.port, timeout)

    def env(self):
        return None

    def log_tail(self):
        text = self._read(self.error_log) if self.error_log else ""
        return _tail(text + self.stderr_text + self.stdout_text)

    def bad_log_lines(self):
        return []


class Apache(HttpFront):
    """A private Apache httpd (event MPM, one child) with mod_proxy_fcgi:
    ProxyPass to the pool, `enablereuse=on` when reuse."""

    name = "apache2"

    def __init__(self, workdir, upstream, reuse):
        super().__init__(workdir, upstream, reuse)
        self.error_log = self.workdir / "error.log"
        self.conf_path = self.workdir / "apache2.conf"
        self.conf_path.write_text(self.render())

    def render(self):
        d = self.workdir
        (d / "run").mkdir(exist_ok=True)
        if self.upstream.kind == "unix":
            target = f"unix:{self.upstream.path}|fcgi://localhost/"
        else:
            target = f"fcgi://{self.upstream.listen}/"
        reuse = " enablereuse=on" if self.reuse else ""
        mods = "".join(f"LoadModule {m}_module {APACHE_MODULES}/mod_{m}.so\n"
                       for m in ("mpm_event", "authz_core", "proxy",
                                 "proxy_fcgi"))
        # Started as root, httpd's children must run as someone else.
        user = "User nobody\nGroup nogroup\n" if IS_ROOT else ""
        return (
            f"ServerRoot {d}\n"
            f"DefaultRuntimeDir {d}/run\n"
            f"PidFile {d}/apache2.pid\n"
            f"Mutex file:{d}/run default\n"
            f"{mods}{user}"
            f"Listen 127.0.0.1:{self.port}\n"
            "ServerName localhost\n"
            f"ErrorLog {self.error_log}\n"
            "LogLevel warn\n"
            "StartServers 1\nServerLimit 1\nThreadLimit 4\n"
            "ThreadsPerChild 4\nMaxRequestWorkers 4\n"
            "MinSpareThreads 1\nMaxSpareThreads 4\n"
            "KeepAlive On\nMaxKeepAliveRequests 0\n"
            "Timeout 30\n"
            "LimitRequestBody 0\n"
            "<Location />\n    Require all granted\n</Location>\n"
            f"ProxyPass / {target}{reuse}\n")

    def command(self):
        return [APACHE_BIN, "-f", str(self.conf_path), "-DFOREGROUND"]

    def env(self):
        # Debian's apache2 reads nothing from APACHE_* unless the config
        # names them; give it a clean, predictable environment.
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C",
                "APACHE_RUN_DIR": str(self.workdir / "run"),
                "APACHE_LOG_DIR": str(self.workdir)}

    def bad_log_lines(self):
        return [line for line in self._read(self.error_log).splitlines()
                if re.search(r":(error|crit|alert|emerg)\]", line)]


class HAProxy(HttpFront):
    """HAProxy in the foreground (-db) with an `fcgi-app` section and a
    backend `use-fcgi-app` + `proto fcgi`.  HAProxy sets FCGI_KEEP_CONN by
    default: without reuse we say `no option keep-conn`; with reuse we add
    `option get-values` (HAProxy then asks FCGI_MAX_REQS/FCGI_MPXS_CONNS on
    each new connection) and `option mpxs-conns` (which it must not use:
    we answer FCGI_MPXS_CONNS 0)."""

    name = "haproxy"

    def __init__(self, workdir, upstream, reuse):
        super().__init__(workdir, upstream, reuse)
        self.conf_path = self.workdir / "haproxy.cfg"
        self.conf_path.write_text(self.render())

    def render(self):
        server = (self.upstream.path if self.upstream.kind == "unix"
                  else self.upstream.listen)
        opts = ("    option keep-conn\n    option get-values\n"
                "    option mpxs-conns\n") if self.reuse else \
            "    no option keep-conn\n"
        return (
            "global\n"
            f"    pidfile {self.workdir}/haproxy.pid\n"
            "    log stderr format raw local0 warning\n"
            "defaults\n"
            "    mode http\n"
            "    log global\n"
            "    timeout connect 5s\n"
            "    timeout client 30s\n"
            "    timeout server 30s\n"
            "fcgi-app fpmd\n"
            "    docroot /srv\n"
            "    log-stderr global\n"
            f"{opts}"
            "frontend web\n"
            f"    bind 127.0.0.1:{self.port}\n"
            "    default_backend app\n"
            "backend app\n"
            "    use-fcgi-app fpmd\n"
            f"    server fpmd {server} proto fcgi\n")

    def command(self):
        return [HAPROXY_BIN, "-db", "-f", str(self.conf_path)]

    def bad_log_lines(self):
        return [line for line in self.stderr_text.splitlines()
                if re.search(r"(?i)\b(alert|emerg|error)\b", line)]


class Lighttpd(HttpFront):
    """lighttpd in the foreground (-D) with mod_fastcgi passing every URL
    to the pool (`check-local` off).  lighttpd never keeps the connection.
    authorizer=True uses the pool in `"mode" => "authorizer"` (FastCGI's
    AUTHORIZER role) in front of static files in docroot/."""

    name = "lighttpd"

    def __init__(self, workdir, upstream, reuse, authorizer=False):
        self.authorizer = authorizer
        super().__init__(workdir, upstream, reuse)
        self.error_log = self.workdir / "error.log"
        self.conf_path = self.workdir / "lighttpd.conf"
        (self.workdir / "docroot").mkdir(exist_ok=True)
        (self.workdir / "uploads").mkdir(exist_ok=True)
        self.conf_path.write_text(self.render())

    def render(self):
        d = self.workdir
        if self.upstream.kind == "unix":
            where = f'"socket" => "{self.upstream.path}"'
        else:
            where = (f'"host" => "{self.upstream.host}", '
                     f'"port" => {self.upstream.port}')
        if self.authorizer:
            where += (f', "mode" => "authorizer", '
                      f'"docroot" => "{d}/docroot"')
        return (
            f'server.document-root = "{d}/docroot"\n'
            'server.bind = "127.0.0.1"\n'
            f"server.port = {self.port}\n"
            f'server.errorlog = "{self.error_log}"\n'
            f'server.upload-dirs = ( "{d}/uploads" )\n'
            "server.max-request-size = 65536\n"
            'server.modules = ( "mod_fastcgi" )\n'
            f'fastcgi.server = ( "/" => (( {where}, '
            '"check-local" => "disable" )) )\n')

    def command(self):
        return [LIGHTTPD_BIN, "-D", "-f", str(self.conf_path)]

    def bad_log_lines(self):
        return [line for line in self._read(self.error_log).splitlines()
                if re.search(r"(?i)gw_backend|fastcgi|error", line)]


class CgiFcgi:
    """libfcgi's cgi-fcgi bridge: one process per request, the CGI
    environment in, the CGI response out.  It never keeps connections."""

    name = "cgi-fcgi"

    def __init__(self, upstream):
        self.upstream = upstream
        self.reuse = False
        self.port = 80

    def request(self, method, path, body=None, headers=None, conn=None):
        uri, _, query = path.partition("?")
        env = {"PATH": "/usr/bin:/bin", "GATEWAY_INTERFACE": "CGI/1.1",
               "REQUEST_METHOD": method, "REQUEST_URI": path,
               "SCRIPT_NAME": uri, "QUERY_STRING": query,
               "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "localhost",
               "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1"}
        for name, value in (headers or {}).items():
            env["HTTP_" + name.upper().replace("-", "_")] = value
        if body is not None:
            env["CONTENT_LENGTH"] = str(len(body))
        connect = (self.upstream.path if self.upstream.kind == "unix"
                   else self.upstream.listen)
        done = subprocess.run([CGI_FCGI_BIN, "-bind", "-connect", connect],
                              input=body or b"", capture_output=True,
                              env=env, timeout=30)
        # It exits with the END_REQUEST's appStatus (an error answer may
        # carry a non-zero one); no output at all is a failure.
        assert done.stdout, (done.returncode, done.stderr[-500:])
        status, _, hdrs, out = fc.parse_cgi_response(done.stdout)
        if status == 200:
            assert done.returncode == 0, (done.returncode, done.stderr)
        return status, hdrs, out

    def connection(self):
        return None

    def bad_log_lines(self):
        return []

    def log_tail(self):
        return ""


# ------------------------------------------------------------------ stacks

# (client, reuse, transport): every client over TCP and a Unix socket, with
# its connection reuse on and off where it has that setting.
STACKS = [(c, r, t) for c, reuses in (("nginx", (False, True)),
                                      ("apache", (False, True)),
                                      ("haproxy", (False, True)),
                                      ("lighttpd", (False,)),
                                      ("cgi-fcgi", (False,)))
          for r in reuses for t in ("tcp", "unix")]


def stack_id(s):
    client, reuse, transport = s
    return f"{client}-{transport}-{'reuse' if reuse else 'close'}"


@dataclass
class Stack:
    fpmd: object
    front: object
    upstream: Endpoint
    reuse: bool

    def accepted_conn(self):
        """The pool's count of accepted connections: fpmd's "connections"
        field (PHP-FPM's "accepted conn" counts requests), from its status
        page, asked on a connection of its own."""
        resp = fc.request(self.upstream.client,
                          {"SCRIPT_NAME": STATUS_PATH,
                           "REQUEST_METHOD": "GET", "QUERY_STRING": ""})
        assert resp.status == 200, resp.stdout[:300]
        m = re.search(rb"^connections:\s+(\d+)$", resp.body, re.M)
        assert m, resp.body[:500]
        return int(m.group(1))


@pytest.fixture
def shared_sockdir():
    """A Unix socket directory that other users can enter (Apache's
    children run as nobody when the suite runs as root)."""
    d = tempfile.mkdtemp(prefix="fpmd-interop-", dir="/tmp")
    os.chmod(d, 0o755)
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(params=STACKS, ids=[stack_id(s) for s in STACKS])
def stack(request, fpmd, tmp_path, shared_sockdir):
    client, reuse, transport = request.param
    require(client)
    if transport == "unix":
        ep = Endpoint("unix", path=str(shared_sockdir / "www.sock"))
    else:
        ep = Endpoint("tcp", host="127.0.0.1", port=free_port())
    proc = fpmd([pool_conf(ep, opts={"pm.max_children": 3,
                                     "pm.status_path": STATUS_PATH,
                                     "fastcgi.max_params_size": "4K",
                                     "listen.mode": "0666"})])
    fronts = []
    if client == "nginx":
        front = request.getfixturevalue("nginx")(ep, keepalive=reuse)
    elif client == "cgi-fcgi":
        front = CgiFcgi(ep)
    else:
        cls = {"apache": Apache, "haproxy": HAProxy,
               "lighttpd": Lighttpd}[client]
        front = cls(tmp_path, ep, reuse)
        fronts.append(front)
        front.start()
    yield Stack(proc, front, ep, reuse)
    problems = []
    for f in fronts:
        try:
            f.cleanup()
        except AssertionError as e:
            problems.append(str(e))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def ok_echo(status, headers, body):
    assert status == 200, (status, body[:500])
    ctype = {k.lower(): v for k, v in headers}.get("content-type", "")
    assert ctype.startswith("text/plain"), headers
    return parse_echo(body)


def assert_clean_log(front):
    """The client logged no upstream error (nginx: nothing at [error] or
    worse; the others: see their bad_log_lines)."""
    if isinstance(front, Nginx):
        bad = [line for line in
               front._read(front.error_log).splitlines()
               if re.search(r"\[(error|crit|alert|emerg)\]", line)]
    else:
        bad = front.bad_log_lines()
    assert bad == [], "\n".join(bad)


# ------------------------------------------------------------------- tests

def test_get_with_query_string(stack):
    status, headers, body = stack.front.request(
        "GET", "/interop/page?a=1&b=x%20y", headers={"X-Probe": "yes"})
    page = ok_echo(status, headers, body)
    params = page.param_dict
    assert params["QUERY_STRING"] == "a=1&b=x%20y"
    assert params["REQUEST_METHOD"] == "GET"
    assert params.get("HTTP_X_PROBE") == "yes"
    assert page.stdin_bytes == 0
    assert page.pid in stack.fpmd.worker_pids()
    assert_clean_log(stack.front)


def test_post_is_counted_exactly(stack):
    body = os.urandom(BODY_SIZE)
    status, headers, resp = stack.front.request(
        "POST", "/interop/upload?size=10m", body=body,
        headers={"Content-Type": "application/octet-stream"})
    page = ok_echo(status, headers, resp)
    assert page.stdin_bytes == len(body)
    assert page.param_dict["REQUEST_METHOD"] == "POST"
    assert page.param_dict.get("CONTENT_LENGTH") == str(len(body))
    assert_clean_log(stack.front)


def test_sequential_requests(stack):
    """RUN_LENGTH requests one after the other (on one kept HTTP connection
    where the client has one); with reuse on, the FastCGI connection is
    kept across them, with it off each request has its own."""
    before = stack.accepted_conn()
    conn = stack.front.connection()
    try:
        for i in range(RUN_LENGTH):
            body = b"b" * i
            status, headers, resp = stack.front.request(
                "POST", f"/interop/run?i={i}", body=body, conn=conn)
            page = ok_echo(status, headers, resp)
            assert page.param_dict["QUERY_STRING"] == f"i={i}"
            assert page.stdin_bytes == i
    finally:
        if conn is not None:
            conn.close()
    # Our own status query counts as one more connection.
    accepted = stack.accepted_conn() - before - 1
    if stack.reuse:
        assert accepted <= RUN_LENGTH // 4, \
            f"{accepted} FastCGI connections for {RUN_LENGTH} requests"
    else:
        assert accepted == RUN_LENGTH, \
            f"{accepted} FastCGI connections for {RUN_LENGTH} requests"
    assert_clean_log(stack.front)


def test_error_status_reaches_the_client(stack):
    """An fpmd error path (params over fastcgi.max_params_size: 431) writes
    a Status header before END_REQUEST, so every client passes the status
    on instead of answering 502; the next request is served as usual."""
    conn = stack.front.connection()
    try:
        status, _, body = stack.front.request(
            "GET", "/interop/big?x=1", headers={"X-Big": "b" * 6000},
            conn=conn)
        assert status == 431, (status, body[:300])
        status, headers, body = stack.front.request(
            "GET", "/interop/after?y=2", conn=conn)
        page = ok_echo(status, headers, body)
        assert page.param_dict["QUERY_STRING"] == "y=2"
    finally:
        if conn is not None:
            conn.close()


# ------------------------------------------------- lighttpd, AUTHORIZER

@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_lighttpd_authorizer_mode(fpmd, endpoint, tmp_path, transport):
    """lighttpd asks the pool in the AUTHORIZER role before serving a
    static file: the echo page's 200 allows it (its body is dropped, the
    file is served), an error status (431 here) is sent to the client
    as-is (6.3)."""
    require("lighttpd")
    ep = endpoint(transport)
    fpmd([pool_conf(ep, opts={"fastcgi.max_params_size": "4K"})])
    web = Lighttpd(tmp_path, ep, False, authorizer=True)
    (web.workdir / "docroot" / "hello.txt").write_bytes(b"static hello\n")
    try:
        web.start()
        status, _, body = web.request("GET", "/hello.txt?who=me")
        assert (status, body) == (200, b"static hello\n")
        status, _, body = web.request("GET", "/hello.txt",
                                      headers={"X-Big": "b" * 6000})
        assert status == 431, (status, body[:300])
        assert b"static hello" not in body
        assert_clean_log(web)
    finally:
        web.cleanup()


# ---------------------------------------------------- nginx, streaming body

@pytest.mark.parametrize("keepalive", [False, True],
                         ids=["close", "keepalive"])
def test_nginx_chunked_upload_without_request_buffering(fpmd, endpoint,
                                                        nginx, keepalive):
    """`fastcgi_request_buffering off` and a chunked 10 MB upload: nginx
    streams STDIN as it arrives, with no CONTENT_LENGTH; the echo page
    counts every byte."""
    require("nginx")
    ep = endpoint("unix")
    fpmd([pool_conf(ep)])
    web = nginx(ep, keepalive=keepalive,
                location_extra="fastcgi_request_buffering off;")
    body = os.urandom(BODY_SIZE)

    def chunks():
        for i in range(0, len(body), 256 * 1024):
            yield body[i:i + 256 * 1024]
    conn = web.connection()
    try:
        conn.request("POST", "/chunked?x=1", body=chunks(),
                     headers={"Content-Type": "application/octet-stream",
                              "Transfer-Encoding": "chunked"},
                     encode_chunked=True)
        resp = conn.getresponse()
        status, headers, out = resp.status, resp.getheaders(), resp.read()
        page = ok_echo(status, headers, out)
        assert page.stdin_bytes == len(body)
        assert page.param_dict.get("CONTENT_LENGTH", "") == ""
        # The kept HTTP connection (and FastCGI one) serves a second one.
        conn.request("GET", "/after?y=2")
        resp = conn.getresponse()
        page = ok_echo(resp.status, resp.getheaders(), resp.read())
        assert page.param_dict["QUERY_STRING"] == "y=2"
    finally:
        conn.close()
    assert_clean_log(web)
