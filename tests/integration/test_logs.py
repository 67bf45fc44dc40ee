"""Logs an operator can live with: the access log byte for byte, workers'
output through the master (long lines split at log_limit, whole and never
interleaved), reopening on SIGUSR1 and after logrotate without restarting
a worker, the slowlog without ptrace, per-pool error logs, syslog and the
journal.

The test handler tests/handlers/noisy.c writes what the query string asks
to its worker's stdout or stderr (see the top of that file).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

import fcgi_client
from conftest import (REPO, IS_ROOT, Raw, built_plugin, pool_conf,
                      render_conf, run_fpmd, wait_for)

FILLER = "0123456789abcdefghijklmnopqrstuvwxyz"


def filler(n):
    return (FILLER * (n // len(FILLER) + 1))[:n]


@pytest.fixture(scope="session")
def noisy_handler():
    """tests/handlers/noisy.c's plugin."""
    return built_plugin("noisy")


def noisy(ep, query, params=None, timeout=10.0):
    """One request to the noisy handler; returns (Response, worker pid)."""
    p = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/noisy",
         "REQUEST_URI": "/noisy?" + query, "QUERY_STRING": query}
    p.update(params or {})
    resp = fcgi_client.request(ep.client, p, b"", timeout=timeout)
    assert resp.protocol_status == fcgi_client.REQUEST_COMPLETE, resp
    m = re.search(rb"pid (\d+)", resp.body)
    assert m, resp.stdout[:300]
    return resp, int(m.group(1))


def said(text, pid, stream="stderr"):
    """The texts of the decorated lines of child PID, in order."""
    rx = re.compile(r'^\[[^]]+\] WARNING: \[pool \w+\] child %d said into '
                    r'%s: "(.*)"$' % (pid, stream), re.M)
    return rx.findall(text)


def catching(ep, handler, **opts):
    conf = {"handler": handler, "pm.max_children": 2,
            "catch_workers_output": True}
    conf.update(opts)
    return pool_conf(ep, opts=conf)


# ------------------------------------------------------------ access log

def local_dates(t0, t1, fmt):
    return {time.strftime(fmt, time.localtime(t)) for t in (t0, t1)}


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_access_log_renders_php_fpm_codes_byte_for_byte(
        fpmd, endpoint, noisy_handler, tmp_path, kind):
    ep = endpoint(kind)
    access = tmp_path / "access.log"
    fmt = ('%R %n %p %P "%m %r%Q%q" %s %l %f %u %{HTTP_X_TEST}e %{NOPE}e '
           '%{X-Noisy}o %{Content-Type}o %{X-None}o %{%Y-%m-%d}t %% '
           '%{%Y}T %q|%Q|')
    proc = fpmd([pool_conf(ep, opts={"handler": noisy_handler,
                                     "access.log": str(access),
                                     "access.format": fmt})])
    t0 = time.time()
    _, pid = noisy(ep, "status=404&tag=x", {
        "REQUEST_URI": "/app/x.cgi?status=404&tag=x",
        "SCRIPT_FILENAME": "/srv/app/x.cgi", "CONTENT_LENGTH": "0",
        "REMOTE_USER": "alice", "HTTP_X_TEST": "a\tb c"})
    # A worker writes its line after its answer: wait, so that another
    # worker's line for the next request cannot come first.
    wait_for(lambda: access.read_text().count("\n") == 1, 10,
             "the first access line")
    _, pid2 = noisy(ep, "", {"REQUEST_METHOD": "HEAD",
                             "REQUEST_URI": "/plain"})
    t1 = time.time()
    lines = wait_for(lambda: (lambda t: t if t.count("\n") >= 2 else None)(
        access.read_text()), 10, "two access lines").splitlines()
    peer = "127.0.0.1" if kind == "tcp" else "-"
    days = local_dates(t0, t1, "%Y-%m-%d")
    years = local_dates(t0, t1, "%Y")
    first = {f'{peer} www {pid} {proc.pid} "GET /app/x.cgi?status=404&tag=x" '
             f'404 0 /srv/app/x.cgi alice a\\x09b c - yes text/plain - {d} % '
             f'{y} status=404&tag=x|?|' for d in days for y in years}
    second = {f'{peer} www {pid2} {proc.pid} "HEAD /plain" 200 0 -  - - '
              f'yes text/plain - {d} % {y} ||' for d in days for y in years}
    assert lines[0] in first, lines[0]
    assert lines[1] in second, lines[1]


