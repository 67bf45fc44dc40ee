"""FastCGI 1.0, item by item: what a conforming application must do, sent
straight to fpmd over TCP and over a Unix socket (every test runs on both).

Each test names the behaviour it checks; tests/CONFORMANCE.md maps every
section of the specification (and every item of the black-box checklist in
the reference notes) to the tests that cover it.

The pool under test has ONE worker, so that "the worker survived and is not
stuck" is a strong check: after any hostile input the very same pid must
serve the next request within PROMPT seconds, the master must have no new
child, and the worker's memory must not have grown (no allocation sized by
a length read from the wire).
"""

import os
import random
import socket
import struct
import time
from dataclasses import dataclass

import pytest

import fcgi_client as fc
from conftest import (Endpoint, FpmdProcess, check_ok, parse_echo,
                      peer_has_read_all, pool_conf, proc_status_kb, wait_for)

TRANSPORTS = ["tcp", "unix"]

# A healthy worker answers within this, even on a small shared CI machine.
PROMPT = 3.0
# "No large allocation": a worker may grow by buffers of the request it
# served, never by anything near a length read from the wire.
MAX_RSS_GROWTH_KB = 4 * 1024
MAX_VIRT_GROWTH_KB = 64 * 1024

# Pool directives of every test's pool; a test overrides what it needs.
BASE_POOL = {
    "pm": "static",
    "pm.max_children": 1,
    "fastcgi.read_timeout": "5s",
    "fastcgi.keepalive_timeout": "5s",
    "fastcgi.linger_timeout": "5s",
}

PARAMS = [
    ("SCRIPT_NAME", "/conformance"),
    ("REQUEST_METHOD", "POST"),
    ("QUERY_STRING", "a=1&b=two"),
    ("EMPTY", ""),
    ("LONG", "v" * 300),
    ("N" * 130, "long name"),
]


# ------------------------------------------------------------------ harness

@dataclass
class Server:
    """fpmd with one single-worker echo pool (ep) and, when asked, one
    single-worker pool of the slow test handler (slow_ep)."""
    proc: FpmdProcess
    ep: Endpoint
    slow_ep: Endpoint = None
    pid: int = None             # the echo pool's worker
    slow_pid: int = None        # the slow pool's worker

    def connect(self, ep=None, timeout=PROMPT + 2):
        return fc.Connection((ep or self.ep).client, timeout=timeout)

    def echo(self, params=(("PROBE", "1"),), stdin=b"", timeout=PROMPT,
             **kw):
        """One request on a new connection: (Response, EchoPage)."""
        with self.connect(timeout=timeout) as conn:
            resp = conn.request(params, stdin, **kw)
        check_ok(resp)
        return resp, parse_echo(resp.body)

    def slow(self, query, timeout=PROMPT):
        """One request to the slow pool; returns the Response."""
        with self.connect(self.slow_ep, timeout=timeout) as conn:
            return conn.request({"QUERY_STRING": query})

    def assert_logged(self, since):
        """The worker logged why it dropped a connection (7: protocol
        errors are logged) after log position SINCE."""
        self.proc.wait_log(rf"child {self.pid}\b.*\S", timeout=PROMPT,
                           since=since)

    def snapshot(self):
        """What assert_unharmed compares against."""
        pids = self.proc.worker_pids()
        return pids, {pid: proc_status_kb(pid) for pid in pids}

    def assert_unharmed(self, before):
        """Never a crash, never a stuck worker, no large allocation."""
        pids, vm = before
        assert "exited on signal" not in self.proc.log_text, \
            self.proc.log_tail()
        assert self.proc.worker_pids() == pids, "a worker was replaced"
        start = time.monotonic()
        _, page = self.echo({"NEXT": "request"})
        assert time.monotonic() - start < PROMPT
        assert page.pid == self.pid, "another worker served the next request"
        assert page.params == [("NEXT", "request")]
        if self.slow_ep is not None:
            resp = self.slow("ms=0")
            assert resp.status == 200, resp
            assert resp.body == f"pid {self.slow_pid}\n".encode()
        for pid in pids:
            now = proc_status_kb(pid)
            assert now, f"worker {pid} is gone"
            grew_rss = now["VmRSS"] - vm[pid]["VmRSS"]
            grew_virt = now["VmPeak"] - vm[pid]["VmPeak"]
            assert grew_rss <= MAX_RSS_GROWTH_KB, (pid, vm[pid], now)
            assert grew_virt <= MAX_VIRT_GROWTH_KB, (pid, vm[pid], now)
        assert self.proc.worker_pids() == pids


@pytest.fixture(params=TRANSPORTS)
def start(request, fpmd, endpoint):
    """Factory: start(opts=None, slow=None) -> a Server on this test's
    transport, warmed up by one request (so that memory baselines include
    the worker's own buffers).  SLOW is the slow plugin's path."""
    kind = request.param

    def make(opts=None, slow=None):
        ep = endpoint(kind)
        pools = [pool_conf(ep, opts={**BASE_POOL, **(opts or {})})]
        slow_ep = None
        if slow is not None:
            slow_ep = endpoint(kind, "slow")
            pools.append(pool_conf(slow_ep, name="slow",
                                   opts={**BASE_POOL, "handler": slow}))
        srv = Server(fpmd(pools), ep, slow_ep)
        _, page = srv.echo()
        srv.pid = page.pid
        if slow_ep is not None:
            resp = srv.slow("ms=0")
            srv.slow_pid = int(resp.body.split()[1])
        return srv
    return make


def read_all_records(conn, timeout=PROMPT):
    """Every record until the server closes; the connection must close
    within TIMEOUT at a record boundary."""
    out = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            rec = conn.recv_record(max(0.01, deadline - time.monotonic()))
        except (TimeoutError, socket.timeout):
            pytest.fail(f"the server did not close the connection within "
                        f"{timeout}s; records so far: {out}")
        if rec is None:
            return out
        out.append(rec)


def closed_or_error_answer(conn, request_id=1, timeout=PROMPT):
    """After a hostile request the server may answer with an error (a
    Status header >= 400 on STDOUT, then END_REQUEST) or just close.
    Returns the records seen; the connection must be closed within
    TIMEOUT, and nothing may follow END_REQUEST."""
    try:
        recs = read_all_records(conn, timeout)
    except fc.ConnectionClosed:
        pytest.fail("the server closed in the middle of a record")
    assert_well_formed_answer(recs, request_id, allow_empty=True)
    if recs:
        out = b"".join(r.content for r in recs if r.type == fc.STDOUT)
        status = fc.parse_cgi_response(out)[0]
        assert status >= 400, out[:300]
    return recs


