#!/usr/bin/python3
"""fpmd side-by-side benchmark: fpmd, spawn-fcgi + libfcgi, php-fpm, nginx.

Run it as contrib/bench/run.sh (which execs this with /usr/bin/python3).
Everything it starts lives in a private temp dir, listens on free loopback
ports (or Unix sockets there), and is stopped by pid on exit, whatever the
exit.  It installs nothing: a missing tool is an error that names its package.
cgi.sh, preload.sh, reload.sh and scale.sh import it for its helpers.

Knobs (environment): DUR, WARM, N, CONC, TRANSPORT, TARGETS, FPMD_BIN,
NGINX_WORKERS, KEEP_TMP, ROUNDS.  See README.md.
"""

import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(HERE, "_out")
URI = "/echo?a=1&b=two"
SCRIPT = "/var/www/html/echo"  # SCRIPT_FILENAME for fpmd and libfcgi
CFLAGS = ["-std=c11", "-O2", "-Wall", "-Wextra"]


def env_num(name, default, lo, hi, kind=int, prog="bench"):
    """Environment variable NAME (DEFAULT when unset) as a KIND (int or
    float) from LO to HI; anything else exits with a message that starts
    with PROG."""
    raw = os.environ.get(name, str(default))
    try:
        v = kind(raw)
    except ValueError:
        sys.exit(f"{prog}: {name}={raw!r} is not a "
                 f"{'whole number' if kind is int else 'number'}")
    if not lo <= v <= hi:
        sys.exit(f"{prog}: {name}={v} is outside {lo}..{hi}")
    return v


def env_int(name, default, lo, hi, prog="bench"):
    """env_num() for a whole number."""
    return env_num(name, default, lo, hi, int, prog)


DUR = env_int("DUR", 10, 1, 600)
WARM = env_int("WARM", 2, 0, 60)
ROUNDS = env_int("ROUNDS", 2, 1, 50)
# Each (target, mode) is measured in ROUNDS runs, in A B C, C B A order, to
# cancel the drift of a shared machine; wrk takes whole seconds.
PER = max(1, DUR // ROUNDS)
N = env_int("N", 4, 1, 64)
CONC = env_int("CONC", 16, 1, 1024)
NGINX_WORKERS = os.environ.get("NGINX_WORKERS", "1")
TRANSPORT = os.environ.get("TRANSPORT", "tcp")
TARGETS = os.environ.get("TARGETS", "fpmd libfcgi php-fpm").split()
KEEP_TMP = os.environ.get("KEEP_TMP", "0") == "1"
FPMD_BIN = os.environ.get("FPMD_BIN", os.path.join(REPO, "src", "fpmd"))
# The test handlers, built by `make check` (reload.sh and scale.sh).
BUILDDIR = os.environ.get("FPMD_BUILDDIR", REPO)
SLOW_SO = os.path.join(BUILDDIR, "tests", "handlers", ".libs", "slow.so")
PHP_FPM = "/usr/sbin/php-fpm8.2"
# The comm of a plugin pool's template process, a child of the master
# beside the workers.
TEMPLATE_COMM = "fpmd-template"
IS_ROOT = os.geteuid() == 0
# Every pool drops to the same unprivileged user when we are root.
RUN_USER, RUN_GROUP = "nobody", "nogroup"

LABELS = {"fpmd": "fpmd", "libfcgi": "spawn-fcgi+libfcgi",
          "php-fpm": "php-fpm8.2", "ceiling": "nginx return 200"}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Procs:
    """Every process we started, by pid, stopped in reverse order."""

    def __init__(self):
        self.started = []   # (name, pid, Popen or None)

    def add(self, name, pid, popen=None):
        self.started.append((name, pid, popen))

    def stop_all(self):
        """TERM each started pid (a master stops its own workers: fpmd and
        php-fpm are judged on that too), wait up to 5 s for them and the
        children they had, then KILL whatever of them is left, and reap."""
        victims = []
        for name, pid, _ in reversed(self.started):
            victims.append(pid)
            victims.extend(descendants(pid))
        for name, pid, _ in reversed(self.started):
            try:
                os.kill(pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            reap()
            if not any(alive(p) for p in victims):
                break
            time.sleep(0.05)
        for pid in victims:
            if alive(pid):
                log(f"bench: pid {pid} ignored SIGTERM for 5 s: SIGKILL")
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and any(map(alive, victims)):
            reap()
            time.sleep(0.05)
        reap()
        self.started = []


def children(pid):
    """PID's children, from /proc; [] once it is gone."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def descendants(pid):
    """PID's children, their children, and so on."""
    out, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        out += kids
        todo += kids
    return out


def pool_children(master):
    """(template pids, worker pids): the children of fpmd MASTER, told
    apart by their comm."""
    tmpl = []
    kids = children(master)
    for pid in kids:
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == TEMPLATE_COMM:
                    tmpl.append(pid)
        except OSError:
            pass
    return tmpl, sorted(set(kids) - set(tmpl))


def workers(master):
    """The worker pids of fpmd or php-fpm MASTER: its children but a
    template."""
    return pool_children(master)[1]


def alive(pid):
    """Whether PID exists and is not a zombie (a zombie child of ours
    counts as gone once reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(cond, timeout, what, step=0.05):
    """Poll COND every STEP seconds until it is true; after TIMEOUT
    seconds, RuntimeError naming WHAT.  COND may raise to give up early."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for "
                               f"{what}")
        time.sleep(step)


def reap():
    """Collect every exited child, ours and the orphans we adopted."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def become_subreaper():
    """spawn-fcgi forks its children and exits: as a subreaper we adopt
    them (instead of pid 1), so we can reap them and none is left behind."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_CHILD_SUBREAPER = 36
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except OSError:
        pass


def need(tool, package):
    path = shutil.which(tool) or (tool if os.access(tool, os.X_OK) else None)
    if path is None:
        sys.exit(f"bench: {tool} not found: install {package} "
                 f"(the setup script installs it; this run installs nothing)")
    return path


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def last_lines(path, lines=20):
    """The last LINES lines of file PATH; "" when it cannot be read."""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def tail(paths, lines=15):
    """last_lines() of each non-empty file of PATHS, under a "--- PATH"
    line."""
    return "".join(f"--- {path}\n" + last_lines(path, lines)
                   for path in paths
                   if path and os.path.exists(path) and
                   os.path.getsize(path) > 0)


def wait_listening(addr, what, proc=None, logs=(), timeout=15.0):
    """Poll until addr (('127.0.0.1', port) or a path) accepts a connection;
    fail at once if proc exits first, else after timeout seconds."""
    deadline = time.monotonic() + timeout
    fam = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} "
                               f"before listening on {addr}\n{tail(logs)}")
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            try:
                s.connect(addr)
                return
            except OSError:
                pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} is not listening on {addr} after "
                       f"{timeout:.0f} s\n{tail(logs)}")


