#!/bin/sh
# What shared start-up saves: the test plugin tests/handlers/preload.c
# builds a table of TABLE_MB MiB either once, in pool_init in the pool's
# template process (table_in = pool), or in every worker's worker_init
# (table_in = worker).  One static pool of N workers per mode, every worker
# made to read the whole table, then the memory of the master, the template
# and the workers from /proc/PID/smaps_rollup.  See README.md ("Shared
# start-up: preload.sh").
#
#   contrib/bench/preload.sh                  # about 1 s
#   TABLE_MB=256 N=8 contrib/bench/preload.sh
#
# The program is the Python below (stdin of /usr/bin/python3); it imports
# bench.py for the helpers (fpmd, processes by pid) and the test suite's
# fcgi_client.py for the requests.
exec /usr/bin/python3 - "$0" "$@" <<'PYTHON'
import contextlib
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(sys.argv[1]))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path[:0] = [HERE, os.path.join(REPO, "tests", "integration")]
import bench  # noqa: E402
import fcgi_client  # noqa: E402
from bench import env_int, log  # noqa: E402

TABLE_MB = env_int("TABLE_MB", 64, 1, 4096)
N = bench.N                      # workers (4)
MODES = ("worker", "pool")       # preload's table_in


def build_plugin(tmp):
    """tests/handlers/preload.c as TMP/preload.so, readable by the pool's
    user.  bench.CFLAGS asks for C11; the plugin uses POSIX (nanosleep)."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        sys.exit("preload: no C compiler (cc): install gcc")
    so = os.path.join(tmp, "preload.so")
    r = subprocess.run([cc, *bench.CFLAGS, "-D_POSIX_C_SOURCE=200809L",
                        "-shared", "-fPIC",
                        "-I" + os.path.join(REPO, "src", "include"), "-o", so,
                        os.path.join(REPO, "tests", "handlers", "preload.c")],
                       capture_output=True, text=True)
    if r.returncode != 0 or r.stderr.strip():
        sys.exit(f"preload: building the plugin failed or warned:\n"
                 f"{r.stderr}")
    os.chmod(so, 0o755)
    return so


def smaps_kb(pid):
    """The kB fields of /proc/PID/smaps_rollup: Rss, Pss, Private_Dirty..."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return {m.group(1): int(m.group(2)) for m in
                re.finditer(r"^(\w+):\s+(\d+) kB$", f.read(), re.M)}


def wait_pool(master, timeout=30.0):
    """Until the master has one template and N workers: (template,
    workers)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tmpl, workers = bench.pool_children(master)
        if len(tmpl) == 1 and len(workers) == N:
            return tmpl[0], workers
        time.sleep(0.05)
    raise RuntimeError(f"fpmd {master}: not one template and {N} workers "
                       f"after {timeout:.0f} s: {tmpl} {workers}")


def ask_every_worker(addr):
    """One request per worker: N connections opened at once, each asking
    FCGI_KEEP_CONN and all kept open until every answer is in, so a worker
    holding one leaves the next to another.  The pages by worker pid."""
    pages = {}
    with contextlib.ExitStack() as stack:
        conns = [stack.enter_context(fcgi_client.Connection(addr, 30))
                 for _ in range(N)]
        for conn in conns:
            resp = conn.request({"REQUEST_METHOD": "GET", "QUERY_STRING": ""},
                                keep_conn=True)
            if resp.status != 200:
                raise RuntimeError(f"{addr} answered {resp.stdout!r}")
            page = dict(line.split(": ", 1)
                        for line in resp.body.decode().splitlines())
            pages[int(page["worker_pid"])] = page
    return pages


def run_mode(b, so, mode):
    """One pool with the table built per MODE, every worker served once;
    the smaps_rollup of its processes.  The pool is dumpable
    (process.dumpable = yes): else the /proc files of its template and
    workers belong to root, and only root may read them."""
    name = f"fpmd-{mode}"
    log(f"preload: {mode}: {N} workers, a {TABLE_MB} MiB table ...")
    b.start_fpmd(name, handler=so,
                 options={"table_mb": TABLE_MB, "table_in": mode},
                 extra={"process.dumpable": "yes"})
    master = b.pids[name]
    tmpl, workers = wait_pool(master)
    pages = ask_every_worker(b.fcgi[name])
    if sorted(pages) != workers:
        raise RuntimeError(f"{mode}: answers from {sorted(pages)}, the "
                           f"master's workers are {workers}")
    want_init = tmpl if mode == "pool" else -1
    if {int(p["init_pid"]) for p in pages.values()} != {want_init}:
        raise RuntimeError(f"{mode}: init_pid not {want_init}: {pages}")
    if len({p["table_sum"] for p in pages.values()}) != 1:
        raise RuntimeError(f"{mode}: the workers read different tables: "
                           f"{pages}")
    mem = {"master": smaps_kb(master), "template": smaps_kb(tmpl),
           "workers": [smaps_kb(pid) for pid in workers]}
    b.procs.stop_all()
    return mem


def report(rows, fpmd_bin):
    def mean(kbs, key):
        return sum(key(kb) for kb in kbs) / len(kbs)

    def private(kb):
        return kb["Private_Dirty"] + kb["Private_Clean"]

    def total(mem):
        return (mem["master"]["Pss"] + mem["template"]["Pss"] +
                sum(kb["Pss"] for kb in mem["workers"]))

    print()
    print(f"Shared start-up: a {TABLE_MB} MiB table built in each "
          f"worker's worker_init (worker) or once in pool_init (pool),")
    print(f"  pm static, {N} workers, each has read the whole table once; "
          f"fpmd: {fpmd_bin}")
    print("  KiB from /proc/PID/smaps_rollup; worker columns: the mean over "
          "the workers;")
    print("  private: Private_Clean + Private_Dirty; total: PSS of master + "
          "template + workers")
    print()
    hdr = (f"{'mode':<7} {'worker PSS':>10} {'worker RSS':>10} "
           f"{'worker private':>14} {'template PSS':>12} {'master PSS':>10} "
           f"{'total PSS':>10}")
    print(hdr)
    print("-" * len(hdr))
    for mode, mem in rows.items():
        w = mem["workers"]
        print(f"{mode:<7} {mean(w, lambda kb: kb['Pss']):>10.0f} "
              f"{mean(w, lambda kb: kb['Rss']):>10.0f} "
              f"{mean(w, private):>14.0f} {mem['template']['Pss']:>12} "
              f"{mem['master']['Pss']:>10} {total(mem):>10}")
    print()
    print(f"  total PSS, worker / pool: "
          f"{total(rows['worker']) / total(rows['pool']):.2f}")


def main():
    bench.need_fpmd("preload")
    bench.become_subreaper()
    tmp = bench.make_tmpdir("fpmd-preload-bench.")
    so = build_plugin(tmp)
    b = bench.Bench(tmp, None, None, targets=[f"fpmd-{m}" for m in MODES])
    bench.exit_on_signals("preload")
    log(f"preload: temp dir {tmp}")
    return bench.guarded(
        "preload", tmp, b.procs.stop_all,
        lambda: report({mode: run_mode(b, so, mode) for mode in MODES},
                       bench.FPMD_BIN),
        (RuntimeError, OSError, fcgi_client.FcgiError))


sys.exit(main())
PYTHON