def assert_well_formed_answer(recs, request_id, allow_empty=False):
    """RECS (everything the server sent for one request on a connection it
    then closed) is STDOUT/STDERR records, the empty STDOUT record, then
    END_REQUEST, and nothing after it."""
    if allow_empty and not recs:
        return
    assert recs, "no answer at all"
    for r in recs:
        assert r.version == fc.VERSION_1
        assert r.request_id == request_id, r
        assert r.padding_length <= fc.MAX_PADDING
    assert recs[-1].type == fc.END_REQUEST, recs
    assert len(recs[-1].content) == 8
    body = recs[:-1]
    assert all(r.type in (fc.STDOUT, fc.STDERR) for r in body), recs
    stdout = [r for r in body if r.type == fc.STDOUT]
    assert stdout and stdout[-1].content == b"", \
        "STDOUT must end with its empty record"
    assert all(r.content for r in stdout[:-1]), "an empty STDOUT mid-stream"
    assert body[0].type == fc.STDOUT or body[0].type == fc.STDERR
    # Before END_REQUEST, a Status header (nginx ignores END_REQUEST's
    # status fields): the first STDOUT bytes are CGI headers.
    first_out = b"".join(r.content for r in stdout)
    fc.parse_cgi_response(first_out)


def end_request(rec):
    """(app_status, protocol_status) of an END_REQUEST record."""
    assert rec.type == fc.END_REQUEST, rec
    assert len(rec.content) == 8, rec
    return struct.unpack("!IB3x", rec.content)


def begin(request_id=1, role=fc.RESPONDER, keep_conn=False):
    return fc.encode_begin_request(request_id, role,
                                   fc.KEEP_CONN if keep_conn else 0)


def params_stream(params, request_id=1, **kw):
    return fc.encode_params(request_id, params, **kw)


def stdin_stream(data, request_id=1, **kw):
    return fc.encode_stream(fc.STDIN, request_id, data, **kw)


# ====================================================== 3.3 Records

def test_minimal_responder_answer_then_close(start):
    """BEGIN(flags 0), PARAMS, empty PARAMS, empty STDIN -> STDOUT with CGI
    headers, the empty STDOUT record, END_REQUEST(REQUEST_COMPLETE), then
    the server closes: nothing after END_REQUEST (3.3, 3.5, 5.5, 6.2)."""
    srv = start()
    with srv.connect() as conn:
        conn.send_request(PARAMS)
        recs = read_all_records(conn)
        assert conn.decoder.pending == 0, "bytes after the last record"
    assert_well_formed_answer(recs, 1)
    assert end_request(recs[-1]) == (0, fc.REQUEST_COMPLETE)
    # No error: STDERR not sent, or sent as one empty record (6.2).
    err = [r for r in recs if r.type == fc.STDERR]
    assert err == [] or [r.content for r in err] == [b""]
    out = b"".join(r.content for r in recs if r.type == fc.STDOUT)
    page = parse_echo(fc.parse_cgi_response(out)[3])
    assert page.params == PARAMS


@pytest.mark.parametrize("request_id", [1, 258, 65535])
def test_request_id_is_echoed_on_every_record(start, request_id):
    srv = start()
    with srv.connect() as conn:
        conn.send_request(PARAMS, request_id=request_id)
        recs = read_all_records(conn)
    assert_well_formed_answer(recs, request_id)
    assert {r.request_id for r in recs} == {request_id}


def test_output_records_respect_the_record_limits(start):
    """A 300 KB answer (the echo page of 300 KB of params) comes as STDOUT
    records of at most 65535 content bytes, padding <= 255, aligned to 8
    (3.3: "recommended"); their concatenation is the page."""
    srv = start()
    params = [(f"P{i:04d}", os.urandom(750).hex()) for i in range(200)]
    with srv.connect() as conn:
        conn.send_request(params)
        recs = read_all_records(conn)
    assert_well_formed_answer(recs, 1)
    stdout = [r for r in recs if r.type == fc.STDOUT]
    assert len(stdout) >= 6
    for r in stdout:
        assert len(r.content) <= fc.MAX_CONTENT
        assert (len(r.content) + r.padding_length) % 8 == 0, r
    out = b"".join(r.content for r in stdout)
    assert parse_echo(fc.parse_cgi_response(out)[3]).params == params


@pytest.mark.parametrize("padding", [1, 7, 255])
def test_padding_on_every_input_record_is_skipped(start, padding):
    """Receivers must skip paddingLength bytes (3.3), whatever they hold."""
    srv = start()
    rnd = random.Random(padding)

    def rec(rtype, content=b"", rid=1):
        data = fc.encode_header(rtype, rid, len(content), padding)
        return data + content + bytes(rnd.randrange(256)
                                      for _ in range(padding))
    pairs = fc.encode_pairs(PARAMS)
    body = os.urandom(3000)
    stream = (rec(fc.GET_VALUES, fc.encode_pairs([(fc.MAX_REQS, "")]), 0)
              + rec(fc.BEGIN_REQUEST, struct.pack("!HB5x", fc.RESPONDER, 0))
              + rec(fc.PARAMS, pairs[:100]) + rec(fc.PARAMS, pairs[100:])
              + rec(fc.PARAMS)
              + rec(fc.STDIN, body[:1000]) + rec(fc.STDIN, body[1000:])
              + rec(fc.STDIN))
    with srv.connect() as conn:
        conn.send_raw(stream)
        gv = conn.recv_record()
        assert gv.type == fc.GET_VALUES_RESULT
        assert fc.decode_pairs(gv.content) == [(b"FCGI_MAX_REQS", b"1")]
        resp = conn.read_response()
    check_ok(resp)
    page = parse_echo(resp.body)
    assert page.params == PARAMS
    assert page.stdin_bytes == len(body)


def test_request_sent_one_byte_per_write_is_served(start):
    """Records split at every byte boundary, headers included: each byte
    is its own write, and the server has read it before the next is sent."""
    srv = start()
    params = [("SCRIPT_NAME", "/drip"), ("V", "x" * 130)]
    body = b"0123456789"
    data = fc.encode_request(params, body)
    with srv.connect() as conn:
        for i in range(len(data)):
            conn.sock.sendall(data[i:i + 1])
            wait_for(lambda: peer_has_read_all(conn), PROMPT,
                     f"the server to read byte {i}", max_interval=0.002)
        resp = conn.read_response()
    check_ok(resp)
    page = parse_echo(resp.body)
    assert page.params == params
    assert page.stdin_bytes == len(body)