def test_access_log_times_durations_and_resources(fpmd, endpoint,
                                                  noisy_handler, tmp_path):
    ep = endpoint("tcp")
    access = tmp_path / "access.log"
    fmt = "%d %{milliseconds}d %{microseconds}d %C %{user}C %M %{kilo}M"
    fpmd([pool_conf(ep, opts={"handler": noisy_handler,
                              "access.log": str(access),
                              "access.format": fmt})])
    noisy(ep, "ms=300")
    line = wait_for(lambda: access.read_text(), 10, "an access line")
    m = re.fullmatch(r"(\d+\.\d{3}) (\d+\.\d{3}) (\d+) (\d+\.\d\d) "
                     r"(\d+\.\d\d) (\d+) (\d+)\n", line)
    assert m, line
    secs, ms, us = float(m[1]), float(m[2]), int(m[3])
    assert 0.29 <= secs < 5, line
    assert abs(ms - secs * 1000) < 1 and abs(us - secs * 1e6) < 1000, line
    assert int(m[6]) > 1024 * 1024 and int(m[7]) == int(m[6]) // 1024, line


# What a line costs: the worker collects only what its format shows (%C's
# and %M's rusage) and asks for its pids once (src/plog.c).

BURN_PY = """#!/usr/bin/python3
import os
import time
if os.environ["QUERY_STRING"] == "burn":
    n = 0
    while time.process_time() < 0.4:
        for i in range(10000):
            n += i
else:
    time.sleep(0.4)
print("Content-Type: text/plain\\n")
print(f"worker {os.getppid()} cpu {time.process_time() * 1000:.0f}")
"""


