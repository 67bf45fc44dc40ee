"""Per-site pools under separate uids: isolation an operator can trust.

Two pools run as two system users this suite creates (fpmdtestA, with a
supplementary group fpmdtestG, and fpmdtestB), and removes at the end even
when a test fails.  Code runs inside a pool's confinement through the probe
handler (tests/handlers/probe.c): it tries open(), connect(), kill(pid, 0)
and setuid(0) and reports each errno.  Tests that switch users need root
and are skipped otherwise; the rest run as any user.

Shared files and sockets live in a directory every user may traverse, so
that a refusal comes from the file's own mode, never from a private
directory above it.
"""

import errno
import grp
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import urllib.parse
from pathlib import Path

import pytest

import fcgi_client as fc
from conftest import (IS_ROOT, Endpoint, FpmdProcess, Raw, built_plugin,
                      free_port, ipv6_available, nobody_group, pool_conf,
                      echo_request, proc_net_tcp, render_conf, run_fpmd,
                      wait_for)

USER_A, USER_B, GROUP_G = "fpmdtestA", "fpmdtestB", "fpmdtestG"
NOLOGIN = "/usr/sbin/nologin"

needs_root = pytest.mark.skipif(
    not IS_ROOT, reason="switching pools to other users needs root")


# ----------------------------------------------------------------- fixtures

def _run(*cmd):
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def _remove_users():
    for user in (USER_A, USER_B):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        subprocess.run(["userdel", user], capture_output=True)
    try:
        grp.getgrnam(GROUP_G)
        subprocess.run(["groupdel", GROUP_G], capture_output=True)
    except KeyError:
        pass


@pytest.fixture(scope="session")
def users():
    """Creates fpmdtestA (also in fpmdtestG) and fpmdtestB as system users
    without a home or a login shell; removes them at the end of the
    session, whatever happened.  Returns {name: (uid, gid)} with the gid
    of fpmdtestG under GROUP_G."""
    if not IS_ROOT:
        pytest.skip("creating users needs root")
    if shutil.which("useradd") is None:
        pytest.skip("useradd is not installed")
    _remove_users()        # left over by a run that was killed
    try:
        _run("groupadd", "--system", GROUP_G)
        _run("useradd", "--system", "--no-create-home", "--shell", NOLOGIN,
             "--user-group", "--groups", GROUP_G, USER_A)
        _run("useradd", "--system", "--no-create-home", "--shell", NOLOGIN,
             "--user-group", USER_B)
        ids = {u: (pwd.getpwnam(u).pw_uid, pwd.getpwnam(u).pw_gid)
               for u in (USER_A, USER_B)}
        ids[GROUP_G] = (None, grp.getgrnam(GROUP_G).gr_gid)
        yield ids
    finally:
        _remove_users()