def cpu_sample():
    """The machine's CPU time so far, (total, idle + iowait), in ticks."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v), v[3] + v[4]


def cpu_share(a, b):
    """Share of the CPU time between samples A and B that was not idle."""
    return 1.0 - (b[1] - a[1]) / max(1, b[0] - a[0])


def cpu_busy(seconds=1.0):
    """Share of the machine's CPU time not idle over a short sample: other
    work on this shared machine skews every figure of the run."""
    a = cpu_sample()
    time.sleep(seconds)
    return cpu_share(a, cpu_sample())


def pss_kb(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def make_tmpdir(prefix):
    """A new temp dir that the pools' user (nobody when we are root) may
    enter."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    os.chmod(tmp, 0o755)
    return tmp


def drop_tmpdir(prog, tmp, ok):
    """After a run: TMP removed if the run went well and KEEP_TMP is not
    set; else kept, and said so."""
    if ok and not KEEP_TMP:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        log(f"{prog}: logs and configs kept in {tmp}")


def guarded(prog, tmp, stop, body, errors=(RuntimeError, OSError,
                                           subprocess.TimeoutExpired)):
    """A script's run: BODY() with its expected ERRORS logged, then, come
    what may, STOP() (everything it started, by pid) and TMP dropped (kept
    when the run failed).  Returns the exit status: 0 when BODY ran
    through."""
    ok = False
    try:
        body()
        ok = True
    except errors as e:
        log(f"{prog}: {e}")
    finally:
        stop()
        drop_tmpdir(prog, tmp, ok)
    return 0 if ok else 1


def need_fpmd(prog, binary=None):
    """Exits with how to get one unless BINARY (FPMD_BIN) runs."""
    binary = binary or FPMD_BIN
    if not os.access(binary, os.X_OK):
        sys.exit(f"{prog}: fpmd not found at {binary}: build it "
                 f"(autoreconf -fi && ./configure && make) or set FPMD_BIN")


def exit_on_signals(prog=None):
    """SIGINT, SIGTERM and SIGHUP raise SystemExit(128 + signo), so that
    the caller's finally clauses stop what it started; with PROG, that is
    logged first."""
    def on_signal(signum, frame):
        if prog:
            log(f"{prog}: {signal.Signals(signum).name}: stopping "
                f"everything")
        raise SystemExit(128 + signum)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)


