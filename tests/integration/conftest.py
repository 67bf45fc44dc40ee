"""Fixtures and helpers for fpmd's integration tests.

Every test runs in its own temporary directory (pytest's tmp_path) with
ports picked free.  Processes are started by the `fpmd` and `nginx` factory
fixtures, which stop every process they started by pid at teardown and
fail the test when one would not stop or left orphans behind.  Waiting is
always a condition polled with a deadline (wait_for), never a bare sleep.

Test modules import the plain helpers from here:
    from conftest import Endpoint, pool_conf, parse_echo, wait_for, ...
"""

import atexit
import fcntl
import grp
import http.client
import os
import pwd
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import fcgi_client

REPO = Path(__file__).resolve().parents[2]
NGINX_BIN = os.environ.get("NGINX_BIN", "/usr/sbin/nginx")
FASTCGI_PARAMS = "/etc/nginx/fastcgi_params"
READY_LINE = "ready to handle connections"
IS_ROOT = os.geteuid() == 0

# Deadlines, generous because CI machines are small and shared.
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0
CMD_TIMEOUT = 30.0


# ------------------------------------------------------------------ waiting

def wait_for(cond, timeout=10.0, message=None, max_interval=0.1):
    """Poll cond() until it returns a true value and return that value.

    Raises AssertionError naming MESSAGE (or cond) once TIMEOUT seconds
    have passed.  The poll interval grows from 5 ms to MAX_INTERVAL
    (100 ms; smaller when the test measures how long something takes).
    """
    deadline = time.monotonic() + timeout
    interval = min(0.005, max_interval)
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            what = message or getattr(cond, "__name__", repr(cond))
            raise AssertionError(f"timed out after {timeout}s waiting for "
                                 f"{what}")
        time.sleep(interval)
        interval = min(interval * 2, max_interval)


# ------------------------------------------------------------ ports, paths

_ports_given = set()


def free_port(host="127.0.0.1"):
    """A TCP port that nothing listens on right now and that this session
    has not handed out before."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(100):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port
    raise RuntimeError("no free port found")


def ipv6_available():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@dataclass(frozen=True)
class Endpoint:
    """Where a pool listens, in the three spellings the tests need."""
    kind: str               # "tcp", "tcp6" or "unix"
    host: str = None
    port: int = None
    path: str = None

    @property
    def listen(self):
        """The value of the pool's listen directive."""
        if self.kind == "unix":
            return self.path
        if self.kind == "tcp6":
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    @property
    def client(self):
        """The address for fcgi_client.Connection."""
        if self.kind == "unix":
            return self.path
        return (self.host, self.port)

    @property
    def nginx(self):
        """The address for nginx's fastcgi_pass or upstream server."""
        if self.kind == "unix":
            return f"unix:{self.path}"
        return self.listen

    def accepts(self):
        """True when a connect() succeeds (the connection is closed at
        once, which a FastCGI server must take as a client that left)."""
        family, addr = fcgi_client.parse_address(self.client)
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(2.0)
            try:
                s.connect(addr)
                return True
            except OSError:
                return False


@pytest.fixture
def sockdir(tmp_path):
    """A directory for Unix sockets: tmp_path when its paths are short
    enough for sun_path (108 bytes), else a short private directory."""
    if len(str(tmp_path)) <= 80:
        yield tmp_path
        return
    short = tempfile.mkdtemp(prefix="fpmd-", dir="/tmp")
    try:
        yield Path(short)
    finally:
        shutil.rmtree(short, ignore_errors=True)


@pytest.fixture
def endpoint(sockdir):
    """Factory: endpoint("tcp" | "tcp6" | "unix", name="www")."""
    def make(kind, name="www"):
        if kind == "unix":
            return Endpoint("unix", path=str(sockdir / f"{name}.sock"))
        if kind == "tcp6":
            if not ipv6_available():
                pytest.skip("no IPv6 loopback")
            return Endpoint("tcp6", host="::1", port=free_port("::1"))
        if kind == "tcp":
            return Endpoint("tcp", host="127.0.0.1", port=free_port())
        raise ValueError(kind)
    return make


