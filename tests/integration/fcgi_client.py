"""fcgi_client -- a small FastCGI 1.0 client for fpmd's tests.

Pure standard library.  Three layers, each usable on its own:

  * encoding: encode_header(), encode_record(), encode_pairs(),
    encode_begin_request(), encode_stream(), encode_request(),
    encode_get_values() build bytes and never touch a socket, so a test can
    assemble a well-formed request, a subtly broken one, or a record split
    at any byte;
  * decoding: RecordDecoder turns a byte stream into Record objects,
    decode_pairs() reads name-value pairs, parse_cgi_response() splits a
    responder's stdout into status, headers and body;
  * Connection: one socket (TCP or Unix) that sends requests and reads
    responses, keeps the connection across requests (FCGI_KEEP_CONN),
    answers management queries (FCGI_GET_VALUES) and sends raw bytes.

The client is strict about what it receives (a record whose version byte
is not 1 raises ProtocolError) because its purpose is to test a server.

Taboos: no global state, no threads, no sleeps; every blocking call is
bounded by the connection's timeout.
"""

import selectors
import socket
import struct
import time
from dataclasses import dataclass, field

# Section 8 of the specification: constants.
VERSION_1 = 1
HEADER_LEN = 8
MAX_CONTENT = 0xFFFF
MAX_PADDING = 0xFF
MAX_NV_LEN = 0x7FFFFFFF
NULL_REQUEST_ID = 0

BEGIN_REQUEST = 1
ABORT_REQUEST = 2
END_REQUEST = 3
PARAMS = 4
STDIN = 5
STDOUT = 6
STDERR = 7
DATA = 8
GET_VALUES = 9
GET_VALUES_RESULT = 10
UNKNOWN_TYPE = 11

TYPE_NAMES = {
    BEGIN_REQUEST: "BEGIN_REQUEST",
    ABORT_REQUEST: "ABORT_REQUEST",
    END_REQUEST: "END_REQUEST",
    PARAMS: "PARAMS",
    STDIN: "STDIN",
    STDOUT: "STDOUT",
    STDERR: "STDERR",
    DATA: "DATA",
    GET_VALUES: "GET_VALUES",
    GET_VALUES_RESULT: "GET_VALUES_RESULT",
    UNKNOWN_TYPE: "UNKNOWN_TYPE",
}

RESPONDER = 1
AUTHORIZER = 2
FILTER = 3

KEEP_CONN = 1

REQUEST_COMPLETE = 0
CANT_MPX_CONN = 1
OVERLOADED = 2
UNKNOWN_ROLE = 3

PROTOCOL_STATUS_NAMES = {
    REQUEST_COMPLETE: "REQUEST_COMPLETE",
    CANT_MPX_CONN: "CANT_MPX_CONN",
    OVERLOADED: "OVERLOADED",
    UNKNOWN_ROLE: "UNKNOWN_ROLE",
}

MAX_CONNS = "FCGI_MAX_CONNS"
MAX_REQS = "FCGI_MAX_REQS"
MPXS_CONNS = "FCGI_MPXS_CONNS"

_HEADER = struct.Struct("!BBHHBx")
_BEGIN_BODY = struct.Struct("!HB5x")
_END_BODY = struct.Struct("!IB3x")


class FcgiError(Exception):
    """Base class of everything this module raises on a peer's behaviour."""


class ProtocolError(FcgiError):
    """The peer sent bytes that are not valid FastCGI."""


class ConnectionClosed(FcgiError):
    """The peer closed the connection before the awaited answer was complete.

    `partial` holds what was received: a Response for read_response(), the
    unparsed bytes for a record cut short.  `reset` is true when the close
    was a reset (ECONNRESET/EPIPE) rather than an orderly EOF.
    """

    def __init__(self, message, partial=None, reset=False):
        super().__init__(message)
        self.partial = partial
        self.reset = reset


def to_bytes(value):
    """str (UTF-8), bytes, bytearray, memoryview or int to bytes."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, int):
        return str(value).encode("ascii")
    raise TypeError(f"cannot encode {type(value).__name__} as FastCGI bytes")


# ---------------------------------------------------------------- encoding

def padding_for(content_length):
    """Padding that aligns a record's content to 8 bytes (section 3.3)."""
    return -content_length % 8


