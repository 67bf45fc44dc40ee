"""Shared start-up and plugins off root: a plugin is loaded only by
processes that have taken the pool's identity; pool_init runs once per
pool in the pool's template process, after the privilege drop, and the
workers forked from it share what it built copy-on-write.

The plugin is tests/handlers/preload.c: every hook (and its constructor)
abort()s when it runs as root unless told the pool runs as root, so any
test here that serves a request also checks that no plugin code ran as
root."""

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

import fcgi_client as fc
from conftest import (IS_ROOT, READY_LINE, built_plugin, pool_conf,
                      render_conf, run_fpmd, wait_for)

needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root")
RELOADED = r"NOTICE: reloaded: (\d+) new or replaced"


@pytest.fixture(scope="module")
def preload():
    return built_plugin("preload")


def preload_pool(ep, plugin, options=None, **directives):
    opts = {"handler": plugin, "handler.options": dict(options or {})}
    opts.update({k.replace("__", "."): v for k, v in directives.items()})
    return pool_conf(ep, opts=opts)


def page_of(resp):
    """The body's "name: value" lines as a dict."""
    assert resp.status == 200, resp.stdout
    return dict(line.split(": ", 1)
                for line in resp.body.decode().splitlines())


def ask(ep):
    """One request, on a connection of its own."""
    return page_of(fc.request(ep.client, {"REQUEST_METHOD": "GET",
                                          "QUERY_STRING": ""}))


def ask_every_worker(ep, proc):
    """One request per worker, each on a connection kept open, so that
    each worker, once it holds one, leaves the next to another; returns
    the answers by pid."""
    pids = set(proc.worker_pids())
    seen = {}
    with contextlib.ExitStack() as stack:
        for _ in pids:
            conn = stack.enter_context(fc.Connection(ep.client,
                                                     timeout=10))
            page = page_of(conn.request({"REQUEST_METHOD": "GET",
                                         "QUERY_STRING": ""},
                                        keep_conn=True))
            seen[int(page["worker_pid"])] = page
    assert set(seen) == pids, (sorted(seen), sorted(pids))
    return seen