def test_management_query_and_two_requests_in_one_write_are_served(start):
    """Coalescing: GET_VALUES, a whole kept request, and a second whole
    request all in one write()."""
    srv = start()
    data = (fc.encode_get_values()
            + fc.encode_request({"N": "1"}, b"abc", keep_conn=True)
            + fc.encode_request({"N": "2"}, b"defg", request_id=2))
    with srv.connect() as conn:
        conn.send_raw(data)
        gv = conn.recv_record()
        assert gv.type == fc.GET_VALUES_RESULT
        first = conn.read_response(1)
        second = conn.read_response(2)
        assert conn.wait_closed(PROMPT)
    check_ok(first)
    check_ok(second)
    assert parse_echo(first.body).params == [("N", "1")]
    assert parse_echo(second.body).stdin_bytes == 4


def test_zero_length_records_everywhere_are_harmless(start):
    """Every record that may be empty sent empty, everywhere it may come:
    an empty GET_VALUES, empty records for ids never begun, an empty DATA
    for a responder, an empty unknown-type record, empty PARAMS content
    ending the stream at once... -> a correct answer."""
    srv = start()
    before = srv.snapshot()
    empty = fc.encode_record
    stream = (empty(fc.GET_VALUES, 0)
              + empty(fc.STDIN, 7) + empty(fc.PARAMS, 7)
              + empty(fc.ABORT_REQUEST, 7)
              + begin(1, keep_conn=True)
              + empty(fc.DATA, 1) + empty(12, 1) + empty(fc.STDIN, 2)
              + empty(fc.PARAMS, 1)          # no params at all
              + empty(fc.PARAMS, 1)          # after its end: ignored
              + empty(fc.STDIN, 1)
              + empty(fc.STDIN, 1))          # after its end: ignored
    with srv.connect() as conn:
        conn.send_raw(stream)
        gv = conn.recv_record()
        assert (gv.type, gv.request_id, gv.content) == \
            (fc.GET_VALUES_RESULT, 0, b"")
        resp = conn.read_response(1)
        check_ok(resp)
        page = parse_echo(resp.body)
        assert page.params == [] and page.stdin_bytes == 0
        # The connection is kept, and in step.
        resp = conn.request({"AFTER": "empties"})
        check_ok(resp)
        assert conn.other_records == []
    srv.assert_unharmed(before)


@pytest.mark.parametrize("where", ["first record", "mid-request"])
@pytest.mark.parametrize("version", [0, 2, 255])
def test_bad_version_closes_the_connection_without_harm(start, version,
                                                        where):
    srv = start()
    before = srv.snapshot()
    mark = srv.proc.log_mark()
    bad = fc.encode_record(fc.PARAMS, 1, fc.encode_pairs({"A": "b"}),
                           version=version)
    data = bad if where == "first record" else begin(1) + bad
    with srv.connect() as conn:
        conn.send_raw(data + fc.encode_params(1, {}) + stdin_stream(b""))
        closed_or_error_answer(conn)
    srv.assert_logged(mark)
    srv.assert_unharmed(before)


@pytest.mark.parametrize("cut", [1, 5, 7, 12])
def test_truncated_record_then_eof_closes_without_harm(start, cut):
    srv = start()
    before = srv.snapshot()
    with srv.connect() as conn:
        conn.send_raw(begin(1) + fc.encode_params(1, PARAMS)[:cut])
        conn.shutdown_write()
        closed_or_error_answer(conn)
    srv.assert_unharmed(before)


@pytest.mark.parametrize("what", ["nothing", "header", "content"])
def test_truncated_record_then_silence_is_closed_after_read_timeout(
        start, what):
    """A record cut short (or no byte at all) and then nothing: the worker
    gives up after fastcgi.read_timeout, answers 408 or closes, and is free
    again."""
    srv = start({"fastcgi.read_timeout": "1s"})
    before = srv.snapshot()
    cut = {"header": 5, "content": fc.HEADER_LEN + 3}.get(what)
    with srv.connect() as conn:
        if cut is not None:
            conn.send_raw(begin(1) + fc.encode_params(1, PARAMS)[:cut])
        t0 = time.monotonic()
        closed_or_error_answer(conn, timeout=PROMPT + 1)
        waited = time.monotonic() - t0
    assert 0.8 <= waited < PROMPT + 1, waited
    srv.assert_unharmed(before)


@pytest.mark.parametrize("rtype", [12, 200, fc.GET_VALUES_RESULT,
                                   fc.UNKNOWN_TYPE, fc.END_REQUEST,
                                   fc.STDOUT])
def test_unknown_or_app_only_type_on_a_request_id_is_ignored(start, rtype):
    """A non-management record of a type the application does not take
    (checklist 38): ignored, the request completes."""
    srv = start()
    with srv.connect() as conn:
        conn.send_raw(begin(1)
                      + fc.encode_record(rtype, 1, b"junk!")
                      + params_stream(PARAMS)
                      + fc.encode_record(rtype, 1, b"")
                      + stdin_stream(b"xyz"))
        recs = read_all_records(conn)
    assert_well_formed_answer(recs, 1)
    out = b"".join(r.content for r in recs if r.type == fc.STDOUT)
    page = parse_echo(fc.parse_cgi_response(out)[3])
    assert page.params == PARAMS and page.stdin_bytes == 3


# ============================================== 3.4 Name-value pairs

def test_pair_lengths_at_the_127_128_boundary(start):
    srv = start()
    params = [("A" * 127, "b" * 127), ("C" * 128, "d" * 128),
              ("E" * 127, "f" * 128), ("G" * 128, "h" * 127),
              ("I", "j" * 70000), ("K" * 1000, "")]
    _, page = srv.echo(params)
    assert page.params == params


def test_four_byte_encoding_of_short_lengths_is_accepted(start):
    """Lengths <= 127 *can* be one byte (3.4): the 4-byte form is legal."""
    srv = start()
    with srv.connect() as conn:
        conn.send_raw(begin(1) + fc.encode_params(1, PARAMS, long_form=True)
                      + stdin_stream(b""))
        resp = conn.read_response()
    check_ok(resp)
    assert parse_echo(resp.body).params == PARAMS