def encode_header(rtype, request_id, content_length, padding_length=0,
                  version=VERSION_1):
    """The 8-byte record header.  Values are not checked beyond their
    field widths, so a test can describe an impossible record."""
    return _HEADER.pack(version, rtype, request_id, content_length,
                        padding_length)


def encode_record(rtype, request_id=NULL_REQUEST_ID, content=b"", *,
                  padding=None, version=VERSION_1):
    """One record: header, content, padding.

    padding=None pads to a multiple of 8; an int gives that many zero bytes.
    """
    content = to_bytes(content)
    if len(content) > MAX_CONTENT:
        raise ValueError(f"record content of {len(content)} bytes exceeds "
                         f"{MAX_CONTENT}; use encode_stream()")
    pad = padding_for(len(content)) if padding is None else padding
    if not 0 <= pad <= MAX_PADDING:
        raise ValueError(f"padding {pad} out of range")
    return (encode_header(rtype, request_id, len(content), pad, version)
            + content + b"\0" * pad)


def encode_length(n, *, long_form=False):
    """A name-value length: 1 byte below 128, else 4 bytes with the top bit
    set (section 3.4).  long_form forces the 4-byte form, which is legal for
    any length and worth testing."""
    if not 0 <= n <= MAX_NV_LEN:
        raise ValueError(f"name-value length {n} out of range")
    if n < 128 and not long_form:
        return bytes((n,))
    return struct.pack("!I", n | 0x80000000)


def encode_pair(name, value, *, long_form=False):
    """One name-value pair."""
    name, value = to_bytes(name), to_bytes(value)
    return (encode_length(len(name), long_form=long_form)
            + encode_length(len(value), long_form=long_form) + name + value)


def _pairs_of(params):
    if params is None:
        return []
    if hasattr(params, "items"):
        return list(params.items())
    return list(params)


def encode_pairs(params, *, long_form=False):
    """A name-value stream from a mapping or an iterable of (name, value),
    in iteration order (order matters: the echo page shows it)."""
    return b"".join(encode_pair(n, v, long_form=long_form)
                    for n, v in _pairs_of(params))


def encode_begin_request(request_id=1, role=RESPONDER, flags=0):
    """FCGI_BEGIN_REQUEST; flags=KEEP_CONN keeps the connection open."""
    return encode_record(BEGIN_REQUEST, request_id,
                         _BEGIN_BODY.pack(role, flags))


def encode_abort_request(request_id=1):
    return encode_record(ABORT_REQUEST, request_id)


def encode_stream(rtype, request_id, data, *, chunk_size=MAX_CONTENT,
                  terminate=True):
    """A stream (PARAMS, STDIN, DATA, ...): DATA cut into records of at most
    chunk_size bytes, then, if terminate, the empty record that ends it."""
    data = to_bytes(data)
    if not 1 <= chunk_size <= MAX_CONTENT:
        raise ValueError(f"chunk size {chunk_size} out of range")
    out = [encode_record(rtype, request_id, data[i:i + chunk_size])
           for i in range(0, len(data), chunk_size)]
    if terminate:
        out.append(encode_record(rtype, request_id))
    return b"".join(out)


def encode_params(request_id, params, *, chunk_size=MAX_CONTENT,
                  terminate=True, long_form=False):
    """The PARAMS stream: pairs split into records of <= chunk_size bytes
    (a pair may straddle two records, as the spec allows), then the empty
    PARAMS record."""
    return encode_stream(PARAMS, request_id,
                         encode_pairs(params, long_form=long_form),
                         chunk_size=chunk_size, terminate=terminate)


def encode_request(params, stdin=b"", *, request_id=1, role=RESPONDER,
                   keep_conn=False, data=None, params_chunk=MAX_CONTENT,
                   stdin_chunk=MAX_CONTENT):
    """A whole request: BEGIN_REQUEST, PARAMS, empty PARAMS, STDIN, empty
    STDIN and, when DATA is given (the FILTER role), the DATA stream."""
    parts = [
        encode_begin_request(request_id, role, KEEP_CONN if keep_conn else 0),
        encode_params(request_id, params, chunk_size=params_chunk),
        encode_stream(STDIN, request_id, stdin, chunk_size=stdin_chunk),
    ]
    if data is not None:
        parts.append(encode_stream(DATA, request_id, data,
                                   chunk_size=stdin_chunk))
    return b"".join(parts)