def smaps_kb(pid):
    """/proc/PID/smaps_rollup's kB fields: Pss, Private_Dirty, ..."""
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        m = re.match(r"(\w+):\s+(\d+) kB", line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def pool_uid():
    return pwd.getpwnam("nobody").pw_uid if IS_ROOT else os.geteuid()


def test_pool_init_runs_once_in_the_template_as_the_pool_user(
        fpmd, endpoint, preload):
    ep = endpoint("unix")
    proc = fpmd([preload_pool(ep, preload, {"table_mb": 4},
                              pm__max_children=3)])
    proc.wait_workers(3)
    [tmpl] = proc.template_pids()
    assert tmpl not in proc.worker_pids()
    # The template is the master's child; so is every worker it forked.
    assert Path(f"/proc/{tmpl}/comm").read_text().strip() == "fpmd-template"
    pages = ask_every_worker(ep, proc)
    for pid, page in pages.items():
        assert int(page["init_pid"]) == tmpl, page
        assert int(page["init_uid"]) == pool_uid(), page
        assert int(page["ctor_uid"]) == pool_uid(), page
        st = Path(f"/proc/{pid}/status").read_text()
        assert re.search(rf"^Uid:\s+{pool_uid()}\s", st, re.M), st
    assert len({p["table_sum"] for p in pages.values()}) == 1
    assert proc.log_text.count("pool_init done") == 1
    assert re.search(rf"template process {tmpl} started", proc.log_text)


@pytest.mark.parametrize("table_in", ["pool", "worker"])
def test_what_pool_init_builds_is_shared_by_the_workers(
        fpmd, endpoint, preload, table_in):
    """A 32 MiB table: built in pool_init, a worker holds almost none of
    it privately, even after reading all of it; built in worker_init, each
    worker holds all of it (the control: this test can fail)."""
    ep = endpoint("unix")
    proc = fpmd([preload_pool(ep, preload, {"table_mb": 32,
                                            "table_in": table_in},
                              pm__max_children=4)])
    proc.wait_workers(4)
    ask_every_worker(ep, proc)
    for pid in proc.worker_pids():
        kb = smaps_kb(pid)
        private = kb["Private_Dirty"] + kb["Private_Clean"]
        if table_in == "pool":
            assert private < 8 * 1024, (pid, kb)
            assert kb["Shared_Dirty"] >= 30 * 1024, (pid, kb)
        else:
            assert private >= 32 * 1024, (pid, kb)


def test_ondemand_pool_has_pool_init_done_before_its_first_request(
        fpmd, endpoint, preload):
    ep = endpoint("tcp")
    proc = fpmd([preload_pool(ep, preload, {"init_ms": 300},
                              pm="ondemand", pm__max_children=2)])
    # READY waited for pool_init.
    text = proc.log_text
    assert text.index("pool_init done") < text.index(READY_LINE), text
    page = ask(ep)
    assert int(page["init_pid"]) == proc.template_pids()[0]


def test_pool_init_failure_fails_the_start(fpmd, endpoint, preload):
    ep = endpoint("unix")
    proc = fpmd([preload_pool(ep, preload, {"fail": "pool_init"})],
                start=False)
    proc.start(wait=False)
    assert proc.wait_exit(20) == 1, proc.log_tail()
    log = proc.log_text
    assert "preload: failing pool_init, as asked" in log, log
    assert "pool_init failed" in log, log
    assert re.search(r"template process \d+ exited with code 2: the "
                     r"handler did not start", log), log


def test_template_death_spares_the_workers_and_a_new_one_starts(
        fpmd, endpoint, preload):
    ep = endpoint("unix")
    proc = fpmd([preload_pool(ep, preload, pm__max_children=2)])
    workers = proc.wait_workers(2)
    [tmpl] = proc.template_pids()
    os.kill(tmpl, signal.SIGKILL)
    proc.wait_log(rf"template process {tmpl} exited on signal 9")
    new = wait_for(lambda: [p for p in proc.template_pids() if p != tmpl],
                   10, "a new template")[0]
    assert proc.worker_pids() == workers
    # A worker that dies is replaced through the new template.
    os.kill(workers[0], signal.SIGKILL)
    replaced = proc.wait_workers(2, without=[workers[0]])
    [born] = set(replaced) - set(workers)
    assert int(ask_every_worker(ep, proc)[born]["init_pid"]) == new


def test_reload_runs_pool_init_anew_and_pool_fini_for_the_old(
        fpmd, endpoint, preload, tmp_path):
    ep = endpoint("unix")
    fini = Path(tempfile.mkdtemp(dir="/tmp", prefix="fpmd-fini-"))
    try:
        fini.chmod(0o777)
        opts = {"fini_file": str(fini / "log"), "table_mb": 1}
        proc = fpmd([preload_pool(ep, preload, opts, pm__max_children=2)])
        [old] = proc.template_pids()
        g = {"pid": str(tmp_path / "fpmd.pid"),
             "error_log": str(tmp_path / "error.log"),
             "log_level": "notice"}
        proc.conf_path.write_text(render_conf(g, [preload_pool(
            ep, preload, dict(opts, table_mb=2), pm__max_children=2)]))
        mark = proc.log_mark()
        proc.signal(signal.SIGHUP)
        proc.wait_log(RELOADED, since=mark)
        proc.wait_log(r"\[pool www\] old generation gone", since=mark,
                      timeout=20)
        [new] = proc.template_pids()
        assert new != old
        assert wait_for(lambda: (fini / "log").exists() and
                        (fini / "log").read_text() == f"fini {old}\n", 10)
        assert int(ask(ep)["init_pid"]) == new
        proc.stop()
        assert (fini / "log").read_text() == f"fini {old}\nfini {new}\n"
    finally:
        shutil.rmtree(fini, ignore_errors=True)


def test_reload_whose_pool_init_fails_keeps_the_old_generation(
        fpmd, endpoint, preload, tmp_path):
    ep = endpoint("unix")
    proc = fpmd([preload_pool(ep, preload, pm__max_children=2)])
    [old] = proc.template_pids()
    g = {"pid": str(tmp_path / "fpmd.pid"),
         "error_log": str(tmp_path / "error.log"), "log_level": "notice"}
    proc.conf_path.write_text(render_conf(g, [preload_pool(
        ep, preload, {"fail": "pool_init"}, pm__max_children=2)]))
    mark = proc.log_mark()
    proc.signal(signal.SIGHUP)
    proc.wait_log(r"the new generation's workers fail at start: the old "
                  r"generation keeps serving", since=mark, timeout=20)
    for _ in range(5):
        assert int(ask(ep)["init_pid"]) == old


def test_a_plugin_is_loaded_as_the_pool_user_not_root(fpmd_bin, tmp_path,
                                                      preload):
    """A plugin only root may read: refused at -t, because the process
    that loads it has already become the pool's user."""
    if not IS_ROOT:
        pytest.skip("needs root")
    d = Path(tempfile.mkdtemp(dir="/tmp", prefix="fpmd-private-"))
    try:
        d.chmod(0o700)
        so = d / "preload.so"
        shutil.copyfile(preload, so)
        conf = tmp_path / "fpmd.conf"
        conf.write_text(render_conf({"error_log": "stderr"}, [preload_pool(
            str(tmp_path / "w.sock"), str(so))]))
        r = run_fpmd(fpmd_bin, "-t", "-c", str(conf))
        assert r.returncode == 2, r
        assert re.search(rf"fpmd.conf:\d+: handler: cannot load {so}: .*"
                         r"Permission denied", r.stderr), r.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)


