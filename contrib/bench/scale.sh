#!/bin/sh
# How fast a pool gets the workers its load needs, fpmd beside php-fpm8.2:
#  1. a dynamic pool (max_children 32, start 2, min_spare 1, max_spare 3),
#     idle, then a step to 32 concurrent 3 s requests: the worker processes
#     are counted every 10 ms; how long until there are 32?
#  2. an ondemand pool with no worker: the first request (which waits for a
#     fork) against a warm one.
# Requests go straight to each FastCGI socket (no nginx in between).  See
# README.md ("Scaling up").
#
#   contrib/bench/scale.sh                      # about 40 s
#   ROUNDS=3 COLD_ROUNDS=10 contrib/bench/scale.sh
#
# The program is the Python below (stdin of /usr/bin/python3); it imports
# bench.py for the helpers (processes by pid, the fpmd and php-fpm configs,
# the temp dir).
exec /usr/bin/python3 - "$0" "$@" <<'PYTHON'
import functools
import os
import selectors
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(sys.argv[1]))
sys.path.insert(0, HERE)
import bench  # noqa: E402
from bench import (BUILDDIR, FPMD_BIN, PHP_FPM, SLOW_SO,  # noqa: E402
                   alive, children, last_lines, log, workers)

env_int = functools.partial(bench.env_int, prog="scale")
# scale.sh polls every 20 ms, not bench.py's 50.
wait_until = functools.partial(bench.wait_until, step=0.02)


def die(msg):
    sys.exit(f"scale: {msg}")


STEP = env_int("STEP", 32, 2, 256)        # requests at once = max_children
SLEEP_MS = env_int("SLEEP_MS", 3000, 100, 60000)
ROUNDS = env_int("ROUNDS", 1, 1, 10)
COLD_ROUNDS = env_int("COLD_ROUNDS", 5, 1, 50)
WARM_REQS = env_int("WARM_REQS", 20, 1, 1000)
SAMPLE_MS = env_int("SAMPLE_MS", 10, 1, 1000)
TARGETS = os.environ.get("TARGETS", "fpmd php-fpm").split()
LABEL = {"fpmd": "fpmd", "php-fpm": "php-fpm8.2"}
IDLE_TIMEOUT_S = 2      # ondemand pools: pm.process_idle_timeout


# -- a minimal FastCGI client: one request per connection, FCGI_KEEP_CONN
# clear, so the server closes when it is done.

def _record(rtype, content):
    pad = (8 - len(content) % 8) % 8
    return struct.pack("!BBHHBx", 1, rtype, 1, len(content), pad) + \
        content + b"\0" * pad


def _pair(name, value):
    def ln(n):
        return bytes([n]) if n < 128 else struct.pack("!I", n | 0x80000000)
    return ln(len(name)) + ln(len(value)) + name + value


def fcgi_request(script, query):
    params = [("REQUEST_METHOD", "GET"), ("SCRIPT_FILENAME", script),
              ("SCRIPT_NAME", "/page"), ("REQUEST_URI", f"/page?{query}"),
              ("QUERY_STRING", query), ("SERVER_PROTOCOL", "HTTP/1.1"),
              ("GATEWAY_INTERFACE", "CGI/1.1"), ("REMOTE_ADDR", "127.0.0.1")]
    body = b"".join(_pair(k.encode(), v.encode()) for k, v in params)
    return (_record(1, struct.pack("!HB5x", 1, 0)) + _record(4, body) +
            _record(4, b"") + _record(5, b""))


def fcgi_ok(data):
    """True when DATA holds STDOUT with a 200 (or no Status) and an
    END_REQUEST with REQUEST_COMPLETE."""
    out, i, ended = b"", 0, False
    while i + 8 <= len(data):
        _, rtype, _, clen, pad = struct.unpack("!BBHHBx", data[i:i + 8])
        content = data[i + 8:i + 8 + clen]
        if rtype == 6:
            out += content
        elif rtype == 3:
            ended = len(content) == 8 and content[4] == 0
        i += 8 + clen + pad
    head = out.split(b"\r\n\r\n", 1)[0]
    return ended and b"Status: 5" not in head and b"Status: 4" not in head


def connect(addr):
    if isinstance(addr, str):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(60)
    s.connect(addr)
    return s


def one_request(addr, script, query):
    """One request; its latency in seconds (raises on a bad answer)."""
    t = time.monotonic()
    with connect(addr) as s:
        s.sendall(fcgi_request(script, query))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    dt = time.monotonic() - t
    if not fcgi_ok(data):
        raise RuntimeError(f"bad FastCGI answer: {data[:300]!r}")
    return dt


