"""fpmd under systemd, without systemd: the test binds the notification
socket itself (NOTIFY_SOCKET, a Unix datagram socket) and reads what the
master says, with the sender's pid from SCM_CREDENTIALS; socket
activation goes through systemd-socket-activate(1), which passes
LISTEN_FDS and LISTEN_FDNAMES exactly as systemd does.

Also a static check of contrib/systemd/fpmd.service and fpmd.socket.
"""

import configparser
import json
import os
import re
import shutil
import signal
import socket
import stat
import struct
import threading
import time
from dataclasses import dataclass, field

import pytest

import fcgi_client as fc
from conftest import (REPO, FpmdProcess, cleanup_all, echo_request,
                      free_port, pool_conf, proc_children, render_conf,
                      wait_for)

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate") or \
    "/usr/bin/systemd-socket-activate"
STATUS_RX = re.compile(r"Processes active: (\d+), idle: (\d+), "
                       r"Requests: (\d+), slow: (\d+), "
                       r"Traffic: (\d+(?:\.\d+)?)req/sec\Z")

needs_socket_activate = pytest.mark.skipif(
    not os.access(SOCKET_ACTIVATE, os.X_OK),
    reason="systemd-socket-activate not installed (Debian: systemd)")


# -------------------------------------------------------- the notify socket

@dataclass
class Message:
    """One datagram: when it came (monotonic), who sent it, what it says
    (its KEY=VALUE lines; `fields` keeps the last of each key)."""
    t: float
    pid: int
    text: str
    fields: dict = field(default_factory=dict)

    def __contains__(self, item):
        key, _, value = item.partition("=")
        return self.fields.get(key) == value

    @property
    def status(self):
        """(active, idle, requests, slow, traffic) of a STATUS= beat, or
        None for other messages."""
        m = STATUS_RX.match(self.fields.get("STATUS", ""))
        return None if m is None else (int(m[1]), int(m[2]), int(m[3]),
                                       int(m[4]), float(m[5]))


