#!/usr/bin/python3
"""make-corpus.py -- write the seed corpora for the fuzz harnesses.

    tests/fuzz/make-corpus.py

Writes tests/fuzz/corpus/record/*.bin (FastCGI streams for fuzz_record)
and tests/fuzz/corpus/params/*.bin (name-value bodies for fuzz_params).
The output is deterministic and committed; rerun this after changing it.
Files it does not name are left alone (libFuzzer's own finds may be added
by hand, named after what they found).
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

BEGIN_REQUEST, ABORT_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT, STDERR, \
    DATA, GET_VALUES, GET_VALUES_RESULT, UNKNOWN_TYPE = range(1, 12)
RESPONDER, AUTHORIZER, FILTER = 1, 2, 3
KEEP_CONN = 1


def record(rtype, rid, content=b"", padding=None, version=1):
    """One record; padding defaults to the spec's 8-byte alignment."""
    if padding is None:
        padding = -len(content) % 8
    return struct.pack(">BBHHBx", version, rtype, rid, len(content),
                       padding) + content + b"\0" * padding


def nv_len(n, wide=False):
    if n < 128 and not wide:
        return bytes([n])
    return struct.pack(">I", n | 0x80000000)


def nv(name, value, wide=False):
    return nv_len(len(name), wide) + nv_len(len(value), wide) + name + value


def params(pairs):
    return b"".join(nv(n, v) for n, v in pairs)


NGINX_PARAMS = [
    (b"SCRIPT_FILENAME", b"/srv/www/cgi-bin/hello.cgi"),
    (b"QUERY_STRING", b"a=1&b=2"),
    (b"REQUEST_METHOD", b"POST"),
    (b"CONTENT_TYPE", b"application/x-www-form-urlencoded"),
    (b"CONTENT_LENGTH", b"11"),
    (b"SCRIPT_NAME", b"/cgi-bin/hello.cgi"),
    (b"REQUEST_URI", b"/cgi-bin/hello.cgi?a=1&b=2"),
    (b"DOCUMENT_URI", b"/cgi-bin/hello.cgi"),
    (b"DOCUMENT_ROOT", b"/srv/www"),
    (b"SERVER_PROTOCOL", b"HTTP/1.1"),
    (b"REQUEST_SCHEME", b"http"),
    (b"GATEWAY_INTERFACE", b"CGI/1.1"),
    (b"SERVER_SOFTWARE", b"nginx/1.22.1"),
    (b"REMOTE_ADDR", b"127.0.0.1"),
    (b"REMOTE_PORT", b"51234"),
    (b"SERVER_ADDR", b"127.0.0.1"),
    (b"SERVER_PORT", b"80"),
    (b"SERVER_NAME", b"localhost"),
    (b"REDIRECT_STATUS", b"200"),
    (b"HTTP_HOST", b"localhost"),
    (b"HTTP_USER_AGENT", b"curl/7.88.1"),
    (b"HTTP_ACCEPT", b"*/*"),
]
GET_VALUES_NAMES = [(b"FCGI_MAX_CONNS", b""), (b"FCGI_MAX_REQS", b""),
                    (b"FCGI_MPXS_CONNS", b"")]
GET_VALUES_ANSWER = [(b"FCGI_MAX_CONNS", b"5"), (b"FCGI_MAX_REQS", b"5"),
                     (b"FCGI_MPXS_CONNS", b"0")]
LONG_PAIR = (b"HTTP_COOKIE", b"session=" + b"0123456789abcdef" * 20)


def begin(role=RESPONDER, flags=KEEP_CONN, rid=1):
    return record(BEGIN_REQUEST, rid, struct.pack(">HB5x", role, flags))


def nginx_request(rid=1, body=b"hello=world"):
    return (begin(rid=rid) + record(PARAMS, rid, params(NGINX_PARAMS)) +
            record(PARAMS, rid) + record(STDIN, rid, body) +
            record(STDIN, rid))


RECORD = {
    "nginx-post": nginx_request(),
    "nginx-two-requests-keepconn": nginx_request(1) + nginx_request(1, b""),
    "get-values": record(GET_VALUES, 0, params(GET_VALUES_NAMES), 0),
    "get-values-result": record(GET_VALUES_RESULT, 0,
                                params(GET_VALUES_ANSWER)),
    "padding-255": record(STDOUT, 1, b"x", 255) + record(STDIN, 1, b"", 255),
    "padding-aligned": b"".join(record(STDOUT, 1, b"p" * n)
                                for n in range(0, 10)),
    "zero-length-records": b"".join(record(t, 1, b"", 0)
                                    for t in (PARAMS, STDIN, DATA, STDERR)),
    "params-4byte-lengths": begin() + record(PARAMS, 1, nv(*LONG_PAIR) +
                                             nv(b"A", b"B", wide=True)),
    "authorizer": begin(AUTHORIZER, 0, 7) + record(PARAMS, 7, params(
        [(b"REMOTE_USER", b"alice")])) + record(PARAMS, 7),
    "filter-data": begin(FILTER, 0, 3) + record(PARAMS, 3) +
    record(STDIN, 3) + record(DATA, 3, b"<p>file</p>") + record(DATA, 3),
    "abort-request": begin() + record(PARAMS, 1) + record(ABORT_REQUEST, 1),
    "second-request-id": begin(rid=1) + begin(rid=2),
    "unknown-type": record(42, 0, b"?", 7) + record(UNKNOWN_TYPE, 0,
                                                    bytes([42]) + b"\0" * 7),
    "end-request": record(STDOUT, 1, b"Status: 200 OK\r\n\r\nhi") +
    record(STDOUT, 1) + record(END_REQUEST, 1, struct.pack(">IB3x", 0, 0)),
    "bad-version": record(STDIN, 1, b"ok") + record(STDIN, 1, version=2) +
    record(STDIN, 1),
    "http-request": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "eof-mid-content": record(STDIN, 1, b"0123456789")[:13],
    "eof-mid-header": record(STDIN, 1)[:5],
}

PARAMS_BODIES = {
    "nginx-params": params(NGINX_PARAMS),
    "get-values-names": params(GET_VALUES_NAMES),
    "get-values-result": params(GET_VALUES_ANSWER),
    "4byte-lengths": nv(*LONG_PAIR) + nv(b"X" * 130, b"y"),
    "4byte-small-lengths": nv(b"FOO", b"BAR", wide=True) + nv(b"", b"",
                                                              wide=True),
    "boundary-127-128": nv(b"n" * 127, b"v" * 128),
    "empty-name-value": nv(b"", b"") + nv(b"", b"v") + nv(b"n", b""),
    "truncated-pair": nv(b"SCRIPT_NAME", b"/x.cgi")[:-2],
    "huge-lengths": b"\xff\xff\xff\xff\xff\xff\xff\xff" + b"abcdefgh",
    "huge-value-after-pair": nv(b"A", b"B") + b"\x01\xff\xff\xff\xffA",
}


def write(sub, files):
    d = os.path.join(HERE, "corpus", sub)
    os.makedirs(d, exist_ok=True)
    for name, data in sorted(files.items()):
        with open(os.path.join(d, name + ".bin"), "wb") as f:
            f.write(data)


def main():
    write("record", RECORD)
    write("params", PARAMS_BODIES)


if __name__ == "__main__":
    main()
