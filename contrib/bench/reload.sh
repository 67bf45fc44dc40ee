#!/bin/sh
# Reloads under load, side by side: fpmd (SIGHUP, the config alternating so
# that every reload replaces the pool) and php-fpm8.2 (SIGUSR2, its default
# process_control_timeout = 0), each behind the same private nginx under the
# same wrk load.  Counts what the clients saw (wrk's non-2xx responses and
# socket errors) and the requests in flight that a reload killed (nginx's
# upstream errors).  See README.md ("Reloads under load").
#
#   contrib/bench/reload.sh                   # 10 reloads 1 s apart, ~30 s
#   RELOADS=20 INTERVAL=0.5 PAGE_MS=50 KEEP_CONN=1 contrib/bench/reload.sh
#
# The program is the Python below (stdin of /usr/bin/python3); it imports
# bench.py for the helpers (processes by pid, the fpmd and php-fpm configs,
# the temp dir).
exec /usr/bin/python3 - "$0" "$@" <<'PYTHON'
import functools
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(sys.argv[1]))
sys.path.insert(0, HERE)
import bench  # noqa: E402
from bench import (BUILDDIR, FPMD_BIN, IS_ROOT, PHP_FPM,  # noqa: E402
                   RUN_GROUP, RUN_USER, SLOW_SO, alive, descendants,
                   free_port, last_lines, log, wait_until, workers)

env_num = functools.partial(bench.env_num, prog="reload")


def die(msg):
    sys.exit(f"reload: {msg}")


RELOADS = env_num("RELOADS", 10, 1, 1000)
INTERVAL = env_num("INTERVAL", 1.0, 0.05, 60.0, float)
N = bench.N                   # workers (4)
CONC = bench.CONC             # wrk's connections (16)
THREADS = env_num("THREADS", 2, 1, 16)
PAGE_MS = env_num("PAGE_MS", 0, 0, 10000)
KEEP_CONN = os.environ.get("KEEP_CONN", "0") == "1"
TRANSPORT = bench.TRANSPORT
TARGETS = os.environ.get("TARGETS", "fpmd php-fpm").split()
URI = f"/page?ms={PAGE_MS}"
LABEL = {"fpmd": "fpmd", "php-fpm": "php-fpm8.2"}
SIGNAL = {"fpmd": "HUP", "php-fpm": "USR2"}


def need(tool, package):
    path = shutil.which(tool) or (tool if os.access(tool, os.X_OK) else None)
    if path is None:
        die(f"{tool} not found: install {package} (this script installs "
            f"nothing)")
    return path


