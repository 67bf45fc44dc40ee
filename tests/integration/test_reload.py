"""Reloads, stops and the control tool: what an operator does to a running
fpmd, checked from the outside.

- graceful reload (HUP, USR2, `fpmctl reload [POOL]`): unchanged pools keep
  their workers, a changed pool gets a new generation on the same socket
  while the old one finishes what it started, added pools start, removed
  pools drain and their socket goes away, a moved pool binds its new address
  before the old one closes;
- a bad configuration changes nothing, and says why (log and fpmctl);
- zero failed requests through a real nginx across ten reloads in a row,
  and no connection left unaccepted while a generation leaves;
- fpmctl's commands and exit codes, the control socket's mode;
- stops: QUIT/TERM wait for in-flight requests, bounded by
  process_control_timeout (QUIT -> TERM -> KILL); INT is fast;
- USR1 reopens the error log without restarting workers;
- a storm of signals kills nothing;
- -D: the launcher returns once the pools answer, and lets go of its stdio.

The slow test handler (tests/handlers/slow.c, `slow_handler`) holds a
worker busy for ms=N and answers "pid N"; the pools' worker pids come from
`fpmctl status --json` (the live generation of each pool) and from /proc
(every child of the master, leaving generations included).
"""

import http.client
import json
import os
import re
import signal
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

import fcgi_client as fc
from conftest import (IS_ROOT, STOP_TIMEOUT, check_ok, echo_request,
                      pool_conf, proc_children, proc_stat, render_conf,
                      slow_answer_pid, slow_params, wait_for)

RELOADED = r"NOTICE: reloaded: {new} new or replaced, {same} unchanged, " \
           r"{gone} removed"


# ----------------------------------------------------------------- helpers

def globals_for(tmp_path, sockdir, **extra):
    """The global section every test here uses: its own pid file, error
    log and control socket; EXTRA uses '_' for '.' (control_listen)."""
    g = {"pid": str(tmp_path / "fpmd.pid"),
         "error_log": str(tmp_path / "error.log"),
         "log_level": "notice",
         "control.listen": str(sockdir / "ctl.sock"),
         "process_control_timeout": "10s"}
    g.update({k.replace("_", ".") if k.startswith("control") else k: v
              for k, v in extra.items()})
    return g


def write_conf(proc, g, pools):
    """Replace PROC's configuration file at once (rename), so that a
    reload never reads half a file."""
    tmp = proc.conf_path.with_name(proc.conf_path.name + ".new")
    tmp.write_text(render_conf(g, pools))
    os.replace(tmp, proc.conf_path)


def slow_pool(ep, handler, name, **directives):
    """A pool dict running the slow handler; DIRECTIVES spell '.' as '__'
    (pm__max_children=3)."""
    opts = {"handler": handler}
    opts.update({k.replace("__", "."): v for k, v in directives.items()})
    return pool_conf(ep, name=name, opts=opts)


def slow_pid(ep, ms=0):
    """One quick request to a slow-handler pool: the pid that answered."""
    return slow_answer_pid(fc.request(ep.client, slow_params(f"ms={ms}"),
                                   timeout=20))


class InFlight:
    """A slow request sent whole, read by a worker and running in its
    handler (which says so on STDERR) before the constructor returns;
    result() waits for its answer."""

    def __init__(self, ep, ms, tag="x"):
        self.uri_query = f"ms={ms}&tag={tag}&announce=1"
        self.conn = fc.Connection(ep.client, timeout=30)
        self.started = time.monotonic()
        try:
            self.conn.send_request(slow_params(self.uri_query))
            rec = self.conn.recv_record(10)
            assert rec is not None and rec.type == fc.STDERR and \
                rec.content == b"sleeping\n", rec
        except BaseException:
            self.conn.close()
            raise

    def result(self, timeout=20):
        """(Response, seconds since it was sent); the connection closes."""
        try:
            resp = self.conn.read_response(1, timeout=timeout)
            return resp, time.monotonic() - self.started
        finally:
            self.conn.close()

    def unavailable(self, timeout=20):
        """Expect the 503 a worker answers when a stop that cannot wait
        ends it with SIGTERM; returns the seconds since the request was
        sent."""
        resp, took = self.result(timeout)
        assert (resp.status, resp.body) == (503,
                                            b"503 Service Unavailable\n")
        assert resp.protocol_status == fc.REQUEST_COMPLETE
        return took

    def cut(self, timeout=20):
        """Expect the connection closed without an answer; returns the
        seconds since the request was sent."""
        try:
            with pytest.raises(fc.ConnectionClosed):
                self.conn.read_response(1, timeout=timeout)
            return time.monotonic() - self.started
        finally:
            self.conn.close()


