"""Self-tests of fcgi_client, the suite's own FastCGI library: encoders
against hand-written vectors, the decoder fed at every split, and the
Connection against a scripted in-process peer.  No fpmd needed."""

import socket
import struct
import threading

import pytest

import fcgi_client as fc


# ---------------------------------------------------------------- encoding

def test_header_vector():
    assert fc.encode_header(fc.BEGIN_REQUEST, 1, 8, 0) == \
        b"\x01\x01\x00\x01\x00\x08\x00\x00"
    assert fc.encode_header(fc.STDIN, 0x1234, 0xFFFF, 1, version=2) == \
        b"\x02\x05\x12\x34\xff\xff\x01\x00"


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 65535])
def test_records_are_padded_to_eight(n):
    rec = fc.encode_record(fc.STDOUT, 1, b"x" * n)
    assert len(rec) % 8 == 0
    assert rec[7] == 0
    assert rec[6] == -n % 8
    assert struct.unpack("!H", rec[4:6])[0] == n


def test_record_over_65535_bytes_is_refused():
    with pytest.raises(ValueError):
        fc.encode_record(fc.STDIN, 1, b"x" * 65536)


def test_begin_request_body():
    rec = fc.encode_begin_request(7, fc.AUTHORIZER, fc.KEEP_CONN)
    assert rec == (b"\x01\x01\x00\x07\x00\x08\x00\x00"
                   b"\x00\x02\x01\x00\x00\x00\x00\x00")