def test_empty_names_and_values_are_preserved(start):
    srv = start()
    params = [("EMPTY", ""), ("", "nameless"), ("", ""), ("LAST", "x")]
    _, page = srv.echo(params)
    assert page.params == params


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 129])
def test_pairs_split_across_records_are_decoded_exactly(start, chunk):
    """Length bytes in one PARAMS record and the data in the next; a value
    spread over many records (5.2: a stream's value does not depend on how
    it is split)."""
    srv = start()
    params = PARAMS + [("SPREAD", "s" * 400)]
    with srv.connect() as conn:
        conn.send_raw(begin(1) + fc.encode_params(1, params, chunk_size=chunk)
                      + stdin_stream(b""))
        resp = conn.read_response()
    check_ok(resp)
    assert parse_echo(resp.body).params == params


def test_duplicate_and_odd_names_are_served(start):
    """Same name twice (both reach the handler, in order), '=' in a name,
    NUL inside a value: a 200, no crash."""
    srv = start()
    before = srv.snapshot()
    params = [("DUP", "1"), ("DUP", "2"), ("A=B", "c"),
              ("NUL", "before\0after"), ("\0LEAD", "x")]
    with srv.connect() as conn:
        resp = conn.request(params)
    check_ok(resp)
    lines = resp.body.decode("latin-1").split("\n")
    assert lines.index("DUP=1") < lines.index("DUP=2")
    assert "A=B=c" in lines
    srv.assert_unharmed(before)


def _len(n):
    return struct.pack("!I", n | 0x80000000)


HOSTILE_PARAMS = {
    "name length 0x7FFFFFFF": _len(0x7FFFFFFF) + b"\x01" + b"AB",
    "value length 0x7FFFFFFF": b"\x01" + _len(0x7FFFFFFF) + b"AB",
    "both lengths 0x7FFFFFFF": _len(0x7FFFFFFF) + _len(0x7FFFFFFF) + b"A",
    "value runs past the stream": b"\x04" + _len(1000) + b"NAMEvalue",
    "name runs past the stream": b"\x7f\x01" + b"short",
    "4-byte length cut at the stream end": b"\x04\x01NAMEv" + b"\x80\x00",
    "good pair then a cut length": fc.encode_pairs({"OK": "1"}) + b"\x85",
    "0x7FFFFFFF lengths spread over records": b"SPLIT",
}


@pytest.mark.parametrize("case", list(HOSTILE_PARAMS))
def test_hostile_pair_lengths_close_the_connection_without_harm(start, case):
    """Declared lengths the stream cannot hold (CVE-2025-23016 class): a
    rejection (error answer or close), no crash, no stuck worker, no
    allocation sized by the declared length."""
    srv = start()
    before = srv.snapshot()
    if case == "0x7FFFFFFF lengths spread over records":
        stream = b"".join(fc.encode_record(fc.PARAMS, 1, bytes([b]))
                          for b in _len(0x7FFFFFFF) * 2 + b"xyz")
        stream += fc.encode_record(fc.PARAMS, 1)
    else:
        stream = (fc.encode_record(fc.PARAMS, 1, HOSTILE_PARAMS[case])
                  + fc.encode_record(fc.PARAMS, 1))
    mark = srv.proc.log_mark()
    with srv.connect() as conn:
        conn.send_raw(begin(1) + stream + stdin_stream(b"body"))
        closed_or_error_answer(conn)
    srv.assert_logged(mark)
    srv.assert_unharmed(before)


def test_params_over_max_params_size_get_431_then_end_request(start):
    """An error path: a Status header on STDOUT before END_REQUEST (nginx
    ignores END_REQUEST's fields), a log line, nothing after."""
    srv = start({"fastcgi.max_params_size": "4K"})
    before = srv.snapshot()
    mark = srv.proc.log_mark()
    with srv.connect() as conn:
        conn.send_request([("BIG", "x" * 6000)], b"body")
        recs = read_all_records(conn)
    assert_well_formed_answer(recs, 1)
    assert recs[0].type == fc.STDOUT and recs[0].content.startswith(
        b"Status: 431"), recs[0]
    out = b"".join(r.content for r in recs if r.type == fc.STDOUT)
    assert fc.parse_cgi_response(out)[0] == 431
    srv.proc.wait_log(r"fastcgi\.max_params_size", since=mark)
    srv.assert_unharmed(before)


def test_large_params_within_the_limit_are_accepted(start):
    """60 KB of params in one record and 200 KB over several (checklist
    14), under the default 1M fastcgi.max_params_size."""
    srv = start()
    one = [("ONE", "a" * 60000)]
    many = [(f"M{i}", "b" * 999) for i in range(200)]
    with srv.connect() as conn:
        conn.send_raw(begin(1, keep_conn=True)
                      + fc.encode_record(fc.PARAMS, 1, fc.encode_pairs(one))
                      + fc.encode_record(fc.PARAMS, 1) + stdin_stream(b""))
        resp = conn.read_response()
        check_ok(resp)
        assert parse_echo(resp.body).params == one
        resp = conn.request(many)
        check_ok(resp)
        assert parse_echo(resp.body).params == many


def test_many_tiny_pairs_cost_no_large_allocation(start):
    """60000 pairs with 1-byte names, 180 KB of params: served, and the
    worker stays small."""
    srv = start()
    before = srv.snapshot()
    params = [(chr(65 + i % 26), "") for i in range(60000)]
    with srv.connect(timeout=10) as conn:
        resp = conn.request(params)
    check_ok(resp)
    assert parse_echo(resp.body).fields["params"] == "60000"
    srv.assert_unharmed(before)


# ============================== 3.5 Closing transport connections

def test_keep_conn_serves_requests_with_same_and_different_ids(start):
    srv = start()
    with srv.connect() as conn:
        pids = []
        for rid in (1, 1, 2, 258, 1):
            resp = conn.request({"RID": str(rid)}, b"x" * rid,
                                request_id=rid, keep_conn=True)
            check_ok(resp)
            page = parse_echo(resp.body)
            assert page.params == [("RID", str(rid))]
            assert page.stdin_bytes == rid
            pids.append(page.pid)
        # Nothing arrived for other ids, nothing is left over.
        assert conn.other_records == [] and conn.decoder.pending == 0
        # A last request without KEEP_CONN: the server closes after it.
        check_ok(conn.request({"LAST": "1"}, request_id=3))
        assert conn.wait_closed(PROMPT)
        assert conn.decoder.pending == 0 and conn.other_records == []
    assert set(pids) == {srv.pid}


