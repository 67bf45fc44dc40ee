"""Serving FastCGI directly (no web server in front) and the master's life
cycle: workers, signals, pid file, privilege drop."""

import os
import re
import signal
import threading
import time
from collections import Counter

import pytest

import fcgi_client as fc
from conftest import (IS_ROOT, STOP_TIMEOUT, Endpoint, check_ok, echo_request,
                      nobody_group, parse_echo, pool_conf,
                      server_has_read_all, wait_for)

ALL_TRANSPORTS = ["tcp", "tcp6", "unix"]
TRANSPORTS = ["tcp", "unix"]

PARAMS = [
    ("SCRIPT_NAME", "/echo"),
    ("REQUEST_METHOD", "GET"),
    ("QUERY_STRING", "a=1&b=two"),
    ("EMPTY", ""),
    ("LONG_VALUE", "v" * 300),          # 4-byte value length
    ("N" * 200, "long name"),           # 4-byte name length
    ("UTF8", "h\u00e9llo \u2713"),
    ("SERVER_PROTOCOL", "HTTP/1.1"),
]


def start_pool(fpmd, endpoint, kind="tcp", **opts):
    """fpmd running one echo pool on a fresh endpoint of KIND; OPTS are
    pool directives with '_' for '.', e.g. pm_max_children=3."""
    ep = endpoint(kind)
    directives = {k.replace("_", ".", 1) if k.startswith("pm_") else k: v
                  for k, v in opts.items()}
    return fpmd([pool_conf(ep, opts=directives)]), ep


def pin_all_workers(address, count):
    """Open COUNT kept connections and make one request on each.  While a
    kept connection is open its worker serves nobody else, so the pids
    answered are COUNT distinct workers, all alive and serving.  Returns
    (pids, connections); the caller closes the connections."""
    conns, pids = [], []
    try:
        for _ in range(count):
            conn = fc.Connection(address)
            conns.append(conn)
            resp = conn.request({"PIN": "1"}, keep_conn=True)
            check_ok(resp)
            pids.append(parse_echo(resp.body).pid)
    except BaseException:
        for c in conns:
            c.close()
        raise
    return pids, conns


def close_all(conns):
    for c in conns:
        c.close()


# --------------------------------------------------------------- requests

@pytest.mark.parametrize("kind", ALL_TRANSPORTS)
def test_echo_returns_the_params_sent(fpmd, endpoint, kind):
    proc, ep = start_pool(fpmd, endpoint, kind)
    resp, page = echo_request(ep.client, PARAMS)
    assert page.params == PARAMS
    assert page.fields["params"] == str(len(PARAMS))
    assert page.fields["role"] == "RESPONDER"
    assert page.fields["pool"] == "www"
    assert page.fields["cwd"] == "/"
    assert page.stdin_bytes == 0
    assert page.pid in proc.worker_pids()
    assert resp.stderr == b""
    assert resp.header("Status") == "200 OK"


def test_params_with_four_byte_lengths_everywhere(fpmd, endpoint):
    proc, ep = start_pool(fpmd, endpoint)
    with fc.Connection(ep.client) as conn:
        conn.send_raw(fc.encode_begin_request(1)
                      + fc.encode_params(1, PARAMS, long_form=True)
                      + fc.encode_stream(fc.STDIN, 1, b""))
        resp = conn.read_response(1)
    check_ok(resp)
    assert parse_echo(resp.body).params == PARAMS