class Run(bench.Run):
    """Everything one run starts, in its own temp dir, stopped by pid."""

    def __init__(self, tmp):
        super().__init__(tmp)
        self.addr = {}          # target -> FastCGI address (nginx syntax)
        self.port = {}          # target -> nginx port
        self.errlog = {}        # target -> the server's error log
        self.master = {}        # target -> master pid

    def listen_on(self, name):
        if TRANSPORT == "unix":
            return self.path(f"{name}.sock")
        return f"127.0.0.1:{free_port()}"

    def wait_serving(self, target, p):
        addr = self.addr[target]

        def up():
            if p.poll() is not None:
                raise RuntimeError(f"{target} exited ({p.returncode}):\n"
                                   f"{last_lines(self.errlog[target])}")
            fam = socket.AF_UNIX if addr.startswith("/") else socket.AF_INET
            where = addr if addr.startswith("/") else \
                ("127.0.0.1", int(addr.rsplit(":", 1)[1]))
            with socket.socket(fam) as s:
                try:
                    s.connect(where)
                except OSError:
                    return False
            return len(workers(p.pid)) >= N
        wait_until(up, 15, f"{target} to listen with {N} workers")

    # -- fpmd: two configs that differ only in an env value, so that each
    # reload makes a new generation of the pool.
    def fpmd_conf(self, gen):
        handler = f'"{SLOW_SO}"' if PAGE_MS else "echo"
        bench.write_fpmd_conf(
            self.path("fpmd.conf"), self.path("fpmd.pid"),
            self.errlog["fpmd"], self.addr["fpmd"],
            {"pm": "static", "pm.max_children": N, "handler": handler,
             "env": {"GENERATION": gen}},
            top={"process_control_timeout": "10s"})

    def start_fpmd(self):
        self.addr["fpmd"] = self.listen_on("fpmd")
        self.errlog["fpmd"] = self.path("fpmd-error.log")
        self.fpmd_conf("a")
        p = self.spawn([FPMD_BIN, "-F", "-c", self.path("fpmd.conf")],
                       "fpmd.out")
        self.master["fpmd"] = p.pid
        self.wait_serving("fpmd", p)

    def start_php_fpm(self):
        self.addr["php-fpm"] = self.listen_on("php-fpm")
        self.errlog["php-fpm"] = self.path("php-fpm-error.log")
        bench.write_page_php(self.path("page.php"))
        # process_control_timeout is left at its default (0).
        bench.write_php_fpm_conf(
            self.path("php-fpm.conf"), self.path("php-fpm.pid"),
            self.errlog["php-fpm"], self.addr["php-fpm"],
            {"pm": "static", "pm.max_children": N, "pm.max_requests": 0})
        argv = bench.php_fpm_argv(self.path("php-fpm.conf"))
        p = self.spawn(argv, "php-fpm.out")
        self.master["php-fpm"] = p.pid
        self.wait_serving("php-fpm", p)

    def start_nginx(self):
        lines = ["worker_processes 1;", f"pid {self.path('nginx.pid')};",
                 f"error_log {self.path('nginx-error.log')} warn;",
                 "daemon off;", "master_process on;"]
        if IS_ROOT:
            lines.append(f"user {RUN_USER} {RUN_GROUP};")
        lines += ["events { worker_connections 4096; }", "http {",
                  "    access_log off;",
                  "    keepalive_requests 10000000;"]
        lines += [f"    {k}_temp_path {self.path('nginx-' + k)};"
                  for k in ("client_body", "fastcgi", "proxy", "uwsgi",
                            "scgi")]
        for t in TARGETS:
            self.port[t] = free_port()
            addr = self.addr[t]
            up = f"unix:{addr}" if addr.startswith("/") else addr
            if KEEP_CONN:
                lines += [f"    upstream {t.replace('-', '_')} {{",
                          f"        server {up};", "        keepalive 8;",
                          "    }"]
                up = t.replace("-", "_")
            lines += [
                "    server {",
                f"        listen 127.0.0.1:{self.port[t]};",
                "        location / {",
                "            include /etc/nginx/fastcgi_params;",
                f"            fastcgi_param SCRIPT_FILENAME "
                f"{self.path('page.php')};",
                f"            fastcgi_pass {up};",
                "            fastcgi_keep_conn on;" if KEEP_CONN else "",
                "        }",
                "    }"]
        lines.append("}")
        with open(self.path("nginx.conf"), "w") as f:
            f.write("\n".join(l for l in lines if l) + "\n")
        p = self.spawn([need("nginx", "nginx"), "-p", self.tmp + "/", "-c",
                        self.path("nginx.conf"), "-e",
                        self.path("nginx-error.log")], "nginx.out")

        def up():
            if p.poll() is not None:
                raise RuntimeError(
                    f"nginx exited:\n"
                    f"{last_lines(self.path('nginx-error.log'))}"
                    f"{last_lines(self.path('nginx.out'))}")
            for t in TARGETS:
                try:
                    socket.create_connection(("127.0.0.1", self.port[t]),
                                             1).close()
                except OSError:
                    return False
            return True
        wait_until(up, 15, "nginx to listen")

    def get(self, target):
        """One request through nginx: the status line and body."""
        with socket.create_connection(("127.0.0.1", self.port[target]),
                                      5) as s:
            s.sendall(f"GET {URI} HTTP/1.1\r\nHost: localhost\r\n"
                      f"Connection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return data.split(b"\r\n", 1)[0].decode(errors="replace"), data

    def stop_all(self):
        """TERM every started process (masters stop their workers), wait
        up to 5 s for them and their children, KILL what is left."""
        victims = []
        for p in reversed(self.procs):
            victims += [p.pid] + descendants(p.pid)
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(map(alive, victims)):
            for p in self.procs:
                p.poll()
            time.sleep(0.05)
        for pid in victims:
            if alive(pid):
                log(f"reload: pid {pid} ignored SIGTERM for 5 s: SIGKILL")
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.procs = []


def parse_wrk(out):
    r = {"requests": 0, "non2xx": 0, "sockerr": 0, "rps": 0.0,
         "max": "-", "p99": "-"}
    m = re.search(r"(\d+) requests in", out)
    if not m:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    r["requests"] = int(m.group(1))
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    r["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    r["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                  r"timeout (\d+)", out)
    if m:
        r["sockerr"] = sum(int(x) for x in m.groups())
        r["sockerr_detail"] = m.group(0)
    m = re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", out, re.M)
    r["max"] = m.group(1) if m else "-"
    m = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    r["p99"] = m.group(1) if m else "-"
    return r


# nginx's error lines for a FastCGI peer, by what happened to the request.
UPSTREAM_KINDS = [
    ("killed", r"prematurely closed connection while reading response|"
               r"recv\(\) failed .* while reading response header"),
    ("truncated", r"while reading upstream"),
    ("send", r"while sending request to upstream"),
    ("connect", r"connect\(\) failed|no live upstreams"),
    ("timeout", r"upstream timed out"),
]


def nginx_errors(run, target, since):
    """{kind: count} of nginx's upstream errors for TARGET's port, in the
    nginx error log after byte offset SINCE."""
    out = {k: 0 for k, _ in UPSTREAM_KINDS}
    out["other"] = 0
    with open(run.path("nginx-error.log"), errors="replace") as f:
        f.seek(since)
        text = f.read()
    for line in text.splitlines():
        if "[error]" not in line and "[crit]" not in line:
            continue
        if f'host: "127.0.0.1:{run.port[target]}"' not in line:
            continue
        for kind, rx in UPSTREAM_KINDS:
            if re.search(rx, line):
                out[kind] += 1
                break
        else:
            out["other"] += 1
    return out


def reload_once(run, target, i):
    if target == "fpmd":
        run.fpmd_conf("b" if i % 2 == 0 else "a")
        os.kill(run.master["fpmd"], signal.SIGHUP)
    else:
        os.kill(run.master["php-fpm"], signal.SIGUSR2)


def count_reloads(run, target):
    """Reloads the server's own log says it carried out."""
    text = open(run.errlog[target], errors="replace").read()
    if target == "fpmd":
        return len(re.findall(r"reloaded: 1 new or replaced", text))
    return len(re.findall(r"Reloading in progress", text))


def measure(run, target):
    wrk = need("wrk", "wrk")
    secs = math.ceil(1 + RELOADS * INTERVAL + 1)
    url = f"http://127.0.0.1:{run.port[target]}{URI}"
    since = os.path.getsize(run.path("nginx-error.log"))
    before = count_reloads(run, target)
    log(f"reload: {LABEL[target]}: wrk -t{THREADS} -c{CONC} -d{secs}s, "
        f"{RELOADS} x SIG{SIGNAL[target]} every {INTERVAL:g} s ...")
    w = subprocess.Popen([wrk, "--latency", f"-t{THREADS}", f"-c{CONC}",
                          f"-d{secs}s", url], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True,
                         stdin=subprocess.DEVNULL)
    try:
        start = time.monotonic() + 1.0
        for i in range(RELOADS):
            delay = start + i * INTERVAL - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            reload_once(run, target, i)
        out, _ = w.communicate(timeout=secs + 60)
    finally:
        if w.poll() is None:
            w.kill()
            w.wait()
    res = parse_wrk(out)
    res["reloads"] = count_reloads(run, target) - before
    res["upstream"] = nginx_errors(run, target, since)
    res["wrk"] = out
    # The server still answers, with the full set of workers.
    wait_until(lambda: len(workers(run.master[target])) >= N, 15,
               f"{target} to have {N} workers again")
    status, _ = run.get(target)
    if " 200 " not in status + " ":
        raise RuntimeError(f"{target} answers {status!r} after the reloads")
    return res


def killed(u):
    return u["killed"] + u["truncated"] + u["send"]


def report(results):
    mode = "on (upstream keepalive 8)" if KEEP_CONN else "off"
    page = f"sleeps {PAGE_MS} ms" if PAGE_MS else "a few hundred bytes"
    print(f"\nreloads under load: wrk -t{THREADS} -c{CONC} through nginx "
          f"(fastcgi_keep_conn {mode}), {TRANSPORT}, {N} workers, page "
          f"{page};\n{RELOADS} reloads {INTERVAL:g} s apart (php-fpm: "
          f"process_control_timeout = 0, its default)\n")
    head = (f"{'target':<12} {'signal':<6} {'reloads':>7} {'requests':>9} "
            f"{'req/s':>8} {'non-2xx':>7} {'sock-err':>8} {'killed':>6} "
            f"{'refused':>7} {'p99':>8} {'max':>8}")
    print(head)
    print("-" * len(head))
    for t, r in results.items():
        u = r["upstream"]
        print(f"{LABEL[t]:<12} {SIGNAL[t]:<6} {r['reloads']:>3}/{RELOADS:<3} "
              f"{r['requests']:>9} {r['rps']:>8.0f} {r['non2xx']:>7} "
              f"{r['sockerr']:>8} {killed(u):>6} "
              f"{u['connect']:>7} {r['p99']:>8} {r['max']:>8}")
    print()
    for t, r in results.items():
        u = r["upstream"]
        print(f"{LABEL[t]}: failed at the client {r['non2xx'] + r['sockerr']}"
              f" (non-2xx {r['non2xx']}, socket errors {r['sockerr']}); "
              f"requests in flight killed {killed(u)} (nginx: {u['killed']} "
              f"cut before the response header, {u['truncated']} after it "
              f"(a truncated 200), {u['send']} while being sent; also "
              f"{u['connect']} connect refused, {u['timeout']} timed out, "
              f"{u['other']} other)")
    print("\nkilled: requests nginx lost its FastCGI connection in the "
          "middle of (its error log: \"upstream prematurely\nclosed\", "
          "\"recv() failed\", \"readv() failed\", \"writev() failed\"); "
          "nginx answers 502 before the response\nheader, cuts the body "
          "after it, and retries only a request it can resend (not a POST) "
          "on a kept\nconnection it had cached.")


def main():
    for t in TARGETS:
        if t not in LABEL:
            die(f"unknown target {t!r} in TARGETS (fpmd php-fpm)")
    if TRANSPORT not in ("tcp", "unix"):
        die("TRANSPORT must be tcp or unix")
    need("nginx", "nginx")
    need("wrk", "wrk")
    if "php-fpm" in TARGETS:
        need(PHP_FPM, "php8.2-fpm")
    if "fpmd" in TARGETS and not os.access(FPMD_BIN, os.X_OK):
        die(f"fpmd not found at {FPMD_BIN}: build it or set FPMD_BIN")
    if "fpmd" in TARGETS and PAGE_MS and not os.path.exists(SLOW_SO):
        die(f"PAGE_MS needs the test handler {SLOW_SO}: run `make check` "
            f"in {BUILDDIR} (or set FPMD_BUILDDIR)")
    tmp = bench.make_tmpdir("fpmd-reload.")
    run = Run(tmp)
    bench.exit_on_signals()
    log(f"reload: temp dir {tmp}; about "
        f"{len(TARGETS) * (RELOADS * INTERVAL + 4) + 5:.0f} s")

    def body():
        starters = {"fpmd": run.start_fpmd, "php-fpm": run.start_php_fpm}
        for t in TARGETS:
            starters[t]()
        run.start_nginx()
        for t in TARGETS:
            status, body = run.get(t)
            if " 200 " not in status + " ":
                raise RuntimeError(f"{t} through nginx answers {status!r}:"
                                   f"\n{body[:400]!r}")
        report({t: measure(run, t) for t in TARGETS})

    return bench.guarded("reload", tmp, run.stop_all, body)


sys.exit(main())
PYTHON