def status(fpmctl, sock):
    """{pool: status dict} from `fpmctl status --json`."""
    r = fpmctl(sock, "status", "--json")
    assert r.returncode == 0, r.stderr
    return {p["pool"]: p for p in json.loads(r.stdout)}


def pool_pids(fpmctl, sock):
    """{pool: sorted worker pids of its live generation}."""
    return {name: sorted(p["pid"] for p in st["processes"])
            for name, st in status(fpmctl, sock).items()}


def serving_pid(fpmctl, sock, pool, uri_query):
    """The pid of POOL's worker running the request whose query is
    URI_QUERY, from the status page."""
    def find():
        for p in status(fpmctl, sock)[pool]["processes"]:
            if p["request uri"] == f"/slow?{uri_query}" and \
                    p["state"] == "Running":
                return p["pid"]
        return None
    return wait_for(find, 10, f"{pool}: a worker running ?{uri_query}")


def alive(pids):
    """The pids of PIDS that are still running (not zombies)."""
    out = []
    for pid in pids:
        st = proc_stat(pid)
        if st is not None and st[0] != "Z":
            out.append(pid)
    return out


def zombies(parent):
    return [p for p in proc_children(parent)
            if (proc_stat(p) or ("?",))[0] == "Z"]


def refuses(ep):
    """True when nothing listens on EP any more (Unix: the path is gone
    or refuses; TCP: connection refused)."""
    return not ep.accepts()


def count(proc, pattern, since=0):
    return len(re.findall(pattern, proc.log_text[since:], re.M))


# --------------------------------------------------- graceful reload (full)

@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGUSR2],
                         ids=lambda s: s.name)
def test_reload_keeps_unchanged_replaces_changed_adds_and_drains(
        fpmd, fpmctl, endpoint, sockdir, tmp_path, slow_handler, sig):
    keep, change, gone = (endpoint("unix", n) for n in ("keep", "change",
                                                        "gone"))
    moved_old, moved_new = endpoint("tcp"), endpoint("tcp")
    fresh = endpoint("unix", "fresh")
    h = slow_handler
    g = globals_for(tmp_path, sockdir)
    ctl = g["control.listen"]
    before = [slow_pool(keep, h, "keep", pm__max_children=2),
              slow_pool(change, h, "change", pm__max_children=2),
              slow_pool(gone, h, "gone", pm__max_children=1),
              slow_pool(moved_old, h, "moved", pm__max_children=1)]
    after = [slow_pool(keep, h, "keep", pm__max_children=2),
             slow_pool(change, h, "change", pm__max_children=3),
             slow_pool(moved_new, h, "moved", pm__max_children=1),
             slow_pool(fresh, h, "fresh", pm__max_children=1)]
    proc = fpmd(before, global_opts=g)
    old = pool_pids(fpmctl, ctl)
    assert {k: len(v) for k, v in old.items()} == \
        {"keep": 2, "change": 2, "gone": 1, "moved": 1}
    old_all = set(proc.worker_pids())
    inode = os.stat(change.path).st_ino

    # Three 3 s requests in flight in the pools that will change.
    flights = {name: InFlight(ep, 3000, name)
               for name, ep in (("change", change), ("gone", gone),
                                ("moved", moved_old))}
    try:
        write_conf(proc, g, after)
        mark = proc.log_mark()
        proc.signal(sig)
        proc.wait_log(RELOADED.format(new=3, same=1, gone=1), since=mark)
        for line in (r"\[pool gone\] removed: draining",
                     r"\[pool change\] new generation 1",
                     r"\[pool moved\] new generation 1",
                     r"\[pool fresh\] added"):
            assert re.search(line, proc.log_text[mark:]), line

        # The moved pool answers on its new address while its old
        # generation still serves the old one, which is still open.
        assert slow_pid(moved_new) not in old["moved"]
        assert time.monotonic() - flights["moved"].started < 2.8
        assert moved_old.accepts(), "old address closed before the drain"
        assert os.path.exists(gone.path), "removed pool closed mid-drain"

        # Unchanged pool: same workers.  Changed pool: a new generation of
        # 3 on the very same socket.  Added pool: started.
        def replaced():
            p = pool_pids(fpmctl, ctl)
            return p if (len(p["change"]) == 3 and len(p["fresh"]) == 1
                         and len(p["moved"]) == 1
                         and not set(p["change"]) & set(old["change"])
                         and p["moved"] != old["moved"]) else None
        new = wait_for(replaced, 10, "the new generations to start")
        assert new["keep"] == old["keep"]
        assert set(new) == {"keep", "change", "moved", "fresh"}
        assert os.stat(change.path).st_ino == inode
        # The old generation is asked to leave once the new one is up: its
        # idle worker goes, the busy one stays to finish.
        wait_for(lambda: len(alive(old["change"])) == 1, 10,
                 "the idle worker of the old generation to leave")
        assert slow_pid(change) in new["change"]
        assert slow_pid(fresh) in new["fresh"]
        assert alive(old["keep"]) == old["keep"]

        # The old generations finish what they started, then leave.
        for name, flight in flights.items():
            resp, took = flight.result()
            assert slow_answer_pid(resp) in old[name], name
            assert took >= 2.9, (name, took)
    finally:
        for f in flights.values():
            f.conn.close()
    gone_pids = old["change"] + old["gone"] + old["moved"]
    wait_for(lambda: not alive(gone_pids), 10, "the old generations to exit")
    wait_for(lambda: not os.path.exists(gone.path), 10,
             f"the removed pool's socket {gone.path} to be unlinked")
    wait_for(lambda: refuses(moved_old), 10,
             f"the old address {moved_old.listen} to close")
    proc.wait_log(r"\[pool change\] old generation gone", since=mark)
    assert len(proc.wait_workers(2 + 3 + 1 + 1)) == 7
    assert not set(proc.worker_pids()) & (old_all - set(old["keep"]))
    assert proc.running()


