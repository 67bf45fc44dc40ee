"""fpmd behind a real nginx: Unix socket and TCP, each with and without
`fastcgi_keep_conn on` + upstream keepalive."""

import os
import re
from collections import Counter
from dataclasses import dataclass

import pytest

from conftest import FpmdProcess, Nginx, parse_echo, pool_conf

COMBOS = [("unix", False), ("unix", True), ("tcp", False), ("tcp", True)]


@dataclass
class Stack:
    fpmd: FpmdProcess
    nginx: Nginx
    keepalive: bool


@pytest.fixture(params=COMBOS,
                ids=[f"{k}-{'keepalive' if ka else 'close'}"
                     for k, ka in COMBOS])
def stack(request, fpmd, endpoint, nginx):
    kind, keepalive = request.param
    ep = endpoint(kind)
    proc = fpmd([pool_conf(ep, opts={"pm.max_children": 4})])
    return Stack(proc, nginx(ep, keepalive=keepalive), keepalive)


def assert_clean_nginx_log(web):
    """nginx logs every upstream protocol problem at [error] or worse."""
    log = web.log_tail()
    bad = [line for line in log.splitlines()
           if re.search(r"\[(error|crit|alert|emerg)\]", line)]
    assert bad == [], "\n".join(bad)


def ok_echo(status, headers, body):
    assert status == 200, (status, body[:500])
    ctype = dict((k.lower(), v) for k, v in headers).get("content-type", "")
    assert ctype.startswith("text/plain"), headers
    return parse_echo(body)


def test_get_with_query_string(stack):
    status, headers, body = stack.nginx.request(
        "GET", "/some/path?a=1&b=x%20y")
    page = ok_echo(status, headers, body)
    params = page.param_dict
    assert params["QUERY_STRING"] == "a=1&b=x%20y"
    assert params["REQUEST_METHOD"] == "GET"
    assert params["REQUEST_URI"] == "/some/path?a=1&b=x%20y"
    assert params["DOCUMENT_URI"] == "/some/path"
    assert params["SERVER_PORT"] == str(stack.nginx.port)
    assert page.stdin_bytes == 0
    assert page.pid in stack.fpmd.worker_pids()
    assert_clean_nginx_log(stack.nginx)


def test_post_of_a_few_mb_counted_exactly(stack):
    body = os.urandom(4 * 1024 * 1024 + 3)
    status, headers, resp = stack.nginx.request(
        "POST", "/upload", body=body,
        headers={"Content-Type": "application/octet-stream"})
    page = ok_echo(status, headers, resp)
    assert page.stdin_bytes == len(body)
    assert page.param_dict["CONTENT_LENGTH"] == str(len(body))
    assert page.param_dict["REQUEST_METHOD"] == "POST"
    assert_clean_nginx_log(stack.nginx)


def test_300_requests_in_a_row(stack):
    conn = stack.nginx.connection()
    served = Counter()
    last = {}
    try:
        for i in range(300):
            status, headers, body = stack.nginx.request(
                "GET", f"/loop?i={i}", conn=conn)
            page = ok_echo(status, headers, body)
            assert page.param_dict["QUERY_STRING"] == f"i={i}"
            served[page.pid] += 1
            assert page.requests == last.get(page.pid, 0) + 1
            last[page.pid] = page.requests
    finally:
        conn.close()
    assert sum(served.values()) == 300
    assert set(served) <= set(stack.fpmd.worker_pids())
    if stack.keepalive:
        # One nginx worker sending one request at a time reuses its one
        # cached connection, which holds one fpmd worker.
        assert len(served) == 1, served
    assert_clean_nginx_log(stack.nginx)
