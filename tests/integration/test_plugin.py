"""Handler plugins: fpmd installed into a DESTDIR, the example plugin in
contrib/handlers/hello built out of tree against the installed header
with pkg-config, then loaded and served; every way a plugin can be
refused at `fpmd -t` (ABI mismatch, missing symbol, unloadable file, bad
or unknown handler.options), each named with the file and the reason; and
the host functions appended after the ABI's first release (option_at,
read_timeout_ms, abort_response), through tests/handlers/abi.c, over
FastCGI and behind nginx; and program_group, through
tests/handlers/spawner.c: the program group a plugin records dies with
its worker."""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

import fcgi_client
from conftest import (IS_ROOT, REPO, built_plugin, curl, kill_left,
                      pool_conf, proc_stat, public_copy, render_conf,
                      run_fpmd, same_process_alive, wait_for,
                      wait_group_killed, wait_group_spared)

BUILDDIR = Path(os.environ.get("FPMD_BUILDDIR", REPO))


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """`make install DESTDIR=...` of the build under test; returns the
    DESTDIR and the prefix the build was configured with."""
    if not (BUILDDIR / "Makefile").is_file():
        pytest.skip(f"no configured build in {BUILDDIR}")
    if shutil.which("pkg-config") is None or shutil.which("cc") is None:
        pytest.skip("pkg-config or cc missing")
    dest = tmp_path_factory.mktemp("destdir")
    r = subprocess.run(["make", "-s", "-C", str(BUILDDIR), "install",
                        f"DESTDIR={dest}"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    prefix = subprocess.run(
        ["sed", "-n", "s/^prefix = //p", str(BUILDDIR / "Makefile")],
        capture_output=True, text=True, check=True).stdout.strip()
    return dest, Path(prefix)


def staged_env(dest, prefix):
    """pkg-config sees the staged fpmd-handler.pc, and its -I paths point
    into the DESTDIR."""
    env = dict(os.environ)
    env["PKG_CONFIG_PATH"] = str(dest / prefix.relative_to("/") / "lib" /
                                 "pkgconfig")
    env["PKG_CONFIG_SYSROOT_DIR"] = str(dest)
    return env


def build_hello(tmp_path, dest, prefix, abi=None):
    """Builds contrib/handlers/hello as a user would, from a copy; with
    ABI, the copy claims that handler ABI number instead."""
    src = tmp_path / "hello"
    shutil.copytree(REPO / "contrib" / "handlers" / "hello", src)
    if abi is not None:
        c = src / "hello.c"
        c.write_text(c.read_text().replace(
            ".abi_version = FPMD_HANDLER_ABI", f".abi_version = {abi}"))
    r = subprocess.run(["make", "-C", str(src)],
                       env=staged_env(dest, prefix), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return Path(public_copy(src / "hello.so"))


def test_install_lays_out_header_pc_and_binaries(staged):
    dest, prefix = staged
    root = dest / prefix.relative_to("/")
    for rel in ("sbin/fpmd", "sbin/fpmctl", "include/fpmd/handler.h",
                "lib/pkgconfig/fpmd-handler.pc",
                "share/man/man8/fpmd.8", "share/man/man5/fpmd.conf.5",
                "share/man/man3/fpmd-handler.3", "share/man/man8/fpmctl.8",
                "etc/fpmd/fpmd.conf", "etc/fpmd/pool.d/www.conf"):
        assert (root / rel).exists(), rel
    pc = (root / "lib/pkgconfig/fpmd-handler.pc").read_text()
    assert "handlerdir=${libdir}/fpmd/handlers" in pc


def test_out_of_tree_plugin_serves_requests(staged, fpmd, tmp_path,
                                            endpoint):
    dest, prefix = staged
    so = build_hello(tmp_path, dest, prefix)
    staged_fpmd = dest / prefix.relative_to("/") / "sbin" / "fpmd"
    ep = endpoint("unix")
    pool = pool_conf(ep, opts={
        "handler": str(so), "handler.options": {"greeting": "Bonjour"}})
    # The staged binary, not the build tree's: what a user installs.
    proc = fpmd([pool], start=False)
    proc.binary = str(staged_fpmd)
    proc.start()
    resp = fcgi_client.request(ep.client, {"REQUEST_METHOD": "GET",
                                           "QUERY_STRING": "name=fpmd"})
    assert resp.status == 200, resp.stdout
    assert resp.body.startswith(b"Bonjour, fpmd! (request 1 of this "
                                b"worker)"), resp.body


def write_conf(tmp_path, handler, options=None):
    pool = pool_conf(str(tmp_path / "w.sock"), opts={"handler": handler})
    if options:
        pool["handler.options"] = options
    conf = tmp_path / "fpmd.conf"
    conf.write_text(render_conf({"error_log": "stderr"}, [pool]))
    return conf


def test_abi_mismatch_is_refused_by_name(staged, fpmd_bin, tmp_path):
    dest, prefix = staged
    so = build_hello(tmp_path, dest, prefix, abi=999)
    r = run_fpmd(fpmd_bin, "-t", "-c", str(write_conf(tmp_path, str(so))))
    assert r.returncode == 2, r
    assert f"{so} was built for handler ABI 999" in r.stderr, r.stderr
    assert "fpmd.conf:" in r.stderr


def test_missing_symbol_is_refused(fpmd_bin, tmp_path):
    src = tmp_path / "nosym.c"
    src.write_text("int not_a_handler = 1;\n")
    so = tmp_path / "nosym.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(so), str(src)],
                   check=True)
    r = run_fpmd(fpmd_bin, "-t", "-c", str(write_conf(tmp_path,
                                                       public_copy(so))))
    assert r.returncode == 2, r
    assert 'does not export the symbol "fpmd_handler"' in r.stderr, r.stderr


def test_unloadable_file_is_refused(fpmd_bin, tmp_path):
    bogus = tmp_path / "bogus.so"
    bogus.write_text("not an ELF file\n")
    bogus = public_copy(bogus)
    r = run_fpmd(fpmd_bin, "-t", "-c", str(write_conf(tmp_path, bogus)))
    assert r.returncode == 2, r
    assert f"cannot load {bogus}" in r.stderr, r.stderr
    assert "file too short" in r.stderr, r.stderr


def test_bad_handler_option_is_refused_with_its_name(staged, fpmd_bin,
                                                     tmp_path):
    dest, prefix = staged
    so = build_hello(tmp_path, dest, prefix)
    r = run_fpmd(fpmd_bin, "-t", "-c", str(write_conf(
        tmp_path, str(so), {"greeting": "x" * 80})))
    assert r.returncode == 2, r
    assert "handler.options: greeting: at most 64 bytes" in r.stderr, \
        r.stderr


def test_plugin_by_name_is_looked_up_in_the_handler_dir(fpmd_bin,
                                                         tmp_path):
    r = run_fpmd(fpmd_bin, "-t", "-c", str(write_conf(tmp_path,
                                                       "no_such_plugin")))
    assert r.returncode == 2, r
    assert "/fpmd/handlers/no_such_plugin.so" in r.stderr, r.stderr


def test_unknown_handler_option_is_refused_with_its_name(staged, fpmd_bin,
                                                         tmp_path):
    """hello's check_options walks handler.options with option_at(): a
    misspelt name is a configuration error at its FILE:LINE."""
    dest, prefix = staged
    so = build_hello(tmp_path, dest, prefix)
    conf = write_conf(tmp_path, str(so), {"greeting": "Hi", "greting": "x"})
    r = run_fpmd(fpmd_bin, "-t", "-c", str(conf))
    assert r.returncode == 2, r
    m = re.search(r"(\S*fpmd\.conf):(\d+): handler\.options: greting: not "
                  r"an option of the hello handler \(greeting\)", r.stderr)
    assert m, r.stderr
    assert Path(m.group(1)).resolve() == conf.resolve()
    # The line is within the handler.options block (today: its end).
    lines = conf.read_text().splitlines()
    start = next(i for i, t in enumerate(lines) if "handler.options" in t)
    end = next(i for i in range(start, len(lines)) if lines[i].strip() == "}")
    assert start < int(m.group(2)) <= end + 1, (m.group(0), lines)
    # The known name alone passes.
    conf = write_conf(tmp_path, str(so), {"greeting": "Hi"})
    r = run_fpmd(fpmd_bin, "-t", "-c", str(conf))
    assert r.returncode == 0, r.stderr


# ------------------------------------------- host functions of later releases

@pytest.fixture(scope="session")
def abi_handler():
    """tests/handlers/abi.c, built by `make check` in the build directory."""
    return built_plugin("abi")


def abi_pool(fpmd, endpoint, abi_handler, tmp_path, **opts):
    """fpmd with one abi pool of a single worker, so that every request
    meets the worker the one before it left; access log "%s %m %q", the
    status page on /status.  Returns (process, endpoint, access log)."""
    ep = endpoint("unix")
    access = tmp_path / "access.log"
    conf = {"handler": abi_handler, "pm.max_children": 1,
            "access.log": str(access), "access.format": "%s %m %q",
            "pm.status_path": "/status"}
    conf.update(opts)
    return fpmd([pool_conf(ep, opts=conf)]), ep, access


def abi_params(query, method="GET"):
    return {"REQUEST_METHOD": method, "QUERY_STRING": query,
            "SCRIPT_NAME": "/abi", "REQUEST_URI": f"/abi?{query}"}


def abi_page(body):
    """The abi page without its first line; and the pid that line says."""
    first, _, rest = body.decode().partition("\n")
    m = re.fullmatch(r"pid: (\d+)", first)
    assert m, body
    return rest, int(m.group(1))


HEAD = b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n"


@pytest.mark.parametrize("read_timeout,ms", [(None, 30000), ("7s", 7000),
                                             ("0", 0)])
def test_option_at_lists_options_in_order_and_read_timeout_ms(
        fpmd, endpoint, abi_handler, tmp_path, read_timeout, ms):
    options = {"zeta": "1", "alpha": "two words", "mid": "a=b"}
    proc, ep, _ = abi_pool(fpmd, endpoint, abi_handler, tmp_path, **{
        "handler.options": options, "fastcgi.read_timeout": read_timeout})
    resp = fcgi_client.request(ep.client, abi_params(""))
    assert resp.status == 200, resp.stdout
    assert abi_page(resp.body)[0] == (
        "has: 1 1 1\n"
        f"read_timeout_ms: {ms}\n"
        "option: zeta=1\noption: alpha=two words\noption: mid=a=b\n")


def test_option_at_without_options_lists_none(fpmd, endpoint, abi_handler,
                                              tmp_path):
    proc, ep, _ = abi_pool(fpmd, endpoint, abi_handler, tmp_path)
    resp = fcgi_client.request(ep.client, abi_params(""))
    assert abi_page(resp.body)[0] == "has: 1 1 1\nread_timeout_ms: 30000\n"


def read_broken(conn, params, stdin=b"", **kw):
    """Sends a request that the handler ends with abort_response(): the
    connection must close at a record boundary without END_REQUEST.
    Returns the partial Response."""
    conn.send_request(params, stdin, **kw)
    with pytest.raises(fcgi_client.ConnectionClosed) as e:
        conn.read_response()
    assert "closed before END_REQUEST" in str(e.value), e.value
    assert not e.value.reset, "the connection was reset, not closed"
    resp = e.value.partial
    assert not resp.complete
    # Neither END_REQUEST nor the empty STDOUT record that ends a stream.
    assert all(r.type == fcgi_client.STDOUT and r.content
               for r in resp.records), resp.records
    return resp


@pytest.mark.parametrize("size", [0, 100, 200000])
def test_abort_response_closes_without_end_request(fpmd, endpoint,
                                                   abi_handler, tmp_path,
                                                   size):
    """What the handler buffered (never flushed) still leaves, whole
    records only, then the close; even on a kept connection."""
    proc, ep, access = abi_pool(fpmd, endpoint, abi_handler, tmp_path)
    mark = proc.log_mark()
    with fcgi_client.Connection(ep.client, timeout=30) as conn:
        resp = read_broken(conn, abi_params(f"abort={size}"),
                           keep_conn=True)
    assert resp.stdout == HEAD + b"x" * size
    m = proc.wait_log(r"child (\d+): abi: after abort_response: write -1, "
                      r"read -1, aborted 1", since=mark)
    proc.wait_log(r"connection closed: the handler ended the response as "
                  r"broken", since=mark)
    # Counted as served, with the status it sent; the worker serves on.
    resp = fcgi_client.request(ep.client, abi_params(""))
    assert resp.status == 200
    assert abi_page(resp.body)[1] == int(m.group(1))
    lines = wait_for(lambda: (lambda t: t if t.count("\n") >= 2 else None)(
        access.read_text()), 10, "two access lines").splitlines()
    assert lines[:2] == [f"200 GET abort={size}", "200 GET "], lines
    page = json.loads(fcgi_client.request(ep.client, {
        "REQUEST_METHOD": "GET", "QUERY_STRING": "json&full",
        "SCRIPT_NAME": "/status"}).body)
    assert page["processes"][0]["requests"] == 2, page


def test_abort_response_before_any_output_sends_nothing(fpmd, endpoint,
                                                        abi_handler,
                                                        tmp_path):
    """No fpmd-made 500 takes the place of the broken response."""
    proc, ep, _ = abi_pool(fpmd, endpoint, abi_handler, tmp_path)
    with fcgi_client.Connection(ep.client, timeout=30) as conn:
        resp = read_broken(conn, abi_params("abort=0&head=0"))
    assert resp.stdout == b""


def test_abort_response_with_the_body_unread_is_no_reset(fpmd, endpoint,
                                                         abi_handler,
                                                         tmp_path):
    """The client is still sending a body the handler never read: the
    worker drains it before closing, so the client reads the partial
    answer and an orderly close rather than a reset."""
    proc, ep, _ = abi_pool(fpmd, endpoint, abi_handler, tmp_path)
    with fcgi_client.Connection(ep.client, timeout=30) as conn:
        resp = read_broken(conn, abi_params("abort=10&noread=1", "POST"),
                           os.urandom(1024 * 1024))
    assert resp.stdout == HEAD + b"x" * 10


def test_abort_response_is_a_truncated_response_behind_nginx(
        fpmd, endpoint, nginx, abi_handler, tmp_path):
    """With fastcgi_keep_conn on, nginx expects END_REQUEST: a close
    before it is an error, and the client's body is cut short."""
    if shutil.which("curl") is None:
        pytest.skip("curl missing")
    proc, ep, _ = abi_pool(fpmd, endpoint, abi_handler, tmp_path)
    web = nginx(ep, keepalive=True)
    worker = abi_page(curl(web.port, "/abi")[2])[1]
    rc, status, body = curl(web.port, "/abi?abort=5000")
    assert (rc, status) == (18, 200), (rc, status, web.log_tail())
    assert body == b"x" * 5000
    wait_for(lambda: "upstream prematurely closed connection while reading "
             "upstream" in web.error_log.read_text(), 10,
             "nginx to log the truncation")
    # Nothing sent at all: nginx has no header to pass on.
    rc, status, body = curl(web.port, "/abi?abort=0&head=0")
    assert (rc, status) == (0, 502), (rc, status, body)
    # The same worker serves on, through the same nginx.
    rc, status, body = curl(web.port, "/abi")
    assert (rc, status) == (0, 200), (rc, status, body)
    assert abi_page(body)[1] == worker


def test_without_keep_conn_nginx_takes_the_close_for_the_end(
        fpmd, endpoint, nginx, abi_handler, tmp_path):
    """The limit of abort_response() (fpmd-handler(3), BUGS): without
    fastcgi_keep_conn, nginx ends a response at the close of the
    connection and ignores END_REQUEST, so a response ended as broken
    after its header passes as complete.  Only a response broken before
    its header is still told apart (502)."""
    if shutil.which("curl") is None:
        pytest.skip("curl missing")
    proc, ep, _ = abi_pool(fpmd, endpoint, abi_handler, tmp_path)
    web = nginx(ep)
    assert curl(web.port, "/abi?abort=5000") == (0, 200, b"x" * 5000)
    assert curl(web.port, "/abi?abort=0&head=0")[:2] == (0, 502)


# ------------------------------------------------------------ program_group

@pytest.fixture(scope="session")
def spawner_handler():
    """tests/handlers/spawner.c, built by `make check` in the build
    directory."""
    return built_plugin("spawner")


@pytest.fixture
def rundir():
    """A fresh directory the pool's user can write the pid file into
    (when the suite runs as root the pool runs as nobody)."""
    d = Path(tempfile.mkdtemp(prefix="fpmd-spawner-", dir="/tmp"))
    d.chmod(0o777)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def spawner_pool(fpmd, endpoint, spawner_handler, **opts):
    """fpmd with one spawner pool of a single worker."""
    ep = endpoint("unix")
    conf = {"handler": spawner_handler, "pm.max_children": 1}
    conf.update(opts)
    return fpmd([pool_conf(ep, opts=conf)]), ep


def start_program(ep, rundir, query=""):
    """A connection whose request runs spawner's program, once both of its
    processes run: returns the connection, the group's leader, its
    background sleep, and {pid: start time} of the two."""
    pidfile = rundir / "pids"
    conn = fcgi_client.Connection(ep.client, timeout=30)
    try:
        conn.send_request({"REQUEST_METHOD": "GET", "QUERY_STRING": query,
                           "SCRIPT_NAME": "/spawn",
                           "PIDS_FILE": str(pidfile)})
        text = wait_for(lambda: pidfile.exists() and pidfile.read_text(),
                        10, "the program to write its pids")
        leader, child = (int(x) for x in text.split())
        started = {}
        for pid in (leader, child):
            st = proc_stat(pid)
            assert st is not None and st[0] != "Z", (pid, st)
            started[pid] = st[2]
    except BaseException:
        conn.close()
        raise
    return conn, leader, child, started


@pytest.mark.parametrize("how", ["kill", "request_terminate_timeout"])
def test_worker_death_kills_the_recorded_program_group(
        fpmd, endpoint, spawner_handler, rundir, how):
    """The plugin forks, sets the group and records it while the child
    waits, then lets it exec: when the worker dies (SIGKILL, or killed
    by request_terminate_timeout) the master kills the whole group, the
    background sleep with the leader."""
    opts = {"request_terminate_timeout": "2s"} if how != "kill" else {}
    proc, ep = spawner_pool(fpmd, endpoint, spawner_handler, **opts)
    mark = proc.log_mark()
    conn, leader, child, started = start_program(ep, rundir)
    try:
        worker = proc_stat(leader)[1]
        assert worker in proc.worker_pids()
        assert os.getpgid(leader) == leader
        assert os.getpgid(child) == leader
        if how == "kill":
            os.kill(worker, signal.SIGKILL)
        wait_group_killed(proc, started, worker, leader, mark)
    finally:
        conn.close()
        kill_left(started)
    proc.wait_workers(1, without=[worker])


def test_without_program_group_the_background_child_survives(
        fpmd, endpoint, spawner_handler, rundir):
    """The control: the same program started the same way, its group not
    recorded (group=0).  The leader dies of its parent-death signal with
    the worker; its background sleep lives on, and the master, which has
    reaped the worker and started another, kills no group."""
    proc, ep = spawner_pool(fpmd, endpoint, spawner_handler)
    mark = proc.log_mark()
    conn, leader, child, started = start_program(ep, rundir, "group=0")
    try:
        worker = proc_stat(leader)[1]
        assert worker in proc.worker_pids()
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: not same_process_alive(leader, started[leader]),
                 10, f"the leader {leader} to die with its worker")
        wait_group_spared(proc, started, worker, child, mark)
    finally:
        conn.close()
        kill_left(started)


def test_a_group_the_pool_user_may_not_kill_is_left_alone(
        fpmd, endpoint, spawner_handler, rundir):
    """A worker gone rogue names a group that is not its user's (here a
    root sleep in a session of its own) and dies: the master, though
    root, kills with the pool user's rights only, so the sleep lives."""
    if not IS_ROOT:
        pytest.skip("needs root: the victim must be another user's")
    victim = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        proc, ep = spawner_pool(fpmd, endpoint, spawner_handler)
        mark = proc.log_mark()
        conn, leader, child, started = start_program(
            ep, rundir, f"lie={victim.pid}")
        try:
            worker = proc_stat(leader)[1]
            os.kill(worker, signal.SIGKILL)
            proc.wait_log(re.escape(
                f"[pool www] child {worker} died naming process group "
                f"{victim.pid}, which is not its user's: left alone"),
                since=mark)
            proc.wait_workers(1, without=[worker])
            assert victim.poll() is None
        finally:
            conn.close()
            kill_left(started)
    finally:
        victim.kill()
        victim.wait(10)


@pytest.mark.parametrize("query", ["", "clear=0"])
def test_program_group_is_forgotten_when_the_request_ends(
        fpmd, endpoint, spawner_handler, rundir, query):
    """The leader ends, the request with it; its background sleep lives on
    in the group.  The plugin cleared the group before reaping the leader
    or (clear=0) did not, and fpmd forgot it when the handler returned:
    either way a later death of the worker kills nothing."""
    proc, ep = spawner_pool(fpmd, endpoint, spawner_handler)
    mark = proc.log_mark()
    conn, leader, child, started = start_program(ep, rundir, query)
    try:
        worker = proc_stat(leader)[1]
        os.kill(leader, signal.SIGKILL)
        resp = conn.read_response()
        assert resp.status == 200, resp.stdout
        assert resp.body == b"program exited on signal 9\n", resp.body
        os.kill(worker, signal.SIGKILL)
        wait_group_spared(proc, started, worker, child, mark)
    finally:
        conn.close()
        kill_left(started)