@pytest.fixture
def shared():
    """A directory every user may traverse (0755), for sockets and files
    whose own modes are under test."""
    d = Path(tempfile.mkdtemp(prefix="fpmd-iso-", dir="/tmp"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def probe_handler():
    """The probe plugin (tests/handlers/probe.c)."""
    return built_plugin("probe")


def unix(shared, name):
    return Endpoint("unix", path=str(shared / f"{name}.sock"))


def as_user(ep, name, user, handler, max_children=1, **opts):
    """A static pool NAME on EP running as USER (its own group)."""
    conf = pool_conf(ep, name=name, opts={
        "user": user, "group": user, "handler": handler,
        "pm.max_children": max_children})
    conf.update(opts)
    return conf


def probe(ep, **query):
    """Runs the probe handler once on EP; returns its lines as a dict of
    str (env lines, with env=1, as the dict under "env")."""
    qs = urllib.parse.urlencode(query)
    resp = fc.request(ep.client, {"QUERY_STRING": qs,
                                  "REQUEST_METHOD": "GET",
                                  "SCRIPT_NAME": "/probe"})
    assert resp.status == 200, resp.stdout[:500]
    out, env = {}, {}
    for line in resp.body.decode().splitlines():
        key, _, value = line.partition(": ")
        if key == "env":
            name, _, v = value.partition("=")
            env[name] = v
        else:
            out[key] = value
    out["env"] = env
    return out


def err(result, key):
    """The errno a probe reported for KEY (0: it worked)."""
    return int(result[key])


# ------------------------------------------------------------- identity

@needs_root
def test_each_pool_runs_as_its_own_user_and_groups(fpmd, users, shared):
    a, b = unix(shared, "a"), unix(shared, "b")
    fpmd([as_user(a, "a", USER_A, "echo"), as_user(b, "b", USER_B, "echo")])
    uid_a, gid_a = users[USER_A]
    uid_b, gid_b = users[USER_B]
    _, page_a = echo_request(a.client)
    _, page_b = echo_request(b.client)
    assert (page_a.uid, page_a.gid) == (uid_a, gid_a)
    assert (page_b.uid, page_b.gid) == (uid_b, gid_b)
    # initgroups(): the user's supplementary groups, nothing of root's.
    groups_a = sorted(int(g) for g in page_a.fields["groups"].split())
    groups_b = sorted(int(g) for g in page_b.fields["groups"].split())
    assert groups_a == sorted({gid_a, users[GROUP_G][1]})
    assert groups_b == [gid_b]
    assert page_a.fields["cwd"] == page_b.fields["cwd"] == "/"


@needs_root
def test_root_pool_is_refused_without_dash_r(fpmd_bin, tmp_path, shared):
    conf = tmp_path / "fpmd.conf"
    conf.write_text(render_conf({"pid": str(tmp_path / "pid")}, [
        pool_conf(unix(shared, "r"), name="r",
                  opts={"user": "root", "group": "root"})]))
    r = run_fpmd(fpmd_bin, "-t", "-c", str(conf))
    assert r.returncode == 2, r
    assert re.search(rf"{re.escape(str(conf))}:\d+: pool r: running workers "
                     r"as root is refused; start fpmd with -R", r.stderr), r
    r = run_fpmd(fpmd_bin, "-t", "-R", "-c", str(conf))
    assert r.returncode == 0, r


class FpmdAs(FpmdProcess):
    """An fpmd master started as another (non-root) user."""

    def __init__(self, user, *args, **kw):
        super().__init__(*args, **kw)
        self.user = user

    @property
    def command(self):
        return ["setpriv", f"--reuid={self.user}", f"--regid={self.user}",
                "--init-groups", *super().command]


@needs_root
def test_started_as_non_root_identity_chroot_priority_are_ignored(
        fpmd_bin, users, shared):
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    home = shared / "b"
    home.mkdir()
    os.chown(home, *users[USER_B])
    (shared / "jail").mkdir()
    ep = unix(home, "www")
    conf = render_conf({"pid": str(home / "fpmd.pid"),
                        "error_log": str(home / "error.log")},
                       [as_user(ep, "www", USER_A, "echo", **{
                           "chroot": str(shared / "jail"),
                           "process.priority": 5})])
    proc = FpmdAs(USER_B, fpmd_bin, home, conf, log_path=home / "error.log",
                  endpoints=[ep])
    try:
        proc.start()
        proc.wait_log(r"NOTICE: \[pool www\] not running as root: user, "
                      r"group, chroot and process.priority are ignored")
        _, page = echo_request(ep.client)
        assert (page.uid, page.gid) == users[USER_B]
        assert page.fields["cwd"] == "/"
        assert os.readlink(f"/proc/{page.pid}/root") == "/"
        nice = int(Path(f"/proc/{page.pid}/stat").read_text()
                   .rsplit(")", 1)[1].split()[16])
        assert nice == 0
    finally:
        proc.cleanup()


def proc_nice(pid):
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1]
               .split()[16])