# ------------------------------------------------- a bad config: no change

def _bad_conf(case, g, good, tmp_path, busy_port):
    """The text of a bad configuration for CASE and the regex its refusal
    must match in the log (after 'reload refused: ')."""
    conf = str(tmp_path / "fpmd.conf")
    pools = [dict(p) for p in good]
    pools[0]["pm.max_children"] = 3      # would change www if applied
    if case == "syntax":
        text = render_conf(g, pools)
        # Cut inside the second pool, as a half-saved file would be.
        text = text[:text.rindex("pool api {") + len("pool api {")] + \
            "\n    listen = \n"
        return text, re.escape(conf) + r":\d+: "
    if case == "unknown_user":
        pools[1]["user"] = "no-such-user-fpmd"
        return render_conf(g, pools), \
            re.escape(conf) + r":\d+: .*no-such-user-fpmd"
    if case == "port_in_use":
        pools[1]["listen"] = f"127.0.0.1:{busy_port}"
        return render_conf(g, pools), \
            re.escape(conf) + rf":\d+: .*127\.0\.0\.1:{busy_port}.*in use"
    raise ValueError(case)


@pytest.mark.parametrize("case", ["syntax", "unknown_user", "port_in_use"])
def test_bad_config_reload_changes_nothing(fpmd, fpmctl, endpoint, sockdir,
                                           tmp_path, slow_handler, case):
    if case == "unknown_user" and not IS_ROOT:
        pytest.skip("pool users are only checked as root")
    www, api = endpoint("unix", "www"), endpoint("tcp")
    g = globals_for(tmp_path, sockdir)
    ctl = g["control.listen"]
    good = [slow_pool(www, slow_handler, "www", pm__max_children=2),
            slow_pool(api, slow_handler, "api", pm__max_children=1)]
    proc = fpmd(good, global_opts=g)
    old = pool_pids(fpmctl, ctl)
    old_all = proc.worker_pids()

    busy = socket.socket()
    try:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        text, why = _bad_conf(case, g, good, tmp_path,
                              busy.getsockname()[1])
        proc.conf_path.write_text(text)

        mark = proc.log_mark()
        proc.signal(signal.SIGHUP)
        proc.wait_log(r"ERROR: reload refused: " + why, since=mark)
        r = fpmctl(ctl, "reload")
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert re.search(r"error: " + why, r.stderr), r.stderr
        assert r.stdout == ""
    finally:
        busy.close()

    assert pool_pids(fpmctl, ctl) == old
    assert proc.worker_pids() == old_all
    assert slow_pid(www) in old["www"]
    assert slow_pid(api) in old["api"]
    assert not re.search(r"new generation|added|removed: draining",
                         proc.log_text[mark:])
    # The master is not wedged: the good file reloads (and changes nothing).
    write_conf(proc, g, good)
    r = fpmctl(ctl, "reload")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok: 0 new or replaced, 2 unchanged, 0 removed"
    assert proc.worker_pids() == old_all


# ----------------------------------------- zero failed requests under load