def test_nothing_follows_end_request_on_a_kept_connection(start):
    """After END_REQUEST the next bytes on a kept connection are the next
    request's answer, record-aligned (a stray byte would make nginx log
    "unsupported FastCGI protocol version")."""
    srv = start()
    with srv.connect() as conn:
        check_ok(conn.request({"N": "1"}, keep_conn=True))
        assert conn.decoder.pending == 0
        conn.send_request({"N": "2"}, request_id=9, keep_conn=True)
        first = conn.recv_record()
        assert (first.type, first.request_id) == (fc.STDOUT, 9), first
        assert first.content.startswith(b"Status: 200")


def test_idle_kept_connection_is_closed_after_keepalive_timeout(start):
    srv = start({"fastcgi.keepalive_timeout": "1s"})
    with srv.connect() as conn:
        check_ok(conn.request({"N": "1"}, keep_conn=True))
        t0 = time.monotonic()
        assert conn.wait_closed(PROMPT + 2), "kept connection never closed"
        idle = time.monotonic() - t0
        assert conn.other_records == [] and conn.decoder.pending == 0
        assert not conn.reset
    assert 0.8 <= idle < PROMPT + 2, idle
    _, page = srv.echo()
    assert page.pid == srv.pid


def test_client_closing_an_idle_kept_connection_frees_the_worker(start):
    srv = start()
    before = srv.snapshot()
    conn = srv.connect()
    check_ok(conn.request({"N": "1"}, keep_conn=True))
    conn.close()
    srv.assert_unharmed(before)


def test_unread_body_after_an_early_answer_is_drained_not_reset(start):
    """Lingering close: the worker answers 431 without reading an 8 MB body
    and no KEEP_CONN: the client still gets the whole answer and an
    orderly close, not a reset."""
    srv = start({"fastcgi.max_params_size": "4K"})
    before = srv.snapshot()
    body = os.urandom(8 * 1024 * 1024)
    with srv.connect(timeout=10) as conn:
        sent = conn.send_raw(fc.encode_request([("BIG", "x" * 6000)], body))
        assert conn.send_error is None, conn.send_error
        assert sent > len(body)
        resp = conn.read_response()
        assert resp.status == 431
        assert conn.wait_closed(PROMPT)
        assert not conn.reset, "connection reset instead of a clean close"
    srv.assert_unharmed(before)


def test_unread_body_on_a_kept_connection_is_skipped_then_next_served(start):
    """The same early answer with KEEP_CONN: the rest of the refused
    request's STDIN is skipped and the next request is served."""
    srv = start({"fastcgi.max_params_size": "4K"})
    body = os.urandom(2 * 1024 * 1024)
    with srv.connect(timeout=10) as conn:
        conn.send_raw(fc.encode_request([("BIG", "x" * 6000)], body,
                                        keep_conn=True))
        assert conn.read_response().status == 431
        resp = conn.request({"NEXT": "1"}, b"abc", request_id=2)
        check_ok(resp)
        assert parse_echo(resp.body).stdin_bytes == 3


# ===================================== 4.1 FCGI_GET_VALUES

def test_get_values_before_any_request(start):
    srv = start({"pm.max_children": 3})
    with srv.connect() as conn:
        values = conn.get_values()
        assert values == {fc.MAX_CONNS: "3", fc.MAX_REQS: "3",
                          fc.MPXS_CONNS: "0"}
        # The connection is still usable for a request.
        resp = conn.request({"AFTER": "get_values"})
    check_ok(resp)


def test_get_values_between_two_requests_of_a_kept_connection(start):
    srv = start()
    with srv.connect() as conn:
        check_ok(conn.request({"N": "1"}, keep_conn=True))
        assert conn.get_values() == {fc.MAX_CONNS: "1", fc.MAX_REQS: "1",
                                     fc.MPXS_CONNS: "0"}
        check_ok(conn.request({"N": "2"}, request_id=2, keep_conn=True))
        assert conn.get_values([fc.MPXS_CONNS]) == {fc.MPXS_CONNS: "0"}


def test_get_values_omits_unknown_names(start):
    srv = start()
    with srv.connect() as conn:
        assert conn.get_values(["NOT_A_VAR", fc.MAX_REQS, "FCGI_MAX_CONN",
                                "fcgi_mpxs_conns"]) == {fc.MAX_REQS: "1"}
        assert conn.get_values(["ONLY_UNKNOWN"]) == {}
        assert conn.get_values([]) == {}


def test_get_values_with_a_name_repeated_thousands_of_times(start):
    """65 KB of names (a full record) -> a well-formed answer that fits
    its record, and the worker unharmed."""
    srv = start()
    before = srv.snapshot()
    names = [fc.MAX_CONNS] * 4000
    with srv.connect() as conn:
        conn.send_raw(fc.encode_record(
            fc.GET_VALUES, 0, fc.encode_pairs((n, "") for n in names)))
        rec = conn.recv_record()
        assert rec.type == fc.GET_VALUES_RESULT and rec.request_id == 0
        pairs = fc.decode_pairs(rec.content)
        assert pairs and set(pairs) == {(b"FCGI_MAX_CONNS", b"1")}
    srv.assert_unharmed(before)


HOSTILE_GET_VALUES = {
    "truncated pair": b"\x0e\x00FCGI_MAX",
    "name length 0x7FFFFFFF": _len(0x7FFFFFFF) + b"\x00FCGI_MAX_CONNS",
    "good name then a cut length": b"\x0e\x00FCGI_MAX_CONNS\x80\x00",
}


@pytest.mark.parametrize("case", list(HOSTILE_GET_VALUES))
def test_malformed_get_values_does_no_harm(start, case):
    """A GET_VALUES whose pairs do not fit its record: a well-formed
    GET_VALUES_RESULT (the names it could read) or a close; never a
    crash."""
    srv = start()
    before = srv.snapshot()
    with srv.connect() as conn:
        conn.send_raw(fc.encode_record(fc.GET_VALUES, 0,
                                       HOSTILE_GET_VALUES[case]))
        conn.shutdown_write()
        recs = read_all_records(conn)
    assert len(recs) <= 1, recs
    if recs:
        assert (recs[0].type, recs[0].request_id) == \
            (fc.GET_VALUES_RESULT, 0)
        assert set(fc.decode_pairs(recs[0].content)) <= {
            (b"FCGI_MAX_CONNS", b"1")}
    srv.assert_unharmed(before)