def encode_get_values(names=(MAX_CONNS, MAX_REQS, MPXS_CONNS)):
    """FCGI_GET_VALUES on request id 0: each name with an empty value."""
    return encode_record(GET_VALUES, NULL_REQUEST_ID,
                         encode_pairs((n, b"") for n in names))


# ---------------------------------------------------------------- decoding

@dataclass
class Record:
    type: int
    request_id: int
    content: bytes = b""
    version: int = VERSION_1
    padding_length: int = 0

    @property
    def type_name(self):
        return TYPE_NAMES.get(self.type, f"type {self.type}")

    def __repr__(self):
        body = self.content if len(self.content) <= 32 else (
            self.content[:32] + b"...")
        return (f"Record({self.type_name}, id={self.request_id}, "
                f"{len(self.content)} bytes {body!r})")


def decode_header(data):
    """(version, type, request_id, content_length, padding_length)."""
    return _HEADER.unpack(bytes(data[:HEADER_LEN]))


def decode_pairs(data):
    """A name-value stream to a list of (name, value) bytes pairs; raises
    ProtocolError when a pair is truncated."""
    data = bytes(data)
    pos, out = 0, []

    def length():
        nonlocal pos
        if pos >= len(data):
            raise ProtocolError("name-value pair truncated in its lengths")
        if data[pos] < 0x80:
            pos += 1
            return data[pos - 1]
        if pos + 4 > len(data):
            raise ProtocolError("4-byte name-value length truncated")
        n = struct.unpack_from("!I", data, pos)[0] & 0x7FFFFFFF
        pos += 4
        return n

    while pos < len(data):
        nlen = length()
        vlen = length()
        if pos + nlen + vlen > len(data):
            raise ProtocolError("name-value pair runs past its stream")
        out.append((data[pos:pos + nlen], data[pos + nlen:pos + nlen + vlen]))
        pos += nlen + vlen
    return out


class RecordDecoder:
    """A resumable record decoder: feed() any slice of the stream, then
    take whole records with next_record()."""

    def __init__(self, strict=True):
        self.strict = strict
        self._buf = bytearray()

    def feed(self, data):
        self._buf += data

    @property
    def pending(self):
        """Bytes received but not yet part of a whole record."""
        return len(self._buf)

    def next_record(self):
        """The next whole record, or None when more bytes are needed."""
        if len(self._buf) < HEADER_LEN:
            return None
        version, rtype, rid, clen, plen = decode_header(self._buf)
        if self.strict and version != VERSION_1:
            raise ProtocolError(f"record with version {version}: "
                                f"{bytes(self._buf[:HEADER_LEN]).hex()}")
        end = HEADER_LEN + clen + plen
        if len(self._buf) < end:
            return None
        content = bytes(self._buf[HEADER_LEN:HEADER_LEN + clen])
        del self._buf[:end]
        return Record(rtype, rid, content, version, plen)

    def records(self):
        """Every whole record buffered so far."""
        out = []
        while (rec := self.next_record()) is not None:
            out.append(rec)
        return out


def parse_cgi_response(stdout):
    """Split a CGI response into (status, reason, headers, body).

    headers is a list of (name, value) str pairs in order.  The status comes
    from a Status: header, else 302 when there is a Location:, else 200
    (RFC 3875 section 6.3).  Raises ProtocolError when there is no blank line
    ending the headers or a header line has no colon.
    """
    stdout = bytes(stdout)
    ends = [(i, len(sep)) for sep in (b"\r\n\r\n", b"\n\n")
            if (i := stdout.find(sep)) >= 0]
    if not ends:
        raise ProtocolError(f"no end of CGI headers in {stdout[:200]!r}")
    cut, seplen = min(ends)
    head, body = stdout[:cut], stdout[cut + seplen:]
    headers = []
    for line in head.decode("latin-1").replace("\r\n", "\n").split("\n"):
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise ProtocolError(f"bad CGI header line {line!r}")
        headers.append((name.strip(), value.strip()))
    lookup = {n.lower(): v for n, v in reversed(headers)}
    if "status" in lookup:
        code, _, reason = lookup["status"].partition(" ")
        if not code.isdigit():
            raise ProtocolError(f"bad Status header {lookup['status']!r}")
        status = int(code)
    elif "location" in lookup:
        status, reason = 302, "Found"
    else:
        status, reason = 200, "OK"
    return status, reason, headers, body