@needs_root
def test_global_process_priority_is_the_masters_and_the_default(
        fpmd, endpoint):
    """PHP-FPM's global process.priority: the master's nice, inherited by
    the workers of a pool that sets none of its own."""
    a, b = endpoint("tcp", "a"), endpoint("tcp", "b")
    proc = fpmd([pool_conf(a, name="a", opts={"pm.max_children": 1}),
                 pool_conf(b, name="b", opts={"pm.max_children": 1,
                                              "process.priority": 10})],
                global_opts={"process.priority": 5})
    assert proc_nice(proc.pid) == 5
    _, page_a = echo_request(a.client)
    _, page_b = echo_request(b.client)
    assert (proc_nice(page_a.pid), proc_nice(page_b.pid)) == (5, 10)


# ------------------------------------------------------- what a worker can reach

@needs_root
def test_a_worker_cannot_reach_another_pools_files_sockets_or_workers(
        fpmd, users, shared, probe_handler):
    a, b = unix(shared, "a"), unix(shared, "b")
    proc = fpmd([as_user(a, "a", USER_A, probe_handler),
                 as_user(b, "b", USER_B, probe_handler, max_children=2)])
    secret = shared / "b-only"
    secret.write_text("pool b's secret\n")
    os.chown(secret, *users[USER_B])
    secret.chmod(0o600)
    assert stat.S_IMODE(os.stat(b.path).st_mode) == 0o660

    in_b = probe(b, open=secret, connect=b.path, kill=proc.pid, setuid=1)
    b_worker = int(in_b["pid"])
    # Positive controls: pool b reaches its own file and socket.
    assert err(in_b, "open") == 0
    assert err(in_b, "connect") == 0
    in_b_self = probe(b, kill=b_worker)
    assert err(in_b_self, "kill") == 0

    in_a = probe(a, open=secret, connect=b.path, kill=b_worker, setuid=1)
    assert err(in_a, "open") == errno.EACCES
    assert err(in_a, "connect") == errno.EACCES
    assert err(in_a, "kill") == errno.EPERM
    assert err(probe(a, connect=a.path), "connect") == 0

    # Neither can become root again, nor signal the master.
    for result in (in_a, in_b):
        assert err(result, "setuid") == errno.EPERM
    assert err(in_b, "kill") == errno.EPERM
    assert err(probe(a, kill=proc.pid), "kill") == errno.EPERM


@needs_root
def test_workers_are_not_dumpable_and_have_no_new_privs(fpmd, users, shared,
                                                        probe_handler):
    a = unix(shared, "a")
    fpmd([as_user(a, "a", USER_A, probe_handler)])
    r = probe(a)
    assert r["dumpable"] == "0"
    assert r["no_new_privs"] == "1"
    status = Path(f"/proc/{r['pid']}/status").read_text()
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), status


def test_no_new_privs_and_dumpable_can_be_switched_per_pool(
        fpmd, endpoint, probe_handler):
    on, off = endpoint("tcp", "on"), endpoint("tcp", "off")
    fpmd([pool_conf(on, name="on", opts={"handler": probe_handler,
                                         "pm.max_children": 1}),
          pool_conf(off, name="off", opts={
              "handler": probe_handler, "pm.max_children": 1,
              "process.no_new_privs": False, "process.dumpable": True})])
    r_on, r_off = probe(on), probe(off)
    assert (r_on["no_new_privs"], r_on["dumpable"]) == ("1", "0")
    assert (r_off["no_new_privs"], r_off["dumpable"]) == ("0", "1")