# ===================================== 4.2 FCGI_UNKNOWN_TYPE

@pytest.mark.parametrize("rtype", [fc.ABORT_REQUEST, fc.END_REQUEST,
                                   fc.PARAMS, fc.STDIN, fc.STDOUT, fc.DATA,
                                   fc.GET_VALUES_RESULT, fc.UNKNOWN_TYPE,
                                   12, 200, 255])
def test_unknown_management_type_gets_unknown_type(start, rtype):
    """A management record (id 0) of a type the application does not
    understand -> UNKNOWN_TYPE{type}, and the connection stays usable."""
    srv = start()
    with srv.connect() as conn:
        conn.send_raw(fc.encode_record(rtype, 0, b"some content"))
        rec = conn.recv_record()
        assert (rec.type, rec.request_id) == (fc.UNKNOWN_TYPE, 0), rec
        assert rec.content == bytes([rtype]) + b"\0" * 7
        assert conn.get_values([fc.MPXS_CONNS]) == {fc.MPXS_CONNS: "0"}
        resp = conn.request({"AFTER": "unknown type"})
    check_ok(resp)


def test_management_records_in_the_middle_of_a_request_are_answered(
        start):
    """GET_VALUES "may arrive at any time" (4.1), and so may an unknown
    management type (4.2): answered between the request's records, and the
    request still completes."""
    srv = start()
    with srv.connect() as conn:
        conn.send_raw(begin(1) + fc.encode_params(1, PARAMS, chunk_size=50,
                                                  terminate=False)
                      + fc.encode_get_values([fc.MPXS_CONNS])
                      + fc.encode_record(fc.PARAMS, 1)
                      + fc.encode_record(fc.STDIN, 1, b"ab")
                      + fc.encode_record(42, 0, b"?")
                      + stdin_stream(b"cd"))
        resp = conn.read_response(1)
        assert conn.wait_closed(PROMPT)
    check_ok(resp)
    page = parse_echo(resp.body)
    assert page.params == PARAMS and page.stdin_bytes == 4
    mgmt = conn.other_records
    assert [(r.type, r.request_id) for r in mgmt] == \
        [(fc.GET_VALUES_RESULT, 0), (fc.UNKNOWN_TYPE, 0)], mgmt
    assert fc.decode_pairs(mgmt[0].content) == [(b"FCGI_MPXS_CONNS", b"0")]
    assert mgmt[1].content == bytes([42]) + b"\0" * 7


# ===================================== 5.1 FCGI_BEGIN_REQUEST

@pytest.mark.parametrize("role,name", [(fc.RESPONDER, "RESPONDER"),
                                       (fc.AUTHORIZER, "AUTHORIZER"),
                                       (fc.FILTER, "FILTER")])
def test_role_reaches_the_handler(start, role, name):
    srv = start()
    data = b"D" * 5000 if role == fc.FILTER else None
    params = [("FCGI_DATA_LENGTH", "5000"),
              ("FCGI_DATA_LAST_MOD", "0")] if data else [("R", name)]
    with srv.connect() as conn:
        resp = conn.request(params, b"stdin", role=role, data=data)
    check_ok(resp)
    page = parse_echo(resp.body)
    assert page.fields["role"] == name
    assert page.params == params
    assert page.stdin_bytes == 5
    if role == fc.FILTER:
        assert page.fields["data_bytes"] == "5000"
    else:
        assert "data_bytes" not in page.fields


@pytest.mark.parametrize("role", [0, 4, 0xFFFF])
def test_unknown_role_with_keep_conn_gets_unknown_role(start, role):
    """END_REQUEST{FCGI_UNKNOWN_ROLE}; the refused request's other records
    are ignored; the kept connection serves the next request."""
    srv = start()
    with srv.connect() as conn:
        conn.send_request({"R": "x"}, b"body", role=role, keep_conn=True)
        rec = conn.recv_record()
        assert end_request(rec)[1] == fc.UNKNOWN_ROLE
        assert rec.request_id == 1
        resp = conn.request({"AFTER": "unknown role"}, b"abc", request_id=2)
        check_ok(resp)
        assert parse_echo(resp.body).stdin_bytes == 3
        assert conn.other_records == []


@pytest.mark.parametrize("role", [0, 4, 0xFFFF])
def test_unknown_role_without_keep_conn_answers_then_closes(start, role):
    """The whole refused request (with a body) arrives in one write: the
    client reads END_REQUEST{FCGI_UNKNOWN_ROLE} and an orderly close."""
    srv = start()
    with srv.connect() as conn:
        conn.send_request({"R": "x"}, os.urandom(200000), role=role)
        recs = read_all_records(conn)
        assert len(recs) == 1, recs
        assert end_request(recs[0])[1] == fc.UNKNOWN_ROLE
        assert not conn.reset, "connection reset instead of a clean close"


@pytest.mark.parametrize("length", [0, 7, 9, 16, 65535])
def test_begin_request_with_a_bad_body_length_closes_without_harm(start,
                                                                  length):
    srv = start()
    before = srv.snapshot()
    body = struct.pack("!HB5x", fc.RESPONDER, 0).ljust(length, b"\0")[:length]
    mark = srv.proc.log_mark()
    with srv.connect() as conn:
        conn.send_raw(fc.encode_record(fc.BEGIN_REQUEST, 1, body)
                      + params_stream(PARAMS) + stdin_stream(b""))
        closed_or_error_answer(conn)
    srv.assert_logged(mark)
    srv.assert_unharmed(before)


def test_begin_request_on_id_0_closes_without_harm(start):
    srv = start()
    before = srv.snapshot()
    mark = srv.proc.log_mark()
    with srv.connect() as conn:
        conn.send_raw(begin(0) + params_stream(PARAMS, 0)
                      + stdin_stream(b"", 0))
        recs = closed_or_error_answer(conn, request_id=0)
        assert all(r.type != fc.END_REQUEST for r in recs)
    srv.assert_logged(mark)
    srv.assert_unharmed(before)


# ============================================ 5.2, 5.3 Streams

def test_stdin_in_many_records_is_counted_exactly(start):
    srv = start()
    rnd = random.Random(1996)
    body = os.urandom(300000)
    parts, i = [], 0
    while i < len(body):
        n = rnd.choice([1, 7, 8, 100, 4096, 65535])
        parts.append(fc.encode_record(fc.STDIN, 1, body[i:i + n]))
        i += n
    with srv.connect() as conn:
        conn.send_raw(begin(1) + params_stream(
            {"CONTENT_LENGTH": str(len(body))}) + b"".join(parts)
            + fc.encode_record(fc.STDIN, 1))
        resp = conn.read_response()
    check_ok(resp)
    assert parse_echo(resp.body).stdin_bytes == len(body)