@dataclass
class Response:
    """What the server answered to one request."""
    request_id: int = 1
    stdout: bytes = b""
    stderr: bytes = b""
    app_status: int = None
    protocol_status: int = None
    records: list = field(default_factory=list, repr=False)
    _cgi: tuple = field(default=None, repr=False)

    @property
    def complete(self):
        """True once FCGI_END_REQUEST arrived."""
        return self.protocol_status is not None

    def _parsed(self):
        if self._cgi is None:
            self._cgi = parse_cgi_response(self.stdout)
        return self._cgi

    @property
    def status(self):
        return self._parsed()[0]

    @property
    def reason(self):
        return self._parsed()[1]

    @property
    def headers(self):
        return self._parsed()[2]

    @property
    def body(self):
        return self._parsed()[3]

    def header(self, name, default=None):
        """The first header called NAME (case-insensitive)."""
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return default


# ---------------------------------------------------------------- sockets

def parse_address(address):
    """(family, sockaddr) from ("host", port), "host:port", "[v6]:port",
    "unix:/path" or a path containing a slash."""
    if isinstance(address, tuple):
        host, port = address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return family, (host, int(port))
    address = str(address)
    if address.startswith("unix:"):
        return socket.AF_UNIX, address[5:]
    if "/" in address:
        return socket.AF_UNIX, address
    if address.startswith("["):
        host, _, port = address[1:].partition("]:")
        return socket.AF_INET6, (host, int(port))
    host, _, port = address.rpartition(":")
    return socket.AF_INET, (host or "127.0.0.1", int(port))