# ------------------------------------------------------------------ config

_BAREWORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class Raw(str):
    """A config value written verbatim (no quoting)."""


def conf_value(value):
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    value = str(value)
    if _BAREWORD.match(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _render_items(items, indent):
    lines = []
    pad = "    " * indent
    for key, value in items.items():
        if key.startswith("_") or value is None:
            continue
        if isinstance(value, dict):
            lines.append(f"{pad}{key} {{")
            lines += _render_items(value, indent + 1)
            lines.append(f"{pad}}}")
        else:
            lines.append(f"{pad}{key} = {conf_value(value)}")
    return lines


def render_conf(global_opts, pools):
    """libconfuse text: global directives, then one `pool NAME { }` per
    pool dict (its "name" key names it; keys starting with "_" and None
    values are skipped; dict values become sections, e.g. env)."""
    lines = _render_items(global_opts, 0)
    for p in pools:
        body = {k: v for k, v in p.items() if k != "name"}
        lines.append(f"pool {p['name']} {{")
        lines += _render_items(body, 1)
        lines.append("}")
    return "\n".join(lines) + "\n"


def nobody_group():
    return grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name


def pool_conf(listen, name="www", opts=None):
    """A pool dict for render_conf: a static echo pool of 4 workers on
    LISTEN (an Endpoint or a listen string).  When the suite runs as root
    the pool runs as nobody, as it would in production.  OPTS overrides any
    directive; None removes one."""
    conf = {"name": name,
            "listen": listen.listen if isinstance(listen, Endpoint)
            else listen,
            "pm": "static",
            "pm.max_children": 4,
            "handler": "echo"}
    if IS_ROOT:
        conf["user"] = "nobody"
        conf["group"] = nobody_group()
    conf.update(opts or {})
    if isinstance(listen, Endpoint):
        conf["_endpoint"] = listen
    return conf


# ------------------------------------------------------------------ /proc

def wait_tcp_listening(server, name, port, timeout=START_TIMEOUT):
    """Until SERVER (a managed process with running(), proc, log_tail()
    and children()) accepts on 127.0.0.1:PORT; fails at once, with its
    log, if it exits first.  Returns SERVER."""
    def listening():
        if not server.running():
            raise AssertionError(
                f"{name} exited with status {server.proc.returncode}:\n"
                f"{server.log_tail()}")
        try:
            socket.create_connection(("127.0.0.1", port), 2).close()
            return True
        except OSError:
            return False
    wait_for(listening, timeout, f"{name} to listen on {port}")
    server.children()
    return server


def proc_children(pid):
    """Pids of PID's children (of its main thread), [] once it is gone."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


# What a pool template calls itself (comm, in /proc/PID/comm).
TEMPLATE_COMM = "fpmd-template"


def proc_comm(pid):
    """PID's comm (its name in ps), or None when it does not exist."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except (FileNotFoundError, ProcessLookupError):
        return None


def proc_workers(pid):
    """The children of fpmd's master PID but its pool templates: its
    workers."""
    return [p for p in proc_children(pid) if proc_comm(p) != TEMPLATE_COMM]


def proc_stat(pid):
    """(state, ppid, starttime) of PID, or None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[19])


def same_process_alive(pid, starttime):
    """True when PID still names the process that started at STARTTIME
    and it is not a zombie."""
    st = proc_stat(pid)
    return st is not None and st[2] == starttime and st[0] != "Z"


def still_alive(started):
    """Of STARTED ({pid: start time}), the pids that still name the
    processes that were started then."""
    return [p for p, t in started.items() if same_process_alive(p, t)]


def kill_left(started):
    """Teardown: kills by pid whatever of STARTED still runs."""
    for pid in still_alive(started):
        os.kill(pid, signal.SIGKILL)


def wait_group_killed(proc, started, worker, pgid, since):
    """Until every process of STARTED is gone and fpmd PROC has logged
    that it killed process group PGID when WORKER died (after log mark
    SINCE)."""
    wait_for(lambda: not still_alive(started), 10,
             f"the program's group {list(started)} to die with its worker "
             f"{worker}")
    proc.wait_log(re.escape(f"child {worker} died running a program: "
                            f"killed its process group {pgid}"), since=since)


def wait_group_spared(proc, started, worker, survivor, since, workers=1):
    """Once WORKER's death is logged and the pool has its WORKERS again:
    SURVIVOR (of STARTED) lives on, and no process group was killed."""
    proc.wait_log(re.escape(f"child {worker} exited on signal 9"),
                  since=since)
    proc.wait_workers(workers, without=[worker])
    assert same_process_alive(survivor, started[survivor])
    assert "died running a program" not in proc.log_text[since:]


def proc_status_kb(pid):
    """The memory lines of /proc/PID/status in kB, e.g. {"VmRSS": 2048,
    "VmPeak": 9000, "VmHWM": 2100}; {} once the process is gone."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                name, _, rest = line.partition(":")
                rest = rest.split()
                if len(rest) == 2 and rest[1] == "kB":
                    out[name] = int(rest[0])
    except (FileNotFoundError, ProcessLookupError):
        return {}
    return out


def proc_net_tcp():
    """The rows of /proc/net/tcp and /proc/net/tcp6, each split into its
    columns (local address, remote address, state, queues, ..., inode)."""
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                rows = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            yield row.split()


def tcp_rx_queue(local_port, remote_port):
    """Receive-queue bytes of the TCP socket local_port <-> remote_port
    (from /proc/net/tcp{,6}), or None when there is no such socket."""
    for cols in proc_net_tcp():
        lport = int(cols[1].rsplit(":", 1)[1], 16)
        rport = int(cols[2].rsplit(":", 1)[1], 16)
        if lport == local_port and rport == remote_port:
            return int(cols[4].split(":")[1], 16)
    return None


def server_has_read_all(conn, server_port):
    """True when every byte sent on the TCP fcgi_client.Connection CONN has
    been acknowledged and read by the server process (its socket's receive
    queue is empty): the server is demonstrably working on the request."""
    outq = fcntl.ioctl(conn.sock, termios.TIOCOUTQ, b"\0\0\0\0")
    if int.from_bytes(outq, "little") != 0:
        return False
    return tcp_rx_queue(server_port, conn.local_address[1]) == 0


SIOCOUTQNSD = 0x894B     # linux/sockios.h: bytes not yet sent


def tcp_unread(sock):
    """Bytes that the peer process of the TCP socket SOCK (a loopback
    connection) has received but not read yet, asked of the kernel with
    one sock_diag lookup of the peer's socket (no scan of /proc/net/tcp,
    which holds every TIME_WAIT socket of the run); None when the kernel
    does not know that socket."""
    family = sock.family
    local, peer = sock.getsockname(), sock.getpeername()

    def addr(a):
        return socket.inet_pton(family, a[0]).ljust(16, b"\0")
    # inet_diag_req_v2 for the peer's socket: its source is our peer.
    req = (struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0,
                       0xFFFFFFFF)
           + struct.pack("!HH", peer[1], local[1]) + addr(peer) + addr(local)
           + struct.pack("=III", 0, 0xFFFFFFFF, 0xFFFFFFFF))
    msg = struct.pack("=IHHII", 16 + len(req), 20, 1, 1, 0) + req
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4) as nl:
        nl.settimeout(5.0)
        nl.sendto(msg, (0, 0))
        data = nl.recv(65536)
    _, mtype = struct.unpack_from("=IH", data)
    if mtype != 20:             # NLMSG_ERROR: no such socket
        return None
    # inet_diag_msg: 4 bytes, the 48-byte sockid, expires, then rqueue.
    return struct.unpack_from("=I", data, 16 + 4 + 48 + 4)[0]