@needs_root
def test_no_new_privs_stops_a_setuid_program_of_a_cgi_script(
        fpmd, fpmd_bin, users, shared, tmp_path):
    """What the switch is for: with process.no_new_privs = no, a setuid
    program run by a CGI script gains its owner's uid; by default not."""
    check = tmp_path / "cgi.conf"
    check.write_text(f"pool x {{\n  listen = \"{shared}/x.sock\"\n"
                     "  handler = cgi\n  user = nobody\n}\n")
    r = run_fpmd(fpmd_bin, "-t", "-c", str(check))
    if r.returncode != 0:
        pytest.skip(f"no usable cgi handler: {r.stderr.strip()}")
    setuid_id = shared / "id"
    shutil.copy("/usr/bin/id", setuid_id)
    os.chown(setuid_id, 0, 0)
    setuid_id.chmod(0o4755)
    script = shared / "euid.cgi"
    script.write_text(f"#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n"
                      f"\\r\\n'\n{setuid_id} -u\n")
    script.chmod(0o755)
    on, off = unix(shared, "on"), unix(shared, "off")
    path = {"PATH": "/usr/bin:/bin"}
    fpmd([as_user(on, "on", USER_A, "cgi", env=path),
          as_user(off, "off", USER_A, "cgi", env=path,
                  **{"process.no_new_privs": False})])

    def euid(ep):
        resp = fc.request(ep.client, {
            "SCRIPT_FILENAME": str(script), "SCRIPT_NAME": "/euid.cgi",
            "REQUEST_METHOD": "GET", "QUERY_STRING": ""})
        assert resp.status == 200, resp.stdout
        return int(resp.body.decode().strip())
    assert euid(on) == users[USER_A][0]
    assert euid(off) == 0


# ------------------------------------------------------------ confinement

@needs_root
def test_chroot_chdir_rlimits_and_priority_are_applied(fpmd, users, shared,
                                                       probe_handler):
    jail = shared / "jail"
    (jail / "srv").mkdir(parents=True)
    jail.chmod(0o755)
    (jail / "srv").chmod(0o755)
    a, b = unix(shared, "a"), unix(shared, "b")
    fpmd([as_user(a, "a", USER_A, "echo", **{
              "chroot": str(jail), "chdir": "/srv", "rlimit_files": 123,
              "rlimit_core": 0, "process.priority": 7}),
          as_user(b, "b", USER_B, probe_handler, **{
              "chroot": str(jail), "rlimit_core": "unlimited"})])
    _, page = echo_request(a.client)
    assert page.fields["cwd"] == "/srv"
    pid = page.pid
    assert os.readlink(f"/proc/{pid}/root") == str(jail)
    limits = Path(f"/proc/{pid}/limits").read_text()
    assert re.search(r"^Max open files\s+123\s+123\s", limits, re.M), limits
    assert re.search(r"^Max core file size\s+0\s+0\s", limits, re.M), limits
    nice = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1]
               .split()[16])
    assert nice == 7
    # Inside the jail, the host's files do not exist.
    r = probe(b, open="/etc/passwd")
    assert err(r, "open") == errno.ENOENT
    limits = Path(f"/proc/{r['pid']}/limits").read_text()
    assert re.search(r"^Max core file size\s+unlimited\s+unlimited\s",
                     limits, re.M), limits


# ---------------------------------------------------------------- sockets

@needs_root
def test_socket_owner_group_and_mode_are_as_configured(fpmd, users, shared):
    a, b = unix(shared, "a"), unix(shared, "b")
    fpmd([as_user(a, "a", USER_A, "echo"),
          as_user(b, "b", USER_B, "echo", **{
              "listen.owner": USER_A, "listen.group": GROUP_G,
              "listen.mode": "0600"})])
    st = os.stat(a.path)
    assert (st.st_uid, st.st_gid) == users[USER_A]
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert stat.S_ISSOCK(st.st_mode)
    st = os.stat(b.path)
    assert (st.st_uid, st.st_gid) == (users[USER_A][0], users[GROUP_G][1])
    assert stat.S_IMODE(st.st_mode) == 0o600