class HttpLoad(threading.Thread):
    """THREADS clients, each sending requests on one kept HTTP connection to
    nginx: GETs, and every fourth a POST of 2 KB (nginx does not retry a
    POST on another upstream connection once it has sent it).  Each client
    sends at least PER_THREAD requests, and goes on until finish() is
    called, but never more than CAP.  Records every non-200, every wrong
    page and every exception."""

    def __init__(self, port, threads=4, per_thread=1500, cap=15000,
                 timeout=10):
        super().__init__(daemon=True)
        self.port = port
        self.timeout = timeout
        self.threads = threads
        self.per_thread = per_thread
        self.cap = cap
        self.least = threads * per_thread
        self.progress = [0] * threads
        self.errors = []
        self.statuses = {}
        self.pids = set()
        self.lock = threading.Lock()
        self.finished = threading.Event()

    @property
    def done(self):
        return sum(self.progress)

    def finish(self):
        self.finished.set()

    def client(self, i):
        conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                          timeout=self.timeout)
        rx = re.compile(rb"\npid: (\d+)\n.*\nstdin_bytes: (\d+)\n", re.S)
        post = b"p" * 2048
        n = 0
        while n < self.cap and (n < self.per_thread or
                                not self.finished.is_set()):
            body = post if n % 4 == 3 else None
            try:
                conn.request("POST" if body else "GET",
                             f"/load?t={i}&n={n}", body=body)
                resp = conn.getresponse()
                page = resp.read()
                with self.lock:
                    self.statuses[resp.status] = \
                        self.statuses.get(resp.status, 0) + 1
                    m = rx.search(page)
                    if resp.status != 200 or m is None or \
                            int(m.group(2)) != len(body or b""):
                        self.errors.append(f"{'POST' if body else 'GET'} "
                                           f"{resp.status}: {page[:200]!r}")
                    else:
                        self.pids.add(int(m.group(1)))
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.errors.append(repr(e))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                  timeout=self.timeout)
            n += 1
            self.progress[i] = n
        conn.close()

    def run(self):
        ts = [threading.Thread(target=self.client, args=(i,), daemon=True)
              for i in range(self.threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(300)


def _load_variants(ep):
    """The pool configs the ten reloads step through: each change is
    followed by a reload that changes nothing."""
    base = {"pm": "static", "pm.max_children": 4}
    v = [dict(base),
         dict(base, **{"pm.max_children": 6}),
         {"pm": "dynamic", "pm.max_children": 8, "pm.start_servers": 4,
          "pm.min_spare_servers": 2, "pm.max_spare_servers": 6},
         dict(base, env={"RELOAD": "three"}),
         dict(base, **{"pm.max_children": 5})]
    return [pool_conf(ep, opts=o) for o in v]


@pytest.mark.parametrize("kind", ["unix", "tcp"])
@pytest.mark.parametrize("keepalive", [True, False],
                         ids=["keep_conn", "no_keep_conn"])
def test_ten_reloads_under_load_through_nginx_fail_no_request(
        fpmd, fpmctl, nginx, endpoint, sockdir, tmp_path, keepalive, kind):
    ep = endpoint(kind)
    g = globals_for(tmp_path, sockdir)
    variants = _load_variants(ep)
    proc = fpmd([variants[0]], global_opts=g)
    # With kept connections a leaving worker closes its connection after
    # a quiet QUIT_SETTLE_MS; nginx may reuse it in that very instant
    # (FastCGI has no way to say "do not reuse").  nginx then retries on a
    # new connection, for a POST only when told it may: fpmd never read
    # that request.  fpmd(8) BUGS says so and recommends this setting.
    web = nginx(ep, keepalive=keepalive, location_extra=(
        "fastcgi_next_upstream error timeout non_idempotent;"
        if keepalive else ""))
    first_pids = set(proc.worker_pids())

    # Reload i (1..10) writes variants[plan[i]]: change, same, change, ...
    # A reload every ~500 requests; the load goes on until the last one.
    plan = [1, 1, 2, 2, 3, 3, 4, 4, 0, 0]
    load = HttpLoad(web.port)
    load.start()
    took = []
    try:
        for i, which in enumerate(plan):
            wait_for(lambda: load.done >= (i + 1) * load.least // 12 or
                     not load.is_alive(), 60, f"load before reload {i + 1}")
            assert load.is_alive(), f"the load ended before reload {i + 1}"
            changed = i % 2 == 0
            write_conf(proc, g, [variants[which]])
            expect = RELOADED.format(new=int(changed), same=int(not changed),
                                     gone=0)
            t0 = time.monotonic()
            if i % 3 == 2:
                r = fpmctl(g["control.listen"], "reload")
                assert r.returncode == 0, r.stderr
                assert r.stdout.strip() == (
                    f"ok: {int(changed)} new or replaced, "
                    f"{int(not changed)} unchanged, 0 removed"), r.stdout
            else:
                mark = proc.log_mark()
                proc.signal(signal.SIGHUP if i % 2 else signal.SIGUSR2)
                proc.wait_log(expect, since=mark, timeout=20)
            took.append(round(time.monotonic() - t0, 2))
        # Let the last new generation serve a while under the load.
        done = load.done
        wait_for(lambda: load.done >= done + 500 or not load.is_alive(), 60,
                 "500 more requests after the last reload")
    finally:
        load.finish()
        load.join(120)
    assert not load.is_alive(), "the load did not finish in 120 s"
    assert load.errors == [], (f"{len(load.errors)} failed requests of "
                               f"{load.done}, e.g. {load.errors[:5]} "
                               f"(reloads took {took} s)")
    assert load.statuses == {200: load.done}
    # The reloads did replace workers while the load ran.
    assert len(load.pids - first_pids) >= 4
    errors = [line for line in web.error_log.read_text().splitlines()
              if re.search(r"\[(error|crit|alert|emerg)\]|upstream", line)]
    if keepalive:
        # The reuse race above, which nginx logs and retries (the client
        # saw a 200: load.errors is empty).  Rare: allow a few, no more.
        retried = [line for line in errors if re.search(
            r"(recv|writev|sendmsg)\(\) failed \((104|32): |upstream "
            r"prematurely closed", line)]
        assert len(retried) <= 3, "\n".join(retried)
        errors = [line for line in errors if line not in retried]
    assert errors == [], "\n".join(errors[:10])
    assert not re.search(r"WARNING|ERROR|ALERT", proc.log_text), \
        "fpmd logged a warning during the reloads"
    assert len(proc.wait_workers(4, timeout=15)) == 4


def wchans(pids):
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/wchan") as f:
                out[pid] = f.read()
        except OSError:
            out[pid] = "gone"
    return out


def test_connections_arriving_as_a_generation_leaves_are_all_accepted(
        fpmd, endpoint, sockdir, tmp_path):
    """Regression: a worker of the leaving generation, woken for a new
    connection (one waiter is woken per connection), left without
    accepting it; the connection then waited in the listen queue while
    every worker slept, until another connection came.  (A Unix socket:
    the same happens on TCP, less often per reload.)"""
    ep = endpoint("unix")
    g = globals_for(tmp_path, sockdir)
    proc = fpmd([pool_conf(ep)], global_opts=g)
    params = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/burst"}
    stuck, reloads, last = [], 0, 0.0
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and not stuck:
        if time.monotonic() - last >= 0.05:
            write_conf(proc, g, [pool_conf(ep, opts={
                "pm.max_children": 4 + reloads % 2})])
            proc.signal(signal.SIGHUP)
            reloads += 1
            last = time.monotonic()
        # A burst, as nginx sends them: four requests at once.
        burst = [fc.Connection(ep.client, timeout=2.0) for _ in range(4)]
        try:
            for c in burst:
                c.send_request(params)
            for c in burst:
                try:
                    check_ok(c.read_response(1))
                except TimeoutError:
                    stuck.append(wchans(proc.worker_pids()))
        finally:
            for c in burst:
                c.close()
    assert not stuck, (
        f"a request got no answer in 2 s after {reloads} reloads, while the "
        f"workers slept in {stuck[0]}")
    assert count(proc, r"new generation") >= 10


# ----------------------------------------------------------- per-pool reload

def test_fpmctl_reload_pool_replaces_only_that_pool(
        fpmd, fpmctl, endpoint, sockdir, tmp_path, slow_handler):
    www, other = endpoint("unix", "www"), endpoint("unix", "other")
    g = globals_for(tmp_path, sockdir)
    ctl = g["control.listen"]
    pools = [slow_pool(www, slow_handler, "www", pm__max_children=2),
             slow_pool(other, slow_handler, "other", pm__max_children=2)]
    proc = fpmd(pools, global_opts=g)
    old = pool_pids(fpmctl, ctl)

    # A change to the other pool in the file is not applied by `reload www`.
    changed = [dict(pools[0]), dict(pools[1], **{"pm.max_children": 3})]
    write_conf(proc, g, changed)
    r = fpmctl(ctl, "reload", "www")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok: 1 new or replaced, 0 unchanged, 0 removed"
    new = wait_for(lambda: (lambda p: p if len(p["www"]) == 2 and not
                            set(p["www"]) & set(old["www"]) else None)(
        pool_pids(fpmctl, ctl)), 10, "a new generation of www")
    assert new["other"] == old["other"]
    wait_for(lambda: not alive(old["www"]), 10, "www's old workers to exit")
    assert slow_pid(www) in new["www"]
    assert slow_pid(other) in old["other"]
    assert status(fpmctl, ctl)["other"]["max children"] == 2

    r = fpmctl(ctl, "reload", "nope")
    assert r.returncode == 1
    assert "no pool nope" in r.stderr
    assert pool_pids(fpmctl, ctl) == new
    assert sorted(proc.worker_pids()) == sorted(new["www"] + new["other"])


# ------------------------------------------------------------------ fpmctl

@pytest.mark.parametrize("args", [
    [], ["bogus"], ["status", "--graceful"], ["stop", "--now"],
    ["reload", "a", "b"], ["reopen", "x"], ["status", "a", "b"]],
    ids=lambda a: "-".join(a) or "none")
def test_fpmctl_usage_errors_exit_2(fpmctl, sockdir, args):
    r = fpmctl(sockdir / "ctl.sock", *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "usage: fpmctl" in r.stderr


@pytest.mark.parametrize("args", [["status"], ["reload"], ["reopen"],
                                  ["stop", "--graceful"]],
                         ids=lambda a: "-".join(a))
def test_fpmctl_without_a_master_exits_3(fpmctl, sockdir, args):
    r = fpmctl(sockdir / "nobody-here.sock", *args)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "no fpmd master answers on" in r.stderr


def test_fpmctl_status_reopen_reload_and_graceful_stop(
        fpmd, fpmctl, endpoint, sockdir, tmp_path, slow_handler):
    ep = endpoint("unix")
    g = globals_for(tmp_path, sockdir)
    ctl = g["control.listen"]
    proc = fpmd([slow_pool(ep, slow_handler, "www", pm__max_children=2)],
                global_opts=g)
    st = os.stat(ctl)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)

    r = fpmctl(ctl, "status")
    assert r.returncode == 0 and re.search(r"^pool:\s+www$", r.stdout, re.M)
    r = fpmctl(ctl, "status", "www", "--json")
    assert r.returncode == 0
    assert [p["pool"] for p in json.loads(r.stdout)] == ["www"]
    r = fpmctl(ctl, "status", "nope")
    assert r.returncode == 1 and "no pool nope" in r.stderr
    r = fpmctl(ctl, "reopen")
    assert r.returncode == 0 and r.stdout.startswith("ok"), r
    r = fpmctl(ctl, "reload")
    assert (r.returncode, r.stdout.strip()) == \
        (0, "ok: 0 new or replaced, 1 unchanged, 0 removed")

    # A graceful stop waits for the request in flight; meanwhile a reload
    # is refused.
    flight = InFlight(ep, 3000)
    try:
        r = fpmctl(ctl, "stop", "--graceful")
        assert (r.returncode, r.stdout.strip()) == (0, "ok: stopping")
        r = fpmctl(ctl, "reload")
        assert r.returncode == 1 and "stopping" in r.stderr, r
        resp, took = flight.result()
        slow_answer_pid(resp)
        assert took >= 2.9
    finally:
        flight.conn.close()
    assert proc.wait_exit(STOP_TIMEOUT) == 0
    assert not os.path.exists(ctl)
    r = fpmctl(ctl, "status")
    assert r.returncode == 3


def test_fpmctl_stop_is_fast(fpmd, fpmctl, endpoint, sockdir, tmp_path,
                             slow_handler):
    ep = endpoint("unix")
    g = globals_for(tmp_path, sockdir, process_control_timeout="30s")
    proc = fpmd([slow_pool(ep, slow_handler, "www", pm__max_children=1)],
                global_opts=g)
    flight = InFlight(ep, 10000)
    r = fpmctl(g["control.listen"], "stop")
    assert (r.returncode, r.stdout.strip()) == (0, "ok: stopping")
    assert proc.wait_exit(3.0) == 0
    flight.unavailable(5)


# ------------------------------------------------------------------- stops

@pytest.mark.parametrize("sig", [signal.SIGQUIT, signal.SIGTERM],
                         ids=lambda s: s.name)
def test_graceful_stop_waits_for_a_3s_request(fpmd, endpoint, sockdir,
                                              tmp_path, slow_handler, sig):
    ep = endpoint("unix")
    proc = fpmd([slow_pool(ep, slow_handler, "www", pm__max_children=2)],
                global_opts=globals_for(tmp_path, sockdir))
    flight = InFlight(ep, 3000)
    try:
        signaled = time.monotonic()
        proc.signal(sig)
        proc.wait_log(rf"received SIG{sig.name[3:]}: finishing in-flight")
        resp, took = flight.result()
        slow_answer_pid(resp)
        assert took >= 2.9
    finally:
        flight.conn.close()
    assert proc.wait_exit(STOP_TIMEOUT) == 0
    assert 2.0 <= time.monotonic() - signaled < 8.0
    assert not os.path.exists(ep.path)


def test_stop_is_bounded_by_process_control_timeout_quit_term_kill(
        fpmd, fpmctl, endpoint, sockdir, tmp_path, slow_handler):
    """A 10 s request outlives process_control_timeout = 1s: QUIT, then
    TERM at 1 s (the worker answers 503 and dies), and a worker that
    cannot act on TERM (stopped with SIGSTOP) gets KILL 1 s later: its
    client sees the close."""
    ep = endpoint("unix")
    g = globals_for(tmp_path, sockdir, process_control_timeout="1s")
    proc = fpmd([slow_pool(ep, slow_handler, "www", pm__max_children=2)],
                global_opts=g)
    a = InFlight(ep, 10000, "a")
    b = InFlight(ep, 10000, "b")
    try:
        term_pid = serving_pid(fpmctl, g["control.listen"], "www",
                               a.uri_query)
        stopped_pid = serving_pid(fpmctl, g["control.listen"], "www",
                                  b.uri_query)
        os.kill(stopped_pid, signal.SIGSTOP)
        signaled = time.monotonic()
        proc.signal(signal.SIGQUIT)
        assert proc.wait_exit(STOP_TIMEOUT) == 0
        took = time.monotonic() - signaled
        a.unavailable(5)
        b.cut(5)
    finally:
        a.conn.close()
        b.conn.close()
    # QUIT at 0, TERM at 1 s, KILL at 2 s; on a busy machine a little more.
    assert 1.8 <= took < 8.0, took
    log = proc.log_text
    for line in (r"received SIGQUIT: finishing in-flight",
                 r"process_control_timeout passed: sending SIGTERM",
                 r"workers still alive after SIGTERM: sending SIGKILL",
                 rf"child {term_pid} exited on signal 15 \(SIGTERM\)",
                 rf"child {stopped_pid} exited on signal 9 \(SIGKILL\)",
                 r"exiting, bye-bye"):
        assert re.search(line, log), line
    assert log.index("sending SIGTERM") < log.index("sending SIGKILL")


def test_sigint_stops_at_once_and_ends_the_request_with_503(fpmd, endpoint, sockdir,
                                                   tmp_path, slow_handler):
    ep = endpoint("unix")
    g = globals_for(tmp_path, sockdir, process_control_timeout="30s")
    proc = fpmd([slow_pool(ep, slow_handler, "www", pm__max_children=2)],
                global_opts=g)
    flight = InFlight(ep, 10000)
    signaled = time.monotonic()
    proc.signal(signal.SIGINT)
    assert proc.wait_exit(STOP_TIMEOUT) == 0
    assert time.monotonic() - signaled < 2.0
    assert flight.unavailable(5) < 3.0


# --------------------------------------------------------------- USR1, logs

def test_usr1_reopens_the_error_log_without_restarting_workers(
        fpmd, fpmctl, endpoint, sockdir, tmp_path):
    ep = endpoint("unix")
    g = globals_for(tmp_path, sockdir)
    proc = fpmd([pool_conf(ep, opts={"pm.max_children": 2})], global_opts=g)
    log = Path(g["error_log"])
    pids = proc.worker_pids()
    rotated = log.with_name("error.log.1")
    os.rename(log, rotated)
    proc.signal(signal.SIGUSR1)
    wait_for(lambda: log.exists() and re.search(r"logs? reopened",
                                                log.read_text()), 10,
             "a new error.log saying it was reopened")

    # New lines from the master and from the workers go to the new file.
    r = fpmctl(g["control.listen"], "reload")
    assert r.returncode == 0, r.stderr
    with fc.Connection(ep.client) as conn:       # a worker logs and closes
        conn.send_raw(b"\x02" + fc.encode_begin_request(1)[1:])
        assert conn.wait_closed(5)
    wait_for(lambda: "reloading the configuration" in log.read_text(), 5,
             "the reload's lines in the new file")
    wait_for(lambda: re.search(r"\[pool www\] child \d+.*connection closed",
                               log.read_text()), 5,
             "the worker's line about the bad record in the new file")
    old_text = rotated.read_text()
    assert "reloading" not in old_text
    assert "connection closed" not in old_text, \
        "a worker still writes to the rotated log"
    assert proc.worker_pids() == pids
    _, page = echo_request(ep.client)
    assert page.pid in pids


# -------------------------------------------------------------------- storm

def test_signal_storm_kills_nothing(fpmd, fpmctl, endpoint, sockdir,
                                    tmp_path):
    a, b, c = endpoint("unix", "a"), endpoint("unix", "b"), endpoint("tcp")
    g = globals_for(tmp_path, sockdir)
    ctl = g["control.listen"]

    def pools(a_children):
        return [pool_conf(a, "a", {"pm.max_children": a_children}),
                pool_conf(b, "b", {"pm": "dynamic", "pm.max_children": 4,
                                   "pm.start_servers": 2,
                                   "pm.min_spare_servers": 1,
                                   "pm.max_spare_servers": 3}),
                pool_conf(c, "c", {"pm": "ondemand", "pm.max_children": 2,
                                   "pm.process_idle_timeout": "30s"})]
    proc = fpmd(pools(2), global_opts=g)
    sizes = [2 if i % 2 else 3 for i in range(30)]
    for i, n in enumerate(sizes):
        write_conf(proc, g, pools(n))
        if i % 3 == 0:
            proc.signal(signal.SIGUSR1)
        proc.signal(signal.SIGHUP)
        time.sleep(0.01)        # the storm's pace, not a wait
    assert proc.running()

    final = sizes[-1]
    def settled():
        st = status(fpmctl, ctl)
        return (set(st) == {"a", "b", "c"}
                and st["a"]["max children"] == final
                and len(st["a"]["processes"]) == final
                and len(st["b"]["processes"]) == 2
                # c is ondemand: the workers its connections started.
                and len(proc.worker_pids()) ==
                final + 2 + len(st["c"]["processes"]))
    wait_for(settled, 20, "the pools to settle after the storm")
    for ep in (a, b, c):
        check_ok(fc.request(ep.client, {"REQUEST_METHOD": "GET"}))
    wait_for(lambda: not zombies(proc.pid), 5, "no zombie children")
    assert final + 3 <= len(proc.worker_pids()) <= final + 4
    assert proc.running()
    text = proc.log_text
    assert re.search(r"logs? reopened", text)
    assert not re.search(r"ERROR|ALERT|exited on signal", text), \
        [line for line in text.splitlines()
         if re.search(r"ERROR|ALERT|exited on signal", line)][:5]


# ---------------------------------------------------------------------- -D

def _procs_with_arg(arg):
    """Pids of processes whose command line holds ARG (to find a detached
    fpmd and its workers)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if arg.encode() in argv:
            out.append(int(d))
    return out


def _kill_detached(conf_path):
    """Stop a detached fpmd by pid (TERM, then KILL), with its workers."""
    pids = _procs_with_arg(str(conf_path))
    masters = [p for p in pids if (proc_stat(p) or ("", 0))[1] not in pids]
    for p in masters:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        wait_for(lambda: not alive(pids), STOP_TIMEOUT)
    except AssertionError:
        for p in alive(pids):
            os.kill(p, signal.SIGKILL)
        raise


@pytest.fixture
def detached(fpmd_bin, tmp_path):
    """Factory: detached(CONFIG_TEXT) runs `fpmd -D -c CONF` with pipes for
    stdout and stderr and returns (Popen, conf_path).  Teardown stops what
    is left by pid."""
    confs = []

    def run(text):
        conf = tmp_path / f"fpmd-D{len(confs)}.conf"
        conf.write_text(text)
        confs.append(conf)
        return subprocess.Popen([fpmd_bin, "-D", "-c", str(conf)],
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE), conf
    yield run
    for conf in confs:
        _kill_detached(conf)


def test_daemonize_returns_once_ready_with_pid_file_and_stdio_released(
        detached, endpoint, tmp_path):
    ep = endpoint("unix")
    pidfile = tmp_path / "fpmd.pid"
    text = render_conf({"pid": str(pidfile),
                        "error_log": str(tmp_path / "error.log")},
                       [pool_conf(ep, opts={"pm.max_children": 2})])
    launcher, conf = detached(text)
    try:
        rc = launcher.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        launcher.kill()
        raise
    assert rc == 0, (tmp_path / "error.log").read_text()
    # Right after the launcher returns: answers, and the pid file is there.
    _, page = echo_request(ep.client)
    daemon = int(pidfile.read_text())
    assert daemon != launcher.pid
    st = proc_stat(daemon)
    assert st is not None and st[0] != "Z"
    assert os.getsid(daemon) == daemon, "the daemon is not a session leader"
    assert page.pid in proc_children(daemon)
    assert len(proc_children(daemon)) == 2

    # The launcher's pipes reach EOF: nobody holds them any more.
    def eof():
        try:
            launcher.communicate(timeout=0.2)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        wait_for(eof, 5, "EOF on the launcher's stdout and stderr pipes")
    except AssertionError:
        holders = [p for p in [daemon] + proc_children(daemon)
                   if any(os.readlink(f"/proc/{p}/fd/{fd}").startswith(
                       "pipe:") for fd in ("0", "1", "2")
                       if os.path.exists(f"/proc/{p}/fd/{fd}"))]
        raise AssertionError(f"the launcher's pipes are still open in "
                             f"pids {holders} (daemon {daemon})")


def test_daemonize_with_workers_failing_at_start_exits_nonzero(
        detached, endpoint, tmp_path):
    ep = endpoint("unix")
    pidfile = tmp_path / "fpmd.pid"
    text = render_conf({"pid": str(pidfile),
                        "error_log": str(tmp_path / "error.log")},
                       [pool_conf(ep, opts={"chdir": "/nonexistent"})])
    launcher, conf = detached(text)
    try:
        rc = launcher.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        launcher.kill()
        raise
    assert rc != 0
    wait_for(lambda: not alive(_procs_with_arg(str(conf))), STOP_TIMEOUT,
             "the detached master to give up and exit")
    assert not pidfile.exists()
    assert "workers fail at start" in (tmp_path / "error.log").read_text()