class Sampler(threading.Thread):
    """Counts the workers of master PID every SAMPLE_MS: `series` of
    (seconds since t0, count).  Its children but a plugin pool's
    template, which is there from the start: told apart once, so that a
    sample reads no more than the list of children."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.template = set(bench.pool_children(pid)[0])
        self.halt = threading.Event()
        self.series = []
        self.t0 = time.monotonic()

    def run(self):
        while not self.halt.is_set():
            kids = set(children(self.pid)) - self.template
            self.series.append((time.monotonic() - self.t0, len(kids)))
            self.halt.wait(SAMPLE_MS / 1000)

    def first_reaching(self, n):
        for t, c in self.series:
            if c >= n:
                return t
        return None


class Run(bench.Run):
    def start(self, target, pm):
        """Start TARGET with one pool of PM ("dynamic" or "ondemand") on a
        Unix socket; returns (Popen, address, SCRIPT_FILENAME)."""
        sock = self.path(f"{target}-{pm}.sock")
        errlog = self.path(f"{target}-{pm}-error.log")
        pidfile = self.path(f"{target}-{pm}.pid")
        conf = self.path(f"{target}-{pm}.conf")
        if pm == "dynamic":
            pmconf = {"pm": "dynamic", "pm.max_children": STEP,
                      "pm.start_servers": 2, "pm.min_spare_servers": 1,
                      "pm.max_spare_servers": 3}
        else:
            pmconf = {"pm": "ondemand", "pm.max_children": 4,
                      "pm.process_idle_timeout": f"{IDLE_TIMEOUT_S}s"}
        if target == "fpmd":
            bench.write_fpmd_conf(conf, pidfile, errlog, sock,
                                  {**pmconf, "handler": f'"{SLOW_SO}"'})
            argv = [FPMD_BIN, "-F", "-c", conf]
            script = "/page"
        else:
            script = self.path("page.php")
            bench.write_page_php(script)
            bench.write_php_fpm_conf(conf, pidfile, errlog, sock, pmconf)
            argv = bench.php_fpm_argv(conf)
        p = self.spawn(argv, f"{target}-{pm}.out")

        def up():
            if p.poll() is not None:
                raise RuntimeError(
                    f"{target} exited ({p.returncode}):\n"
                    f"{last_lines(errlog)}"
                    f"{last_lines(self.path(f'{target}-{pm}.out'))}")
            try:
                connect(sock).close()
                return True
            except OSError:
                return False
        wait_until(up, 15, f"{target} to listen on {sock}")
        return p, sock, script

    def stop(self, p):
        kids = children(p.pid)
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            log(f"scale: pid {p.pid} ignored SIGTERM for 10 s: SIGKILL")
            p.kill()
            p.wait()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(map(alive, kids)):
            time.sleep(0.05)
        for pid in kids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in reversed(list(self.procs)):
            self.stop(p)


def step_round(run, target):
    p, sock, script = run.start(target, "dynamic")
    try:
        # Idle: start_servers workers, and no more coming.
        wait_until(lambda: len(workers(p.pid)) == 2, 15,
                   f"{target} to settle at 2 idle workers")
        time.sleep(0.5)
        if len(workers(p.pid)) != 2:
            raise RuntimeError(f"{target}: not 2 idle workers at rest")
        sampler = Sampler(p.pid)
        sampler.start()
        lat = step_requests(sock, script, f"ms={SLEEP_MS}", STEP)
        sampler.halt.set()
        sampler.join(5)
    finally:
        run.stop(p)
    failed = sum(1 for x in lat if x is None)
    ok = sorted(x for x in lat if x is not None)
    return {"reach": {n: sampler.first_reaching(n)
                      for n in (4, 8, 16, 24, STEP)},
            "most": max(c for _, c in sampler.series),
            "failed": failed,
            "first": ok[0] if ok else None,
            "median": statistics.median(ok) if ok else None,
            "last": ok[-1] if ok else None}


def step_requests(addr, script, query, n):
    """N connections opened and their requests sent at once (within a few
    ms); each request's latency in seconds, None for a failed one."""
    sel = selectors.DefaultSelector()
    req = fcgi_request(script, query)
    start = time.monotonic()
    conns = []
    for i in range(n):
        s = connect(addr)
        s.sendall(req)
        s.setblocking(False)
        conns.append([s, b"", None])
        sel.register(s, selectors.EVENT_READ, i)
    left = n
    deadline = start + 60 + SLEEP_MS / 1000
    while left and time.monotonic() < deadline:
        for key, _ in sel.select(1.0):
            c = conns[key.data]
            try:
                chunk = key.fileobj.recv(65536)
            except OSError:
                chunk = b""
            if chunk:
                c[1] += chunk
                continue
            sel.unregister(key.fileobj)
            key.fileobj.close()
            c[2] = time.monotonic() - start if fcgi_ok(c[1]) else None
            left -= 1
    for c in conns:
        c[0].close()
    return [c[2] for c in conns]