def getfacl(path):
    """(owner, group, [entries]) of PATH from getfacl(1)."""
    if shutil.which("getfacl") is None:
        pytest.skip("getfacl is not installed (Debian package acl)")
    out = subprocess.run(["getfacl", "-p", "-n", str(path)], check=True,
                         capture_output=True, text=True).stdout
    owner = re.search(r"^# owner: (\S+)", out, re.M).group(1)
    group = re.search(r"^# group: (\S+)", out, re.M).group(1)
    entries = [line.split("\t")[0] for line in out.splitlines()
               if line and not line.startswith("#")]
    return owner, group, entries


@needs_root
def test_socket_acl_is_as_configured_and_grants_what_it_says(
        fpmd, users, shared, probe_handler):
    a, b, c = unix(shared, "a"), unix(shared, "b"), unix(shared, "c")
    proc = fpmd([as_user(a, "a", USER_A, probe_handler),
                 as_user(b, "b", USER_B, probe_handler),
                 as_user(c, "c", USER_B, "echo", **{
                     "listen.mode": "0600", "listen.owner": USER_B,
                     "listen.acl_users": fc_list(USER_A),
                     "listen.acl_groups": fc_list(GROUP_G)})])
    uid_a = users[USER_A][0]
    gid_g = users[GROUP_G][1]
    owner, group, entries = getfacl(c.path)
    # As PHP-FPM: with ACLs the socket stays the master's (root).
    assert (owner, group) == ("0", "0")
    assert sorted(entries) == sorted([
        "user::rw-", f"user:{uid_a}:rw-", "group::---",
        f"group:{gid_g}:rw-", "mask::rw-", "other::---"])
    proc.wait_log(r"WARNING: \[pool c\] listen.acl_users or "
                  r"listen.acl_groups is set: listen.owner and listen.group "
                  r"are ignored")
    # fpmdtestA is listed; fpmdtestB, c's own user, is not.
    assert err(probe(a, connect=c.path), "connect") == 0
    assert err(probe(b, connect=c.path), "connect") == errno.EACCES
    # Without ACL directives a socket has no extended ACL at all.
    assert sorted(getfacl(a.path)[2]) == sorted([
        "user::rw-", "group::rw-", "other::---"])


def fc_list(*items):
    """A config list value: {"a", "b"}."""
    return Raw("{" + ", ".join(f'"{i}"' for i in items) + "}")


def refused(ep, timeout=10.0):
    """Sends a request on a new connection; True when the server closed
    it without sending one byte."""
    with fc.Connection(ep.client, timeout=timeout) as conn:
        conn.send_request({"SCRIPT_NAME": "/", "REQUEST_METHOD": "GET"})
        closed = conn.wait_closed(timeout)
        return (closed and not conn.other_records
                and conn.decoder.pending == 0)


def test_allowed_clients_refuses_and_logs_every_other_address(fpmd,
                                                              endpoint):
    no, yes = endpoint("tcp", "no"), endpoint("tcp", "yes")
    proc = fpmd([
        pool_conf(no, name="no", opts={
            "pm.max_children": 1,
            "listen.allowed_clients": fc_list("10.0.0.0/8", "::1")}),
        pool_conf(yes, name="yes", opts={
            "pm.max_children": 1,
            "listen.allowed_clients": fc_list("192.0.2.1",
                                              "127.0.0.0/8")})],
        endpoints=[])
    mark = proc.log_mark()
    for _ in range(3):
        assert refused(no)
    line = re.compile(r"WARNING: \[pool no\] child \d+: connection from "
                      r"127\.0\.0\.1 refused: not in "
                      r"listen\.allowed_clients")

    def logged():
        found = line.findall(proc.log_text[mark:])
        return found if len(found) >= 3 else None
    assert len(wait_for(logged, message="three refusals logged")) == 3
    echo_request(yes.client)
    assert proc.running()