@needs_root
def test_plugin_code_as_root_is_caught_by_the_test_plugin(fpmd_bin,
                                                          tmp_path, preload):
    """The control for every test here: with user = root (and -R), the
    plugin's root check fires, and -t reports the crash by its signal."""
    conf = tmp_path / "fpmd.conf"
    conf.write_text(render_conf({"error_log": "stderr"}, [preload_pool(
        str(tmp_path / "w.sock"), preload, user="root", group="root")]))
    r = run_fpmd(fpmd_bin, "-R", "-t", "-c", str(conf))
    assert r.returncode == 2, r
    assert "crashed while loading or checking its options (signal 6, " \
        "SIGABRT)" in r.stderr, r.stderr
    # Told that root is meant, it loads.
    conf.write_text(render_conf({"error_log": "stderr"}, [preload_pool(
        str(tmp_path / "w.sock"), preload, {"allow_root": "yes"},
        user="root", group="root")]))
    r = run_fpmd(fpmd_bin, "-R", "-t", "-c", str(conf))
    assert r.returncode == 0, r.stderr


def test_unknown_option_is_refused_at_its_line(fpmd_bin, tmp_path, preload):
    conf = tmp_path / "fpmd.conf"
    conf.write_text(render_conf({"error_log": "stderr"}, [preload_pool(
        str(tmp_path / "w.sock"), preload, {"table_mb": 1, "tabel_in": 2})]))
    r = run_fpmd(fpmd_bin, "-t", "-c", str(conf))
    assert r.returncode == 2, r
    assert re.search(r"fpmd.conf:\d+: handler.options: unknown option "
                     r"\"tabel_in\"", r.stderr), r.stderr


@needs_root
def test_chroot_pool_loads_its_plugin_from_outside_the_jail(
        fpmd, endpoint, preload, tmp_path):
    jail = Path(tempfile.mkdtemp(dir="/tmp", prefix="fpmd-jail-"))
    try:
        jail.chmod(0o755)
        ep = endpoint("tcp")
        proc = fpmd([preload_pool(ep, preload, {"table_mb": 1},
                                  chroot=str(jail), pm__max_children=1)])
        page = ask(ep)
        pid = int(page["worker_pid"])
        assert os.readlink(f"/proc/{pid}/root") == str(jail)
        assert os.readlink(f"/proc/{page['init_pid']}/root") == str(jail)
        assert int(page["ctor_uid"]) == pool_uid()
        # No capability is left: not in the template, not in a worker.
        for p in (pid, int(page["init_pid"])):
            st = Path(f"/proc/{p}/status").read_text()
            for cap in ("CapPrm", "CapEff"):
                assert re.search(rf"^{cap}:\s+0+$", st, re.M), st
        proc.stop()
    finally:
        shutil.rmtree(jail, ignore_errors=True)


@needs_root
def test_a_pid_the_template_forges_is_not_taken_for_a_worker(
        fpmd, endpoint, preload):
    """Plugin code in the template tells the master that slot 0's worker
    is a root process of the test's.  The master, root, must not take it
    for a worker (it would signal it at stop): it asks the kernel whether
    the pid is a child of its own, ignores it, and the pool still starts
    with the template's true answer."""
    victim = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        ep = endpoint("unix")
        proc = fpmd([preload_pool(ep, preload, {"forge_pid": victim.pid},
                                  pm__max_children=2)])
        proc.wait_log(rf"pid {victim.pid}, named for a new worker, is no "
                      r"new child of the master: ignored")
        assert victim.pid not in proc.worker_pids()
        assert len(ask_every_worker(ep, proc)) == 2
        proc.stop()
        assert victim.poll() is None, "the master signalled the forged pid"
    finally:
        victim.kill()
        victim.wait(10)