@pytest.mark.parametrize("chunk", [fc.MAX_CONTENT, 7, 1])
def test_params_split_across_records(fpmd, endpoint, chunk):
    proc, ep = start_pool(fpmd, endpoint)
    if chunk == fc.MAX_CONTENT:
        # ~200 KB of params: at least four full PARAMS records.
        params = [(f"P{i:03d}", f"{i:03d}" * 700) for i in range(100)]
    else:
        # Tiny records: pairs cut inside their lengths, names and values.
        params = PARAMS
    resp, page = echo_request(ep.client, params, params_chunk=chunk)
    assert page.params == params


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_post_of_3mb_counts_stdin_exactly(fpmd, endpoint, kind):
    proc, ep = start_pool(fpmd, endpoint, kind)
    body = os.urandom(3 * 1024 * 1024 + 7)
    params = [("REQUEST_METHOD", "POST"),
              ("CONTENT_LENGTH", str(len(body))),
              ("CONTENT_TYPE", "application/octet-stream")]
    resp, page = echo_request(ep.client, params, body)
    assert page.stdin_bytes == len(body)
    assert page.params == params


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_500_requests_on_new_connections(fpmd, endpoint, kind):
    proc, ep = start_pool(fpmd, endpoint, kind)
    workers = set(proc.worker_pids())
    served = Counter()
    last_count = {}
    for i in range(500):
        resp, page = echo_request(ep.client, [("N", str(i))])
        assert page.params == [("N", str(i))]
        served[page.pid] += 1
        # A worker's counter grows by exactly one per request it serves.
        assert page.requests == last_count.get(page.pid, 0) + 1, (
            i, page.pid, page.requests, last_count.get(page.pid))
        last_count[page.pid] = page.requests
    assert set(served) <= workers
    assert sum(served.values()) == 500


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_500_requests_on_one_kept_connection(fpmd, endpoint, kind):
    proc, ep = start_pool(fpmd, endpoint, kind)
    with fc.Connection(ep.client) as conn:
        first = None
        for i in range(500):
            resp = conn.request([("N", str(i))], keep_conn=True)
            check_ok(resp)
            page = parse_echo(resp.body)
            assert page.params == [("N", str(i))]
            if first is None:
                first = page
            # One connection, one worker: the same pid counting up.
            assert page.pid == first.pid
            assert page.requests == first.requests + i
        assert not conn.eof


def test_without_keep_conn_the_server_closes_the_connection(fpmd, endpoint):
    proc, ep = start_pool(fpmd, endpoint)
    with fc.Connection(ep.client) as conn:
        check_ok(conn.request({"A": "1"}, keep_conn=False))
        assert conn.wait_closed(5.0), "connection still open after response"


def test_get_values_answers_the_pool_limits(fpmd, endpoint):
    proc, ep = start_pool(fpmd, endpoint, pm_max_children=3)
    with fc.Connection(ep.client) as conn:
        values = conn.get_values([fc.MAX_CONNS, fc.MAX_REQS, fc.MPXS_CONNS,
                                  "NO_SUCH_VARIABLE"])
    assert values.get(fc.MAX_REQS) == "3", values
    assert values.get(fc.MPXS_CONNS) == "0", values
    assert values.get(fc.MAX_CONNS, "").isdigit(), values
    assert int(values[fc.MAX_CONNS]) >= 1, values
    # Section 4.1: the application ignores names it does not know.
    assert "NO_SUCH_VARIABLE" not in values


def test_get_values_then_a_request_on_the_same_connection(fpmd, endpoint):
    proc, ep = start_pool(fpmd, endpoint, pm_max_children=2)
    with fc.Connection(ep.client) as conn:
        assert conn.get_values([fc.MAX_REQS]) == {fc.MAX_REQS: "2"}
        resp = conn.request({"AFTER": "get_values"})
    check_ok(resp)
    assert parse_echo(resp.body).params == [("AFTER", "get_values")]


@pytest.mark.parametrize("version", [0, 2, 255])
def test_bad_version_closes_only_that_connection(fpmd, endpoint, version):
    proc, ep = start_pool(fpmd, endpoint, pm_max_children=3)
    before = proc.worker_pids()
    assert len(before) == 3
    with fc.Connection(ep.client) as conn:
        conn.send_raw(fc.encode_header(fc.BEGIN_REQUEST, 1, 8, 0,
                                       version=version)
                      + b"\0\x01\0\0\0\0\0\0")
        assert conn.wait_closed(5.0), "bad record did not close the connection"
    # Every original worker is alive and serves (none crashed, none stuck).
    pids, conns = pin_all_workers(ep.client, 3)
    close_all(conns)
    assert sorted(pids) == before
    assert proc.worker_pids() == before
    assert proc.running()


# ---------------------------------------------------------------- workers

def test_ready_line_has_the_php_fpm_log_format(fpmd, endpoint):
    proc, ep = start_pool(fpmd, endpoint)
    assert re.search(r"^\[\d{2}-[A-Z][a-z]{2}-\d{4} \d{2}:\d{2}:\d{2}\] "
                     r"NOTICE: ready to handle connections$",
                     proc.log_text, re.M), proc.log_text