def test_allowed_clients_on_ipv6(fpmd, endpoint):
    if not ipv6_available():
        pytest.skip("no IPv6 loopback")
    no, yes = endpoint("tcp6", "no"), endpoint("tcp6", "yes")
    proc = fpmd([
        pool_conf(no, name="no", opts={
            "pm.max_children": 1,
            "listen.allowed_clients": fc_list("127.0.0.1", "fe80::/10")}),
        pool_conf(yes, name="yes", opts={
            "pm.max_children": 1,
            "listen.allowed_clients": fc_list("::1/128")})],
        endpoints=[])
    assert refused(no)
    proc.wait_log(r"\[pool no\] child \d+: connection from ::1 refused")
    echo_request(yes.client)


@pytest.mark.parametrize("entries,message", [
    (["127.0.0.1", "localhost"], '"localhost" is not an IPv4 or IPv6 '
     'address'),
    (["10.1.2.3/8"], '"10.1.2.3/8" has bits set past its /8 prefix'),
    (["bogus", "also bogus"], '"bogus" is not an IPv4'),
    (["10.0.0.0/33"], "the prefix length must be from 0 to 32"),
])
def test_bad_allowed_clients_is_a_config_error(fpmd_bin, tmp_path, entries,
                                               message):
    conf = tmp_path / "fpmd.conf"
    conf.write_text(render_conf({}, [pool_conf(
        f"127.0.0.1:{free_port()}",
        opts={"listen.allowed_clients": fc_list(*entries)})]))
    r = run_fpmd(fpmd_bin, "-t", "-c", str(conf))
    assert r.returncode == 2, r
    line = conf.read_text().splitlines().index(
        next(x for x in conf.read_text().splitlines()
             if "allowed_clients" in x)) + 1
    assert f"{conf}:{line}: listen.allowed_clients: " in r.stderr, r.stderr
    assert message in r.stderr, r.stderr


# ----------------------------------------------------------- fd hygiene

def fd_targets(pid):
    """{fd: readlink target} of process PID."""
    out = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
        except FileNotFoundError:
            pass
    return out


def listening_inodes():
    """Inodes of every listening socket (Unix, TCP, TCP6) on the host."""
    inodes = set()
    with open("/proc/net/unix") as f:
        for row in f.read().splitlines()[1:]:
            cols = row.split()
            # Flags __SO_ACCEPTCON (0x10000) marks a listening socket.
            if int(cols[3], 16) & 0x10000:
                inodes.add(int(cols[6]))
    for cols in proc_net_tcp():
        if cols[3] == "0A":  # TCP_LISTEN
            inodes.add(int(cols[9]))
    return inodes


def unix_socket_inode(path):
    """The socket inode (as /proc/PID/fd shows it, not the file's) of the
    listening Unix socket bound to PATH."""
    with open("/proc/net/unix") as f:
        for row in f.read().splitlines()[1:]:
            cols = row.split()
            if len(cols) == 8 and cols[7] == path and \
                    int(cols[3], 16) & 0x10000:
                return int(cols[6])
    raise AssertionError(f"no listening socket on {path}")


def socket_inode(target):
    m = re.fullmatch(r"socket:\[(\d+)\]", target)
    return int(m.group(1)) if m else None