def test_stdin_without_content_length_is_read_to_its_empty_record(start):
    """nginx `fastcgi_request_buffering off` + a chunked upload."""
    srv = start()
    body = os.urandom(70000)
    _, page = srv.echo({"REQUEST_METHOD": "POST"}, body)
    assert page.stdin_bytes == len(body)


def test_stdin_shorter_than_content_length_still_completes(start):
    """CONTENT_LENGTH=1000, 10 bytes then the empty STDIN record (the spec:
    the client failed): the handler sees 10 bytes and EOF."""
    srv = start()
    _, page = srv.echo({"CONTENT_LENGTH": "1000"}, b"0123456789")
    assert page.stdin_bytes == 10


def test_records_after_a_stream_ended_are_ignored(start):
    """PARAMS after the empty PARAMS record, STDIN after the empty STDIN."""
    srv = start()
    with srv.connect() as conn:
        conn.send_raw(begin(1) + params_stream({"A": "1"})
                      + fc.encode_record(fc.PARAMS, 1,
                                         fc.encode_pairs({"LATE": "x"}))
                      + stdin_stream(b"abc")
                      + fc.encode_record(fc.STDIN, 1, b"late stdin"))
        resp = conn.read_response()
    check_ok(resp)
    page = parse_echo(resp.body)
    assert page.params == [("A", "1")] and page.stdin_bytes == 3


@pytest.mark.parametrize("phase", ["params", "stdin"])
def test_stalled_request_gets_408_after_read_timeout(start, phase):
    """A request stalled in its PARAMS or STDIN: after fastcgi.read_timeout
    a Status: 408 on STDOUT, then END_REQUEST, then the close."""
    srv = start({"fastcgi.read_timeout": "1s"})
    before = srv.snapshot()
    if phase == "params":
        data = begin(1) + fc.encode_params(1, PARAMS, terminate=False)
    else:
        data = (begin(1) + params_stream(PARAMS)
                + stdin_stream(b"partial", terminate=False))
    with srv.connect() as conn:
        conn.send_raw(data)
        t0 = time.monotonic()
        recs = read_all_records(conn, PROMPT + 1)
        waited = time.monotonic() - t0
    assert 0.8 <= waited < PROMPT + 1, waited
    assert_well_formed_answer(recs, 1)
    assert recs[0].type == fc.STDOUT
    assert recs[0].content.startswith(b"Status: 408"), recs[0]
    srv.assert_unharmed(before)


# ---------------------------------------------------- 6.4 Filter (DATA)

def test_filter_data_in_many_records_after_stdin_is_counted(start):
    srv = start()
    data = os.urandom(1024 * 1024 + 5)
    with srv.connect(timeout=10) as conn:
        conn.send_raw(begin(1, fc.FILTER) + params_stream(
            {"FCGI_DATA_LENGTH": str(len(data))})
            + stdin_stream(b"s" * 1000, chunk_size=333)
            + fc.encode_stream(fc.DATA, 1, data, chunk_size=40000))
        resp = conn.read_response()
    check_ok(resp)
    page = parse_echo(resp.body)
    assert page.fields["role"] == "FILTER"
    assert page.stdin_bytes == 1000
    assert int(page.fields["data_bytes"]) == len(data)


# ============================== 3.3 Managing request IDs

def test_records_for_ids_never_begun_or_ended_are_ignored(start):
    srv = start()
    junk = lambda rid: (fc.encode_record(fc.PARAMS, rid,
                                         fc.encode_pairs({"JUNK": "1"}))
                        + fc.encode_record(fc.STDIN, rid, b"junk")
                        + fc.encode_record(fc.DATA, rid, b"junk")
                        + fc.encode_record(fc.ABORT_REQUEST, rid))
    with srv.connect() as conn:
        conn.send_raw(junk(5) + begin(1, keep_conn=True) + junk(7)
                      + params_stream({"A": "1"}) + junk(2)
                      + stdin_stream(b"abc"))
        resp = conn.read_response(1)
        check_ok(resp)
        page = parse_echo(resp.body)
        assert page.params == [("A", "1")] and page.stdin_bytes == 3
        # Request 1 has ended: its id is inactive again.
        conn.send_raw(junk(1))
        resp = conn.request({"B": "2"}, b"de", request_id=4)
        check_ok(resp)
        assert parse_echo(resp.body).params == [("B", "2")]
        assert conn.other_records == []


# ========================================= 5.4 FCGI_ABORT_REQUEST

def test_abort_request_ends_a_running_request_promptly(start, slow_handler):
    """The handler (slow, 5 s) sees the abort; END_REQUEST for that id
    comes well before 5 s, and the worker serves the next request."""
    srv = start(slow=slow_handler)
    before = srv.snapshot()
    with srv.connect(srv.slow_ep, timeout=10) as conn:
        conn.send_request({"QUERY_STRING": "ms=5000"}, keep_conn=True)
        # The handler is running: the whole request has been read.
        wait_for(lambda: peer_has_read_all(conn), PROMPT, "request read")
        t0 = time.monotonic()
        conn.send_raw(fc.encode_abort_request(1))
        try:
            resp = conn.read_response(1, timeout=8)
        except fc.ConnectionClosed:
            resp = None     # "the server can simply close" (5.4)
        took = time.monotonic() - t0
    assert took < 4.0, f"abort took {took:.2f}s"
    if resp is not None:
        assert resp.protocol_status == fc.REQUEST_COMPLETE
    srv.assert_unharmed(before)


def test_abort_request_while_params_arrive_ends_the_request(start):
    srv = start()
    with srv.connect() as conn:
        conn.send_raw(begin(1, keep_conn=True)
                      + fc.encode_params(1, PARAMS, terminate=False)
                      + fc.encode_abort_request(1))
        rec = conn.recv_record()
        assert (rec.type, rec.request_id) in \
            ((fc.END_REQUEST, 1), (fc.STDOUT, 1)), rec
        while rec.type != fc.END_REQUEST:
            rec = conn.recv_record()
        assert end_request(rec)[1] == fc.REQUEST_COMPLETE
        check_ok(conn.request({"NEXT": "1"}, request_id=2))


