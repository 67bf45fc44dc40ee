"""The built-in cgi handler (handler = cgi): CGI/1.1 programs, one per
request, over FastCGI directly and behind a real nginx, side by side with
fcgiwrap behind the same nginx configuration, and gitweb as a real
application.

Each test writes its scripts (sh, perl, python) into a directory of its
own that the pool's user can read: when the suite runs as root the pool
runs as nobody, and pytest's tmp_path is private to root.  A script says
what the tests cannot see from outside (its pid, its process group) on
its stderr, which the handler copies to the error log.
"""

import hashlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import fcgi_client as fc
from conftest import (IS_ROOT, START_TIMEOUT, ManagedProcess, curl,
                      kill_left, pool_conf, proc_children, proc_stat,
                      render_conf, run_fpmd, still_alive, wait_for,
                      wait_group_killed)

FCGIWRAP_BIN = "/usr/sbin/fcgiwrap"
GITWEB_CGI = "/usr/share/gitweb/gitweb.cgi"
POOL_PATH = "/usr/bin:/bin"
LOG_LINE = r"(?m)WARNING: \[pool www\] child (\d+): "

# ------------------------------------------------------------------ scripts

ENV_SH = """#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
echo "cwd=$(pwd)"
env
echo "--- stdin"
cat
"""

HELLO = {
    "hello.cgi": """#!/bin/sh
printf 'Content-Type: text/plain\\n\\n'
printf 'lang=sh method=%s qs=%s script=%s length=%s body=%s\\n' \\
    "$REQUEST_METHOD" "$QUERY_STRING" "$SCRIPT_NAME" "$CONTENT_LENGTH" \\
    "$(cat)"
""",
    "hello.pl": """#!/usr/bin/perl
use strict;
use warnings;
local $/;
my $body = <STDIN>;
print "Content-Type: text/plain\\n\\n";
print "lang=perl method=$ENV{REQUEST_METHOD} qs=$ENV{QUERY_STRING} ",
    "script=$ENV{SCRIPT_NAME} length=$ENV{CONTENT_LENGTH} body=$body\\n";
""",
    "hello.py": """#!/usr/bin/python3
import os
import sys
body = sys.stdin.read()
e = os.environ
sys.stdout.write("Content-Type: text/plain\\n\\n")
sys.stdout.write(f"lang=python method={e['REQUEST_METHOD']} "
                 f"qs={e['QUERY_STRING']} script={e['SCRIPT_NAME']} "
                 f"length={e['CONTENT_LENGTH']} body={body}\\n")
""",
}

# The process it runs in: group, signal state, open fds (python: sh keeps
# its own fds open, 10 for the script).
SELF_SH = """#!/bin/sh
printf 'Content-Type: text/plain\\n\\n'
echo "pid=$$"
echo "pgrp=$(cut -d' ' -f5 /proc/$$/stat)"
# With builtins only: the shell blocks signals while it forks.
while IFS= read -r line; do
    case "$line" in Sig[BI][lg][kn]:*) echo "$line" ;; esac
done < /proc/$$/status
"""

FDS_PY = """#!/usr/bin/python3
import os
import stat
null = os.stat("/dev/null")
fds = []
for fd in range(1024):
    try:
        st = os.fstat(fd)
    except OSError:
        continue
    kind = ("pipe" if stat.S_ISFIFO(st.st_mode) else
            "null" if os.path.samestat(st, null) else "other")
    fds.append(f"{fd}:{kind}")
print("Content-Type: text/plain\\n")
print("fds=" + " ".join(fds))
"""

HEADERS_SH = r"""#!/bin/sh
case "$QUERY_STRING" in
status) printf 'Status: 404 Not Found\nContent-Type: text/plain\n\nno such thing\n' ;;
local) printf 'Location: /elsewhere/page?x=1\n\n' ;;
absolute) printf 'Location: https://example.org/new\n\n' ;;
moved) printf 'Status: 301 Moved Permanently\nLocation: https://example.org/moved\nContent-Type: text/html\n\n<a href="https://example.org/moved">moved</a>\n' ;;
plain) printf 'Content-Type: text/html; charset=utf-8\nX-Custom: a  b\n\n<p>hi</p>\n' ;;
crlf) printf 'Content-Type: text/plain\r\n\r\nbody\r\n' ;;
garbage) printf 'this is not a header\n\nbody\n' ;;
badstatus) printf 'Status: OK\nContent-Type: text/plain\n\nbody\n' ;;
nohead) printf '\nbody without headers\n' ;;
esac
"""