@pytest.mark.parametrize("n, encoded", [
    (0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x00\x00\x80"),
    (0x7FFFFFFF, b"\xff\xff\xff\xff")])
def test_name_value_lengths(n, encoded):
    assert fc.encode_length(n) == encoded


def test_long_form_lengths_and_round_trip():
    pair = fc.encode_pair("AB", "c", long_form=True)
    assert pair == b"\x80\x00\x00\x02\x80\x00\x00\x01ABc"
    params = [("A", ""), ("B" * 200, "v" * 1000), ("\u00e9", "\u2713")]
    assert fc.decode_pairs(fc.encode_pairs(params)) == [
        (n.encode(), v.encode()) for n, v in params]


@pytest.mark.parametrize("data", [b"\x05", b"\x80\x00", b"\x01\x05Ab"])
def test_truncated_pairs_raise(data):
    with pytest.raises(fc.ProtocolError):
        fc.decode_pairs(data)


def test_stream_is_cut_and_terminated():
    data = bytes(range(256)) * 800          # 204800 bytes
    wire = fc.encode_stream(fc.STDIN, 3, data)
    dec = fc.RecordDecoder()
    dec.feed(wire)
    recs = dec.records()
    assert [len(r.content) for r in recs] == [65535, 65535, 65535, 8195, 0]
    assert all(r.type == fc.STDIN and r.request_id == 3 for r in recs)
    assert b"".join(r.content for r in recs) == data
    assert fc.encode_stream(fc.PARAMS, 1, b"") == \
        fc.encode_record(fc.PARAMS, 1)


def test_request_layout():
    wire = fc.encode_request({"A": "1"}, b"body", request_id=2,
                             keep_conn=True)
    dec = fc.RecordDecoder()
    dec.feed(wire)
    recs = dec.records()
    assert [(r.type, len(r.content)) for r in recs] == [
        (fc.BEGIN_REQUEST, 8), (fc.PARAMS, 4), (fc.PARAMS, 0),
        (fc.STDIN, 4), (fc.STDIN, 0)]
    assert recs[0].content[2] == fc.KEEP_CONN
    assert dec.pending == 0


# ---------------------------------------------------------------- decoding

def test_decoder_resumes_at_every_split():
    wire = (fc.encode_record(fc.STDOUT, 1, b"hello")
            + fc.encode_record(fc.STDERR, 1, b"")
            + fc.encode_record(fc.END_REQUEST, 1, b"\0" * 8, padding=3))
    whole = fc.RecordDecoder()
    whole.feed(wire)
    expected = whole.records()
    assert len(expected) == 3
    for cut in range(len(wire) + 1):
        dec = fc.RecordDecoder()
        dec.feed(wire[:cut])
        got = dec.records()
        dec.feed(wire[cut:])
        got += dec.records()
        assert got == expected, cut
    one = fc.RecordDecoder()
    got = []
    for b in wire:
        one.feed(bytes((b,)))
        got += one.records()
    assert got == expected


def test_decoder_rejects_a_bad_version():
    dec = fc.RecordDecoder()
    dec.feed(fc.encode_record(fc.STDOUT, 1, b"x", version=0))
    with pytest.raises(fc.ProtocolError):
        dec.next_record()


@pytest.mark.parametrize("stdout, status, body", [
    (b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope",
     404, b"nope"),
    (b"Content-Type: text/plain\n\nhi\n\nthere", 200, b"hi\n\nthere"),
    (b"Location: /x\r\n\r\n", 302, b""),
])
def test_cgi_response_parsing(stdout, status, body):
    status_, _, headers, body_ = fc.parse_cgi_response(stdout)
    assert (status_, body_) == (status, body)
    assert headers and all(n and ":" not in n for n, _ in headers)


@pytest.mark.parametrize("stdout", [b"Content-Type: text/plain\r\n",
                                    b"garbage\r\n\r\n"])
def test_bad_cgi_responses_raise(stdout):
    with pytest.raises(fc.ProtocolError):
        fc.parse_cgi_response(stdout)


@pytest.mark.parametrize("address, family, sockaddr", [
    (("127.0.0.1", 9), socket.AF_INET, ("127.0.0.1", 9)),
    ("127.0.0.1:9000", socket.AF_INET, ("127.0.0.1", 9000)),
    ("[::1]:9000", socket.AF_INET6, ("::1", 9000)),
    ("unix:/run/x.sock", socket.AF_UNIX, "/run/x.sock"),
    ("/run/x.sock", socket.AF_UNIX, "/run/x.sock"),
])
def test_parse_address(address, family, sockaddr):
    assert fc.parse_address(address) == (family, sockaddr)


# ------------------------------------------------------ scripted peer

class Peer(threading.Thread):
    """A one-connection server on 127.0.0.1 running SCRIPT(sock)."""

    def __init__(self, script):
        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.address = self.listener.getsockname()
        self.script = script
        self.error = None

    def run(self):
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(10)
                self.script(conn)
        except Exception as e:              # noqa: BLE001 -- reported
            self.error = e
        finally:
            self.listener.close()


def read_request(sock, dec):
    """Records up to and including the empty STDIN record."""
    recs = []
    while True:
        rec = dec.next_record()
        if rec is None:
            data = sock.recv(65536)
            assert data, "client closed early"
            dec.feed(data)
            continue
        recs.append(rec)
        if rec.type == fc.STDIN and not rec.content:
            return recs


def answer(sock, rid, stdout, app_status=0):
    sock.sendall(fc.encode_stream(fc.STDOUT, rid, stdout)
                 + fc.encode_record(fc.STDERR, rid, b"warn")
                 + fc.encode_record(fc.STDERR, rid)
                 + fc.encode_record(fc.END_REQUEST, rid,
                                    struct.pack("!IB3x", app_status, 0)))


def run_peer(script):
    peer = Peer(script)
    peer.start()
    return peer


def finish(peer):
    peer.join(10)
    assert not peer.is_alive()
    if peer.error:
        raise peer.error


def test_kept_connection_carries_several_requests():
    def script(sock):
        dec = fc.RecordDecoder()
        for i in range(3):
            recs = read_request(sock, dec)
            assert recs[0].content[2] == fc.KEEP_CONN
            answer(sock, recs[0].request_id,
                   b"Status: 201 Created\r\n\r\n" + str(i).encode(), i)

    peer = run_peer(script)
    with fc.Connection(peer.address) as conn:
        for i in range(3):
            resp = conn.request({"N": i}, keep_conn=True, request_id=i + 1)
            assert resp.status == 201
            assert resp.body == str(i).encode()
            assert resp.stderr == b"warn"
            assert resp.app_status == i
            assert resp.protocol_status == fc.REQUEST_COMPLETE
    finish(peer)


def test_early_answer_does_not_deadlock_a_large_send():
    """A peer that answers after the header and closes without reading
    the 8 MB body: send_raw must stop, not hang, and the answer must be
    readable."""
    def script(sock):
        sock.recv(16)
        answer(sock, 1, b"Status: 413 Too Large\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        sock.close()

    peer = run_peer(script)
    with fc.Connection(peer.address, timeout=10) as conn:
        sent = conn.send_request({}, b"x" * (8 << 20))
        resp = conn.read_response(1)
        assert resp.status == 413
        assert sent <= (8 << 20) + 1024
    finish(peer)


def test_eof_before_end_request_raises_with_the_partial_response():
    def script(sock):
        read_request(sock, fc.RecordDecoder())
        sock.sendall(fc.encode_record(fc.STDOUT, 1, b"Status: 200 OK\r\n"))

    peer = run_peer(script)
    with fc.Connection(peer.address) as conn:
        with pytest.raises(fc.ConnectionClosed) as info:
            conn.request({})
        assert info.value.partial.stdout == b"Status: 200 OK\r\n"
        assert not info.value.partial.complete
    finish(peer)


def test_get_values_round_trip():
    def script(sock):
        dec = fc.RecordDecoder()
        while (rec := dec.next_record()) is None:
            dec.feed(sock.recv(65536))
        assert (rec.type, rec.request_id) == (fc.GET_VALUES, 0)
        names = [n for n, v in fc.decode_pairs(rec.content)]
        assert names == [b"FCGI_MAX_CONNS", b"FCGI_MPXS_CONNS"]
        sock.sendall(fc.encode_record(
            fc.GET_VALUES_RESULT, 0,
            fc.encode_pairs([("FCGI_MAX_CONNS", "5"),
                             ("FCGI_MPXS_CONNS", "0")])))

    peer = run_peer(script)
    with fc.Connection(peer.address) as conn:
        assert conn.get_values([fc.MAX_CONNS, fc.MPXS_CONNS]) == {
            "FCGI_MAX_CONNS": "5", "FCGI_MPXS_CONNS": "0"}
    finish(peer)