def test_abort_for_an_inactive_id_is_ignored(start):
    srv = start()
    with srv.connect() as conn:
        conn.send_raw(fc.encode_abort_request(3))
        check_ok(conn.request({"N": "1"}, keep_conn=True))
        conn.send_raw(fc.encode_abort_request(1))     # already ended
        resp = conn.request({"N": "2"}, request_id=2)
        check_ok(resp)
        assert conn.other_records == []


# ============================= 5.5 FCGI_END_REQUEST: FCGI_CANT_MPX_CONN

@pytest.mark.parametrize("phase", ["params", "stdin"])
def test_second_request_while_one_is_active_gets_cant_mpx_conn(start,
                                                               phase):
    """BEGIN for id 2 (with its whole request) while request 1 is being
    read -> END_REQUEST{CANT_MPX_CONN} for id 2 only; request 1 completes
    with its own params and body."""
    srv = start()
    p1 = fc.encode_params(1, PARAMS, terminate=False)
    other = fc.encode_request({"OTHER": "2"}, b"other body", request_id=2)
    if phase == "params":
        data = (begin(1) + p1 + other + fc.encode_record(fc.PARAMS, 1)
                + stdin_stream(b"mine"))
    else:
        data = (begin(1) + p1 + fc.encode_record(fc.PARAMS, 1)
                + fc.encode_record(fc.STDIN, 1, b"mi") + other
                + stdin_stream(b"ne"))
    with srv.connect() as conn:
        conn.send_raw(data)
        resp = conn.read_response(1)
        check_ok(resp)
        page = parse_echo(resp.body)
        assert page.params == PARAMS and page.stdin_bytes == 4
        assert conn.wait_closed(PROMPT)
    refused = [r for r in conn.other_records if r.request_id == 2]
    assert len(refused) == 1, conn.other_records
    assert end_request(refused[0])[1] == fc.CANT_MPX_CONN


def test_second_begin_for_the_active_id_never_ends_it_twice(start):
    """BEGIN for the id already active (checklist 31) is a client error:
    the server may close, or answer the request once, but it must never
    send two END_REQUESTs for one id (the client would take the first one,
    CANT_MPX_CONN, as the end of its request and then read a stray
    answer), and it must not crash or wedge the worker."""
    srv = start()
    before = srv.snapshot()
    with srv.connect() as conn:
        conn.send_raw(begin(1) + fc.encode_params(1, PARAMS, terminate=False)
                      + begin(1) + fc.encode_record(fc.PARAMS, 1)
                      + stdin_stream(b""))
        try:
            recs = read_all_records(conn)
        except fc.ConnectionClosed:
            pytest.fail("the server closed in the middle of a record")
    ends = [end_request(r) for r in recs if r.type == fc.END_REQUEST]
    assert len(ends) <= 1, f"END_REQUEST for id 1 sent {len(ends)} times: " \
        f"{recs}"
    if recs:
        assert_well_formed_answer(recs, 1)
    srv.assert_unharmed(before)


def test_appendix_b_example_4_multiplexed_flow_is_refused_then_retried(
        start):
    """The spec's example 4 (two multiplexed requests on one kept
    connection): request 2 gets CANT_MPX_CONN, request 1 completes, and
    the client's retry of request 2 on the same connection is served."""
    srv = start()
    pairs = {"SERVER_PORT": "80", "SERVER_ADDR": "199.170.183.42"}
    with srv.connect() as conn:
        conn.send_raw(begin(1, keep_conn=True) + fc.encode_params(
            1, pairs, terminate=False) + fc.encode_record(fc.PARAMS, 1)
            + begin(2, keep_conn=True)
            + fc.encode_params(2, pairs, terminate=False)
            + fc.encode_record(fc.STDIN, 1)
            + fc.encode_record(fc.PARAMS, 2) + fc.encode_record(fc.STDIN, 2))
        first = conn.read_response(1)
        check_ok(first)
        assert parse_echo(first.body).params == list(pairs.items())
        refused = [r for r in conn.other_records if r.request_id == 2]
        if not refused:
            refused.append(conn.recv_record())
        assert len(refused) == 1, conn.other_records
        assert refused[0].request_id == 2
        assert end_request(refused[0])[1] == fc.CANT_MPX_CONN
        conn.other_records.clear()
        retry = conn.request(pairs, request_id=2, keep_conn=True)
        check_ok(retry)
        assert conn.other_records == []


# ========================================= Clients that leave early

@pytest.mark.parametrize("phase", ["begin", "params", "stdin"])
def test_client_closing_mid_request_frees_the_worker(start, phase):
    srv = start()
    before = srv.snapshot()
    data = {"begin": begin(1)[:12],
            "params": begin(1) + fc.encode_params(1, PARAMS)[:40],
            "stdin": begin(1) + params_stream(PARAMS)
            + fc.encode_record(fc.STDIN, 1, b"x" * 100)}[phase]
    with srv.connect() as conn:
        conn.send_raw(data)
        wait_for(lambda: peer_has_read_all(conn), PROMPT, "request read")
    srv.assert_unharmed(before)


def test_client_that_stops_reading_does_not_hold_the_worker(start):
    """A 900 KB answer to a client that reads none of it (more than a Unix
    socket buffers): the worker gives up after fastcgi.read_timeout and
    serves the next client."""
    srv = start({"fastcgi.read_timeout": "1s"})
    before = srv.snapshot()
    params = [(f"P{i:04d}", "v" * 900) for i in range(1000)]
    conn = srv.connect()
    try:
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        conn.send_request(params)
        wait_for(lambda: peer_has_read_all(conn), PROMPT, "request read")
        srv.assert_unharmed(before)
    finally:
        conn.close()


def test_client_closing_while_the_handler_runs_frees_the_worker(
        start, slow_handler):
    """nginx aborts a request by closing the connection: the handler (slow,
    5 s) sees it, and the same worker serves the next request well before
    the 5 s are over."""
    srv = start(slow=slow_handler)
    before = srv.snapshot()
    with srv.connect(srv.slow_ep) as conn:
        conn.send_request({"QUERY_STRING": "ms=5000"})
        wait_for(lambda: peer_has_read_all(conn), PROMPT, "request read")
    t0 = time.monotonic()
    resp = srv.slow("ms=0", timeout=8)
    took = time.monotonic() - t0
    assert resp.body == f"pid {srv.slow_pid}\n".encode()
    assert took < 4.0, f"the worker was held {took:.2f}s by a gone client"
    srv.assert_unharmed(before)