# (query, status, exact FastCGI stdout or None)
HEADER_CASES = [
    ("status", 404,
     b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\n"
     b"no such thing\n"),
    ("local", 302,
     b"Status: 302 Found\r\nLocation: /elsewhere/page?x=1\r\n\r\n"),
    ("absolute", 302,
     b"Status: 302 Found\r\nLocation: https://example.org/new\r\n\r\n"),
    ("moved", 301, None),
    ("plain", 200,
     b"Status: 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
     b"X-Custom: a  b\r\n\r\n<p>hi</p>\n"),
    ("crlf", 200,
     b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nbody\r\n"),
    ("garbage", 502, None),
    ("badstatus", 502, None),
    ("nohead", 502, None),
]

STREAM_SH = """#!/bin/sh
printf 'Content-Type: text/plain\\n\\n'
echo first
i=0
while [ ! -e "$GO_FILE" ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i+1)); done
echo second
"""

ECHO_SH = """#!/bin/sh
printf 'Content-Type: application/octet-stream\\n\\n'
exec cat
"""

CRASH_SH = """#!/bin/sh
case "$QUERY_STRING" in
segv) kill -SEGV $$ ;;
exit3) exit 3 ;;
empty) exit 0 ;;
late) printf 'Content-Type: text/plain\\n\\npartial\\n'; kill -SEGV $$ ;;
halfhead) printf 'Content-Type: text/pl'; exit 0 ;;
esac
"""

# Ignores SIGTERM, as does the child it leaves behind, so that only the
# SIGKILL to the whole process group ends them.
HANG_SH = """#!/bin/sh
trap '' TERM
(exec sleep 300) &
echo "grandchild=$!" >&2
echo "script=$$" >&2
if [ "$QUERY_STRING" = output ]; then
    printf 'Content-Type: text/plain\\n\\npartial\\n'
fi
sleep 300
"""

# A background child, and a foreground sleep that writes the three pids
# (the script's, the child's, its own) once all three run.
GROUP_SH = """#!/bin/sh
printf 'Content-Type: text/plain\\n\\n'
sleep 1000 &
sh -c 'echo "$1 $2 $$" > "$3.tmp" && mv "$3.tmp" "$3" && exec sleep 1000' \\
    sh $$ $! "$PIDS_FILE"
"""

# Answers without reading the body it was sent.
REJECT_SH = """#!/bin/sh
printf 'Status: 413 Payload Too Large\nContent-Type: text/plain\n\ntoo big\n'
"""

STDERR_SH = """#!/bin/sh
printf 'Content-Type: text/plain\\n\\nok\\n'
echo "first stderr line" >&2
printf 'second\\tline\\r\\nthird line without newline' >&2
"""

RAISE_PY = """#!/usr/bin/python3
import sys
sys.stderr.write("about to fail\\n")
1 / 0
"""

BINARY = bytes(range(256)) * 4096 + b"\xff\xfe\x00\x80\xc3\x28 not utf-8"

BINARY_PY = """#!/usr/bin/python3
import sys
out = sys.stdout.buffer
out.write(b"Content-Type: application/octet-stream\\r\\n\\r\\n")
out.write(bytes(range(256)) * 4096 + b"\\xff\\xfe\\x00\\x80\\xc3\\x28 not utf-8")
"""

BINARY_PL = """#!/usr/bin/perl
binmode STDOUT;
print "Content-Type: application/octet-stream\\r\\n\\r\\n";
print join("", map { chr } 0..255) x 4096;
print "\\xff\\xfe\\x00\\x80\\xc3\\x28 not utf-8";
"""


# ------------------------------------------------------------------ helpers

@pytest.fixture
def cgidir():
    """A fresh directory every user can read, for the scripts."""
    d = Path(tempfile.mkdtemp(prefix="fpmd-cgi-", dir="/tmp"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def write_script(directory, name, text, mode=0o755):
    path = Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def cgi_pool(fpmd, endpoint, options=None, env=None, name="www", kind="unix",
             **directives):
    """fpmd running one cgi pool; returns (process, endpoint)."""
    ep = endpoint(kind, name)
    opts = {"handler": "cgi", "pm.max_children": 2,
            "env": {"PATH": POOL_PATH, **(env or {})}}
    if options:
        opts["handler.options"] = options
    opts.update(directives)
    return fpmd([pool_conf(ep, name=name, opts=opts)]), ep


def run(ep, script, params=None, stdin=b"", timeout=30.0):
    """One request for SCRIPT (a path) on a new connection."""
    p = {"SCRIPT_FILENAME": str(script), "REQUEST_METHOD": "GET",
         "QUERY_STRING": "", "SCRIPT_NAME": "/" + Path(script).name}
    p.update(params or {})
    return fc.request(ep.client, p, stdin, timeout=timeout)


def env_of(body):
    """The `env` lines of ENV_SH's page as a dict, the cwd and stdin."""
    text = body.decode()
    head, _, stdin = text.partition("--- stdin\n")
    lines = head.splitlines()
    env = {}
    for line in lines[1:]:
        name, sep, value = line.partition("=")
        if sep:
            assert name not in env, f"{name} twice in the environment"
            env[name] = value
    return lines[0].partition("=")[2], env, stdin


def log_lines(proc, since=0):
    return proc.log_text[since:].splitlines()


def served_by(proc, script, since=0):
    """The worker pid from the first log line about SCRIPT."""
    m = re.search(LOG_LINE + re.escape(str(script)), proc.log_text[since:])
    assert m, proc.log_text[since:]
    return int(m.group(1))


def assert_no_zombies(proc):
    """Every program was reaped: no worker has a child left."""
    for pid in proc.worker_pids():
        assert proc_children(pid) == [], (pid, proc_children(pid))


def alive(pid):
    st = proc_stat(pid)
    return st is not None and st[0] != "Z"


def cgi_location(docroot, extra=""):
    """nginx location directives that run $document_root$uri as CGI."""
    return (f"root {docroot};\n"
            "fastcgi_param SCRIPT_FILENAME "
            "$document_root$fastcgi_script_name;\n" + extra)


def header(headers, name):
    for n, v in headers:
        if n.lower() == name.lower():
            return v
    return None


# --------------------------------------------------------- over FastCGI

def test_environment_is_the_params_plus_the_pool_env(fpmd, endpoint,
                                                     cgidir):
    script = write_script(cgidir, "env.cgi", ENV_SH)
    proc, ep = cgi_pool(fpmd, endpoint, env={
        "POOL_VAR": "from-pool", "SHADOWED": "from-pool",
        # Request metadata never comes from the pool's environment.
        "HTTP_FROM_POOL": "no", "CONTENT_TYPE": "no", "SERVER_NAME": "no"})
    resp = run(ep, script, {
        "REQUEST_METHOD": "POST", "QUERY_STRING": "a=1&b=two",
        "CONTENT_LENGTH": "5", "HTTP_X_TEST": "yes",
        "HTTP_PROXY": "http://evil.example:3128", "SHADOWED": "request",
        "EMPTY": ""}, b"hello")
    assert resp.status == 200, resp.stdout
    cwd, env, stdin = env_of(resp.body)
    assert cwd == str(cgidir)
    assert stdin == "hello"
    assert env["REQUEST_METHOD"] == "POST"
    assert env["QUERY_STRING"] == "a=1&b=two"
    assert env["SCRIPT_NAME"] == "/env.cgi"
    assert env["SCRIPT_FILENAME"] == str(script)
    assert env["CONTENT_LENGTH"] == "5"
    assert env["HTTP_X_TEST"] == "yes"
    assert env["EMPTY"] == ""
    assert env["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert env["PATH"] == POOL_PATH
    assert env["POOL_VAR"] == "from-pool"
    assert env["SHADOWED"] == "request"
    for name in ("HTTP_PROXY", "HTTP_FROM_POOL", "CONTENT_TYPE",
                 "SERVER_NAME"):
        assert name not in env, (name, env)


@pytest.mark.parametrize("name", sorted(HELLO))
def test_scripts_in_sh_perl_and_python(fpmd, endpoint, cgidir, name):
    script = write_script(cgidir, name, HELLO[name])
    proc, ep = cgi_pool(fpmd, endpoint)
    resp = run(ep, script, {"REQUEST_METHOD": "PUT", "QUERY_STRING": "q=1",
                            "CONTENT_LENGTH": "4"}, b"data")
    assert resp.status == 200, resp.stdout
    lang = {"cgi": "sh", "pl": "perl", "py": "python"}[name.split(".")[1]]
    assert resp.body == (f"lang={lang} method=PUT qs=q=1 script=/{name} "
                         f"length=4 body=data\n").encode()


def test_program_has_its_own_group_clean_signals_and_fds_0_to_2(
        fpmd, endpoint, cgidir):
    proc, ep = cgi_pool(fpmd, endpoint)
    resp = run(ep, write_script(cgidir, "self.cgi", SELF_SH))
    assert resp.status == 200, resp.stdout
    info = dict(line.replace(":\t", "=").split("=", 1)
                for line in resp.body.decode().splitlines())
    assert info["pgrp"] == info["pid"]
    assert int(info["SigBlk"], 16) == 0      # the worker blocks SIGQUIT
    assert int(info["SigIgn"], 16) == 0      # ... and ignores SIGPIPE
    fds = write_script(cgidir, "fds.py", FDS_PY)
    # Without a body (a GET) stdin is /dev/null; with one, a pipe.
    resp = run(ep, fds)
    assert resp.body.decode().strip() == "fds=0:null 1:pipe 2:pipe"
    resp = run(ep, fds, {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "2"},
               b"hi")
    assert resp.body.decode().strip() == "fds=0:pipe 1:pipe 2:pipe"


@pytest.mark.parametrize("query,status,stdout", HEADER_CASES,
                         ids=[c[0] for c in HEADER_CASES])
def test_response_headers_are_translated(fpmd, endpoint, cgidir, query,
                                         status, stdout):
    script = write_script(cgidir, "headers.cgi", HEADERS_SH)
    proc, ep = cgi_pool(fpmd, endpoint)
    mark = proc.log_mark()
    resp = run(ep, script, {"QUERY_STRING": query})
    assert resp.protocol_status == fc.REQUEST_COMPLETE
    assert resp.status == status, resp.stdout
    assert resp.stdout.startswith(b"Status: "), resp.stdout
    if stdout is not None:
        assert resp.stdout == stdout
    if status == 502:
        proc.wait_log(re.escape(str(script)) + r" sent malformed response "
                      r"headers \(.+\): killed its process group, "
                      r"answered 502", since=mark)


def test_output_is_streamed_as_it_comes(fpmd, endpoint, cgidir):
    script = write_script(cgidir, "stream.cgi", STREAM_SH)
    go = cgidir / "go"
    proc, ep = cgi_pool(fpmd, endpoint)
    with fc.Connection(ep.client, timeout=20) as conn:
        conn.send_request({"SCRIPT_FILENAME": str(script),
                           "GO_FILE": str(go)})
        out = b""
        while b"first\n" not in out:
            rec = conn.recv_record()
            assert rec is not None and rec.type in (fc.STDOUT, fc.STDERR), \
                rec
            if rec.type == fc.STDOUT:
                out += rec.content
        # The script waits for us: "first" came before it ended.
        assert b"second" not in out
        go.touch()
        resp = conn.read_response()
    assert resp.protocol_status == fc.REQUEST_COMPLETE
    assert (out + resp.stdout).endswith(b"\r\n\r\nfirst\nsecond\n")


def test_50mb_upload_echoed_back_without_deadlock(fpmd, endpoint, cgidir):
    script = write_script(cgidir, "echo.cgi", ECHO_SH)
    proc, ep = cgi_pool(fpmd, endpoint)
    data = os.urandom(50 * 1024 * 1024 + 7)
    resp = run(ep, script, {"REQUEST_METHOD": "POST",
                            "CONTENT_LENGTH": str(len(data))}, data,
               timeout=60)
    assert resp.status == 200
    body = resp.body
    assert len(body) == len(data)
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    assert_no_zombies(proc)


def test_early_answer_to_an_unread_body_keeps_the_connection(
        fpmd, endpoint, cgidir):
    script = write_script(cgidir, "reject.cgi", REJECT_SH)
    proc, ep = cgi_pool(fpmd, endpoint)
    with fc.Connection(ep.client, timeout=30) as conn:
        for _ in range(2):
            resp = conn.request({"SCRIPT_FILENAME": str(script),
                                 "REQUEST_METHOD": "POST"},
                                os.urandom(8 * 1024 * 1024), keep_conn=True)
            assert resp.status == 413 and resp.body == b"too big\n"
    assert_no_zombies(proc)


@pytest.mark.parametrize("name,source", [("binary.py", BINARY_PY),
                                         ("binary.pl", BINARY_PL)],
                         ids=["python", "perl"])
def test_binary_output_is_byte_exact(fpmd, endpoint, cgidir, name, source):
    proc, ep = cgi_pool(fpmd, endpoint)
    resp = run(ep, write_script(cgidir, name, source))
    assert resp.status == 200
    assert resp.header("Content-Type") == "application/octet-stream"
    assert resp.body == BINARY


CRASH_CASES = [
    ("segv", 502, r"was killed by signal 11 \(SIGSEGV\) without any output: "
                  r"answered 502"),
    ("exit3", 502, r"exited with code 3 without any output: answered 502"),
    ("empty", 502, r"exited with code 0 without any output: answered 502"),
    ("halfhead", 502, r"exited with code 0 before the end of its headers: "
                      r"answered 502"),
    # Its response had begun: it can only end as truncated (status None).
    ("late", None, r"was killed by signal 11 \(SIGSEGV\) after its response "
                   r"had begun: ended it as truncated$"),
]


def run_truncated(ep, script, params=None, **kw):
    """One request for SCRIPT whose response must end as broken: the
    connection closes at a record boundary without END_REQUEST.  Returns
    the partial Response."""
    with pytest.raises(fc.ConnectionClosed) as e:
        run(ep, script, params, **kw)
    assert "closed before END_REQUEST" in str(e.value), e.value
    assert not e.value.reset
    assert not e.value.partial.complete
    return e.value.partial


@pytest.mark.parametrize("query,status,logged", CRASH_CASES,
                         ids=[c[0] for c in CRASH_CASES])
def test_failing_program_costs_a_response_never_the_worker(
        fpmd, endpoint, cgidir, query, status, logged):
    script = write_script(cgidir, "crash.cgi", CRASH_SH)
    proc, ep = cgi_pool(fpmd, endpoint)
    workers = proc.wait_workers(2)
    mark = proc.log_mark()
    if status is None:
        resp = run_truncated(ep, script, {"QUERY_STRING": query})
        assert resp.status == 200 and resp.body == b"partial\n"
    else:
        resp = run(ep, script, {"QUERY_STRING": query})
        assert resp.protocol_status == fc.REQUEST_COMPLETE
        assert resp.status == status, resp.stdout
    proc.wait_log("(?m)" + re.escape(str(script)) + " " + logged,
                  since=mark)
    assert proc.worker_pids() == workers
    assert_no_zombies(proc)


# Closes its output, then lives on a while and fails: the response waits
# for its exit, which the worker learns only then.
LINGER_SH = """#!/bin/sh
printf 'Content-Type: text/plain\\n\\nbye\\n'
exec >&- 2>&-
sleep 0.5
exit 3
"""


def test_program_that_closes_its_output_is_awaited_until_it_exits(
        fpmd, endpoint, cgidir):
    script = write_script(cgidir, "linger.cgi", LINGER_SH)
    proc, ep = cgi_pool(fpmd, endpoint)
    workers = proc.wait_workers(2)
    mark = proc.log_mark()
    t0 = time.monotonic()
    resp = run(ep, script)
    took = time.monotonic() - t0
    assert (resp.status, resp.body) == (200, b"bye\n")
    assert took >= 0.5, f"answered {took:.2f}s in, before the exit"
    proc.wait_log("(?m)" + re.escape(str(script)) + " exited with code 3$",
                  since=mark)
    assert proc.worker_pids() == workers
    assert_no_zombies(proc)


def test_python_traceback_goes_to_the_log_and_answers_502(fpmd, endpoint,
                                                          cgidir):
    script = write_script(cgidir, "raise.py", RAISE_PY)
    proc, ep = cgi_pool(fpmd, endpoint)
    resp = run(ep, script)
    assert resp.status == 502
    proc.wait_log(re.escape(f'{script} said into stderr: "ZeroDivisionError'))
    proc.wait_log(re.escape(f"{script} exited with code 1 without any "
                            "output"))


def test_stderr_lines_are_logged_with_pool_and_script(fpmd, endpoint,
                                                      cgidir):
    script = write_script(cgidir, "stderr.cgi", STDERR_SH)
    proc, ep = cgi_pool(fpmd, endpoint)
    resp = run(ep, script)
    assert resp.status == 200 and resp.body == b"ok\n"
    assert resp.stderr == b""
    prefix = LOG_LINE + re.escape(f"{script} said into stderr: ")
    for line in ("first stderr line", "second\tline",
                 "third line without newline"):
        proc.wait_log(prefix + re.escape(f'"{line}"') + "$")


def test_timeout_kills_the_process_group_and_answers_504(fpmd, endpoint,
                                                         cgidir):
    script = write_script(cgidir, "hang.cgi", HANG_SH)
    proc, ep = cgi_pool(fpmd, endpoint, {"timeout": "1s"})
    workers = proc.wait_workers(2)
    mark = proc.log_mark()
    start = time.monotonic()
    resp = run(ep, script)
    took = time.monotonic() - start
    assert resp.status == 504, resp.stdout
    # 1 s of timeout, then up to 1 s of grace before SIGKILL.
    assert 1.0 <= took < 8.0, took
    # The lines reach the log through the master: wait for them.
    proc.wait_log(re.escape(str(script)) + r" ran past timeout "
                  r"\(1000 ms\): killed its process group, answered 504",
                  since=mark)
    proc.wait_log(r'"grandchild=\d+"', since=mark)
    text = proc.log_text[mark:]
    pids = [int(re.search(rf'"{what}=(\d+)"', text).group(1))
            for what in ("script", "grandchild")]
    wait_for(lambda: not any(alive(p) for p in pids), 5,
             f"script and grandchild {pids} to be gone")
    assert proc.worker_pids() == workers
    assert_no_zombies(proc)
    # The worker serves on.
    hello = write_script(cgidir, "hello.cgi", HELLO["hello.cgi"])
    assert run(ep, hello).status == 200


def test_timeout_after_output_ends_the_response_as_truncated(fpmd, endpoint,
                                                             cgidir):
    """Its 200 has gone out: too late for a 504, so the response ends
    without END_REQUEST, which the web server takes for truncated."""
    script = write_script(cgidir, "hang.cgi", HANG_SH)
    proc, ep = cgi_pool(fpmd, endpoint, {"timeout": "1s"})
    workers = proc.wait_workers(2)
    mark = proc.log_mark()
    resp = run_truncated(ep, script, {"QUERY_STRING": "output"})
    assert resp.status == 200
    assert resp.body == b"partial\n"
    proc.wait_log("(?m)" + re.escape(str(script)) + r" ran past timeout "
                  r"\(1000 ms\): killed its process group, ended its "
                  r"response as truncated$", since=mark)
    assert_no_zombies(proc)
    assert proc.worker_pids() == workers
    hello = write_script(cgidir, "hello.cgi", HELLO["hello.cgi"])
    assert run(ep, hello).status == 200


def test_client_going_away_kills_the_process_group(fpmd, endpoint, cgidir):
    script = write_script(cgidir, "hang.cgi", HANG_SH)
    proc, ep = cgi_pool(fpmd, endpoint)
    mark = proc.log_mark()
    conn = fc.Connection(ep.client)
    conn.send_request({"SCRIPT_FILENAME": str(script)})
    m = proc.wait_log(r'"grandchild=(\d+)"[\s\S]*"script=(\d+)"', since=mark)
    pids = [int(m.group(1)), int(m.group(2))]
    assert all(alive(p) for p in pids)
    conn.close()
    wait_for(lambda: not any(alive(p) for p in pids), 10,
             f"script and grandchild {pids} to be gone")
    proc.wait_log(re.escape(f"{script}: the client went away: killed its "
                            "process group"), since=mark)
    assert_no_zombies(proc)


def start_partial_request(ep, script, query=""):
    """A connection that has sent a request whose body never ends."""
    conn = fc.Connection(ep.client, timeout=30)
    conn.send_raw(fc.encode_begin_request(1)
                  + fc.encode_params(1, {"SCRIPT_FILENAME": str(script),
                                         "REQUEST_METHOD": "POST",
                                         "QUERY_STRING": query})
                  + fc.encode_stream(fc.STDIN, 1, b"x" * 1000,
                                     terminate=False))
    return conn


def test_abort_request_during_the_body_kills_the_process_group(
        fpmd, endpoint, cgidir):
    script = write_script(cgidir, "hang.cgi", HANG_SH)
    proc, ep = cgi_pool(fpmd, endpoint)
    mark = proc.log_mark()
    with start_partial_request(ep, script) as conn:
        m = proc.wait_log(r'"grandchild=(\d+)"[\s\S]*"script=(\d+)"',
                          since=mark)
        pids = [int(m.group(1)), int(m.group(2))]
        conn.send_raw(fc.encode_abort_request(1))
        resp = conn.read_response()
    assert resp.protocol_status == fc.REQUEST_COMPLETE
    assert resp.stdout == b""
    wait_for(lambda: not any(alive(p) for p in pids), 10,
             f"script and grandchild {pids} to be gone")
    assert_no_zombies(proc)


def test_output_held_for_an_unfinished_body_becomes_504_on_timeout(
        fpmd, endpoint, cgidir):
    """The program answered at once, but the client was still sending:
    its output waited (see cgi_holding), so the timeout can still say
    504 rather than end a 200 in the middle."""
    script = write_script(cgidir, "hang.cgi", HANG_SH)
    proc, ep = cgi_pool(fpmd, endpoint, {"timeout": "1s"})
    with start_partial_request(ep, script, "output") as conn:
        resp = conn.read_response()
    assert resp.status == 504, resp.stdout


def start_group_request(ep, cgidir):
    """A connection running GROUP_SH, once its three processes run: returns
    the connection and {pid: start time} of the script, its background
    child and its foreground sleep."""
    script = write_script(cgidir, "group.cgi", GROUP_SH)
    rundir = cgidir / "run"
    rundir.mkdir()
    rundir.chmod(0o777)         # the pool's user writes the pid file
    pidfile = rundir / "pids"
    conn = fc.Connection(ep.client)
    try:
        conn.send_request({"SCRIPT_FILENAME": str(script),
                           "PIDS_FILE": str(pidfile)})
        text = wait_for(lambda: pidfile.exists() and pidfile.read_text(),
                        10, "the script to write its pids")
        started = {}
        for pid in (int(x) for x in text.split()):
            st = proc_stat(pid)
            assert st is not None and st[0] != "Z", (pid, st)
            started[pid] = st[2]
    except BaseException:
        conn.close()
        raise
    return conn, started


def test_worker_killed_mid_request_kills_the_programs_whole_group(
        fpmd, endpoint, cgidir):
    proc, ep = cgi_pool(fpmd, endpoint)
    mark = proc.log_mark()
    conn, started = start_group_request(ep, cgidir)
    try:
        script = next(iter(started))
        worker = proc_stat(script)[1]
        assert worker in proc.worker_pids()
        os.kill(worker, signal.SIGKILL)
        wait_group_killed(proc, started, worker, script, mark)
    finally:
        conn.close()
        kill_left(started)
    proc.wait_workers(2, without=[worker])


def test_request_terminate_timeout_kills_the_programs_whole_group(
        fpmd, endpoint, cgidir):
    proc, ep = cgi_pool(fpmd, endpoint, request_terminate_timeout="2s")
    mark = proc.log_mark()
    conn, started = start_group_request(ep, cgidir)
    try:
        script = next(iter(started))
        worker = proc_stat(script)[1]
        wait_group_killed(proc, started, worker, script, mark)
        proc.wait_log(re.escape(f"[pool www] child {worker}, script "
                                f"'{cgidir / 'group.cgi'}'") +
                      r".* execution timed out \([\d.]+ sec\), "
                      "terminating", since=mark)
    finally:
        conn.close()
        kill_left(started)
    proc.wait_workers(2, without=[worker])


def test_master_killed_mid_request_leaves_no_program_behind(fpmd, endpoint,
                                                            cgidir):
    """The workers die of their parent-death signal, SIGTERM, and with
    no master left to reap them, each kills its program's group itself."""
    proc, ep = cgi_pool(fpmd, endpoint)
    workers = proc.wait_workers(2)
    conn, started = start_group_request(ep, cgidir)
    try:
        proc.signal(signal.SIGKILL)
        assert proc.wait_exit(10) == -signal.SIGKILL
        wait_for(lambda: not still_alive(started), 10,
                 f"the program's group {list(started)} to die with the "
                 f"master and its workers {workers}")
    finally:
        conn.close()
        kill_left(started)
    # The fixture's teardown fails the test if a worker outlives it.


@pytest.fixture
def refusals(cgidir):
    """A root with scripts that must and must not run, and one outside."""
    root = cgidir / "root"
    write_script(root, "ok.cgi", HELLO["hello.cgi"])
    write_script(root, "noexec.cgi", HELLO["hello.cgi"], mode=0o644)
    write_script(root, "script.sh", HELLO["hello.cgi"])
    write_script(cgidir / "outside", "out.cgi", HELLO["hello.cgi"])
    (root / "escape.cgi").symlink_to("../outside/out.cgi")
    (root / "alias.cgi").symlink_to("ok.cgi")
    (root / "dir.cgi").mkdir()
    # Refused by execve(2) itself, in the child: what it reports back.
    write_script(root, "nointerp.cgi", "#!/no/such/interpreter\n")
    write_script(root, "badinterp.cgi", "#!/etc/passwd\n")
    return root


# (SCRIPT_FILENAME relative to root, or None for none; status; log reason)
REFUSALS = [
    ("ok.cgi", 200, None),
    ("alias.cgi", 200, None),
    ("missing.cgi", 404, r"refused \(404\): No such file or directory"),
    ("noexec.cgi", 403, r"refused \(403\): not executable by uid \d+"),
    ("script.sh", 403, r"refused \(403\): its name does not end in one of "
                       r"limit_extensions \"\.cgi \.pl\""),
    ("dir.cgi", 403, r"refused \(403\): not a regular file"),
    ("../outside/out.cgi", 403, r"refused \(403\): it is \S+/outside/out.cgi, "
                                r"outside root \S+/root$"),
    ("escape.cgi", 403, r"refused \(403\): it is \S+/outside/out.cgi, "
                        r"outside root \S+/root$"),
    ("relative.cgi", 403, r"refused \(403\): not an absolute path"),
    ("nointerp.cgi", 500, r"cannot execute \S+/root/nointerp.cgi: No such "
                          r"file or directory \(is its #! interpreter "
                          r"installed\?\)"),
    ("badinterp.cgi", 403, r"cannot execute \S+/root/badinterp.cgi: "
                           r"Permission denied$"),
    (None, 500, r"the request has no SCRIPT_FILENAME"),
]


@pytest.mark.parametrize("name,status,reason", REFUSALS,
                         ids=[str(r[0]) for r in REFUSALS])
def test_scripts_are_refused_with_a_logged_reason(fpmd, endpoint, refusals,
                                                  name, status, reason):
    proc, ep = cgi_pool(fpmd, endpoint, {"root": str(refusals),
                                         "limit_extensions": ".cgi .pl"})
    mark = proc.log_mark()
    if name is None:
        params = {}
    elif name == "relative.cgi":
        params = {"SCRIPT_FILENAME": name}
    else:
        params = {"SCRIPT_FILENAME": f"{refusals}/{name}"}
    resp = fc.request(ep.client, params)
    assert resp.status == status, resp.stdout
    if reason is None:
        assert resp.body.startswith(b"lang=sh")
        return
    assert resp.header("Content-Type") == "text/plain; charset=utf-8"
    script = params.get("SCRIPT_FILENAME", "cgi")
    proc.wait_log(LOG_LINE + re.escape(f"{script}: ") + reason, since=mark)


def test_outside_root_is_refused_even_when_root_is_a_symlink(fpmd, endpoint,
                                                             cgidir):
    real = cgidir / "releases" / "1"
    write_script(real, "app.cgi", HELLO["hello.cgi"])
    (cgidir / "current").symlink_to("releases/1")
    write_script(cgidir / "releases" / "2", "old.cgi", HELLO["hello.cgi"])
    proc, ep = cgi_pool(fpmd, endpoint, {"root": str(cgidir / "current")})
    assert run(ep, cgidir / "current" / "app.cgi").status == 200
    # Lexically under root; physically ".." leaves the release.
    assert run(ep, cgidir / "current" / ".." / "2" / "old.cgi").status == 403


def test_filter_role_is_not_implemented(fpmd, endpoint, cgidir):
    script = write_script(cgidir, "hello.cgi", HELLO["hello.cgi"])
    proc, ep = cgi_pool(fpmd, endpoint)
    resp = fc.request(ep.client, {"SCRIPT_FILENAME": str(script)}, b"",
                      role=fc.FILTER, data=b"file")
    assert resp.status == 501


@pytest.mark.parametrize("options,message", [
    ({"colour": "red"}, "colour: not an option of the cgi handler"),
    ({"timeout": "soon"}, 'timeout: "soon" is not a duration'),
    ({"root": "cgi-bin"}, 'root: "cgi-bin" is not an absolute path'),
    ({"limit_extensions": "  "}, 'limit_extensions: "  ": expected file '
                                 'name endings'),
])
def test_bad_options_are_configuration_errors(fpmd_bin, tmp_path, options,
                                              message):
    conf = pool_conf(str(tmp_path / "www.sock"),
                     opts={"handler": "cgi", "handler.options": options})
    path = tmp_path / "fpmd.conf"
    path.write_text(render_conf({"error_log": "stderr"}, [conf]))
    res = run_fpmd(fpmd_bin, "-t", "-c", str(path))
    assert res.returncode == 2, res
    assert re.search(r"fpmd\.conf:\d+: handler\.options: " +
                     re.escape(message), res.stderr), res.stderr


# ------------------------------------------------------------ behind nginx

@pytest.fixture
def cgi_site(fpmd, endpoint, nginx, cgidir):
    """Every script of this file in cgidir, one cgi pool with a 2 s
    timeout, and nginx running $document_root$uri as CGI through it."""
    for name, text in [("env.cgi", ENV_SH), ("headers.cgi", HEADERS_SH),
                       ("echo.cgi", ECHO_SH), ("crash.cgi", CRASH_SH),
                       ("hang.cgi", HANG_SH), ("stderr.cgi", STDERR_SH),
                       ("binary.py", BINARY_PY), ("reject.cgi", REJECT_SH),
                       *HELLO.items()]:
        write_script(cgidir, name, text)
    proc, ep = cgi_pool(fpmd, endpoint, {"timeout": "2s",
                                         "root": str(cgidir)})
    return proc, nginx(ep, location_extra=cgi_location(cgidir)), cgidir


def test_nginx_passes_the_cgi_environment_but_no_http_proxy(cgi_site):
    proc, web, cgidir = cgi_site
    status, headers, body = web.request(
        "POST", "/env.cgi?a=1&b=x%20y", body=b"form=data",
        headers={"Content-Type": "application/x-www-form-urlencoded",
                 "Proxy": "http://evil.example:3128", "X-Test": "yes"})
    assert status == 200, body
    cwd, env, stdin = env_of(body)
    assert stdin == "form=data"
    assert env["REQUEST_METHOD"] == "POST"
    assert env["QUERY_STRING"] == "a=1&b=x%20y"
    assert env["SCRIPT_NAME"] == "/env.cgi"
    assert env["CONTENT_LENGTH"] == "9"
    assert env["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert env["SERVER_PORT"] == str(web.port)
    assert env["HTTP_X_TEST"] == "yes"
    assert "HTTP_PROXY" not in env


@pytest.mark.parametrize("query,status,location", [
    ("status", 404, None),
    ("local", 302, "/elsewhere/page?x=1"),
    ("absolute", 302, "https://example.org/new"),
    ("moved", 301, "https://example.org/moved"),
    ("plain", 200, None),
    ("garbage", 502, None),
])
def test_nginx_answers_with_the_translated_status(cgi_site, query, status,
                                                  location):
    proc, web, cgidir = cgi_site
    got, headers, body = web.request("GET", f"/headers.cgi?{query}")
    assert got == status, body
    if location is not None:
        assert header(headers, "Location").endswith(location), headers


def test_nginx_50mb_post_echoed_back(cgi_site):
    proc, web, cgidir = cgi_site
    data = os.urandom(50 * 1024 * 1024)
    status, headers, body = web.request(
        "POST", "/echo.cgi", body=data,
        headers={"Content-Type": "application/octet-stream"})
    assert status == 200
    assert len(body) == len(data)
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()


def test_nginx_early_answer_to_a_body_the_program_never_reads(cgi_site):
    proc, web, cgidir = cgi_site
    conn = web.connection()
    try:
        for _ in range(2):
            status, headers, body = web.request(
                "POST", "/reject.cgi", body=os.urandom(10 * 1024 * 1024),
                conn=conn)
            assert (status, body) == (413, b"too big\n")
        assert web.request("GET", "/hello.cgi?x", conn=conn)[0] == 200
    finally:
        conn.close()


def test_nginx_timeout_crash_stderr_and_binary(cgi_site):
    proc, web, cgidir = cgi_site
    mark = proc.log_mark()
    assert web.request("GET", "/hang.cgi")[0] == 504
    assert web.request("GET", "/crash.cgi?segv")[0] == 502
    status, headers, body = web.request("GET", "/stderr.cgi")
    assert (status, body) == (200, b"ok\n")
    proc.wait_log(LOG_LINE + re.escape(f'{cgidir}/stderr.cgi said into '
                                       'stderr: "first stderr line"'),
                  since=mark)
    status, headers, body = web.request("GET", "/binary.py")
    assert status == 200 and body == BINARY
    assert web.request("GET", "/missing.cgi")[0] == 404


def test_nginx_sees_a_response_cut_short_as_truncated(cgi_site, nginx):
    """A program that has begun its response, then runs past timeout or
    dies of a signal: its 200 is out, so nginx must learn that the body
    is incomplete rather than pass it on as whole; the worker serves on.
    nginx tells only with fastcgi_keep_conn on (fpmd-handler(3), BUGS)."""
    proc, plain, cgidir = cgi_site
    web = nginx(plain.upstream, keepalive=True,
                location_extra=cgi_location(cgidir))
    workers = proc.wait_workers(2)
    for path in ("/hang.cgi?output", "/crash.cgi?late"):
        assert curl(web.port, path) == (18, 200, b"partial\n"), path
    wait_for(lambda: web.error_log.read_text().count(
        "upstream prematurely closed") >= 2, 10,
        "nginx to log both truncations")
    assert curl(web.port, "/hello.cgi?x")[:2] == (0, 200)
    assert proc.worker_pids() == workers
    assert_no_zombies(proc)


# ------------------------------------------------------ against fcgiwrap

class Fcgiwrap(ManagedProcess):
    """fcgiwrap, one process (-c 1), on a Unix socket of its own."""

    name = "fcgiwrap"

    def __init__(self, workdir, endpoint):
        super().__init__(workdir)
        self.endpoint = endpoint

    def start(self):
        # The same PATH as the fpmd pool, nothing else from our environment.
        self._spawn([FCGIWRAP_BIN, "-c", "1", "-s",
                     f"unix:{self.endpoint.path}"], env={"PATH": POOL_PATH})

        def ready():
            if not self.running():
                raise AssertionError(f"fcgiwrap exited: {self.stderr_text}")
            return self.endpoint.accepts()
        wait_for(ready, START_TIMEOUT, "fcgiwrap to accept")
        return self


@pytest.fixture
def fcgiwrap(tmp_path, endpoint):
    if not os.access(FCGIWRAP_BIN, os.X_OK):
        pytest.skip(f"{FCGIWRAP_BIN} not installed (Debian package "
                    "fcgiwrap)")
    started = []

    def make():
        f = Fcgiwrap(tmp_path, endpoint("unix", "fcgiwrap"))
        started.append(f)
        return f.start()
    yield make
    for f in started:
        f.cleanup()


ENV_SUBSET_SH = r"""#!/bin/sh
printf 'Content-Type: text/plain\n\n'
for v in REQUEST_METHOD QUERY_STRING SCRIPT_NAME SCRIPT_FILENAME \
    CONTENT_LENGTH CONTENT_TYPE GATEWAY_INTERFACE SERVER_PROTOCOL \
    HTTP_HOST HTTP_X_TEST PATH; do
    eval "printf '%s=%s\n' $v \"\$$v\""
done
echo "cwd=$(pwd)"
echo "stdin=$(sha256sum | cut -d' ' -f1)"
"""

# Writes its page in three pieces, 0.3 s apart: a slow, streaming one.
SLOW_STREAM_SH = """#!/bin/sh
printf 'Content-Type: text/plain\\n\\n'
for piece in first second third; do
    echo "$piece"
    [ "$piece" = third ] || sleep 0.3
done
"""

# (method, path, body, request headers, compare bodies?)
SAME_ANSWERS = [
    # A big upload the program reads whole (its sha256 is on the page).
    ("POST", "/env.cgi", os.urandom(16 * 1024 * 1024),
     {"Content-Type": "application/octet-stream"}, True),
    ("GET", "/slow.cgi", None, {}, True),
    ("GET", "/env.cgi?a=1&b=two", None, {"X-Test": "yes"}, True),
    ("POST", "/env.cgi", os.urandom(32 * 1024),
     {"Content-Type": "application/octet-stream"}, True),
    ("GET", "/headers.cgi?status", None, {}, True),
    ("GET", "/headers.cgi?local", None, {}, True),
    ("GET", "/headers.cgi?absolute", None, {}, True),
    ("GET", "/headers.cgi?moved", None, {}, True),
    ("GET", "/headers.cgi?plain", None, {}, True),
    ("GET", "/headers.cgi?crlf", None, {}, True),
    ("GET", "/headers.cgi?garbage", None, {}, False),
    ("GET", "/headers.cgi?nohead", None, {}, False),
    ("GET", "/binary.py", None, {}, True),
    ("GET", "/hello.pl?x=y", None, {}, True),
    ("GET", "/stderr.cgi", None, {}, True),
    ("GET", "/crash.cgi?segv", None, {}, False),
    ("GET", "/crash.cgi?exit3", None, {}, False),
    ("GET", "/noexec.cgi", None, {}, False),
]


def test_same_answers_as_fcgiwrap_behind_the_same_nginx(
        fpmd, endpoint, nginx, fcgiwrap, cgidir):
    for name, text in [("env.cgi", ENV_SUBSET_SH), ("headers.cgi",
                       HEADERS_SH), ("crash.cgi", CRASH_SH),
                       ("stderr.cgi", STDERR_SH), ("binary.py", BINARY_PY),
                       ("hello.pl", HELLO["hello.pl"]),
                       ("slow.cgi", SLOW_STREAM_SH)]:
        write_script(cgidir, name, text)
    write_script(cgidir, "noexec.cgi", ENV_SUBSET_SH, mode=0o644)
    proc, ep = cgi_pool(fpmd, endpoint)
    ours = nginx(ep, location_extra=cgi_location(cgidir))
    theirs = nginx(fcgiwrap().endpoint, location_extra=cgi_location(cgidir))
    for method, path, body, headers, same_body in SAME_ANSWERS:
        a = ours.request(method, path, body=body, headers=headers)
        b = theirs.request(method, path, body=body, headers=headers)
        what = f"{method} {path}"
        assert a[0] == b[0], (what, a[0], b[0], a[2][:300], b[2][:300])
        if not same_body:
            continue    # error pages: each says it in its own words
        for h in ("Content-Type", "Location", "X-Custom"):
            assert header(a[1], h) == header(b[1], h), (what, h, a[1], b[1])
        assert a[2] == b[2], (what, a[2][:300], b[2][:300])


def test_where_fpmd_differs_from_fcgiwrap(fpmd, endpoint, nginx, fcgiwrap,
                                          cgidir):
    """The documented differences (fpmd.conf(5), THE CGI HANDLER)."""
    write_script(cgidir, "env.cgi", ENV_SH)
    write_script(cgidir, "echo.cgi", ECHO_SH)
    write_script(cgidir, "crash.cgi", CRASH_SH)
    proc, ep = cgi_pool(fpmd, endpoint)
    ours = nginx(ep, location_extra=cgi_location(cgidir))
    theirs = nginx(fcgiwrap().endpoint, location_extra=cgi_location(cgidir))
    proxy = {"Proxy": "http://evil.example:3128"}
    # httpoxy: fcgiwrap hands the client's Proxy header to the program.
    assert "HTTP_PROXY" not in env_of(ours.request("GET", "/env.cgi",
                                                   headers=proxy)[2])[1]
    assert env_of(theirs.request("GET", "/env.cgi", headers=proxy)[2])[1][
        "HTTP_PROXY"] == "http://evil.example:3128"
    # A missing script: fcgiwrap answers 403 for everything it cannot run.
    assert ours.request("GET", "/missing.cgi")[0] == 404
    assert theirs.request("GET", "/missing.cgi")[0] == 403
    # A body larger than two pipe buffers, echoed: fcgiwrap writes all of
    # stdin before it reads any output, so it would deadlock here; fpmd
    # streams both ways.
    data = os.urandom(4 * 1024 * 1024)
    status, headers, body = ours.request("POST", "/echo.cgi", body=data)
    assert status == 200 and body == data
    # A program killed by a signal after its response had begun: fpmd
    # ends the response as broken, so that nginx (with fastcgi_keep_conn)
    # cuts the body short (curl: exit 18); fcgiwrap ends it as complete.
    ours = nginx(ep, keepalive=True, location_extra=cgi_location(cgidir))
    theirs = nginx(theirs.upstream, keepalive=True,
                   location_extra=cgi_location(cgidir))
    assert curl(ours.port, "/crash.cgi?late") == (18, 200, b"partial\n")
    assert curl(theirs.port, "/crash.cgi?late") == (0, 200, b"partial\n")


# ------------------------------------------------------------------ gitweb

def git(*args, cwd=None):
    env = {"PATH": POOL_PATH, "HOME": "/nonexistent",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "Ada Tester",
           "GIT_AUTHOR_EMAIL": "ada@example.org",
           "GIT_COMMITTER_NAME": "Ada Tester",
           "GIT_COMMITTER_EMAIL": "ada@example.org",
           "GIT_AUTHOR_DATE": "2026-11-26T12:00:00Z",
           "GIT_COMMITTER_DATE": "2026-11-26T12:00:00Z"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_gitweb_project_list_and_commit_page(fpmd, endpoint, nginx, cgidir):
    if not os.access(GITWEB_CGI, os.X_OK) or shutil.which("git") is None:
        pytest.skip(f"{GITWEB_CGI} or git missing (Debian packages gitweb, "
                    "git)")
    if subprocess.run(["perl", "-MCGI", "-e1"],
                      capture_output=True).returncode != 0:
        pytest.skip("perl's CGI module missing (Debian package gitweb "
                    "pulls libcgi-pm-perl)")
    work, repos = cgidir / "work", cgidir / "repos"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    (work / "README").write_text("hello from the fpmd cgi test\n")
    git("add", "README", cwd=work)
    git("commit", "-q", "-m", "First commit through fpmd cgi",
        "-m", "The body of the commit message.", cwd=work)
    repos.mkdir()
    git("clone", "-q", "--bare", str(work), str(repos / "demo.git"))
    (repos / "demo.git" / "description").write_text("fpmd demo repository\n")
    sha = git("rev-parse", "HEAD", cwd=work)
    if IS_ROOT:
        # As in production, the repositories belong to the pool's user
        # (git refuses a repository owned by someone else).
        nobody = pwd.getpwnam("nobody")
        for d, dirs, files in os.walk(repos):
            for n in [d, *[os.path.join(d, f) for f in dirs + files]]:
                os.lchown(n, nobody.pw_uid, nobody.pw_gid)
    conf = write_script(cgidir, "gitweb.conf",
                        f'$projectroot = "{repos}";\n'
                        '$git_temp = "/tmp";\n'
                        '$site_name = "fpmd gitweb test";\n', mode=0o644)
    proc, ep = cgi_pool(fpmd, endpoint,
                        {"root": str(Path(GITWEB_CGI).parent),
                         "limit_extensions": ".cgi", "timeout": "30s"},
                        env={"GITWEB_CONFIG": str(conf)})
    web = nginx(ep, location_extra=f"fastcgi_param SCRIPT_FILENAME "
                f"{GITWEB_CGI};\n")

    status, headers, body = web.request("GET", "/gitweb.cgi")
    text = body.decode("utf-8", "replace")
    assert status == 200, text[:2000]
    assert header(headers, "Content-Type").startswith(
        "application/xhtml+xml") or header(
        headers, "Content-Type").startswith("text/html"), headers
    assert "demo.git" in text, text[:3000]
    assert "fpmd demo repository" in text

    status, headers, body = web.request(
        "GET", f"/gitweb.cgi?p=demo.git;a=commit;h={sha}")
    text = body.decode("utf-8", "replace").replace("&nbsp;", " ")
    assert status == 200, text[:2000]
    assert "First commit through fpmd cgi" in text
    assert "The body of the commit message." in text
    assert sha in text
    assert "Ada Tester" in text

    # A commit that does not exist: gitweb's own 404, passed on.
    status, headers, body = web.request(
        "GET", "/gitweb.cgi?p=demo.git;a=commit;h=" + "0" * 40)
    assert status == 404, body[:2000]