def peer_has_read_all(conn):
    """True when the server process has read every byte sent so far on the
    fcgi_client.Connection CONN, TCP or Unix.  Unix: our send queue holds
    exactly the bytes the peer has not read.  TCP (loopback): nothing is
    left unsent and the server socket's receive queue is empty; unlike
    server_has_read_all it does not wait for ACKs, which the server's
    kernel may delay by 40 ms, and it asks sock_diag rather than scanning
    /proc/net/tcp."""
    if conn.sock.family == socket.AF_UNIX:
        outq = fcntl.ioctl(conn.sock, termios.TIOCOUTQ, b"\0\0\0\0")
        return int.from_bytes(outq, "little") == 0
    unsent = fcntl.ioctl(conn.sock, SIOCOUTQNSD, b"\0\0\0\0")
    if int.from_bytes(unsent, "little") != 0:
        return False
    return tcp_unread(conn.sock) == 0


# --------------------------------------------------------------- processes

class ManagedProcess:
    """A daemon started by a test and stopped by pid.

    Remembers every child it has been seen with (pid and start time), so
    that teardown can tell whether children outlived it.
    """

    name = "process"

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.proc = None
        self.stdout_path = self.workdir / f"{self.name}.stdout"
        self.stderr_path = self.workdir / f"{self.name}.stderr"
        self._children_seen = {}

    def _spawn(self, cmd, cwd=None, env=None):
        with open(self.stdout_path, "wb") as out, \
                open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                cwd=cwd or self.workdir, env=env, start_new_session=True)

    @property
    def pid(self):
        return self.proc.pid

    @property
    def returncode(self):
        return None if self.proc is None else self.proc.poll()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @staticmethod
    def _read(path):
        try:
            return Path(path).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def stdout_text(self):
        return self._read(self.stdout_path)

    @property
    def stderr_text(self):
        return self._read(self.stderr_path)

    def children(self):
        """Current child pids (and remember them for the orphan check)."""
        pids = proc_children(self.pid) if self.running() else []
        for pid in pids:
            st = proc_stat(pid)
            if st is not None:
                self._children_seen.setdefault(pid, st[2])
        return pids

    def signal(self, sig):
        os.kill(self.pid, sig)

    def wait_exit(self, timeout):
        """The exit status, or None if still running after TIMEOUT."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=None, timeout=STOP_TIMEOUT):
        """Send SIG (default TERM), wait up to TIMEOUT; return the exit
        status.  If it is still running, KILL it and raise AssertionError."""
        sig = signal.SIGTERM if sig is None else sig
        if not self.running():
            return self.proc.returncode
        self.children()
        self.signal(sig)
        rc = self.wait_exit(timeout)
        if rc is None:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"{self.name} (pid {self.pid}) still running {timeout}s after "
                f"{signal.Signals(sig).name}; killed")
        return rc

    def orphans(self, timeout=5.0):
        """Children seen earlier that outlive the exited parent past
        TIMEOUT; they are killed and returned."""
        def alive():
            return [p for p, t in self._children_seen.items()
                    if same_process_alive(p, t)]
        try:
            wait_for(lambda: not alive(), timeout)
            return []
        except AssertionError:
            left = alive()
            for p in left:
                os.kill(p, signal.SIGKILL)
            return left

    def log_tail(self):
        return ""

    def cleanup(self):
        """Teardown: stop by pid, then check for orphans.  Raises
        AssertionError describing what went wrong."""
        if self.proc is None:
            return
        problems = []
        try:
            self.stop(signal.SIGTERM)
        except AssertionError as e:
            problems.append(str(e))
        left = self.orphans()
        if left:
            problems.append(f"{self.name} (pid {self.pid}) left children "
                            f"{left} running after it exited; killed")
        tail = self.log_tail()
        if tail:
            print(f"--- {self.name} pid {self.pid} log (tail) ---\n{tail}")
        if problems:
            raise AssertionError("; ".join(problems))


def _tail(text, limit=6000):
    return text if len(text) <= limit else "...\n" + text[-limit:]


class FpmdProcess(ManagedProcess):
    """One fpmd master in the foreground (-F -c CONFIG).

    log_path is the error_log file of the config (None: error_log is
    stderr, captured in stderr_path).  endpoints are probed for accept()
    before the process counts as ready.
    """

    name = "fpmd"

    def __init__(self, binary, workdir, config_text, *, conf_name="fpmd.conf",
                 args=(), log_path=None, endpoints=(), cwd=None, env=None):
        super().__init__(workdir)
        self.binary = binary
        self.conf_path = self.workdir / conf_name
        self.conf_path.parent.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(config_text)
        self.log_path = Path(log_path) if log_path else None
        self.args = list(args)
        self.endpoints = list(endpoints)
        self.cwd = cwd
        self.env = env

    @property
    def command(self):
        return [self.binary, "-F", "-c", str(self.conf_path), *self.args]

    def start(self, timeout=START_TIMEOUT, wait=True):
        self._spawn(self.command, cwd=self.cwd, env=self.env)
        if wait:
            self.wait_ready(timeout)
        return self

    @property
    def log_text(self):
        if self.log_path is None:
            return self.stderr_text
        return self._read(self.log_path)

    def log_tail(self):
        text = self.log_text
        if self.log_path is not None and self.stderr_text:
            text += "\n--- stderr ---\n" + self.stderr_text
        return _tail(text)

    def wait_ready(self, timeout=START_TIMEOUT):
        """Until the log says READY_LINE and every endpoint accepts; fails
        at once, with the log, if the process exits meanwhile."""
        def ready():
            if not self.running():
                raise AssertionError(
                    f"fpmd exited with status {self.proc.returncode} before "
                    f"it was ready:\n{self.log_tail()}")
            return (READY_LINE in self.log_text
                    and all(ep.accepts() for ep in self.endpoints))
        wait_for(ready, timeout, f"fpmd to log '{READY_LINE}' and accept")
        self.children()

    def worker_pids(self):
        """Pids of the master's workers, sorted: its children but a pool
        template (a plugin's pool has one, named TEMPLATE_COMM)."""
        self.children()
        return sorted(proc_workers(self.pid)) if self.running() else []

    def template_pids(self):
        """Pids of the pool templates, sorted."""
        return sorted(p for p in self.children()
                      if proc_comm(p) == TEMPLATE_COMM)

    def wait_workers(self, count, timeout=10.0, without=()):
        """Until there are exactly COUNT workers, none of them in WITHOUT;
        returns their pids."""
        def check():
            pids = self.worker_pids()
            # A tuple, so that zero workers ([]) is a true value too.
            return ((pids,) if len(pids) == count
                    and not set(pids) & set(without) else None)
        return wait_for(check, timeout,
                        f"{count} workers (none of {list(without)})")[0]

    def log_mark(self):
        """A position in the log; pass it to wait_log to skip older text."""
        return len(self.log_text)

    def wait_log(self, pattern, timeout=10.0, since=0):
        """Until regex PATTERN matches the log after position SINCE; returns
        the match."""
        rx = re.compile(pattern)
        return wait_for(lambda: rx.search(self.log_text, since), timeout,
                        f"log line matching {pattern!r}")


class HttpClientMixin:
    """HTTP requests to a web server the test runs on 127.0.0.1:port."""

    def connection(self, timeout=30.0):
        """An HTTP/1.1 connection to it (kept alive by default)."""
        return http.client.HTTPConnection("127.0.0.1", self.port,
                                          timeout=timeout)

    def request(self, method, path, body=None, headers=None, conn=None):
        """One HTTP request; returns (status, headers, body).  With CONN the
        request goes over that kept connection."""
        own = conn is None
        conn = conn or self.connection()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            if own:
                conn.close()


class Nginx(HttpClientMixin, ManagedProcess):
    """A private nginx (daemon off, everything in its own directory)
    listening on 127.0.0.1:port and passing every request to UPSTREAM, an
    Endpoint.  keepalive=True adds `fastcgi_keep_conn on` and an upstream
    block with `keepalive 8`; location_extra is more directives for the
    location (e.g. "fastcgi_request_buffering off;")."""

    name = "nginx"

    def __init__(self, workdir, upstream, *, keepalive=False, port=None,
                 binary=NGINX_BIN, location_extra=""):
        base = Path(workdir) / "nginx"
        base.mkdir(parents=True, exist_ok=True)
        super().__init__(base)
        self.binary = binary
        self.upstream = upstream
        self.keepalive = keepalive
        self.location_extra = location_extra
        self.port = port or free_port()
        self.error_log = base / "error.log"
        self.conf_path = base / "nginx.conf"
        self.conf_path.write_text(self.render())

    def render(self):
        """nginx.conf: the process settings and an http block whose own
        part is http_body()."""
        d = self.workdir
        temps = "\n".join(
            f"    {kind}_temp_path {d / (kind + '_temp')};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        # Workers run as root when we are root, so that they can reach
        # sockets inside the test's private (0700) directory.
        user = "user root;\n" if IS_ROOT else ""
        return (
            f"{user}"
            "daemon off;\n"
            "master_process on;\n"
            "worker_processes 1;\n"
            f"pid {d / 'nginx.pid'};\n"
            f"error_log {self.error_log} notice;\n"
            "events { worker_connections 256; }\n"
            "http {\n"
            "    access_log off;\n"
            f"{temps}\n"
            "    client_max_body_size 64m;\n"
            "    keepalive_requests 100000;\n"
            f"{self.http_body()}"
            "}\n")

    def http_body(self):
        """The upstream (with keepalive) and the server passing every
        request to it."""
        if self.keepalive:
            upstream = (f"    upstream fpmd_backend {{\n"
                        f"        server {self.upstream.nginx};\n"
                        f"        keepalive 8;\n"
                        f"    }}\n")
            pass_to = ("            fastcgi_pass fpmd_backend;\n"
                       "            fastcgi_keep_conn on;\n")
        else:
            upstream = ""
            pass_to = f"            fastcgi_pass {self.upstream.nginx};\n"
        return (
            f"{upstream}"
            "    server {\n"
            f"        listen 127.0.0.1:{self.port};\n"
            "        server_name localhost;\n"
            "        location / {\n"
            f"            include {FASTCGI_PARAMS};\n"
            f"{pass_to}"
            "            fastcgi_read_timeout 30s;\n"
            + "".join(f"            {line.strip()}\n"
                      for line in self.location_extra.splitlines()
                      if line.strip()) +
            "        }\n"
            "    }\n")

    def start(self, timeout=START_TIMEOUT):
        self._spawn([self.binary, "-p", f"{self.workdir}/",
                     "-c", str(self.conf_path), "-e", str(self.error_log)])
        return wait_tcp_listening(self, "nginx", self.port, timeout)

    def log_tail(self):
        return _tail(self._read(self.error_log) + self.stderr_text)


# ------------------------------------------------------------- echo page

@dataclass
class EchoPage:
    """The echo handler's page: `fields` (role, pool, pid, uid, ...) and
    `params` ([(name, value)] in the order received)."""
    fields: dict
    params: list = field(default_factory=list)

    def _int(self, key):
        return int(self.fields[key])

    @property
    def pid(self):
        return self._int("pid")

    @property
    def uid(self):
        return self._int("uid")

    @property
    def gid(self):
        return self._int("gid")

    @property
    def requests(self):
        return self._int("requests")

    @property
    def stdin_bytes(self):
        return self._int("stdin_bytes")

    @property
    def param_dict(self):
        return dict(self.params)


def parse_echo(body):
    """Parse the echo page (see /work/notes/contract.md); raises ValueError,
    quoting the body, when it does not have that shape."""
    text = body.decode("utf-8", "surrogateescape") if isinstance(
        body, (bytes, bytearray)) else body
    lines = text.split("\n")
    if not lines or lines[0] != "fpmd echo" or lines[-1] != "":
        raise ValueError(f"not an echo page: {text[:500]!r}")
    fields, i = {}, 1
    while i < len(lines) - 1:
        key, sep, value = lines[i].partition(": ")
        if not sep:
            raise ValueError(f"echo line {i + 1} is not 'key: value': "
                             f"{lines[i]!r} in {text[:500]!r}")
        fields[key] = value
        i += 1
        if key == "params":
            break
    if "params" not in fields:
        raise ValueError(f"echo page without 'params:': {text[:500]!r}")
    n = int(fields["params"])
    rest = lines[i:-1]
    if len(rest) != n:
        raise ValueError(f"echo page says params: {n} but lists {len(rest)}:"
                         f" {text[:2000]!r}")
    params = []
    for line in rest:
        name, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"echo param line without '=': {line!r}")
        params.append((name, value))
    return EchoPage(fields, params)


def echo_request(address, params=None, stdin=b"", **kw):
    """One FastCGI request on a new connection; returns (Response,
    EchoPage) after checking it completed with a 200."""
    resp = fcgi_client.request(address, params or {}, stdin, **kw)
    check_ok(resp)
    return resp, parse_echo(resp.body)


def check_ok(resp):
    """Assert that a FastCGI Response is a complete 200 echo response."""
    assert resp.protocol_status == fcgi_client.REQUEST_COMPLETE, resp
    assert resp.app_status == 0, resp
    assert resp.status == 200, resp.stdout[:500]
    assert resp.header("Content-Type", "").startswith("text/plain"), \
        resp.headers


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def fpmd_bin():
    """The daemon under test: $FPMD_BIN, default <repo>/src/fpmd."""
    path = Path(os.environ.get("FPMD_BIN", REPO / "src" / "fpmd"))
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(f"fpmd binary {path} is missing or not an executable "
                    "file: build it (tests/integration/README.md) or set "
                    "FPMD_BIN", pytrace=False)
    return str(path)


@pytest.fixture
def fpmctl(fpmd_bin):
    """Runs fpmctl (next to the fpmd under test, or $FPMCTL_BIN):
    fpmctl(SOCKET, "status", "--json") -> CompletedProcess (text); with
    SOCKET None, fpmctl's default socket.  fpmctl.binary is its path."""
    binary = os.environ.get("FPMCTL_BIN",
                            str(Path(fpmd_bin).with_name("fpmctl")))
    if not os.access(binary, os.X_OK):
        pytest.fail(f"fpmctl binary {binary} is missing", pytrace=False)

    def run(sock, *args, timeout=CMD_TIMEOUT):
        argv = [binary] + (["-s", str(sock)] if sock is not None else [])
        return subprocess.run(argv + list(args), capture_output=True,
                              text=True, errors="replace", timeout=timeout,
                              stdin=subprocess.DEVNULL)
    run.binary = binary
    return run


_PUBLIC_DIR = None


def public_copy(path):
    """A copy of the plugin PATH that any user can read, for `handler =`.
    fpmd loads a plugin as the pool's user, never as root, so one under a
    private tmp_path (or a clone in a 0700 directory, as CI's) would not
    load.  Returns the copy's absolute path as a string."""
    global _PUBLIC_DIR
    if _PUBLIC_DIR is None:
        _PUBLIC_DIR = Path(tempfile.mkdtemp(prefix="fpmd-plugins-",
                                            dir="/tmp"))
        os.chmod(_PUBLIC_DIR, 0o755)
        atexit.register(shutil.rmtree, _PUBLIC_DIR, ignore_errors=True)
    d = Path(tempfile.mkdtemp(dir=_PUBLIC_DIR))
    os.chmod(d, 0o755)
    copy = d / Path(path).name
    shutil.copyfile(path, copy)
    os.chmod(copy, 0o755)
    return str(copy)


def built_plugin(name):
    """A test plugin of tests/handlers (a check_LTLIBRARY, built by `make
    check` in $FPMD_BUILDDIR, default the repository), as public_copy()
    gives it; tests that need one are skipped without it."""
    builddir = Path(os.environ.get("FPMD_BUILDDIR", REPO))
    path = builddir / "tests" / "handlers" / ".libs" / f"{name}.so"
    if not path.is_file():
        pytest.skip(f"test handler plugin {path} not built: run `make "
                    f"check` in {builddir} (or set FPMD_BUILDDIR)")
    return public_copy(path.resolve())


@pytest.fixture(scope="session")
def slow_handler():
    """The test handler plugin tests/handlers/slow.c (QUERY_STRING ms=N
    sleeps, crash=1 dies of SIGSEGV, exit=1 exits 3; the body says "pid
    N"), for `handler = PATH`."""
    return built_plugin("slow")


def run_fpmd(binary, *args, cwd=None, timeout=CMD_TIMEOUT):
    """Run the binary to completion (for -t, -T, -h, -v ...); returns the
    CompletedProcess with text stdout and stderr."""
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True,
                          text=True, errors="replace", timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def fpmd(fpmd_bin, tmp_path):
    """Factory that writes a config and starts fpmd; teardown stops each
    one by pid and fails the test if it would not stop or left workers.

        proc = fpmd([pool_conf(ep)])                    # rendered config
        proc = fpmd(config=TEXT, log_path=..., endpoints=[ep])
        proc = fpmd([...], start=False); proc.start(wait=False)

    With pools, the global section gets pid = <dir>/fpmd.pid, error_log =
    <dir>/error.log and log_level = notice, overridable by global_opts.
    """
    started = []

    def make(pools=None, *, config=None, global_opts=None, log_path=None,
             endpoints=None, args=(), start=True, workdir=None, cwd=None,
             conf_name="fpmd.conf", timeout=START_TIMEOUT):
        workdir = Path(workdir or tmp_path)
        workdir.mkdir(parents=True, exist_ok=True)
        if config is None:
            g = {"pid": str(workdir / "fpmd.pid"),
                 "error_log": str(workdir / "error.log"),
                 "log_level": "notice"}
            g.update(global_opts or {})
            config = render_conf(g, pools or [])
            if log_path is None and g["error_log"] != "stderr":
                log_path = g["error_log"]
        if endpoints is None:
            endpoints = [p["_endpoint"] for p in pools or []
                         if "_endpoint" in p]
        proc = FpmdProcess(fpmd_bin, workdir, config, conf_name=conf_name,
                           args=args, log_path=log_path, endpoints=endpoints,
                           cwd=cwd)
        started.append(proc)
        if start:
            proc.start(timeout)
        return proc

    yield make
    cleanup_all(started)


def cleanup_all(started):
    """Stops, last first, every process a fixture STARTED (their
    cleanup()), then fails the test with what each of them left wrong."""
    problems = []
    for proc in reversed(started):
        try:
            proc.cleanup()
        except AssertionError as e:
            problems.append(str(e))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def curl(port, path):
    """GET PATH from 127.0.0.1:PORT with curl; returns (exit code, HTTP
    status, body).  curl exits 18 when a body ends before its announced
    end (a chunked body without its last chunk): a truncated response."""
    if shutil.which("curl") is None:
        pytest.skip("curl missing")
    r = subprocess.run(["curl", "-sS", "--max-time", "30", "-o", "-",
                        "-w", "\n%{http_code}",
                        f"http://127.0.0.1:{port}{path}"],
                       capture_output=True, timeout=60)
    body, _, code = r.stdout.rpartition(b"\n")
    return r.returncode, int(code), body


def slow_params(query):
    """The params nginx would send for GET /slow?QUERY, for the slow test
    handler (slow_handler)."""
    return [("REQUEST_METHOD", "GET"),
            ("SCRIPT_FILENAME", "/srv/slow"),
            ("SCRIPT_NAME", "/slow"),
            ("REQUEST_URI", f"/slow?{query}" if query else "/slow"),
            ("QUERY_STRING", query)]


def slow_answer_pid(resp):
    """The worker pid in a complete 200 answer of the slow handler."""
    assert resp.protocol_status == fcgi_client.REQUEST_COMPLETE, resp
    assert resp.status == 200, resp.stdout[:300]
    m = re.fullmatch(rb"pid (\d+)\n", resp.body)
    assert m, resp.body[:300]
    return int(m.group(1))


@pytest.fixture
def nginx(tmp_path):
    """Factory: nginx(upstream_endpoint, keepalive=False, location_extra="")
    -> started Nginx; stopped by pid at teardown."""
    if not os.access(NGINX_BIN, os.X_OK):
        pytest.skip(f"{NGINX_BIN} not installed")
    started = []

    def make(upstream, *, keepalive=False, **kw):
        n = Nginx(tmp_path / f"n{len(started)}", upstream,
                  keepalive=keepalive, **kw)
        started.append(n)
        return n.start()

    yield make
    problems = []
    for n in reversed(started):
        try:
            n.cleanup()
        except AssertionError as e:
            problems.append(str(e))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