def test_a_worker_holds_its_socket_the_log_and_the_eventfd_only(
        fpmd, tmp_path, shared, endpoint):
    a, b = unix(shared, "a"), unix(shared, "b")
    status = endpoint("tcp", "status")
    log = tmp_path / "error.log"
    proc = fpmd([pool_conf(a, name="a", opts={"pm.max_children": 1,
                                              "process.dumpable": True}),
                 pool_conf(b, name="b", opts={
                     "pm.max_children": 1,
                     "pm.status_listen": status.listen})],
                global_opts={"control.listen": str(shared / "ctl.sock")})
    _, page = echo_request(a.client)
    worker = page.pid
    master_fds = fd_targets(proc.pid)
    in_master = set(master_fds.values())
    a_inode = unix_socket_inode(a.path)
    listeners = listening_inodes()
    std_ok = {"/dev/null", str(log)} | {master_fds.get(i) for i in (0, 1, 2)}

    def problems():
        """What is wrong with the worker's fds now, or None."""
        fds = fd_targets(worker)
        bad, eventfds, logs, own_socket = [], 0, 0, 0
        for fd, target in sorted(fds.items()):
            inode = socket_inode(target)
            if fd <= 2:
                if target not in std_ok:
                    bad.append(f"{fd} -> {target}")
            elif inode is not None and inode == a_inode:
                own_socket += 1
            elif inode is not None and inode in listeners:
                bad.append(f"{fd} -> {target}: another listening socket")
            elif target == str(log):
                logs += 1
            elif target == "anon_inode:[eventfd]":
                eventfds += 1
            elif target == "anon_inode:[eventpoll]":
                pass        # the worker's own epoll
            elif target.startswith("pipe:") and target not in in_master:
                pass        # the worker's own self-pipe
            elif target.startswith("pipe:") or inode is not None:
                logs += 1   # a log channel to the master
            else:
                bad.append(f"{fd} -> {target}")
        if own_socket != 1:
            bad.append(f"the pool's socket held {own_socket} times")
        if eventfds != 1:
            bad.append(f"{eventfds} eventfds, not 1")
        if logs != 1:
            bad.append(f"{logs} log fds, not 1")
        return (bad, fds) if bad else None

    # The connection just served closes an instant after the response.
    try:
        wait_for(lambda: problems() is None, timeout=5.0,
                 message="the worker's fds to settle")
    except AssertionError:
        bad, fds = problems()
        pytest.fail(f"worker {worker}: {bad}\nall: {fds}\n"
                    f"master: {master_fds}")


# ------------------------------------------------------------ environment

def test_request_params_change_nothing_and_are_shown_as_sent(
        fpmd, endpoint, probe_handler):
    ep, pr = endpoint("tcp", "www"), endpoint("tcp", "probe")
    env = {"FOO": "bar"}
    fpmd([pool_conf(ep, opts={"pm.max_children": 1, "env": env}),
          pool_conf(pr, name="probe", opts={
              "pm.max_children": 1, "env": env,
              "handler": probe_handler})])
    _, before = echo_request(ep.client)
    hostile = [
        ("HTTP_PROXY", "http://evil.example:3128"),
        ("PHP_VALUE", "open_basedir=/"),
        ("PHP_ADMIN_VALUE", "user=root"),
        ("LD_PRELOAD", "/tmp/evil.so"),
        ("PATH", "/evil"),
        ("FOO", "overridden"),
        ("user", "root"),
        ("chdir", "/tmp"),
        ("clear_env", "no"),
        ("SCRIPT_NAME", "/x y/=z"),
        ("EMPTY", ""),
        ("UTF8", "h\u00e9llo \u2603"),
    ]
    resp, page = echo_request(ep.client, hostile)
    assert page.params == [(n, v) for n, v in hostile]
    _, after = echo_request(ep.client)
    for key in ("uid", "gid", "groups", "cwd", "pid"):
        assert after.fields[key] == before.fields[key] == page.fields[key]
    # The environment is the pool's, whatever a request sends.
    query = urllib.parse.urlencode({"env": 1})
    for _ in range(2):
        r = fc.request(pr.client, dict(hostile, QUERY_STRING=query))
        lines = [x[5:] for x in r.body.decode().splitlines()
                 if x.startswith("env: ")]
        assert lines == ["FOO=bar"], lines


# ------------------------------------------------- checked before start

def bad_conf(tmp_path, name, opts, listen=None):
    conf = tmp_path / "fpmd.conf"
    pool = pool_conf(listen or f"127.0.0.1:{free_port()}", name=name,
                     opts=opts)
    conf.write_text(render_conf({}, [pool]))
    return conf


def line_of(conf, needle):
    lines = conf.read_text().splitlines()
    return next(i for i, x in enumerate(lines, 1) if needle in x)