def write_fpmd_conf(path, pidfile, errlog, listen, pool, top=None):
    """An fpmd config in PATH, replaced whole (a reload never reads half
    of one): PIDFILE, ERRLOG, log_level notice and the global directives
    of TOP (a dict); pool www on LISTEN (host:port, or a socket path:
    then mode 0666), as nobody when we are root, with the directives of
    POOL (a dict, in order).  Values go in as given (quote them as
    fpmd.conf(5) wants); a dict value is a section (env, handler.options)
    whose values are quoted here."""
    lines = [f'pid = "{pidfile}"', f'error_log = "{errlog}"',
             "log_level = notice"]
    lines += [f"{k} = {v}" for k, v in (top or {}).items()]
    lines += ["pool www {", f'    listen = "{listen}"']
    if listen.startswith("/"):
        lines.append('    listen.mode = "0666"')
    lines.append("    listen.backlog = 511")
    if IS_ROOT:
        lines += [f"    user = {RUN_USER}", f"    group = {RUN_GROUP}"]
    for k, v in pool.items():
        if isinstance(v, dict):
            lines.append(f"    {k} {{")
            lines += [f'        {kk} = "{vv}"' for kk, vv in v.items()]
            lines.append("    }")
        else:
            lines.append(f"    {k} = {v}")
    lines.append("}")
    with open(path + ".new", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(path + ".new", path)


def write_php_fpm_conf(path, pidfile, errlog, listen, pool):
    """A php-fpm config in PATH: in the foreground, PIDFILE, ERRLOG; pool
    www on LISTEN (host:port, or a socket path: then mode 0666), as
    nobody when we are root, with the directives of POOL (a dict, in
    order)."""
    mode = "listen.mode = 0666\n" if listen.startswith("/") else ""
    user = f"user = {RUN_USER}\ngroup = {RUN_GROUP}\n" if IS_ROOT else ""
    body = "".join(f"{k} = {v}\n" for k, v in pool.items())
    with open(path, "w") as f:
        f.write(f"[global]\n"
                f"pid = {pidfile}\n"
                f"error_log = {errlog}\n"
                f"daemonize = no\n"
                f"[www]\n"
                f"listen = {listen}\n{mode}"
                f"listen.backlog = 511\n{user}{body}")


def php_fpm_argv(conf, *extensions):
    """php-fpm8.2 on CONF in the foreground.  -n: no php.ini, so nothing
    from the host leaks in; then what a production php-fpm has: opcache
    (a script is compiled once), and the extensions named (posix.so)."""
    argv = [PHP_FPM, "-n", "-y", conf, "-F",
            "-d", "zend_extension=opcache.so", "-d", "opcache.enable=1",
            "-d", "expose_php=0"]
    for ext in extensions:
        argv += ["-d", f"extension={ext}"]
    if IS_ROOT:
        argv.append("-R")
    return argv


# reload.sh's and scale.sh's PHP page: sleeps ?ms=N milliseconds, then
# says which worker answered.
PAGE_PHP = ("<?php\nif (($ms = (int)($_GET['ms'] ?? 0)) > 0)\n"
            "    usleep($ms * 1000);\n"
            "header('Content-Type: text/plain');\n"
            "echo 'pid ', getmypid(), \"\\n\";\n")


def write_page_php(path):
    with open(path, "w") as f:
        f.write(PAGE_PHP)
    os.chmod(path, 0o644)


class Run:
    """What one run of reload.sh or scale.sh starts, by Popen, each
    process's output in a file of the temp dir TMP; each script adds its
    servers and how it stops them."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []         # Popen, in start order

    def path(self, name):
        return os.path.join(self.tmp, name)

    def spawn(self, argv, out):
        with open(self.path(out), "ab") as f:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f,
                                 stderr=subprocess.STDOUT, cwd=self.tmp,
                                 start_new_session=True)
        self.procs.append(p)
        return p


def build():
    os.makedirs(OUT, exist_ok=True)
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        sys.exit("bench: no C compiler (cc): install gcc")
    if not os.path.exists("/usr/include/fcgiapp.h"):
        sys.exit("bench: /usr/include/fcgiapp.h not found: install libfcgi-dev")
    load = os.path.join(OUT, "fcgi-load")
    echo = os.path.join(OUT, "libfcgi-echo")
    for cmd in ([cc, *CFLAGS, "-pthread", "-o", load,
                 os.path.join(HERE, "fcgi-load.c")],
                [cc, *CFLAGS, "-o", echo,
                 os.path.join(HERE, "libfcgi-echo.c"), "-lfcgi"]):
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0 or r.stderr.strip():
            sys.exit(f"bench: build failed or warned: {' '.join(cmd)}\n"
                     f"{r.stderr}")
    # The pools run as nobody: let them reach their binary.
    if IS_ROOT:
        os.chmod(OUT, 0o755)
    return load, echo


class Bench:
    def __init__(self, tmp, load, echo, targets=None):
        self.tmp = tmp
        self.load = load
        self.echo = echo
        # The FastCGI servers behind nginx (cgi.sh passes its own).
        self.targets = list(targets or TARGETS)
        self.procs = Procs()
        self.fcgi = {}       # target -> address string for fcgi-load
        self.nginx_port = {}  # target -> http port
        self.pids = {}       # target -> master pid, or list of pids
        self.script = {t: SCRIPT for t in self.targets}
        self.results = []   # one per (target, mode), rounds combined
        self.rounds = []    # one per run

    # -- addresses -----------------------------------------------------

    def listen_addr(self, name):
        """(fcgi-load/nginx address, python connect address)."""
        if TRANSPORT == "unix":
            path = os.path.join(self.tmp, f"{name}.sock")
            return path, path
        port = free_port()
        return f"127.0.0.1:{port}", ("127.0.0.1", port)

    def spawn(self, name, argv, logname, **kw):
        logf = os.path.join(self.tmp, logname)
        with open(logf, "ab") as out:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, cwd=self.tmp,
                                 start_new_session=True, **kw)
        self.procs.add(name, p.pid, p)
        return p, logf

    # -- the servers ---------------------------------------------------

    def start_fpmd(self, name="fpmd", handler="echo", options=None,
                   binary=None, extra=None):
        """An fpmd (FPMD_BIN, or BINARY) with one pool of N static workers
        running HANDLER, with handler.options OPTIONS (a dict), as target
        NAME.  EXTRA, a dict of pool directives to values, adds to or
        overrides these ({"process.dumpable": "yes"})."""
        addr, caddr = self.listen_addr(name)
        pool = {"pm": "static", "pm.max_children": N, "pm.max_requests": 0,
                "handler": handler}
        if options:
            pool["handler.options"] = options
        pool.update(extra or {})
        conf = os.path.join(self.tmp, f"{name}.conf")
        errlog = os.path.join(self.tmp, f"{name}-error.log")
        write_fpmd_conf(conf, f"{self.tmp}/{name}.pid", errlog, addr, pool)
        p, logf = self.spawn(name, [binary or FPMD_BIN, "-F", "-c", conf],
                             f"{name}.out")
        wait_listening(caddr, name, p, (logf, errlog))
        self.wait_children(p.pid, N, name)
        self.fcgi[name] = addr
        self.pids[name] = p.pid

    def start_libfcgi(self):
        self.start_spawn_fcgi("libfcgi", [self.echo, "www"])

    def start_spawn_fcgi(self, name, program):
        """spawn-fcgi -F N forking N copies of PROGRAM (an argv), as
        target NAME."""
        spawn = need("spawn-fcgi", "spawn-fcgi")
        addr, caddr = self.listen_addr(name)
        pidfile = os.path.join(self.tmp, f"{name}-spawn-fcgi.pid")
        argv = [spawn, "-F", str(N), "-d", "/", "-P", pidfile]
        if TRANSPORT == "unix":
            argv += ["-s", addr, "-M", "0666"]
        else:
            host, port = addr.rsplit(":", 1)
            argv += ["-a", host, "-p", port]
        if IS_ROOT:
            argv += ["-u", RUN_USER, "-g", RUN_GROUP]
        # No -n: with -n spawn-fcgi execs the program itself, so -F is moot
        # and one process serves.  Without it, it forks N children and exits.
        argv += ["--", *program]
        logf = os.path.join(self.tmp, f"{name}-spawn-fcgi.out")
        with open(logf, "wb") as out:
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out,
                               stderr=subprocess.STDOUT, cwd=self.tmp,
                               timeout=30)
        pids = []
        if os.path.exists(pidfile):
            with open(pidfile) as f:
                pids = [int(x) for x in f.read().split()]
        for pid in pids:
            self.procs.add(name, pid)
        if r.returncode != 0 or len(pids) != N:
            with open(logf, errors="replace") as f:
                raise RuntimeError(f"spawn-fcgi failed ({r.returncode}):\n"
                                   f"{f.read()}")
        wait_listening(caddr, f"spawn-fcgi/{name}", logs=(logf,))
        self.fcgi[name] = addr
        self.pids[name] = pids

    def start_php_fpm(self):
        need(PHP_FPM, "php8.2-fpm")
        addr, caddr = self.listen_addr("php-fpm")
        script = os.path.join(self.tmp, "echo.php")
        shutil.copy(os.path.join(HERE, "echo.php"), script)
        os.chmod(script, 0o644)
        self.script["php-fpm"] = script
        conf = os.path.join(self.tmp, "php-fpm.conf")
        errlog = os.path.join(self.tmp, "php-fpm-error.log")
        write_php_fpm_conf(conf, f"{self.tmp}/php-fpm.pid", errlog, addr,
                           {"pm": "static", "pm.max_children": N,
                            "pm.max_requests": 0})
        # posix for the uid/gid lines of the echo page.
        p, logf = self.spawn("php-fpm", php_fpm_argv(conf, "posix.so"),
                             "php-fpm.out")
        wait_listening(caddr, "php-fpm", p, (logf, errlog))
        self.wait_children(p.pid, N, "php-fpm")
        self.fcgi["php-fpm"] = addr
        self.pids["php-fpm"] = p.pid

    def wait_children(self, pid, n, what, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(descendants(pid)) >= n:
                return
            time.sleep(0.05)
        raise RuntimeError(f"{what}: fewer than {n} workers after {timeout} s")

    def nginx_conf(self, ceiling_body):
        tmp = self.tmp
        lines = [
            f"worker_processes {NGINX_WORKERS};",
            f"pid {tmp}/nginx.pid;",
            f"error_log {tmp}/nginx-error.log warn;",
            "daemon off;",
            "master_process on;",
        ]
        if IS_ROOT:
            lines.append(f"user {RUN_USER} {RUN_GROUP};")
        lines += [
            "events { worker_connections 4096; }",
            "http {",
            "    access_log off;",
            "    keepalive_requests 10000000;",
            "    keepalive_timeout 60s;",
            f"    client_body_temp_path {tmp}/nginx-body;",
            f"    fastcgi_temp_path {tmp}/nginx-fastcgi;",
            f"    proxy_temp_path {tmp}/nginx-proxy;",
            f"    uwsgi_temp_path {tmp}/nginx-uwsgi;",
            f"    scgi_temp_path {tmp}/nginx-scgi;",
        ]
        for t in self.targets:
            addr = self.fcgi[t]
            up = f"unix:{addr}" if TRANSPORT == "unix" else addr
            script = self.script[t]
            lines += [
                "    server {",
                f"        listen 127.0.0.1:{self.nginx_port[t]};",
                "        server_name localhost;",
                f"        root {os.path.dirname(script)};",
                "        location / {",
                # Debian's /etc/nginx/fastcgi_params, inline.
                "            fastcgi_param QUERY_STRING $query_string;",
                "            fastcgi_param REQUEST_METHOD $request_method;",
                "            fastcgi_param CONTENT_TYPE $content_type;",
                "            fastcgi_param CONTENT_LENGTH $content_length;",
                "            fastcgi_param SCRIPT_NAME $fastcgi_script_name;",
                "            fastcgi_param REQUEST_URI $request_uri;",
                "            fastcgi_param DOCUMENT_URI $document_uri;",
                "            fastcgi_param DOCUMENT_ROOT $document_root;",
                "            fastcgi_param SERVER_PROTOCOL $server_protocol;",
                "            fastcgi_param REQUEST_SCHEME $scheme;",
                "            fastcgi_param HTTPS $https if_not_empty;",
                "            fastcgi_param GATEWAY_INTERFACE CGI/1.1;",
                "            fastcgi_param SERVER_SOFTWARE nginx/$nginx_version;",
                "            fastcgi_param REMOTE_ADDR $remote_addr;",
                "            fastcgi_param REMOTE_PORT $remote_port;",
                "            fastcgi_param REMOTE_USER $remote_user;",
                "            fastcgi_param SERVER_ADDR $server_addr;",
                "            fastcgi_param SERVER_PORT $server_port;",
                "            fastcgi_param SERVER_NAME $server_name;",
                "            fastcgi_param REDIRECT_STATUS 200;",
                f"            fastcgi_param SCRIPT_FILENAME {script};",
                f"            fastcgi_pass {up};",
                "        }",
                "    }",
            ]
        lines += [
            "    server {",
            f"        listen 127.0.0.1:{self.nginx_port['ceiling']};",
            "        location / {",
            "            default_type text/plain;",
            "            charset utf-8;",
            f'            return 200 "{ceiling_body}";',
            "        }",
            "    }",
            "}",
        ]
        with open(os.path.join(tmp, "nginx.conf"), "w") as f:
            f.write("\n".join(lines) + "\n")

    def start_nginx(self):
        nginx = need("nginx", "nginx")
        for t in self.targets + ["ceiling"]:
            self.nginx_port[t] = free_port()
        # The ceiling's body must be as long as what the FastCGI servers
        # send through nginx; that is only known once nginx runs, so start
        # with a stand-in and reload (HUP) once it is measured.
        self.nginx_conf("x")
        conf = os.path.join(self.tmp, "nginx.conf")
        errlog = os.path.join(self.tmp, "nginx-error.log")
        r = subprocess.run([nginx, "-t", "-q", "-p", self.tmp, "-c", conf,
                            "-e", errlog], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"nginx -t failed:\n{r.stderr}")
        p, _ = self.spawn("nginx", [nginx, "-p", self.tmp, "-c", conf,
                                    "-e", errlog], "nginx.out")
        for t in self.targets + ["ceiling"]:
            wait_listening(("127.0.0.1", self.nginx_port[t]), "nginx", p,
                           (errlog,))
        self.pids["nginx"] = p.pid

        ref = "fpmd" if "fpmd" in self.targets else self.targets[0]
        size = len(self.http_body(ref))
        # Lines of 63 'x' and a newline: no quote, no '$', no escape.
        body = ("x" * 63 + "\\n") * (size // 64) + "x" * (size % 64)
        old_workers = set(descendants(p.pid))
        self.nginx_conf(body)
        os.kill(p.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            kids = set(descendants(p.pid))
            if (len(self.http_body("ceiling")) == size and kids and
                    not kids & old_workers):
                return
            time.sleep(0.1)
        raise RuntimeError("nginx did not reload the ceiling body in 10 s")

    def http_body(self, target):
        """GET the benchmark URL through nginx; the body as bytes."""
        port = self.nginx_port[target]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(f"GET {URI} HTTP/1.1\r\nHost: localhost\r\n"
                      f"Connection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if b" 200 " not in status + b" ":
            raise RuntimeError(f"{target} through nginx answered "
                               f"{status.decode(errors='replace')!r}:\n"
                               f"{data[:600].decode(errors='replace')}")
        if b"chunked" in head.lower():
            body = dechunk(body)
        return body

    # -- measuring -----------------------------------------------------

    def run_wrk(self, target, dur, warm):
        wrk = need("wrk", "wrk")
        url = f"http://127.0.0.1:{self.nginx_port[target]}{URI}"
        if warm:
            subprocess.run([wrk, "-t2", "-c16", f"-d{warm}s", url],
                           capture_output=True, timeout=warm + 30)
        r = subprocess.run([wrk, "--latency", "-t2", "-c16", f"-d{dur}s", url],
                           capture_output=True, text=True, timeout=dur + 60)
        if r.returncode != 0:
            raise RuntimeError(f"wrk failed on {target}:\n{r.stdout}{r.stderr}")
        return parse_wrk(r.stdout)

    def run_load(self, target, keep, dur, warm):
        conc = N if keep else CONC
        argv = [self.load, "-q", "-c", str(conc), "-d", str(dur),
                "-w", str(warm), "-k" if keep else "-N",
                "-s", self.script[target], "-u", URI, self.fcgi[target]]
        r = subprocess.run(argv, capture_output=True, text=True,
                           timeout=dur + warm + 60)
        line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
        res = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if "rps" not in res:
            raise RuntimeError(f"fcgi-load failed on {target}:\n"
                               f"{r.stdout}{r.stderr}")
        return {"rps": float(res["rps"]), "p50_us": int(res["p50_us"]),
                "p99_us": int(res["p99_us"]), "errors": int(res["errors"]),
                "requests": int(res["requests"]),
                "stuck_ms": int(res.get("oldest_unfinished_ms", 0)),
                "bytes": int(res.get("resp_bytes", 0)), "conc": conc}

    def measure(self, target, mode, rnd):
        """One round of one (target, mode); the warm-up comes before the
        first round only."""
        warm = WARM if rnd == 0 else 0
        log(f"bench: round {rnd + 1}/{ROUNDS} {LABELS[target]:<20} "
            f"{mode:<10} ...")
        if mode == "nginx":
            res = self.run_wrk(target, PER, warm)
            res["conc"] = 16
        else:
            res = self.run_load(target, mode == "keep-conn", PER, warm)
        res.update(target=target, mode=mode, round=rnd + 1)
        self.rounds.append(res)

    def measure_all(self):
        for mode in ("nginx", "new-conn", "keep-conn"):
            order = (["ceiling"] if mode == "nginx" else []) + TARGETS
            for rnd in range(ROUNDS):
                for t in (order if rnd % 2 == 0 else order[::-1]):
                    self.measure(t, mode, rnd)
            for t in order:
                self.results.append(combine(
                    [r for r in self.rounds if (r["target"], r["mode"]) ==
                     (t, mode)]))

    def memory(self):
        rows = []

        def one(label, pid):
            rows.append((label, pid, pss_kb(pid)))

        for key in ("fpmd", "libfcgi", "php-fpm", "nginx"):
            if key not in self.pids:
                continue
            if key == "libfcgi":
                one("libfcgi-echo (spawn-fcgi child)", self.pids[key][0])
                continue
            one(f"{key} master", self.pids[key])
            kids = descendants(self.pids[key])
            if kids:
                one(f"{key} worker", kids[0])
        return rows


def combine(runs):
    """Rounds of equal length: mean req/s and percentiles, summed errors,
    and the spread (max - min) / mean of req/s, to show the noise."""
    rps = [r["rps"] for r in runs]
    out = dict(runs[0])
    del out["round"]
    out["rps"] = sum(rps) / len(rps)
    out["spread"] = (max(rps) - min(rps)) / out["rps"] if out["rps"] else 0.0
    for key in ("p50_us", "p99_us"):
        out[key] = int(sum(r[key] for r in runs) / len(runs))
    for key in ("errors", "requests"):
        out[key] = sum(r[key] for r in runs)
    out["stuck_ms"] = max(r.get("stuck_ms", 0) for r in runs)
    out["rounds_rps"] = rps
    return out


def dechunk(body):
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2:]
    return out


def to_us(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        return None
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6, "m": 6e7}[m.group(2)]


def parse_wrk(out):
    res = {"errors": 0}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    res["rps"] = float(m.group(1))
    for pct, key in (("50", "p50_us"), ("99", "p99_us")):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        res[key] = int(to_us(m.group(1))) if m else 0
    m = re.search(r"(\d+) requests in", out)
    res["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        res["errors"] += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                  r"timeout (\d+)", out)
    if m:
        res["errors"] += sum(int(x) for x in m.groups())
    return res


def fmt_us(us):
    return f"{us / 1000:.2f}ms" if us >= 1000 else f"{us}us"


def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "-"


def report(bench, mem_idle, mem_after, busy):
    res = bench.results
    by = {(r["target"], r["mode"]): r for r in res}
    ceiling = by.get(("ceiling", "nginx"), {}).get("rps")
    print()
    print(f"fpmd benchmark: N={N} workers each (pm=static), {TRANSPORT}, "
          f"{ROUNDS}x{PER}s per measurement (ABBA order) after {WARM}s "
          f"warm-up, "
          f"nginx worker_processes {NGINX_WORKERS}, {os.cpu_count()} CPUs")
    print("  nginx: wrk -t2 -c16 through nginx (nginx opens a new FastCGI "
          "connection per request)")
    print(f"  new-conn/keep-conn: fcgi-load straight to the FastCGI socket, "
          f"c={CONC} / c={N}")
    print("  req/s: mean of the rounds; +-: half their range, in % of the mean")
    print(f"  CPU busy before the run (other work): {busy:.0%}" +
          ("  <- the machine is busy: figures are noisy" if busy > 0.2 else ""))
    print()
    hdr = (f"{'target':<20} {'mode':<10} {'conc':>4} {'req/s':>10} {'+-':>4} "
           f"{'p50':>9} {'p99':>9} {'errors':>7} {'x ceiling':>9} "
           f"{'x libfcgi':>9} {'x php-fpm':>9}")
    print(hdr)
    print("-" * len(hdr))
    for r in res:
        lib = by.get(("libfcgi", r["mode"]), {}).get("rps")
        php = by.get(("php-fpm", r["mode"]), {}).get("rps")
        xc = ratio(r["rps"], ceiling) if r["mode"] == "nginx" else ""
        xl = ratio(r["rps"], lib) if r["target"] not in ("ceiling",) else ""
        xp = ratio(r["rps"], php) if r["target"] not in ("ceiling",) else ""
        err = str(r["errors"]) + ("!" if r.get("stuck_ms", 0) >= 1000 else "")
        print(f"{LABELS[r['target']]:<20} {r['mode']:<10} {r['conc']:>4} "
              f"{r['rps']:>10.0f} {r['spread'] * 50:>3.0f}% "
              f"{fmt_us(r['p50_us']):>9} "
              f"{fmt_us(r['p99_us']):>9} {err:>7} {xc:>9} {xl:>9} {xp:>9}")
    print()
    print("ratios (req/s):")
    for mode in ("nginx", "new-conn", "keep-conn"):
        f = by.get(("fpmd", mode), {}).get("rps")
        lib = by.get(("libfcgi", mode), {}).get("rps")
        php = by.get(("php-fpm", mode), {}).get("rps")
        parts = []
        if mode == "nginx":
            parts += [f"fpmd/ceiling {ratio(f, ceiling)}",
                      f"libfcgi/ceiling {ratio(lib, ceiling)}",
                      f"php-fpm/ceiling {ratio(php, ceiling)}"]
        parts += [f"fpmd/libfcgi {ratio(f, lib)}",
                  f"fpmd/php-fpm {ratio(f, php)}"]
        print(f"  {mode:<10} " + ", ".join(parts))
    print()
    print("memory, PSS in KiB (/proc/PID/smaps_rollup): idle before the load, "
          "idle after it")
    after = {pid: kb for _, pid, kb in mem_after}
    for label, pid, kb in mem_idle:
        kb2 = after.get(pid)
        print(f"  {label:<34} pid {pid:<8} {kb if kb is not None else 'n/a':>7}"
              f" {kb2 if kb2 is not None else 'gone':>7}")
    sizes = {r["target"]: r.get("bytes") for r in res if r.get("bytes")}
    if sizes:
        print()
        print("FastCGI STDOUT bytes per response (fcgi-load): " +
              ", ".join(f"{LABELS[t]} {b}" for t, b in sizes.items()))
    if any(r.get("stuck_ms", 0) >= 1000 for r in res):
        print("! a request was still unanswered after 1 s or more when the "
              "run ended: a starved connection")
    path = os.path.join(OUT, "last-run.json")
    with open(path, "w") as f:
        json.dump({"N": N, "DUR": DUR, "WARM": WARM, "CONC": CONC,
                   "ROUNDS": ROUNDS, "rounds": bench.rounds,
                   "transport": TRANSPORT, "cpu_busy_before": busy,
                   "results": res,
                   "pss_idle_kb": mem_idle, "pss_after_kb": mem_after},
                  f, indent=1)
    print(f"\n(raw figures: {path})")


def main():
    for t in TARGETS:
        if t not in ("fpmd", "libfcgi", "php-fpm"):
            sys.exit(f"bench: unknown target {t!r} in TARGETS "
                     f"(fpmd libfcgi php-fpm)")
    if TRANSPORT not in ("tcp", "unix"):
        sys.exit("bench: TRANSPORT must be tcp or unix")
    need("nginx", "nginx")
    need("wrk", "wrk")
    if "libfcgi" in TARGETS:
        need("spawn-fcgi", "spawn-fcgi")
    if "php-fpm" in TARGETS:
        need(PHP_FPM, "php8.2-fpm")
    if "fpmd" in TARGETS and not os.access(FPMD_BIN, os.X_OK):
        sys.exit(f"bench: fpmd not found at {FPMD_BIN}: build it "
                 f"(autoreconf -fi && ./configure && make) or set FPMD_BIN; "
                 f"TARGETS='libfcgi php-fpm' runs without it")
    become_subreaper()
    busy = cpu_busy()
    if busy > 0.2:
        log(f"bench: the CPUs are {busy:.0%} busy before the run: "
            f"the figures will be noisy")
    tmp = make_tmpdir("fpmd-bench.")
    load, echo = build()
    bench = Bench(tmp, load, echo)
    exit_on_signals("bench")
    n_meas = 1 + len(TARGETS) * 3
    log(f"bench: {n_meas} measurements of {ROUNDS}x{PER}s after {WARM}s "
        f"warm-up: about {n_meas * (ROUNDS * PER + WARM) + 10}s; "
        f"temp dir {tmp}")

    def body():
        starters = {"fpmd": bench.start_fpmd, "libfcgi": bench.start_libfcgi,
                    "php-fpm": bench.start_php_fpm}
        for t in TARGETS:
            starters[t]()
        bench.start_nginx()
        time.sleep(0.5)
        mem_idle = bench.memory()
        bench.measure_all()
        time.sleep(1)
        mem_after = bench.memory()
        report(bench, mem_idle, mem_after, busy)

    return guarded("bench", tmp, bench.procs.stop_all, body,
                   (RuntimeError, subprocess.TimeoutExpired))


if __name__ == "__main__":
    sys.exit(main())