@pytest.fixture
def scriptdir():
    """A fresh directory every user can read, for CGI scripts (the pool
    runs as nobody when the suite runs as root)."""
    d = Path(tempfile.mkdtemp(prefix="fpmd-logs-", dir="/tmp"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_access_log_cpu_is_what_each_request_burnt(fpmd, endpoint, tmp_path,
                                                   scriptdir):
    """%C over CGI requests on one kept connection: the CPU the program
    says it used (and a little more: its exit, the worker's fork), burnt
    or asleep, never the CPU of the requests before (rusage taken at the
    start of each request, not once)."""
    script = scriptdir / "burn.py"
    script.write_text(BURN_PY)
    script.chmod(0o755)
    ep = endpoint("tcp")
    access = tmp_path / "access.log"
    fmt = "%C %{user}C %{system}C %{total}C %{milliseconds}d %p %s %r"
    fpmd([pool_conf(ep, opts={"handler": "cgi", "pm.max_children": 1,
                              "env": {"PATH": "/usr/bin:/bin"},
                              "access.log": str(access),
                              "access.format": fmt})])
    queries = ["burn", "sleep", "burn"]
    said_ = []
    with fcgi_client.Connection(ep.client, timeout=30) as conn:
        for q in queries:
            resp = conn.request({
                "REQUEST_METHOD": "GET", "SCRIPT_FILENAME": str(script),
                "SCRIPT_NAME": "/burn.py", "QUERY_STRING": q,
                "REQUEST_URI": "/burn.py?" + q}, b"", keep_conn=True)
            assert resp.status == 200, resp
            m = re.search(rb"worker (\d+) cpu (\d+)", resp.body)
            assert m, resp.stdout
            said_.append((int(m[1]), int(m[2])))
    lines = wait_for(lambda: (lambda t: t if t.count("\n") >= 3 else None)(
        access.read_text()), 10, "three access lines").splitlines()
    for q, (worker, script_ms), line in zip(queries, said_, lines):
        m = re.fullmatch(r"(\d+\.\d\d) (\d+\.\d\d) (\d+\.\d\d) "
                         r"(\d+\.\d\d) (\d+\.\d{3}) (\d+) 200 /burn\.py",
                         line)
        assert m, line
        total, user, system, total2, ms = map(float, m.groups()[:5])
        assert int(m[6]) == worker, line
        assert total == total2 and abs(user + system - total) <= 0.02, line
        # One program at a time, and the worker waits for it.
        assert total <= 105, line
        cpu_ms = total / 100 * ms
        assert script_ms * 0.95 - 10 <= cpu_ms <= script_ms + 150, \
            (q, script_ms, line)
        if q == "burn":
            assert script_ms >= 400 and user > system, (script_ms, line)
        else:
            assert ms >= 400 and total < 50, line


@pytest.mark.parametrize("kind", ["tcp", "unix"])
@pytest.mark.parametrize("fmt", ['%R %p %P %n "%m %r" %s %{X-Noisy}o %M',
                                 "%R %p %P %m %r %d"])
def test_access_log_without_cpu_codes_logs_the_rest(
        fpmd, endpoint, noisy_handler, tmp_path, kind, fmt):
    """Formats without %C (one with %M, one without the response head):
    every other code right, request after request on one connection, the
    pids asked for once still the worker's and the master's."""
    ep = endpoint(kind)
    access = tmp_path / "access.log"
    proc = fpmd([pool_conf(ep, opts={"handler": noisy_handler,
                                     "pm.max_children": 1,
                                     "access.log": str(access),
                                     "access.format": fmt})])
    pids = []
    with fcgi_client.Connection(ep.client) as conn:
        for i in range(3):
            q = f"status={201 + i}"
            resp = conn.request({
                "REQUEST_METHOD": "GET", "SCRIPT_NAME": "/noisy",
                "REQUEST_URI": f"/r{i}?{q}", "QUERY_STRING": q}, b"",
                keep_conn=True)
            assert resp.status == 201 + i, resp
            pids.append(int(re.search(rb"pid (\d+)", resp.body)[1]))
    assert len(set(pids)) == 1, pids
    lines = wait_for(lambda: (lambda t: t if t.count("\n") >= 3 else None)(
        access.read_text()), 10, "three access lines").splitlines()
    peer = "127.0.0.1" if kind == "tcp" else "-"
    for i, line in enumerate(lines):
        head = f"{peer} {pids[0]} {proc.pid} "
        if "%M" in fmt:
            m = re.fullmatch(re.escape(head + f'www "GET /r{i}" {201 + i} '
                                       "yes ") + r"(\d+)", line)
            assert m and int(m[1]) > 1024 * 1024, line
        else:
            assert re.fullmatch(re.escape(head + f"GET /r{i} ") +
                                r"\d+\.\d{3}", line), line


def strace_counts(pid, action):
    """{syscall: calls} of process PID while ACTION() runs, from strace
    -c; skips the test when strace is missing or may not attach."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    with tempfile.TemporaryDirectory() as d:
        out, err = Path(d) / "counts", Path(d) / "stderr"
        with open(err, "w") as e:
            st = subprocess.Popen([strace, "-c", "-o", str(out), "-p",
                                   str(pid)], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=e)
        try:
            wait_for(lambda: st.poll() is not None or
                     "attached" in err.read_text(), 10, "strace attached")
            if st.poll() is not None:
                pytest.skip("strace cannot attach: " + err.read_text())
            action()
        finally:
            st.send_signal(signal.SIGINT)
            st.wait(30)
        counts = {}
        for line in out.read_text().splitlines():
            tok = line.split()
            if len(tok) >= 5 and tok[3].isdigit() and tok[-1] != "total":
                counts[tok[-1]] = int(tok[3])
        return counts


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_access_log_default_format_costs_no_rusage_or_pid_per_request(
        fpmd, endpoint, tmp_path, kind):
    """The default format's line, over 200 requests on a kept connection:
    no getpid() or getppid(), no getpeername() (%R comes from accept4()),
    and no getrusage() but the scoreboard's (one a request at most, when
    it takes over 1 ms, as it may under strace; else one a 100 ms)."""
    ep = endpoint(kind)
    access = tmp_path / "access.log"
    proc = fpmd([pool_conf(ep, opts={"pm.max_children": 1,
                                     "access.log": str(access)})])
    n = 200
    with fcgi_client.Connection(ep.client) as conn:
        def requests():
            for _ in range(n):
                assert conn.request({"REQUEST_METHOD": "GET"}, b"",
                                    keep_conn=True).status == 200
        def logged(lines):
            wait_for(lambda: access.read_text().count("\n") == lines, 10,
                     f"{lines} access lines")

        def traced():
            # The line is written after the answer is sent: wait for the
            # last one before strace lets go, or it may miss that write.
            requests()
            logged(2 * n)
        requests()
        logged(n)
        counts = strace_counts(proc.worker_pids()[0], traced)
    assert counts.get("write", 0) >= n, counts
    assert counts.get("getrusage", 0) <= n, counts
    assert "getpid" not in counts and "getppid" not in counts, counts
    assert "getpeername" not in counts, counts


def test_access_log_to_stdout_for_containers(fpmd, endpoint, noisy_handler):
    ep = endpoint("tcp")
    proc = fpmd([pool_conf(ep, opts={"handler": noisy_handler,
                                     "access.log": "stdout",
                                     "access.format": "%m %r %s"})])
    noisy(ep, "status=201", {"REQUEST_URI": "/made"})
    wait_for(lambda: "GET /made 201\n" in proc.stdout_text, 10,
             "the access line on fpmd's stdout")


def test_access_suppress_path_keeps_successful_health_checks_out(
        fpmd, endpoint, noisy_handler, tmp_path):
    """PHP-FPM's access.suppress_path: a plain successful GET or HEAD of
    a listed path is not logged; with a query string, a body, another
    method or another path it is."""
    ep = endpoint("tcp")
    access = tmp_path / "access.log"
    # One worker: its lines come in the order of the requests.
    fpmd([pool_conf(ep, opts={
        "handler": noisy_handler, "access.log": str(access),
        "pm.max_children": 1, "access.format": "%m %{REQUEST_URI}e %s",
        "access.suppress_path": Raw('{"/ping", "/health/live"}')})])
    plain = {"QUERY_STRING": "", "CONTENT_LENGTH": ""}
    for method, uri, extra in (
            ("GET", "/ping", plain),
            ("HEAD", "/health/live", plain),
            ("GET", "/ping?verbose", {"QUERY_STRING": "verbose"}),
            ("POST", "/ping", plain),
            ("GET", "/ping", {"QUERY_STRING": "", "CONTENT_LENGTH": "3"}),
            ("GET", "/health", plain),
            ("GET", "/ping", plain),
            ("GET", "/last", plain)):
        noisy(ep, "", {"REQUEST_METHOD": method, "REQUEST_URI": uri,
                       **extra})
    lines = wait_for(lambda: (lambda t: t if "/last" in t else None)(
        access.read_text()), 10, "the last access line").splitlines()
    assert lines == ["GET /ping?verbose 200", "POST /ping 200",
                     "GET /ping 200", "GET /health 200", "GET /last 200"]


def test_access_suppress_path_must_be_absolute(fpmd_bin, tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("pool www {\n"
                    "    listen = 127.0.0.1:1\n"
                    "    access.suppress_path = {\"/ping\", \"ping\"}\n"
                    "}\n")
    r = run_fpmd(fpmd_bin, "-t", "-c", str(conf))
    assert r.returncode == 2, r
    assert (f"{conf}:3: access.suppress_path: \"ping\" must begin with "
            f"'/'") in r.stderr, r.stderr


def test_access_format_errors_point_at_the_line(fpmd_bin, tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("pool www {\n"
                    "    listen = 127.0.0.1:1\n"
                    "    access.format = \"%m %{x}m\"\n"
                    "    access.log = syslog\n"
                    "}\n")
    r = run_fpmd(fpmd_bin, "-t", "-c", str(conf))
    assert r.returncode == 2, r
    assert f"{conf}:3: access.format: %m takes no {{argument}}" in r.stderr
    assert f"{conf}:4: access.log: syslog is not a target" in r.stderr


# -------------------------------------------------- workers' output

def test_long_stderr_line_arrives_whole_split_at_log_limit(
        fpmd, endpoint, noisy_handler):
    """A 20 KB line from one worker, while another writes 200 short lines:
    the long one is split at log_limit into consecutive lines that join
    back to it exactly, and no line of the other worker comes between."""
    ep = endpoint("tcp")
    proc = fpmd([catching(ep, noisy_handler)],
                global_opts={"log_limit": 1024})
    out = {}

    def run(name, query):
        out[name] = noisy(ep, query)[1]
    threads = [threading.Thread(target=run, args=("a", "ms=300&tag=AAAA"
                                                  "&len=20000")),
               threading.Thread(target=run, args=("b", "ms=300&tag=BBBB"
                                                  "&len=50&lines=200"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out["a"] != out["b"], "both requests went to one worker"
    want_a = "AAAA" + filler(20000)
    want_b = "BBBB" + filler(50)

    def complete():
        text = proc.log_text
        a, b = said(text, out["a"]), said(text, out["b"])
        return (text, a, b) if "".join(a) == want_a and len(b) == 200 \
            else None
    text, a, b = wait_for(complete, 10, "every line of both workers")
    assert b == [want_b] * 200
    assert len(a) >= 20 and all(len(p) < 1024 for p in a)
    lines = text.splitlines()
    ours = [i for i, line in enumerate(lines)
            if f"child {out['a']} said into stderr" in line]
    assert ours == list(range(ours[0], ours[0] + len(ours))), \
        "another line came between the pieces of the long line"
    assert all(len(lines[i]) <= 1024 for i in ours)
    assert max(len(lines[i]) for i in ours) >= 1000


def test_bare_lines_when_not_decorated(fpmd, endpoint, noisy_handler):
    ep = endpoint("tcp")
    proc = fpmd([catching(ep, noisy_handler,
                          decorate_workers_output=False)],
                global_opts={"log_limit": 600})
    noisy(ep, "tag=PLAIN&len=10&lines=3")
    noisy(ep, "tag=LONG&len=1500&fd=1")
    want = "LONG" + filler(1500)
    wait_for(lambda: len(re.findall("^PLAIN" + filler(10) + "$",
                                    proc.log_text, re.M)) == 3,
             10, "three bare lines")
    pieces = wait_for(lambda: (lambda p: p if "".join(p) == want else None)(
        re.findall(r"^(LONG\w*|[0-9a-z]+)$", proc.log_text, re.M)), 10,
        "the long bare line, in pieces")
    assert [len(p) for p in pieces] == [600, 600, 304]
    assert "said into" not in proc.log_text


def test_stdout_and_worker_log_lines(fpmd, endpoint, noisy_handler):
    ep = endpoint("tcp")
    proc = fpmd([catching(ep, noisy_handler)])
    _, pid = noisy(ep, "fd=1&tag=hello&log=1")
    wait_for(lambda: said(proc.log_text, pid, "stdout") == ["hello"], 10,
             "the stdout line")
    proc.wait_log(r"\] WARNING: \[pool www\] child %d: noisy hello\n" % pid)


def test_catch_workers_output_no_sends_output_to_dev_null(
        fpmd, endpoint, noisy_handler):
    ep = endpoint("tcp")
    proc = fpmd([pool_conf(ep, opts={"handler": noisy_handler})])
    _, pid = noisy(ep, "tag=lost1&log=1")
    noisy(ep, "tag=lost2&fd=1")
    # The worker's own log line still reaches the log, through the master.
    proc.wait_log(r"child %d: noisy lost1" % pid)
    text = proc.log_text + proc.stderr_text + proc.stdout_text
    assert not re.search(r"^lost1$|lost2", text, re.M)
    assert "said into" not in text


def test_last_line_without_newline_is_logged_when_the_worker_exits(
        fpmd, endpoint, noisy_handler):
    ep = endpoint("tcp")
    proc = fpmd([catching(ep, noisy_handler, **{"pm.max_requests": 1})])
    _, pid = noisy(ep, "tag=unended&nonl=1")
    wait_for(lambda: said(proc.log_text, pid) == ["unended"], 10,
             "the unended line")
    text = proc.log_text
    assert text.index('said into stderr: "unended"') < \
        text.index(f"child {pid} exited")


# ----------------------------------------------------------- reopening

def rotate(paths):
    for p in paths:
        os.rename(p, str(p) + ".1")


def test_usr1_reopens_every_log_and_workers_follow_without_restart(
        fpmd, endpoint, noisy_handler, tmp_path):
    ep = endpoint("tcp")
    access = tmp_path / "access.log"
    proc = fpmd([catching(ep, noisy_handler, **{
        "access.log": str(access), "access.format": "%m %r %p"})])
    pids = proc.worker_pids()
    for _ in range(4):
        noisy(ep, "tag=before&log=1")
    log = Path(proc.log_path)
    rotate([log, access])
    proc.signal(signal.SIGUSR1)
    wait_for(lambda: log.exists() and "logs reopened" in log.read_text(),
             10, "the new error log")
    seen = set()

    def one():
        seen.add(noisy(ep, "ms=150&tag=after&log=1",
                       {"REQUEST_URI": "/after"})[1])
    # Two at a time, so that both workers serve after the reopen.
    for _ in range(4):
        pair = [threading.Thread(target=one) for _ in range(2)]
        for t in pair:
            t.start()
        for t in pair:
            t.join()
    assert seen == set(pids), "not every worker served after the reopen"
    assert proc.worker_pids() == pids, "workers were restarted"
    new = wait_for(lambda: (lambda t: t if t.count(": noisy after") == 8
                            else None)(log.read_text()), 10,
                   "8 worker log lines in the new log")
    assert new.count('said into stderr: "after"') == 8
    assert "before" not in new
    lines = wait_for(lambda: (lambda t: t if t.count("\n") == 8 else None)(
        access.read_text()), 10, "8 access lines").splitlines()
    assert {line.split()[2] for line in lines} == {str(p) for p in pids}
    assert all(line.startswith("GET /after ") for line in lines)
    old = Path(str(log) + ".1").read_text()
    assert "after" not in old
    assert "after" not in Path(str(access) + ".1").read_text()


def test_logrotate_with_the_contrib_config(fpmd, endpoint, noisy_handler,
                                           tmp_path):
    logrotate = shutil.which("logrotate") or "/usr/sbin/logrotate"
    if not os.access(logrotate, os.X_OK):
        pytest.skip("logrotate is not installed")
    ep = endpoint("tcp")
    logdir = tmp_path / "logs"
    logdir.mkdir(mode=0o755)
    access = logdir / "access.log"
    proc = fpmd([catching(ep, noisy_handler, **{
        "access.log": str(access), "access.format": "%m %r %p"})],
        global_opts={"error_log": str(logdir / "error.log")},
        log_path=str(logdir / "error.log"))
    pids = proc.worker_pids()
    noisy(ep, "tag=before", {"REQUEST_URI": "/before"})
    wait_for(lambda: access.exists() and access.stat().st_size > 0, 10,
             "the first access line")
    text = (REPO / "contrib" / "logrotate.d" / "fpmd").read_text()
    text = text.replace("/var/log/fpmd", str(logdir)).replace(
        "/run/fpmd/fpmd.pid", str(tmp_path / "fpmd.pid"))
    conf = tmp_path / "logrotate.conf"
    conf.write_text(text)
    conf.chmod(0o644)
    r = subprocess.run([logrotate, "-f", "-s", str(tmp_path / "state"),
                        str(conf)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert (logdir / "access.log.1").exists()
    assert (logdir / "error.log.1").exists()
    log = logdir / "error.log"
    wait_for(lambda: log.exists() and "logs reopened" in log.read_text(),
             10, "the reopened error log")
    for _ in range(6):
        noisy(ep, "tag=after", {"REQUEST_URI": "/after"})
    wait_for(lambda: access.exists()
             and access.read_text().count("GET /after ") == 6, 10,
             "6 access lines in the new file")
    wait_for(lambda: log.read_text().count('said into stderr: "after"') == 6,
             10, "6 stderr lines in the new error log")
    assert "after" not in (logdir / "access.log.1").read_text()
    assert proc.worker_pids() == pids, "workers were restarted"
    assert oct(access.stat().st_mode & 0o777) == "0o640"


# ------------------------------------------------------------- slowlog

def test_slow_request_gets_exactly_one_slowlog_entry_with_its_stack(
        fpmd, endpoint, slow_handler, tmp_path):
    ep = endpoint("tcp")
    slow = tmp_path / "slow.log"
    proc = fpmd([pool_conf(ep, opts={
        "handler": slow_handler, "pm.max_children": 2, "slowlog": str(slow),
        "request_slowlog_timeout": "1s", "pm.status_path": "/status"})])
    params = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/slow",
              "SCRIPT_FILENAME": "/srv/slow.cgi",
              "REQUEST_URI": "/slow?ms=2600", "QUERY_STRING": "ms=2600"}
    resp = fcgi_client.request(ep.client, params, b"", timeout=20)
    assert resp.status == 200
    pid = int(re.search(rb"pid (\d+)", resp.body).group(1))
    text = wait_for(lambda: slow.read_text(), 10, "the slowlog entry")
    assert text.count("] pid ") == 1, text
    m = re.search(r"^\[\d\d-\w\w\w-\d{4} \d\d:\d\d:\d\d\]  \[pool www\] "
                  r"pid %d\nscript_filename = /srv/slow.cgi\nrequest = GET "
                  r"/slow\?ms=2600\nelapsed = (\d+\.\d{3}) sec\n" % pid,
                  text, re.M)
    assert m, text
    assert 1.0 <= float(m[1]) < 2.6, text
    assert "slow.so" in text, "no frame of the handler in the stack"
    # request_slowlog_trace_depth's default, as PHP-FPM's: 20 frames.
    assert 3 <= len(slow_frames(text)) <= 20, text
    proc.wait_log(r"\[pool www\] child %d, script '/srv/slow.cgi' \(request:"
                  r" \"GET /slow\?ms=2600\"\) executing too slow" % pid)
    status = fcgi_client.request(ep.client, {
        "REQUEST_METHOD": "GET", "SCRIPT_NAME": "/status",
        "REQUEST_URI": "/status"}, b"")
    assert re.search(rb"slow requests:\s+1\n", status.body), status.body
    # The worker lived on.
    assert pid in proc.worker_pids()


def slow_frames(text):
    """The stack lines of the one slowlog entry in TEXT."""
    return text.split(" sec\n", 1)[1].strip().splitlines()


def test_request_slowlog_trace_depth_bounds_the_stack(
        fpmd, endpoint, slow_handler, tmp_path):
    ep = endpoint("tcp")
    slow = tmp_path / "slow.log"
    fpmd([pool_conf(ep, opts={
        "handler": slow_handler, "pm.max_children": 1, "slowlog": str(slow),
        "request_slowlog_timeout": "1s",
        "request_slowlog_trace_depth": 2})])
    resp = fcgi_client.request(ep.client, {
        "REQUEST_METHOD": "GET", "SCRIPT_NAME": "/slow",
        "QUERY_STRING": "ms=1600"}, b"", timeout=20)
    assert resp.status == 200
    text = wait_for(lambda: slow.read_text(), 10, "the slowlog entry")
    assert len(slow_frames(text)) == 2, text


def test_request_slowlog_trace_depth_is_checked(fpmd_bin, tmp_path):
    conf = tmp_path / "f.conf"
    conf.write_text("pool www {\n    listen = 127.0.0.1:1\n"
                    "    request_slowlog_trace_depth = 101\n}\n")
    r = run_fpmd(fpmd_bin, "-t", "-c", str(conf))
    assert r.returncode == 2
    assert (f"{conf}:3: request_slowlog_trace_depth: expected an integer "
            f"from 1 to 100") in r.stderr, r.stderr


# ------------------------------------------------------- per-pool logs

def test_pool_error_log_takes_that_pools_lines(fpmd, endpoint, noisy_handler,
                                               tmp_path):
    a, b = endpoint("tcp", "a"), endpoint("tcp", "b")
    alog = tmp_path / "a.log"
    proc = fpmd([catching(a, noisy_handler, name="a", error_log=str(alog)),
                 catching(b, noisy_handler, name="b")])
    _, apid = noisy(a, "tag=from_a&log=1")
    _, bpid = noisy(b, "tag=from_b")
    wait_for(lambda: said(alog.read_text(), apid) == ["from_a"], 10,
             "pool a's worker output in a.log")
    wait_for(lambda: said(proc.log_text, bpid) == ["from_b"], 10,
             "pool b's worker output in the global log")
    text = alog.read_text()
    assert "[pool a] listening on" in text
    assert f"[pool a] child {apid}: noisy from_a" in text
    assert "[pool b]" not in text
    assert "[pool a]" not in proc.log_text
    assert "ready to handle connections" in proc.log_text


# -------------------------------------------------------- configuration

@pytest.mark.parametrize("line,error", [
    ("log_limit = 100", "log_limit: expected an integer from 512 to"),
    ("syslog.facility = kitchen", "syslog.facility: expected a facility"),
    ("error_log = stdout", "error_log: stdout is not a target for it"),
])
def test_log_directive_errors(fpmd_bin, tmp_path, line, error):
    conf = tmp_path / "f.conf"
    conf.write_text(f"{line}\npool www {{\n    listen = 127.0.0.1:1\n}}\n")
    r = run_fpmd(fpmd_bin, "-t", "-c", str(conf))
    assert r.returncode == 2
    assert f"{conf}:1: {error}" in r.stderr, r.stderr


# --------------------------------------------------- syslog and journal

def journal_socket():
    return os.path.exists("/run/systemd/journal/socket")


def test_journal_is_refused_at_start_when_no_journald_listens(
        fpmd_bin, endpoint, tmp_path):
    """libsystemd's sd_journal_send() takes no socket path from the
    environment, so without a journald this checks the refusal: fpmd says
    why and exits 1 rather than losing every line."""
    if journal_socket():
        pytest.skip("a journal is running (see the journalctl test)")
    ep = endpoint("tcp")
    conf = tmp_path / "f.conf"
    conf.write_text(render_conf({"error_log": "journal"}, [pool_conf(ep)]))
    r = run_fpmd(fpmd_bin, "-F", "-c", str(conf))
    assert r.returncode == 1
    assert "cannot open the error log journal" in r.stderr


JOURNALD = "/lib/systemd/systemd-journald"


def test_journal_lines_carry_pool_and_child_fields(fpmd_bin, endpoint,
                                                   noisy_handler, tmp_path):
    """A private journald (in a private mount namespace, so that its
    /run/systemd/journal is ours alone) receives fpmd's lines with the
    fields POOL, CHILD_PID and PRIORITY; journalctl reads them back."""
    unshare = shutil.which("unshare")
    if not IS_ROOT or unshare is None or not os.access(JOURNALD, os.X_OK) \
            or not shutil.which("journalctl"):
        pytest.skip("needs root, unshare(1), systemd-journald, journalctl")
    ep = endpoint("tcp")
    conf = tmp_path / "f.conf"
    conf.write_text(render_conf(
        {"error_log": "journal", "syslog.ident": "fpmdtest",
         "pid": str(tmp_path / "fpmd.pid")}, [catching(ep, noisy_handler)]))
    done, export = tmp_path / "done", tmp_path / "journal.export"
    script = (f"set -e; mkdir -p /run/systemd /run/log; "
              f"mount -t tmpfs tmpfs /run/systemd; "
              f"mount -t tmpfs tmpfs /run/log; "
              f"{JOURNALD} & J=$!; "
              f"for i in $(seq 100); do [ -S /run/systemd/journal/socket ] "
              f"&& break; sleep 0.05; done; "
              f"{fpmd_bin} -F -c {conf} & F=$!; "
              f"while [ ! -e {done} ]; do sleep 0.05; done; "
              f"kill -TERM $F; wait $F || true; "
              f"journalctl -D /run/log/journal -o export --no-pager "
              f"SYSLOG_IDENTIFIER=fpmdtest > {export}; kill $J; wait $J")
    proc = subprocess.Popen([unshare, "--mount", "--propagation", "private",
                             "sh", "-c", script], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        wait_for(lambda: proc.poll() is None and ep.accepts(), 20,
                 "fpmd to accept")
        _, pid = noisy(ep, "tag=via_journal&log=1")
    finally:
        done.touch()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    entries = [dict(line.split("=", 1) for line in block.splitlines()
                    if "=" in line)
               for block in export.read_text(errors="replace").split("\n\n")]
    said_entry = next(e for e in entries
                      if e.get("MESSAGE", "").endswith('"via_journal"'))
    assert said_entry["MESSAGE"] == \
        f'[pool www] child {pid} said into stderr: "via_journal"'
    assert said_entry["POOL"] == "www"
    assert said_entry["CHILD_PID"] == str(pid)
    assert said_entry["PRIORITY"] == "4"
    own = next(e for e in entries
               if e.get("MESSAGE", "").endswith("noisy via_journal"))
    assert own["CHILD_PID"] == str(pid) and own["POOL"] == "www"
    ready = next(e for e in entries
                 if e.get("MESSAGE") == "ready to handle connections")
    assert ready["PRIORITY"] == "5" and "POOL" not in ready


def test_syslog_lines_reach_dev_log(fpmd_bin, endpoint, noisy_handler,
                                    tmp_path):
    """syslog(3) writes to /dev/log: the test runs fpmd in a private mount
    namespace whose /dev has a /dev/log the test listens on."""
    unshare = shutil.which("unshare")
    if not IS_ROOT or unshare is None:
        pytest.skip("needs root and unshare(1) for a private /dev/log")
    ep = endpoint("tcp")
    sock_path = tmp_path / "devlog.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(str(sock_path))
    srv.settimeout(0.2)
    conf = tmp_path / "f.conf"
    conf.write_text(render_conf(
        {"error_log": "syslog", "syslog.facility": "local3",
         "syslog.ident": "fpmdtest", "pid": str(tmp_path / "fpmd.pid")},
        [catching(ep, noisy_handler)]))
    realdev = tmp_path / "realdev"
    realdev.mkdir()
    script = (f"set -e; mount --bind /dev {realdev}; "
              f"mount -t tmpfs -o mode=755 tmpfs /dev; "
              f"for n in null zero urandom random; do touch /dev/$n; "
              f"mount --bind {realdev}/$n /dev/$n; done; "
              f"ln -s {sock_path} /dev/log; "
              f"exec {fpmd_bin} -F -c {conf}")
    proc = subprocess.Popen([unshare, "--mount", "--propagation", "private",
                             "sh", "-c", script], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    got = []

    def received(pattern):
        def check():
            try:
                got.append(srv.recv(65536).decode("utf-8", "replace"))
            except socket.timeout:
                pass
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read().decode())
            return any(re.search(pattern, g) for g in got)
        return check
    try:
        wait_for(received("ready to handle connections"), 20,
                 "fpmd's ready line on /dev/log")
        _, pid = noisy(ep, "tag=via_syslog")
        wait_for(received("via_syslog"), 10, "the worker's line")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        srv.close()
    # <local3 (19) * 8 + warning (4)> = <156>; the ident and the pid.
    line = next(g for g in got if "via_syslog" in g)
    assert re.match(r"<156>.*fpmdtest\[\d+\]: \[pool www\] child %d said "
                    r"into stderr: \"via_syslog\"$" % pid, line), line
    ready = next(g for g in got if "ready to handle" in g)
    assert ready.startswith("<157>"), ready