@pytest.mark.parametrize("what", ["missing", "file", "relative"])
def test_unusable_chroot_is_reported_at_its_line(fpmd_bin, tmp_path, what):
    target = {"missing": str(tmp_path / "nope"),
              "file": str(tmp_path / "file"),
              "relative": "jail"}[what]
    (tmp_path / "file").write_text("")
    conf = bad_conf(tmp_path, "www", {"chroot": target})
    r = run_fpmd(fpmd_bin, "-t", "-c", str(conf))
    assert r.returncode == 2, r
    assert f"{conf}:{line_of(conf, 'chroot')}: chroot: " in r.stderr, \
        r.stderr


def test_socket_in_a_missing_directory_is_reported(fpmd_bin, tmp_path):
    path = tmp_path / "no" / "such" / "dir" / "www.sock"
    conf = bad_conf(tmp_path, "www", {}, listen=str(path))
    r = run_fpmd(fpmd_bin, "-t", "-c", str(conf))
    assert r.returncode == 2, r
    assert (f"{conf}:{line_of(conf, 'listen')}: listen: the socket's "
            f"directory {path.parent}: no such directory") in r.stderr, \
        r.stderr


def test_port_in_use_by_another_program_is_reported(fpmd_bin, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        conf = bad_conf(tmp_path, "www", {}, listen=f"127.0.0.1:{port}")
        r = run_fpmd(fpmd_bin, "-t", "-c", str(conf))
    assert r.returncode == 2, r
    assert (f"{conf}:{line_of(conf, 'listen')}: listen: 127.0.0.1:{port} "
            f"is already in use by another program") in r.stderr, r.stderr


def test_test_while_running_takes_the_masters_ports_for_free(
        fpmd, fpmd_bin, endpoint):
    """fpmd -t before a reload: the running master's own ports (named by
    its pid file) are no conflict."""
    ep = endpoint("tcp")
    status = endpoint("tcp", "status")
    proc = fpmd([pool_conf(ep, opts={"pm.status_listen": status.listen})])
    r = run_fpmd(fpmd_bin, "-t", "-c", str(proc.conf_path))
    assert r.returncode == 0, r
    assert "configuration OK" in r.stdout


def test_two_pools_sharing_a_port_through_the_wildcard_are_reported(
        fpmd_bin, tmp_path):
    port = free_port()
    conf = tmp_path / "fpmd.conf"
    conf.write_text(render_conf({}, [
        pool_conf(f"0.0.0.0:{port}", name="one"),
        pool_conf(f"127.0.0.1:{port}", name="two")]))
    r = run_fpmd(fpmd_bin, "-t", "-c", str(conf))
    assert r.returncode == 2, r
    assert (f"listen: pool one on 0.0.0.0:{port} and pool two on "
            f"127.0.0.1:{port} share a port") in r.stderr, r.stderr


@needs_root
def test_unknown_acl_users_and_listen_owner_are_reported(fpmd_bin, tmp_path,
                                                        shared):
    conf = bad_conf(tmp_path, "www", {
        "listen.owner": "no-such-owner", "listen.group": "no-such-group",
        "listen.acl_users": fc_list("no-such-user"),
        "listen.acl_groups": fc_list(nobody_group(), nobody_group())},
        listen=str(shared / "www.sock"))
    r = run_fpmd(fpmd_bin, "-t", "-c", str(conf))
    assert r.returncode == 2, r
    for needle, message in [
            ("listen.owner", 'listen.owner: no such user "no-such-owner"'),
            ("listen.group", 'listen.group: no such group "no-such-group"'),
            ("listen.acl_users",
             'listen.acl_users: no such user "no-such-user"'),
            ("listen.acl_groups",
             f'listen.acl_groups: "{nobody_group()}" is listed twice')]:
        assert f"{conf}:{line_of(conf, needle)}: {message}" in r.stderr, \
            r.stderr