def test_static_pool_has_all_workers_when_ready(fpmd, endpoint):
    proc, ep = start_pool(fpmd, endpoint, pm_max_children=3)
    # "ready to handle connections" comes after the workers are forked.
    assert len(proc.worker_pids()) == 3


class ClientLoop(threading.Thread):
    """Requests on new connections, one after another, until stopped;
    counts successes and records every failure."""

    def __init__(self, address, limit_seconds=90.0):
        super().__init__(daemon=True)
        self.address = address
        self.limit = limit_seconds
        self.halt = threading.Event()
        self.ok = 0
        self.failures = []

    def run(self):
        deadline = time.monotonic() + self.limit
        while not self.halt.is_set() and time.monotonic() < deadline:
            try:
                resp = fc.request(self.address, {"LOOP": str(self.ok)})
                if resp.status == 200 and resp.protocol_status == 0:
                    self.ok += 1
                else:
                    self.failures.append(f"status {resp.status}")
            except Exception as e:          # noqa: BLE001 -- recorded
                self.failures.append(repr(e))


def test_worker_killed_by_sigkill_is_replaced_with_no_failed_request(
        fpmd, endpoint):
    proc, ep = start_pool(fpmd, endpoint, pm_max_children=4)
    before = proc.worker_pids()
    assert len(before) == 4
    # The victim: a worker pinned by our own idle kept connection, so the
    # kill cannot cut a request of the client loop.
    pin = fc.Connection(ep.client)
    resp = pin.request({"PIN": "1"}, keep_conn=True)
    check_ok(resp)
    victim = parse_echo(resp.body).pid
    assert victim in before

    loop = ClientLoop(ep.client)
    loop.start()
    try:
        wait_for(lambda: loop.ok >= 20 or loop.failures, 30,
                 "the client loop to get going")
        mark = proc.log_mark()
        os.kill(victim, signal.SIGKILL)
        proc.wait_log(rf"WARNING: \[pool www\] child {victim} exited on "
                      rf"signal 9 \(SIGKILL\) after \d+\.\d{{3}}s",
                      since=mark)
        after = proc.wait_workers(4, without=[victim])
        base = loop.ok
        wait_for(lambda: loop.ok >= base + 50 or loop.failures, 30,
                 "50 more requests after the respawn")
    finally:
        loop.halt.set()
        loop.join(15)
        pin.close()
    assert not loop.is_alive()
    assert loop.failures == []
    assert loop.ok >= 70
    # The replacement is a real, serving worker.
    pids, conns = pin_all_workers(ep.client, 4)
    close_all(conns)
    assert sorted(pids) == after
    assert len(set(after) - set(before)) == 1


@pytest.mark.skipif(not IS_ROOT, reason="needs root to switch users")
def test_workers_run_as_the_pool_user(fpmd, endpoint):
    group = nobody_group()
    proc, ep = start_pool(fpmd, endpoint, user="nobody", group=group)
    resp, page = echo_request(ep.client)
    assert page.uid == 65534
    assert page.gid == 65534
    expected = sorted(set(os.getgrouplist("nobody", 65534)))
    groups = sorted(set(int(g) for g in re.findall(r"\d+",
                                                   page.fields["groups"])))
    assert groups == expected, page.fields["groups"]
    for pid in proc.worker_pids():
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        assert re.search(r"^Uid:\s+65534\s+65534\s+65534\s+65534$", status,
                         re.M), status


# ------------------------------------------------------- master life cycle

def test_pid_file_holds_the_master_pid(fpmd, endpoint, tmp_path):
    proc, ep = start_pool(fpmd, endpoint)
    pidfile = tmp_path / "fpmd.pid"
    assert pidfile.read_text().strip() == str(proc.pid)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGQUIT,
                                 signal.SIGINT], ids=lambda s: s.name)
def test_stop_signal_exits_zero_and_cleans_up(fpmd, endpoint, tmp_path, sig):
    proc, ep = start_pool(fpmd, endpoint, "unix")
    pidfile = tmp_path / "fpmd.pid"
    assert pidfile.exists()
    assert os.path.exists(ep.path)
    assert len(proc.worker_pids()) == 4
    assert proc.stop(sig) == 0
    assert not os.path.exists(ep.path), "socket left behind"
    assert not pidfile.exists(), "pid file left behind"
    assert proc.orphans() == []


