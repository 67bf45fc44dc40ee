"""The process managers under real load: static, dynamic and ondemand
pools, pm.max_requests (+ jitter), request_terminate_timeout, workers that
crash or cannot start, process.max and emergency restart.

Workers are counted from /proc (the master's children), sampled every few
milliseconds while load runs.  The slow test handler (tests/handlers/slow.c,
the `slow_handler` fixture) holds a worker busy (ms=N), crashes it
(crash=1) and names the worker that answered ("pid N").
"""

import os
import re
import signal
import threading
import time
from collections import Counter

import pytest

import fcgi_client as fc
from conftest import (READY_LINE, check_ok, parse_echo, peer_has_read_all,
                      pool_conf, proc_workers, proc_stat, same_process_alive,
                      slow_answer_pid, slow_params, wait_for)

MAX_CHILDREN_LINE = (r"WARNING: \[pool {pool}\] server reached "
                     r"pm.max_children setting \({n}\), consider raising it")


# ----------------------------------------------------------------- helpers

def slow_request(address, query, timeout=20.0):
    """One request to the slow handler on a new connection: its pid."""
    return slow_answer_pid(fc.request(address, slow_params(query),
                                   timeout=timeout))


def send_all(address, queries, timeout=20.0):
    """A step of load: one connection per query, each request sent whole
    before any answer is read.  Returns the open connections."""
    conns = []
    try:
        for q in queries:
            conns.append(fc.Connection(address, timeout=timeout))
            conns[-1].send_request(slow_params(q))
    except BaseException:
        for c in conns:
            c.close()
        raise
    return conns


def collect(conns):
    """The answers on CONNS (from send_all), in order, each a Response or
    the exception that ended it; closes every connection."""
    out = []
    try:
        for c in conns:
            try:
                out.append(c.read_response(1))
            except (fc.FcgiError, OSError) as e:
                out.append(e)
    finally:
        for c in conns:
            c.close()
    return out


def pids_of(results):
    """Worker pids of RESULTS (from collect), asserting that each one is a
    complete 200 answer."""
    bad = [r for r in results if not isinstance(r, fc.Response)
           or r.status != 200 or r.protocol_status != fc.REQUEST_COMPLETE]
    assert not bad, f"{len(bad)} of {len(results)} requests failed: {bad[:3]}"
    return [slow_answer_pid(r) for r in results]


def pin(address):
    """A kept connection after one quick request: (connection, the pid of
    the worker it pins)."""
    conn = fc.Connection(address, timeout=20.0)
    try:
        pid = slow_answer_pid(conn.request(slow_params("ms=0"), keep_conn=True))
    except BaseException:
        conn.close()
        raise
    return conn, pid


def cut_short(conn, query, timeout=20.0):
    """Send QUERY on CONN and expect no 200: returns the ConnectionClosed
    (or the error Response) the client got instead."""
    conn.send_request(slow_params(query), keep_conn=True)
    try:
        resp = conn.read_response(1, timeout=timeout)
    except fc.ConnectionClosed as e:
        return e
    assert resp.status >= 500, (
        f"{query}: expected the connection closed or an error, got "
        f"{resp.status}: {resp.stdout[:200]!r}")
    return resp