def cold_rounds(run, target):
    p, sock, script = run.start(target, "ondemand")
    cold, warm = [], []
    try:
        for _ in range(COLD_ROUNDS):
            wait_until(lambda: not workers(p.pid), IDLE_TIMEOUT_S + 15,
                       f"{target}: the ondemand pool to have no worker")
            cold.append(one_request(sock, script, "ms=0"))
            warm += [one_request(sock, script, "ms=0")
                     for _ in range(WARM_REQS)]
    finally:
        run.stop(p)
    return {"cold": cold, "warm": warm}


def ms(x):
    return "-" if x is None else f"{x * 1000:.0f} ms" if x >= 0.01 else \
        f"{x * 1000:.2f} ms"


def report(steps, colds):
    print(f"\n1. step from idle to {STEP} concurrent {SLEEP_MS} ms requests, "
          f"dynamic pool (max_children {STEP}, start 2, min_spare 1, "
          f"max_spare 3);\n   worker processes counted every {SAMPLE_MS} ms "
          f"from the first request sent; {ROUNDS} round(s), the median\n")
    head = (f"{'target':<12} " + " ".join(f"{'to ' + str(n):>8}"
                                          for n in (4, 8, 16, 24, STEP))
            + f" {'most':>5} {'first ok':>9} {'median':>9} {'last ok':>9}"
            f" {'failed':>6}")
    print(head)
    print("-" * len(head))
    for t, rounds in steps.items():
        def med(f):
            vals = [f(r) for r in rounds]
            vals = [v for v in vals if v is not None]
            return statistics.median(vals) if len(vals) == len(rounds) \
                else None
        cells = [ms(med(lambda r, n=n: r["reach"][n]))
                 for n in (4, 8, 16, 24, STEP)]
        print(f"{LABEL[t]:<12} " + " ".join(f"{c:>8}" for c in cells) +
              f" {max(r['most'] for r in rounds):>5}"
              f" {ms(med(lambda r: r['first'])):>9}"
              f" {ms(med(lambda r: r['median'])):>9}"
              f" {ms(med(lambda r: r['last'])):>9}"
              f" {sum(r['failed'] for r in rounds):>6}")
    print(f"\n   'to N': time until N worker processes exist ('-': never); "
          f"'first/median/last ok': when the\n   answers came, from the "
          f"step ({SLEEP_MS} ms is the floor); a request waits for a worker "
          f"to take it.")
    print(f"\n2. ondemand pool (max_children 4, process_idle_timeout "
          f"{IDLE_TIMEOUT_S}s), no worker: first request vs warm ones, "
          f"{COLD_ROUNDS} rounds of 1 cold + {WARM_REQS} warm\n")
    head = (f"{'target':<12} {'cold median':>12} {'cold min':>9} "
            f"{'cold max':>9} {'warm median':>12} {'warm p90':>9} "
            f"{'cold/warm':>9}")
    print(head)
    print("-" * len(head))
    for t, r in colds.items():
        cm = statistics.median(r["cold"])
        wm = statistics.median(r["warm"])
        w90 = sorted(r["warm"])[int(len(r["warm"]) * 0.9) - 1]
        print(f"{LABEL[t]:<12} {ms(cm):>12} {ms(min(r['cold'])):>9} "
              f"{ms(max(r['cold'])):>9} {ms(wm):>12} {ms(w90):>9} "
              f"{cm / wm:>8.1f}x")
    print("\n   one request on a new FastCGI connection (Unix socket), "
          "measured by this script: connect, send, read to the close.")


def main():
    for t in TARGETS:
        if t not in LABEL:
            die(f"unknown target {t!r} in TARGETS (fpmd php-fpm)")
    if "php-fpm" in TARGETS and not os.access(PHP_FPM, os.X_OK):
        die(f"{PHP_FPM} not found: install php8.2-fpm (this script "
            f"installs nothing)")
    if "fpmd" in TARGETS:
        if not os.access(FPMD_BIN, os.X_OK):
            die(f"fpmd not found at {FPMD_BIN}: build it or set FPMD_BIN")
        if not os.path.exists(SLOW_SO):
            die(f"the test handler {SLOW_SO} is missing: run `make check` "
                f"in {BUILDDIR} (or set FPMD_BUILDDIR)")
    tmp = bench.make_tmpdir("fpmd-scale.")
    run = Run(tmp)
    bench.exit_on_signals()
    log(f"scale: temp dir {tmp}")

    def body():
        steps = {t: [] for t in TARGETS}
        for i in range(ROUNDS):
            for t in (TARGETS if i % 2 == 0 else TARGETS[::-1]):
                log(f"scale: round {i + 1}/{ROUNDS}: {LABEL[t]}: step to "
                    f"{STEP} x {SLEEP_MS} ms ...")
                steps[t].append(step_round(run, t))
        colds = {}
        for t in TARGETS:
            log(f"scale: {LABEL[t]}: ondemand cold start x {COLD_ROUNDS} "
                f"...")
            colds[t] = cold_rounds(run, t)
        report(steps, colds)

    return bench.guarded("scale", tmp, run.stop_all, body,
                         (RuntimeError, OSError))


sys.exit(main())
PYTHON