def begin_in_flight_request(proc, ep, body_first_part):
    """A kept connection whose worker we know (one full request first),
    then a second request sent up to part of its STDIN, waited on until the
    worker has read all of it.  Returns (conn, worker pid)."""
    conn = fc.Connection(ep.client)
    resp = conn.request({"FIRST": "1"}, keep_conn=True)
    check_ok(resp)
    pid = parse_echo(resp.body).pid
    conn.send_raw(fc.encode_begin_request(1)
                  + fc.encode_params(1, {"SECOND": "1"})
                  + fc.encode_stream(fc.STDIN, 1, body_first_part,
                                     terminate=False))
    wait_for(lambda: server_has_read_all(conn, ep.port), 10,
             "the worker to read the partial request")
    return conn, pid


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGQUIT],
                         ids=lambda s: s.name)
def test_graceful_stop_finishes_the_request_in_flight(fpmd, endpoint, sig):
    proc, ep = start_pool(fpmd, endpoint, "tcp", pm_max_children=3)
    body = os.urandom(200_000)
    conn, pid = begin_in_flight_request(proc, ep, body[:100_000])
    try:
        proc.signal(sig)
        # Idle workers leave at once; the busy one stays to finish.
        assert proc.wait_workers(1) == [pid]
        conn.send_raw(fc.encode_stream(fc.STDIN, 1, body[100_000:]))
        resp = conn.read_response(1)
        check_ok(resp)
        page = parse_echo(resp.body)
        assert page.pid == pid
        assert page.stdin_bytes == len(body)
        assert page.requests == 2
        assert conn.wait_closed(10.0)
    finally:
        conn.close()
    assert proc.wait_exit(STOP_TIMEOUT) == 0


def test_sigint_is_a_fast_stop_even_with_a_request_in_flight(fpmd, endpoint):
    ep = endpoint("tcp")
    proc = fpmd([pool_conf(ep, opts={"pm.max_children": 2})],
                global_opts={"process_control_timeout": "30s"})
    conn, pid = begin_in_flight_request(proc, ep, b"x" * 1000)
    try:
        started = time.monotonic()
        proc.signal(signal.SIGINT)
        rc = proc.wait_exit(8.0)
        elapsed = time.monotonic() - started
        assert rc == 0, f"status {rc} after {elapsed:.1f}s"
        assert conn.wait_closed(5.0)
    finally:
        conn.close()
    assert proc.orphans() == []


def test_relative_paths_resolve_against_the_config_directory(fpmd, tmp_path,
                                                             sockdir):
    if sockdir != tmp_path:
        pytest.skip("tmp_path too long for a Unix socket path")
    user = f"    user = nobody\n    group = {nobody_group()}\n" if IS_ROOT \
        else ""
    config = ('pid = "fpmd.pid"\n'
              'error_log = "error.log"\n'
              "pool www {\n"
              '    listen = "www.sock"\n'
              f"{user}"
              "    pm = static\n"
              "    pm.max_children = 2\n"
              "    handler = echo\n"
              "}\n")
    ep = Endpoint("unix", path=str(tmp_path / "www.sock"))
    proc = fpmd(config=config, log_path=tmp_path / "error.log",
                endpoints=[ep], cwd="/")
    assert (tmp_path / "fpmd.pid").read_text().strip() == str(proc.pid)
    echo_request(ep.client)


def test_workers_die_with_a_killed_master_after_the_privilege_drop(
        fpmd, endpoint):
    """Regression: the kernel clears PR_SET_PDEATHSIG when a worker's uid
    changes, so workers running as the pool's user outlived a master
    killed with SIGKILL.  Root only (that is when the uid changes)."""
    if not IS_ROOT:
        pytest.skip("needs root: workers change uid only when started "
                    "as root")
    proc, _ = start_pool(fpmd, endpoint, "unix", user="nobody",
                         group=nobody_group())
    assert proc.worker_pids()
    os.kill(proc.pid, signal.SIGKILL)
    proc.proc.wait(timeout=10)
    assert proc.orphans(timeout=5.0) == [], \
        "workers outlived the master"