def cpu_seconds(pid):
    """User + system CPU time PID has used so far, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def count_lines(proc, pattern, since=0):
    """How many log lines after position SINCE match regex PATTERN."""
    return len(re.findall(pattern, proc.log_text[since:], re.M))


class WorkerSampler(threading.Thread):
    """Counts the master's children from /proc every few milliseconds
    until the with-block ends: `most` is the largest count seen, `seen`
    every pid."""

    def __init__(self, proc, interval=0.003):
        super().__init__(daemon=True)
        self.pid = proc.pid
        self.interval = interval
        self.halt = threading.Event()
        self.most = 0
        self.seen = set()

    def run(self):
        while not self.halt.is_set():
            pids = proc_workers(self.pid)
            self.most = max(self.most, len(pids))
            self.seen.update(pids)
            self.halt.wait(self.interval)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.halt.set()
        self.join(5)


def slow_pool(ep, handler, name="www", **directives):
    """A pool dict (conftest.pool_conf) running the slow handler;
    DIRECTIVES spell '.' as '__', e.g. pm__max_children=3."""
    opts = {"handler": handler}
    opts.update({k.replace("__", "."): v for k, v in directives.items()})
    return pool_conf(ep, name=name, opts=opts)


# ------------------------------------------------------------------ static

def test_static_pool_keeps_exactly_max_children(fpmd, endpoint,
                                                slow_handler):
    ep = endpoint("tcp")
    proc = fpmd([slow_pool(ep, slow_handler, pm="static",
                           pm__max_children=3)])
    start = proc.worker_pids()
    assert len(start) == 3
    # Three times as many slow requests as workers: they queue, the pool
    # does not grow.
    with WorkerSampler(proc) as sampler:
        pids = pids_of(collect(send_all(ep.client, ["ms=300"] * 9)))
    assert set(pids) <= set(start)
    assert sampler.most == 3
    assert sampler.seen == set(start)
    assert proc.worker_pids() == start

    # A SIGKILLed worker is replaced, one for one.
    victim = start[0]
    mark = proc.log_mark()
    with WorkerSampler(proc) as sampler:
        os.kill(victim, signal.SIGKILL)
        proc.wait_log(rf"WARNING: \[pool www\] child {victim} exited on "
                      rf"signal 9 \(SIGKILL\) after \d+\.\d{{3}}s", since=mark)
        after = proc.wait_workers(3, without=[victim])
    assert sampler.most <= 3
    assert len(set(after) - set(start)) == 1
    served = pids_of(collect(send_all(ep.client, ["ms=200"] * 6)))
    assert set(served) <= set(after)


# ----------------------------------------------------------------- dynamic

@pytest.mark.parametrize("min_spare,max_spare,start,expected", [
    (2, 5, 3, 3),           # pm.start_servers as configured
    (2, 6, None, 4),        # unset: min + (max - min) / 2, as PHP-FPM
], ids=["set", "defaulted"])
def test_dynamic_pool_starts_start_servers(fpmd, endpoint, slow_handler,
                                           min_spare, max_spare, start,
                                           expected):
    ep = endpoint("tcp")
    proc = fpmd([slow_pool(ep, slow_handler, pm="dynamic",
                           pm__max_children=10,
                           pm__min_spare_servers=min_spare,
                           pm__max_spare_servers=max_spare,
                           pm__start_servers=start)])
    assert len(proc.worker_pids()) == expected
    notice = (rf"NOTICE: \[pool www\] pm.start_servers is not set: "
              rf"starting {expected} workers")
    assert count_lines(proc, notice) == (1 if start is None else 0), \
        proc.log_text
    # One request at a time never takes the idle count below
    # min_spare_servers: nothing to spawn, nothing to retire.  On one kept
    # connection: on new ones, a worker marks itself Idle just after its
    # client has the answer, so the next request may find it still busy
    # and the pool rightly one short of spares (seen once, under load).
    with WorkerSampler(proc) as sampler:
        conn, pid = pin(ep.client)
        try:
            for _ in range(20):
                assert slow_answer_pid(conn.request(
                    slow_params("ms=0"), keep_conn=True)) == pid
        finally:
            conn.close()
    assert sampler.most == expected
    assert len(proc.worker_pids()) == expected


def step_to_max(proc, ep, count, ms):
    """COUNT slow requests of MS ms at once on a dynamic pool of
    max_children COUNT (log_level debug): returns (seconds until COUNT
    workers exist, the answering pids)."""
    with WorkerSampler(proc) as sampler:
        t0 = time.monotonic()
        conns = send_all(ep.client, [f"ms={ms}"] * count)
        try:
            wait_for(lambda: len(proc_workers(proc.pid)) >= count, 10,
                     f"{count} workers", max_interval=0.002)
            took = time.monotonic() - t0
        finally:
            results = collect(conns)
    assert sampler.most == count, f"{sampler.most} workers, max {count}"
    return took, pids_of(results)


def retire_while_queued(proc, since=0):
    """Debug lines (log_level debug) of decisions to retire while
    connections wait: then the pool may only grow, or its spawn-rate ramp
    stalls (or a worker is retired under load)."""
    return re.findall(r"^.*\] total \d+, .*queue [1-9]\d*, rate \d+: "
                      r"spawn \d+, retire [1-9]\d* .*$", proc.log_text[since:],
                      re.M)


def test_dynamic_pool_steps_to_32_workers_and_shrinks_to_max_spare(
        fpmd, endpoint, slow_handler):
    ep = endpoint("tcp")
    proc = fpmd([slow_pool(ep, slow_handler, pm="dynamic",
                           pm__max_children=32, pm__start_servers=2,
                           pm__min_spare_servers=1,
                           pm__max_spare_servers=3)],
                global_opts={"log_level": "debug"})
    assert len(proc.worker_pids()) == 2
    reached = MAX_CHILDREN_LINE.format(pool="www", n=32)

    # Episode 1: a step from idle to 32 concurrent 2 s requests.
    mark = proc.log_mark()
    took, pids = step_to_max(proc, ep, 32, 2000)
    print(f"dynamic pool (tcp): 2 -> 32 workers in {took * 1000:.0f} ms")
    # All 32 ran at once: 32 different workers answered.  A pool that
    # grew on a one-second tick would still be short of workers when the
    # first 2 s requests end, and those workers would answer twice.  This
    # says "fast" without a wall-clock bound the shared machine can break.
    assert len(set(pids)) == 32
    assert count_lines(proc, reached, mark) == 1, proc.log_text[mark:]
    assert re.search(r"DEBUG: \[pool www\] total \d+, .*queue \d+, rate \d+: "
                     r"spawn [1-9]\d*, retire 0 \(", proc.log_text[mark:]), \
        "no spawn decision logged at debug"

    # Then back to max_spare_servers idle workers, one retired a second.
    t0 = time.monotonic()
    proc.wait_workers(3, timeout=90)
    shrink = time.monotonic() - t0
    print(f"dynamic pool (tcp): 32 -> 3 workers in {shrink:.1f}s")
    retired = count_lines(proc, r"DEBUG: \[pool www\] retiring child \d+, "
                          r"idle for \d+ ms: more idle than "
                          r"pm.max_spare_servers", mark)
    assert retired == 29, proc.log_text[mark:][-3000:]
    assert shrink > 29 * 0.8, f"29 retired in {shrink:.1f}s: not one a second"
    # Still one line: the episode lasts until workers are forked again.
    assert count_lines(proc, reached, mark) == 1

    # Episode 2: a new step forks again and reaches the limit again.
    mark2 = proc.log_mark()
    took, pids = step_to_max(proc, ep, 32, 1000)
    print(f"dynamic pool (tcp), second step: 3 -> 32 workers in "
          f"{took * 1000:.0f} ms")
    assert len(set(pids)) == 32
    assert count_lines(proc, reached, mark2) == 1, proc.log_text[mark2:]
    wrong = retire_while_queued(proc, mark)
    assert not wrong, "retire decided while connections wait:\n" + \
        "\n".join(wrong)


def test_dynamic_pool_grows_on_a_unix_socket_queue(fpmd, endpoint,
                                                   slow_handler):
    # The listen queue of a Unix socket comes from sock_diag, not TCP_INFO.
    ep = endpoint("unix")
    proc = fpmd([slow_pool(ep, slow_handler, pm="dynamic",
                           pm__max_children=32, pm__start_servers=2,
                           pm__min_spare_servers=1,
                           pm__max_spare_servers=3)],
                global_opts={"log_level": "debug"})
    took, pids = step_to_max(proc, ep, 32, 2000)
    print(f"dynamic pool (unix): 2 -> 32 workers in {took * 1000:.0f} ms")
    assert len(set(pids)) == 32
    wrong = retire_while_queued(proc)
    assert not wrong, "retire decided while connections wait:\n" + \
        "\n".join(wrong)


# ---------------------------------------------------------------- ondemand

def test_ondemand_pool_forks_per_connection_and_retires_idle_workers(
        fpmd, endpoint, slow_handler):
    ep = endpoint("tcp")
    # No accept() probe at start (endpoints=[]): its connection would
    # fork a worker.  The socket listens before fpmd says it is ready.
    proc = fpmd([slow_pool(ep, slow_handler, pm="ondemand",
                           pm__max_children=4,
                           pm__process_idle_timeout="1s")],
                endpoints=[], global_opts={"log_level": "debug"})
    assert proc.worker_pids() == []

    # One connection: one worker, forked for it, serving it.
    mark = proc.log_mark()
    pid = slow_request(ep.client, "ms=0")
    served_at = time.monotonic()
    assert proc.worker_pids() == [pid]
    # Idle for pm.process_idle_timeout, it leaves (cleanly).
    proc.wait_log(rf"NOTICE: \[pool www\] child {pid} exited with code 0 "
                  rf"after", timeout=10, since=mark)
    idle = time.monotonic() - served_at
    proc.wait_workers(0)
    assert idle >= 0.9, f"retired after {idle:.3f}s idle (timeout 1s)"

    # A burst of 8 forks several workers, never more than max_children.
    mark = proc.log_mark()
    with WorkerSampler(proc) as sampler:
        pids = pids_of(collect(send_all(ep.client, ["ms=500"] * 8)))
    assert 2 <= sampler.most <= 4, sampler.most
    assert len(set(pids)) <= 4
    assert set(pids) <= sampler.seen
    assert count_lines(proc, MAX_CHILDREN_LINE.format(pool="www", n=4),
                       mark) == 1, proc.log_text[mark:]
    proc.wait_workers(0, timeout=15)


def test_saturated_ondemand_pool_does_not_spin_the_master(fpmd, endpoint,
                                                         slow_handler):
    # At max_children with connections queued, the master can do nothing
    # for them: it must wait for a worker, not poll the listening socket.
    ep = endpoint("tcp")
    proc = fpmd([slow_pool(ep, slow_handler, pm="ondemand",
                           pm__max_children=2,
                           pm__process_idle_timeout="10s")], endpoints=[])
    cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
    pids = pids_of(collect(send_all(ep.client, ["ms=1000"] * 4)))
    cpu, wall = cpu_seconds(proc.pid) - cpu0, time.monotonic() - t0
    assert len(set(pids)) == 2
    assert cpu < 0.2 * wall, (f"the master used {cpu:.2f}s of CPU in "
                              f"{wall:.2f}s with 2 connections queued")


def test_ondemand_worker_failing_at_start_backs_off_without_spinning(
        fpmd, endpoint):
    ep = endpoint("tcp")
    proc = fpmd([pool_conf(ep, opts={"pm": "ondemand", "pm.max_children": 2,
                                     "chdir": "/nonexistent"})],
                endpoints=[])
    cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
    # A connection the pool cannot serve: each worker forked for it fails.
    with fc.Connection(ep.client, timeout=20.0) as conn:
        conn.send_request(slow_params(""))
        proc.wait_log(r"WARNING: \[pool www\] 4 workers died at start in a "
                      r"row: next spawn in \d+ ms")
        cpu, wall = cpu_seconds(proc.pid) - cpu0, time.monotonic() - t0
    forks = count_lines(proc, r"child \d+ exited with code 2")
    assert forks <= 5, proc.log_text
    assert cpu < 0.2 * wall, (f"the master used {cpu:.2f}s of CPU in "
                              f"{wall:.2f}s while backing off")
    assert proc.running()


# -------------------------------------------------------- pm.max_requests

def test_max_requests_recycles_workers_with_zero_failed_requests(
        fpmd, endpoint):
    ep = endpoint("tcp")
    proc = fpmd([pool_conf(ep, opts={"pm.max_children": 2,
                                     "pm.max_requests": 20})])
    start = proc.worker_pids()
    pages, failures = [], []

    def client(n):
        for i in range(n):
            try:
                resp = fc.request(ep.client, {"N": str(i)})
                check_ok(resp)
                pages.append(parse_echo(resp.body))
            except Exception as e:          # noqa: BLE001 -- recorded
                failures.append(repr(e))

    threads = [threading.Thread(target=client, args=(100,), daemon=True)
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert failures == []
    assert len(pages) == 400
    served = Counter(p.pid for p in pages)
    # Every worker serves at most 20, each numbered once.
    assert max(served.values()) <= 20, served
    assert all(p.requests <= 20 for p in pages)
    assert len({(p.pid, p.requests) for p in pages}) == 400
    assert len(served) >= 20
    assert not set(proc.worker_pids()) & set(start)
    # Recycled workers leave cleanly, nobody killed them.
    full = {pid for pid, n in served.items() if n == 20}
    assert len(full) >= 19, served
    wait_for(lambda: full <= {int(p) for p in re.findall(
        r"child (\d+) exited", proc.log_text)}, 10,
        "every worker that served 20 requests to exit")
    exits = re.findall(r"child (\d+) exited (.*) after", proc.log_text)
    assert all(how == "with code 0" for _, how in exits), exits


def test_max_requests_jitter_recycles_between_n_and_n_plus_jitter(
        fpmd, endpoint):
    ep = endpoint("tcp")
    proc = fpmd([pool_conf(ep, opts={"pm.max_children": 2,
                                     "pm.max_requests": 5,
                                     "pm.max_requests_jitter": 5})])
    served = Counter()
    for i in range(250):
        resp = fc.request(ep.client, {"N": str(i)})
        check_ok(resp)
        served[parse_echo(resp.body).pid] += 1
    # The workers that have left served their whole life on our requests.
    left = {int(p) for p in re.findall(r"child (\d+) exited with code 0",
                                       proc.log_text)}
    assert len(left) >= 15, proc.log_text
    lives = {served[p] for p in left}
    assert min(lives) >= 5 and max(lives) <= 10, sorted(
        (p, served[p]) for p in left)
    # The jitter is really drawn per worker.
    assert len(lives) > 1, lives


# ---------------------------------------------- request_terminate_timeout

def test_request_terminate_timeout_kills_the_stuck_worker(fpmd, endpoint,
                                                          slow_handler):
    ep = endpoint("tcp")
    proc = fpmd([slow_pool(ep, slow_handler, pm__max_children=2,
                           request_terminate_timeout="1s")])
    conn, pid = pin(ep.client)
    mark = proc.log_mark()
    t0 = time.monotonic()
    try:
        outcome = cut_short(conn, "ms=5000")
    finally:
        conn.close()
    took = time.monotonic() - t0
    # Not a hang, and not the handler's own answer at 5 s: a 504 that
    # nginx passes on (a bare close would be its 502).
    assert took < 4.0, f"the client waited {took:.1f}s ({outcome!r})"
    assert isinstance(outcome, fc.Response), outcome
    assert (outcome.status, outcome.body) == (504, b"504 Gateway Timeout\n")
    assert outcome.protocol_status == fc.REQUEST_COMPLETE
    m = proc.wait_log(rf"WARNING: \[pool www\] child {pid}, script "
                      rf"'/srv/slow' \(request: \"([^\"]*)\"\) "
                      rf"execution timed out \((\d+\.\d+) sec\), terminating",
                      since=mark)
    proc.wait_log(rf"\[pool www\] child {pid} exited on signal 15 "
                  rf"\(SIGTERM\)", since=mark)
    assert "sending SIGKILL" not in proc.log_text[mark:]
    proc.wait_workers(2, without=[pid])
    slow_request(ep.client, "ms=0")

    problems = []
    # Killed after the timeout (the master looks every timeout / 3, as
    # PHP-FPM) and well before the handler's own 5 s; the upper bound has
    # room for a loaded machine.
    ran = float(m.group(2))
    if not 1.0 <= ran < 3.0:
        problems.append(f"a 1s timeout fired after {ran}s")
    # nginx's REQUEST_URI carries the query string already.
    if m.group(1) != "GET /slow?ms=5000":
        problems.append(f"request logged as {m.group(1)!r}")
    assert not problems, f"{problems}: {m.group(0)}"


def test_request_terminate_timeout_kills_a_worker_deaf_to_sigterm(
        fpmd, endpoint, slow_handler):
    """A worker that cannot act on the SIGTERM (here: stopped) gets
    SIGKILL a second later, and its client a close."""
    ep = endpoint("tcp")
    proc = fpmd([slow_pool(ep, slow_handler, pm__max_children=2,
                           request_terminate_timeout="1s")])
    conn, pid = pin(ep.client)
    mark = proc.log_mark()
    try:
        conn.send_request(slow_params("ms=10000"), keep_conn=True)
        wait_for(lambda: peer_has_read_all(conn), 10, "the request read")
        os.kill(pid, signal.SIGSTOP)
        with pytest.raises(fc.ConnectionClosed):
            conn.read_response(1, timeout=20)
    finally:
        conn.close()
    for line in (rf"child {pid}, script '/srv/slow' .* execution timed out",
                 rf"child {pid} still alive 1000 ms after SIGTERM: sending "
                 rf"SIGKILL",
                 rf"child {pid} exited on signal 9 \(SIGKILL\)"):
        proc.wait_log(line, since=mark)
    proc.wait_workers(2, without=[pid])


def test_worker_idle_on_a_kept_connection_is_not_terminated(fpmd, endpoint,
                                                            slow_handler):
    ep = endpoint("tcp")
    proc = fpmd([slow_pool(ep, slow_handler, pm__max_children=2,
                           request_terminate_timeout="1s")])
    conn, pid = pin(ep.client)
    try:
        born = proc_stat(pid)[2]
        mark = proc.log_mark()
        # Two requests on the other worker outlive the timeout and are
        # killed: the check ran while ours sat idle on its connection for
        # over twice the timeout.
        def timed_out():
            return [int(p) for p in re.findall(
                r"child (\d+), script .* execution timed out",
                proc.log_text[mark:])]

        for n in (1, 2):
            with fc.Connection(ep.client, timeout=20.0) as other:
                cut_short(other, "ms=3000")
            killed = wait_for(lambda: len(timed_out()) >= n and timed_out(),
                              10, f"timeout kill {n}")[-1]
            assert killed != pid
            proc.wait_workers(2, without=[killed])
        assert same_process_alive(pid, born)
        # ... and it serves the next request on that connection.
        assert slow_answer_pid(conn.request(slow_params("ms=0"),
                                         keep_conn=True)) == pid
    finally:
        conn.close()


def master_wakeups(pid):
    """How often the master has woken up so far (the voluntary context
    switches of its single thread).  A static pool's master wakes for its
    timer tick and for SIGCHLD only, so N more wakeups mean at least N - 1
    whole ticks have run."""
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)$",
                             f.read(), re.M).group(1))


def test_slow_headers_after_a_long_idle_keepalive_are_not_a_stuck_request(
        fpmd, endpoint, slow_handler):
    # request_terminate_timeout counts from the start of a request (as
    # PHP-FPM: from the first byte of its headers), never from the start of
    # the previous one on the same worker.
    ep = endpoint("tcp")
    proc = fpmd([slow_pool(ep, slow_handler, pm__max_children=1,
                           request_terminate_timeout="3s")])
    conn, pid = pin(ep.client)
    try:
        born = proc_stat(pid)[2]
        idle_from = time.monotonic()
        w0 = master_wakeups(proc.pid)
        wait_for(lambda: master_wakeups(proc.pid) >= w0 + 4
                 and time.monotonic() - idle_from > 3.0, 15,
                 "the kept connection idle past the timeout")
        # The next request's headers come slowly: half the params, then
        # two master ticks (well under the 3 s timeout), then the rest.
        params = fc.encode_pairs(slow_params("ms=0"))
        half = len(params) // 2
        mark = proc.log_mark()
        conn.send_raw(fc.encode_begin_request(1, flags=fc.KEEP_CONN)
                      + fc.encode_record(fc.PARAMS, 1, params[:half]))
        w0 = master_wakeups(proc.pid)
        wait_for(lambda: master_wakeups(proc.pid) >= w0 + 2, 10,
                 "two master ticks")
        assert same_process_alive(pid, born), (
            "the worker reading a new request was killed:\n"
            + proc.log_text[mark:])
        conn.send_raw(fc.encode_record(fc.PARAMS, 1, params[half:])
                      + fc.encode_record(fc.PARAMS, 1)
                      + fc.encode_stream(fc.STDIN, 1, b""))
        assert slow_answer_pid(conn.read_response(1)) == pid
    finally:
        conn.close()
    assert "timed out" not in proc.log_text


# ------------------------------------------------- crashes, start failure

@pytest.mark.parametrize("crash,sig", [(1, "11 \\(SIGSEGV"),
                                       (3, "11 \\(SIGSEGV"),
                                       (4, "6 \\(SIGABRT")],
                         ids=["raised", "stack-overflow", "abort"])
def test_crashing_handler_costs_only_its_worker(fpmd, endpoint,
                                                slow_handler, crash, sig):
    """A handler that crashes before any of its answer has left: the
    client still gets a complete 500 (nginx would otherwise answer 502),
    the master logs which request it was, and only that worker goes."""
    ep = endpoint("tcp")
    proc = fpmd([slow_pool(ep, slow_handler, pm__max_children=2)])
    conn, pid = pin(ep.client)
    mark = proc.log_mark()
    try:
        resp = cut_short(conn, f"crash={crash}")
    finally:
        conn.close()
    assert isinstance(resp, fc.Response), resp
    assert resp.status == 500 and resp.body == b"500 Internal Server Error\n"
    assert resp.protocol_status == fc.REQUEST_COMPLETE
    proc.wait_log(rf"WARNING: \[pool www\] child {pid} exited on signal "
                  rf"{sig}( - core dumped)?\) after \d+\.\d{{3}}s serving "
                  rf"\"GET /slow\?crash={crash}\" \(script '/srv/slow'\)",
                  since=mark)
    after = proc.wait_workers(2, without=[pid])
    pids = pids_of(collect(send_all(ep.client, ["ms=50"] * 6)))
    assert set(pids) <= set(after)
    assert proc.running()


def test_crash_after_the_answer_began_cuts_it_short(fpmd, endpoint,
                                                   slow_handler):
    """Once part of the answer has left, a 500 cannot follow it: the
    client gets what was sent and a close without END_REQUEST."""
    ep = endpoint("tcp")
    proc = fpmd([slow_pool(ep, slow_handler, pm__max_children=1)])
    conn, pid = pin(ep.client)
    try:
        conn.send_request(slow_params("crash=2"), keep_conn=True)
        with pytest.raises(fc.ConnectionClosed) as e:
            conn.read_response(1, timeout=20)
    finally:
        conn.close()
    assert e.value.partial.stdout.endswith(b"\r\n\r\nbefore the crash\n")
    assert e.value.partial.protocol_status is None
    proc.wait_log(rf"child {pid} exited on signal 11 \(SIGSEGV")


def test_crashing_handler_through_nginx_is_a_500(fpmd, endpoint, nginx,
                                                 slow_handler):
    ep = endpoint("unix")
    proc = fpmd([slow_pool(ep, slow_handler, pm__max_children=1)])
    web = nginx(ep, keepalive=True)
    status, _, body = web.request("GET", "/slow?crash=1")
    assert (status, body) == (500, b"500 Internal Server Error\n")
    proc.wait_log(r"exited on signal 11 \(SIGSEGV")
    # The next request finds the replacement worker.
    status, _, body = web.request("GET", "/slow?ms=0")
    assert status == 200 and body.startswith(b"pid "), body


@pytest.mark.parametrize("pm", ["static", "dynamic"])
def test_workers_failing_at_start_make_fpmd_exit_not_fork_in_a_loop(
        fpmd, endpoint, pm):
    # chdir fails in every worker before its accept loop.
    ep = endpoint("tcp")
    spares = ({"pm.min_spare_servers": 1, "pm.max_spare_servers": 3,
               "pm.start_servers": 3} if pm == "dynamic" else {})
    proc = fpmd([pool_conf(ep, opts={"pm": pm, "pm.max_children": 3,
                                     "chdir": "/nonexistent", **spares})],
                start=False)
    proc.start(wait=False)
    rc = proc.wait_exit(15)
    log = proc.log_text
    assert rc == 1, f"exit status {rc}\n{log}"
    assert READY_LINE not in log
    assert re.search(r"chdir\(/nonexistent\): No such file or directory",
                     log), log
    # At most the start workers were forked, then fpmd gave up.
    forks = re.findall(r"child \d+ exited", log)
    assert 1 <= len(forks) <= 3, log
    assert count_lines(proc, r"ERROR: workers fail at start") == 1, log


# -------------------------------------------- process.max, emergency restart

def test_process_max_caps_children_across_pools(fpmd, endpoint,
                                                slow_handler):
    a, b = endpoint("tcp", "a"), endpoint("tcp", "b")
    proc = fpmd([slow_pool(a, slow_handler, name="a", pm="static",
                           pm__max_children=3),
                 slow_pool(b, slow_handler, name="b", pm="dynamic",
                           pm__max_children=10, pm__start_servers=2,
                           pm__min_spare_servers=1,
                           pm__max_spare_servers=3)],
                global_opts={"process.max": 5})
    assert len(proc.worker_pids()) == 5
    with WorkerSampler(proc) as sampler:
        conns = send_all(b.client, ["ms=400"] * 8)
        conns += send_all(a.client, ["ms=400"] * 3)
        pids = pids_of(collect(conns))
    assert sampler.most == 5
    assert len(set(pids)) <= 5
    # Pool b is held by process.max, not by its own pm.max_children (2 of
    # 10), and the warning says so, as PHP-FPM's does.
    assert not re.search(MAX_CHILDREN_LINE.format(pool="b", n=10),
                         proc.log_text), proc.log_text
    assert re.search(r"WARNING: \[pool b\] .*process\.max", proc.log_text), \
        proc.log_text


def test_emergency_restart_replaces_every_worker(fpmd, endpoint,
                                                 slow_handler):
    ep = endpoint("tcp")
    proc = fpmd([slow_pool(ep, slow_handler, pm="static",
                           pm__max_children=4)],
                global_opts={"emergency_restart_threshold": 3,
                             "emergency_restart_interval": "10s"})
    mark = proc.log_mark()
    for n in (1, 2, 3):
        # Those alive before the third crash must all be replaced.
        before = proc.worker_pids()
        with fc.Connection(ep.client, timeout=20.0) as conn:
            cut_short(conn, "crash=1")
        wait_for(lambda: count_lines(proc, r"exited on signal 11 "
                                     r"\(SIGSEGV\)", mark) >= n, 10,
                 f"crash {n} logged")
    proc.wait_log(r"WARNING: 3 workers crashed \(SIGSEGV or SIGBUS\) within "
                  r"10000 ms: emergency restart of every worker", since=mark)
    after = proc.wait_workers(4, without=before, timeout=15)
    assert not set(after) & set(before)
    pids = pids_of(collect(send_all(ep.client, ["ms=50"] * 8)))
    assert set(pids) <= set(after)