class NotifySocket(threading.Thread):
    """What systemd's end of NOTIFY_SOCKET would see.  ON_MESSAGE(msg), if
    set, runs in this thread as each message arrives, before the next is
    read: it sees the world at the moment the message came."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.settimeout(0.05)
        self.messages = []
        self.errors = []
        self.on_message = None
        self.lock = threading.Lock()
        self.halt = threading.Event()

    def run(self):
        creds = struct.Struct("3i")
        while not self.halt.is_set():
            try:
                data, anc, _, _ = self.sock.recvmsg(
                    65536, socket.CMSG_SPACE(creds.size))
            except socket.timeout:
                continue
            except OSError:
                break
            pid = -1
            for level, kind, blob in anc:
                if level == socket.SOL_SOCKET and \
                        kind == socket.SCM_CREDENTIALS:
                    pid = creds.unpack(blob[:creds.size])[0]
            text = data.decode("utf-8", "replace")
            msg = Message(time.monotonic(), pid, text)
            for line in text.split("\n"):
                k, sep, v = line.partition("=")
                if sep:
                    msg.fields[k] = v
            if self.on_message is not None:
                try:
                    self.on_message(msg)
                except Exception as e:  # reported by the test
                    self.errors.append(e)
            with self.lock:
                self.messages.append(msg)

    def stop(self):
        self.halt.set()
        self.join(5)
        self.sock.close()

    def all(self):
        with self.lock:
            return list(self.messages)

    def wait(self, pred, timeout=10.0, what=None, after=None):
        """The first message (after message AFTER, if given) for which
        PRED holds."""
        def find():
            msgs = self.all()
            if after is not None:
                msgs = msgs[msgs.index(after) + 1:]
            return next((m for m in msgs if pred(m)), None)
        try:
            return wait_for(find, timeout, what or "a notification",
                            max_interval=0.02)
        except AssertionError as e:
            raise AssertionError(f"{e}; got {[m.text for m in self.all()]}")\
                from None

    def beats(self):
        return [m for m in self.all() if m.status is not None]


@pytest.fixture
def notify(sockdir):
    ns = NotifySocket(sockdir / "notify.sock")
    ns.start()
    yield ns
    ns.stop()


# -------------------------------------------------------- starting fpmd

class WrappedFpmd(FpmdProcess):
    """fpmd started through WRAPPER (a command that execs it in its own
    process, keeping the pid), with its own environment."""

    def __init__(self, *args, wrapper=(), **kw):
        super().__init__(*args, **kw)
        self.wrapper = list(wrapper)

    @property
    def command(self):
        return self.wrapper + super().command


@pytest.fixture
def sd_fpmd(fpmd_bin, tmp_path):
    """Factory: sd_fpmd(pools, env={...}, wrapper=[...], global_opts=...,
    endpoints=None, wait=True) -> started WrappedFpmd.  The environment is
    ours without any systemd variable, plus ENV.  Teardown stops each by
    pid and checks for orphans, as the fpmd fixture does."""
    started = []

    def make(pools, *, env=None, wrapper=(), global_opts=None,
             endpoints=None, wait=True):
        g = {"pid": str(tmp_path / "fpmd.pid"),
             "error_log": str(tmp_path / "error.log"), "log_level": "notice"}
        g.update(global_opts or {})
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("LISTEN_", "NOTIFY_", "WATCHDOG_"))}
        base.update(env or {})
        if endpoints is None:
            endpoints = [p["_endpoint"] for p in pools if "_endpoint" in p]
        proc = WrappedFpmd(fpmd_bin, tmp_path, render_conf(g, pools),
                           log_path=tmp_path / "error.log",
                           endpoints=endpoints, env=base, wrapper=wrapper)
        proc.globals = g
        started.append(proc)
        proc.start(wait=wait)
        return proc

    yield make
    cleanup_all(started)


def status_json(port):
    resp = fc.request(("127.0.0.1", port), [
        ("REQUEST_METHOD", "GET"), ("SCRIPT_NAME", "/status"),
        ("QUERY_STRING", "json"), ("REQUEST_URI", "/status?json")])
    assert resp.status == 200, resp.stdout[:300]
    return json.loads(resp.body)


def echo_params(path="/"):
    return {"REQUEST_METHOD": "GET", "SCRIPT_NAME": path,
            "REQUEST_URI": path, "QUERY_STRING": ""}


def slow_params(query):
    return {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/slow",
            "REQUEST_URI": f"/slow?{query}", "QUERY_STRING": query}


def only_from(notify, pid):
    """Every message came from the master (systemd's NotifyAccess=main
    ignores any other sender)."""
    senders = {m.pid for m in notify.all()}
    assert senders <= {pid}, [(m.pid, m.text) for m in notify.all()]


# ---------------------------------------------------------------- notify

@pytest.mark.parametrize("pm,stop_signal", [
    ("static", signal.SIGTERM), ("dynamic", signal.SIGINT)],
    ids=["static-TERM", "dynamic-INT"])
def test_ready_only_once_start_workers_accept_and_stopping_on_stop(
        sd_fpmd, notify, endpoint, pm, stop_signal):
    """READY=1 (with MAINPID and PHP-FPM's STATUS=) once the start workers
    (3 of a static pool, pm.start_servers = 3 of a dynamic one of 6) are
    forked and accepting; STOPPING=1 on a graceful or fast stop."""
    ep = endpoint("unix")
    port = free_port()
    seen = {}
    sizes = ({"pm.max_children": 3} if pm == "static" else {
        "pm.max_children": 6, "pm.start_servers": 3,
        "pm.min_spare_servers": 1, "pm.max_spare_servers": 5})

    def at_ready(msg):
        # Runs the moment READY=1 arrives: is everything up already?
        if "READY=1" not in msg or "kids" in seen:
            return
        seen["kids"] = proc_children(msg.pid)
        seen["idle"] = status_json(port)["idle processes"]
        seen["echo_pid"] = echo_request(ep.client, echo_params())[1].pid
    notify.on_message = at_ready

    proc = sd_fpmd([pool_conf(ep, opts={
        "pm": pm, **sizes, "pm.status_path": "/status",
        "pm.status_listen": f"127.0.0.1:{port}"})],
        env={"NOTIFY_SOCKET": notify.path}, endpoints=[])
    ready = notify.wait(lambda m: "READY=1" in m, what="READY=1")
    assert notify.errors == []
    assert ready.pid == proc.pid
    assert ready.fields.get("MAINPID") == str(proc.pid)
    assert ready.fields.get("STATUS") == "Ready to handle connections"
    assert len(seen["kids"]) == 3, seen
    assert seen["idle"] == 3, seen
    assert seen["echo_pid"] in seen["kids"]
    assert notify.all()[0] is ready        # nothing said before it

    last = notify.all()[-1]
    assert proc.stop(stop_signal) == 0
    # Sent before the master exited; it may still sit in our queue.
    notify.wait(lambda m: "STOPPING=1" in m, 5, "STOPPING=1", after=last)
    assert len([m for m in notify.all() if "STOPPING=1" in m]) == 1
    only_from(notify, proc.pid)


def test_status_beats_every_interval_with_the_pool_numbers(
        sd_fpmd, notify, endpoint, slow_handler):
    """systemd_interval = 1: a STATUS= line a second, in PHP-FPM's words,
    summed over the pools, with the numbers of a known load."""
    ep = endpoint("unix")
    proc = sd_fpmd([pool_conf(ep, opts={"handler": slow_handler,
                                        "pm.max_children": 3})],
                   env={"NOTIFY_SOCKET": notify.path},
                   global_opts={"systemd_interval": 1}, endpoints=[])
    first = notify.wait(lambda m: m.status is not None, 5, "a first beat")
    assert first.fields["STATUS"] == ("Processes active: 0, idle: 3, "
                                      "Requests: 0, slow: 0, "
                                      "Traffic: 0req/sec")
    for i in range(6):
        resp = fc.request(ep.client, slow_params("ms=0"))
        assert resp.status == 200
    conns = []
    try:
        for _ in range(2):
            conns.append(fc.Connection(ep.client, timeout=20))
            conns[-1].send_request(slow_params("ms=2500"))
        busy = notify.wait(lambda m: m.status is not None and
                           m.status[0] == 2, 5, "a beat with 2 active",
                           after=first)
        assert busy.status[:4] == (2, 1, 8, 0), busy.text
    finally:
        for c in conns:
            try:
                assert c.read_response(1).status == 200
            finally:
                c.close()
    calm = notify.wait(lambda m: m.status is not None and m.status[0] == 0,
                       5, "a beat with 0 active", after=busy)
    assert calm.status[:4] == (0, 3, 8, 0), calm.text

    beats = notify.beats()
    for prev, cur in zip(beats, beats[1:]):
        gap = cur.t - prev.t
        assert 0.7 <= gap <= 2.5, f"beats {gap:.2f}s apart"
        # Traffic: the requests since the last beat over the time since.
        delta = cur.status[2] - prev.status[2]
        low, high = delta / (gap + 0.15), delta / max(gap - 0.15, 0.5)
        assert low - 1 <= cur.status[4] <= high + 0.01, \
            (prev.text, cur.text, gap)
    only_from(notify, proc.pid)


def test_reloading_then_ready_around_a_reload(sd_fpmd, notify, endpoint):
    ep = endpoint("unix")
    pools = [pool_conf(ep, opts={"pm.max_children": 2})]
    proc = sd_fpmd(pools, env={"NOTIFY_SOCKET": notify.path})
    ready = notify.wait(lambda m: "READY=1" in m, what="READY=1")
    old = proc.wait_workers(2)

    pools[0]["pm.max_children"] = 3
    proc.conf_path.write_text(render_conf(proc.globals, pools))
    mark = proc.log_mark()
    proc.signal(signal.SIGHUP)
    reloading = notify.wait(lambda m: "RELOADING=1" in m, after=ready,
                            what="RELOADING=1")
    again = notify.wait(lambda m: "READY=1" in m, after=reloading,
                        what="READY=1 after RELOADING=1")
    assert "reloaded: 1 new or replaced" in proc.log_text[mark:]
    proc.wait_workers(3, without=old)
    echo_request(ep.client, echo_params())

    # A refused reload (a broken file) says the same, and changes nothing.
    proc.conf_path.write_text("pool broken {\n")
    mark = proc.log_mark()
    proc.signal(signal.SIGUSR2)
    reloading = notify.wait(lambda m: "RELOADING=1" in m, after=again,
                            what="RELOADING=1 (refused reload)")
    notify.wait(lambda m: "READY=1" in m, after=reloading,
                what="READY=1 after a refused reload")
    proc.wait_log("reload refused", since=mark)
    echo_request(ep.client, echo_params())
    assert len(proc.worker_pids()) == 3
    only_from(notify, proc.pid)


@pytest.mark.parametrize("whose", ["master", "another"])
def test_watchdog_beats_when_watchdog_usec_is_set_for_the_master(
        sd_fpmd, notify, endpoint, whose):
    """WATCHDOG_USEC=1 s: WATCHDOG=1 every half of it, instead of the
    (default 10 s) systemd_interval; sd_watchdog_enabled() honours it only
    when WATCHDOG_PID names the master, so the pid is set by a shell that
    then execs fpmd (same pid)."""
    ep = endpoint("unix")
    pid = '$$' if whose == "master" else "1"
    wrapper = ["/bin/sh", "-c", f'WATCHDOG_PID={pid} exec "$0" "$@"']
    opts = {} if whose == "master" else {"systemd_interval": 1}
    proc = sd_fpmd([pool_conf(ep)], wrapper=wrapper, global_opts=opts,
                   env={"NOTIFY_SOCKET": notify.path,
                        "WATCHDOG_USEC": "1000000"})
    if whose == "master":
        notify.wait(lambda m: len([x for x in notify.all()
                                   if "WATCHDOG=1" in x]) >= 4, 6,
                    "4 WATCHDOG=1")
        dogs = [m for m in notify.all() if "WATCHDOG=1" in m]
        for prev, cur in zip(dogs, dogs[1:]):
            assert 0.3 <= cur.t - prev.t <= 1.0, cur.t - prev.t
        for m in dogs:
            assert m.status is not None, m.text
    else:
        notify.wait(lambda m: len(notify.beats()) >= 2, 5, "2 beats")
        assert [m.text for m in notify.all() if "WATCHDOG=1" in m] == []
    only_from(notify, proc.pid)


# ----------------------------------------------------- socket activation

def activate(sd_fpmd, pools, listens, fdnames=None, first=None):
    """fpmd under systemd-socket-activate, which binds LISTENS (addresses
    or paths), waits for a first connection (made here to FIRST, default
    the first address) and execs fpmd with LISTEN_FDS (and LISTEN_FDNAMES
    when FDNAMES).  Returns the ready process."""
    wrapper = [SOCKET_ACTIVATE]
    for addr in listens:
        wrapper += ["-l", addr]
    if fdnames:
        wrapper.append("--fdname=" + ":".join(fdnames))
    proc = sd_fpmd(pools, wrapper=wrapper, wait=False)

    def bound():
        assert proc.running(), proc.stderr_text
        return "Listening on" in proc.stderr_text and \
            proc.stderr_text.count("Listening on") == len(listens)
    wait_for(bound, 10, "systemd-socket-activate to listen")
    family, addr = fc.parse_address(first or listens[0])
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.connect(addr)
    proc.wait_ready()
    return proc


def used_line(pool, address):
    return (rf"NOTICE: \[pool {pool}\] using the socket systemd passed for "
            + re.escape(address))


def serves(ep, n=20):
    """N requests on ENDPOINT, each a 200 from the echo handler; returns
    the set of worker pids that answered."""
    return {echo_request(ep.client, echo_params(f"/r{i}"))[1].pid
            for i in range(n)}


@needs_socket_activate
def test_socket_activation_tcp_by_name(sd_fpmd, endpoint):
    ep = endpoint("tcp")
    proc = activate(sd_fpmd, [pool_conf(ep)], [ep.listen], ["www"])
    proc.wait_log(used_line("www", ep.listen))
    assert serves(ep) <= set(proc.worker_pids())
    assert proc.stop() == 0


@needs_socket_activate
def test_socket_activation_unix_by_name_is_never_unlinked(sd_fpmd, endpoint):
    ep = endpoint("unix")
    pools = [pool_conf(ep, opts={"pm.max_children": 2})]
    proc = activate(sd_fpmd, pools, [ep.path], ["www"])
    proc.wait_log(used_line("www", ep.path))
    inode = os.stat(ep.path).st_ino
    old = proc.wait_workers(2)
    assert serves(ep) <= set(old)

    # A new generation of the pool keeps systemd's socket.
    pools[0]["pm.max_children"] = 3
    proc.conf_path.write_text(render_conf(proc.globals, pools))
    mark = proc.log_mark()
    proc.signal(signal.SIGHUP)
    proc.wait_log("reloaded: 1 new or replaced", since=mark)
    new = proc.wait_workers(3, without=old)
    assert serves(ep) <= set(new)
    assert os.stat(ep.path).st_ino == inode

    assert proc.stop() == 0
    st = os.stat(ep.path)        # still there: systemd's, not ours
    assert stat.S_ISSOCK(st.st_mode) and st.st_ino == inode


@needs_socket_activate
def test_socket_activation_matches_by_address_without_names(sd_fpmd,
                                                            endpoint):
    tcp, unix = endpoint("tcp", "www"), endpoint("unix", "api")
    proc = activate(sd_fpmd, [pool_conf(tcp, "www"), pool_conf(unix, "api")],
                    [unix.path, tcp.listen])
    proc.wait_log(used_line("www", tcp.listen))
    proc.wait_log(used_line("api", unix.path))
    www_pids, api_pids = serves(tcp), serves(unix)
    assert not www_pids & api_pids
    pages = [echo_request(ep.client, echo_params())[1] for ep in (tcp, unix)]
    assert [p.fields["pool"] for p in pages] == ["www", "api"]
    assert proc.stop() == 0
    assert os.path.exists(unix.path)


@needs_socket_activate
def test_socket_activation_unmatched_fd_is_warned_about_and_closed(
        sd_fpmd, endpoint):
    ep, stray = endpoint("tcp", "www"), endpoint("tcp", "stray")
    proc = activate(sd_fpmd, [pool_conf(ep)], [ep.listen, stray.listen],
                    ["www", "stray"])
    proc.wait_log(used_line("www", ep.listen))
    proc.wait_log(r"WARNING: socket activation: fd 4 \(stray\) matches no "
                  r"pool: closed")
    assert serves(ep)
    # Closed, not merely ignored: an open listening socket would still
    # complete connections into its queue; a closed one refuses them.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        with pytest.raises(ConnectionRefusedError):
            s.connect(stray.client)


# ------------------------------------------------------------ unit files

def read_unit(name):
    cp = configparser.ConfigParser(strict=False, interpolation=None,
                                   delimiters=("=",))
    cp.optionxform = str
    cp.read_string((REPO / "contrib" / "systemd" / name).read_text())
    return cp


def test_unit_files_match_what_the_daemon_does():
    svc = read_unit("fpmd.service")["Service"]
    assert svc["Type"] == "notify"
    start = svc["ExecStart"].split()
    assert "--nodaemonize" in start or "-F" in start
    assert "-D" not in start and "--daemonize" not in start
    # `systemctl reload fpmd` needs an ExecReload (HUP or USR2: graceful).
    reload_cmd = svc.get("ExecReload", "")
    assert re.search(r"kill -(HUP|USR2|s HUP|s USR2) \$MAINPID|fpmctl.* "
                     r"reload", reload_cmd), \
        f"fpmd.service has no ExecReload: {reload_cmd!r}"
    sock = read_unit("fpmd.socket")
    assert sock["Socket"]["Service"] == "fpmd.service"
    assert sock["Socket"].get("FileDescriptorName")