class Connection:
    """One FastCGI connection, as a web server would hold it.

    Requests are strictly sequential (fpmd does not multiplex): send one,
    read its response, send the next.  Records for other request ids that
    arrive while a response is read are kept in `other_records`.
    """

    def __init__(self, address, timeout=10.0, strict=True):
        family, sockaddr = parse_address(address)
        self.address = address
        self.timeout = timeout
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(sockaddr)
        except BaseException:
            self.sock.close()
            raise
        if family != socket.AF_UNIX:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.decoder = RecordDecoder(strict=strict)
        self.eof = False        # the peer closed (or reset) its side
        self.reset = False      # ... and it was a reset
        self.send_error = None  # the OSError that cut a send short
        self.other_records = []

    # -- context manager
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    def fileno(self):
        return self.sock.fileno()

    @property
    def local_address(self):
        return self.sock.getsockname()

    # -- raw I/O
    def _note_eof(self, reset=False):
        self.eof = True
        self.reset = self.reset or reset

    def _recv_some(self, timeout):
        """One recv() into the decoder; False on EOF.  Raises
        TimeoutError after TIMEOUT seconds without data."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 16)
        except (ConnectionResetError, ConnectionAbortedError):
            self._note_eof(reset=True)
            return False
        if not data:
            self._note_eof()
            return False
        self.decoder.feed(data)
        return True

    def send_raw(self, data):
        """Send DATA while draining whatever the peer sends meanwhile (so a
        server that answers before it has read everything cannot deadlock
        us).  Stops early if the peer closes or resets; returns the number
        of bytes sent and leaves the error in `send_error`.  Raises
        TimeoutError when neither direction moves for `timeout` seconds."""
        view = memoryview(to_bytes(data))
        sent = 0
        sel = selectors.DefaultSelector()
        self.sock.setblocking(False)
        try:
            sel.register(self.sock, selectors.EVENT_READ |
                         selectors.EVENT_WRITE)
            while sent < len(view):
                events = sel.select(self.timeout)
                if not events:
                    raise TimeoutError(
                        f"send stalled after {sent}/{len(view)} bytes")
                mask = events[0][1]
                if mask & selectors.EVENT_READ and not self.eof:
                    try:
                        chunk = self.sock.recv(1 << 16)
                    except BlockingIOError:
                        chunk = None
                    except (ConnectionResetError, ConnectionAbortedError) as e:
                        self._note_eof(reset=True)
                        self.send_error = e
                        break
                    if chunk == b"":
                        # The peer may have closed only its write side; keep
                        # sending until the kernel says otherwise.
                        self._note_eof()
                        sel.modify(self.sock, selectors.EVENT_WRITE)
                    elif chunk:
                        self.decoder.feed(chunk)
                if mask & selectors.EVENT_WRITE:
                    try:
                        sent += self.sock.send(view[sent:sent + (1 << 18)])
                    except BlockingIOError:
                        pass
                    except (BrokenPipeError, ConnectionResetError,
                            ConnectionAbortedError) as e:
                        self._note_eof(reset=True)
                        self.send_error = e
                        break
        finally:
            sel.close()
            self.sock.settimeout(self.timeout)
        return sent

    def shutdown_write(self):
        """Half-close: the server sees EOF on its read side."""
        self.sock.shutdown(socket.SHUT_WR)

    def recv_record(self, timeout=None):
        """The next record; None on EOF at a record boundary.  Raises
        ConnectionClosed on EOF inside a record, ProtocolError on a bad
        record, TimeoutError after TIMEOUT (default: the connection's)."""
        timeout = self.timeout if timeout is None else timeout
        while True:
            rec = self.decoder.next_record()
            if rec is not None:
                return rec
            if self.eof:
                if self.decoder.pending:
                    raise ConnectionClosed(
                        f"EOF inside a record ({self.decoder.pending} bytes "
                        "pending)", reset=self.reset)
                return None
            self._recv_some(timeout)

    def wait_closed(self, timeout=None):
        """Read until the peer closes; True if it did within TIMEOUT.
        Records received meanwhile are decoded and kept in other_records
        (undecodable bytes are discarded)."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                self._recv_some(left)
            except (TimeoutError, socket.timeout):
                return False
        try:
            self.other_records.extend(self.decoder.records())
        except ProtocolError:
            pass
        return True

    # -- requests
    def send_request(self, params, stdin=b"", **kw):
        """Send a whole request (see encode_request for the keywords);
        returns the bytes sent."""
        return self.send_raw(encode_request(params, stdin, **kw))

    def read_response(self, request_id=1, timeout=None):
        """Collect STDOUT, STDERR and END_REQUEST for REQUEST_ID.  Raises
        ConnectionClosed (with the partial Response) on EOF first."""
        resp = Response(request_id=request_id)
        out, err = bytearray(), bytearray()
        while True:
            try:
                rec = self.recv_record(timeout)
            except ConnectionClosed as e:
                resp.stdout, resp.stderr = bytes(out), bytes(err)
                raise ConnectionClosed(str(e), resp, e.reset) from None
            if rec is None:
                resp.stdout, resp.stderr = bytes(out), bytes(err)
                raise ConnectionClosed(
                    f"connection closed before END_REQUEST of request "
                    f"{request_id} ({len(out)} stdout bytes so far)",
                    resp, self.reset)
            if rec.request_id != request_id:
                self.other_records.append(rec)
                continue
            resp.records.append(rec)
            if rec.type == STDOUT:
                out += rec.content
            elif rec.type == STDERR:
                err += rec.content
            elif rec.type == END_REQUEST:
                if len(rec.content) != _END_BODY.size:
                    raise ProtocolError(f"END_REQUEST body of "
                                        f"{len(rec.content)} bytes")
                resp.app_status, resp.protocol_status = \
                    _END_BODY.unpack(rec.content)
                resp.stdout, resp.stderr = bytes(out), bytes(err)
                return resp
            else:
                raise ProtocolError(f"unexpected {rec.type_name} for "
                                    f"request {request_id}")

    def request(self, params, stdin=b"", *, request_id=1, timeout=None, **kw):
        """Send a request and return its Response.  keep_conn=True asks the
        server to keep the connection for the next request."""
        self.send_request(params, stdin, request_id=request_id, **kw)
        return self.read_response(request_id, timeout)

    def get_values(self, names=(MAX_CONNS, MAX_REQS, MPXS_CONNS),
                   timeout=None):
        """Send FCGI_GET_VALUES and return the answer as {name: value}
        (str).  Raises ProtocolError on any other answer."""
        self.send_raw(encode_get_values(names))
        rec = self.recv_record(timeout)
        if rec is None:
            raise ConnectionClosed("connection closed instead of "
                                   "GET_VALUES_RESULT", reset=self.reset)
        if rec.type != GET_VALUES_RESULT or rec.request_id != 0:
            raise ProtocolError(f"expected GET_VALUES_RESULT, got {rec!r}")
        return {n.decode("latin-1"): v.decode("latin-1")
                for n, v in decode_pairs(rec.content)}


def request(address, params, stdin=b"", *, timeout=10.0, **kw):
    """One request on a fresh connection, closed afterwards."""
    with Connection(address, timeout=timeout) as conn:
        return conn.request(params, stdin, **kw)
