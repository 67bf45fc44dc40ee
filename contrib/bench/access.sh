#!/bin/sh
# What an access log costs a request: the worker's system calls per request
# (strace) and keep-conn req/s and CPU per request, with access.log on in a
# given access.format, for fpmd and, with FPMD_ALT, a second build of it in
# the same run.  See README.md ("What an access log costs: access.sh").
#
#   contrib/bench/access.sh                                  # about 15 s
#   FPMD_ALT=/tmp/old/src/fpmd contrib/bench/access.sh       # + a column, 30 s
#   FORMAT='%R %C %M %s' TRANSPORT=unix contrib/bench/access.sh
#
# The program is the Python below (stdin of /usr/bin/python3); it imports
# bench.py for the helpers (fcgi-load, fpmd, processes by pid, the temp dir).
exec /usr/bin/python3 - "$0" "$@" <<'PYTHON'
import os
import signal
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(sys.argv[1]))
sys.path.insert(0, HERE)
import bench  # noqa: E402
from bench import log  # noqa: E402

# PHP-FPM's default, and fpmd's.
DEFAULT_FORMAT = '%R - %u %t "%m %r" %s'
REQS = bench.env_int("REQS", 5000, 100, 10000000, "access")  # under strace
DUR = bench.env_int("DUR", 3, 1, 600, "access")              # s per round
ROUNDS = bench.env_int("ROUNDS", 4, 1, 50, "access")
FORMAT = os.environ.get("FORMAT", DEFAULT_FORMAT)
TRANSPORT = bench.TRANSPORT
TARGETS = [("fpmd", bench.FPMD_BIN)]
if os.environ.get("FPMD_ALT"):
    TARGETS.append(("fpmd-alt", os.environ["FPMD_ALT"]))
if TRANSPORT not in ("tcp", "unix"):
    sys.exit(f"access: TRANSPORT={TRANSPORT!r}: tcp or unix")
# One static worker per fpmd: bench.Bench.start_fpmd's pm.max_children,
# and the workers it waits for.
bench.N = 1


def quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def access_log(tmp, name):
    return os.path.join(tmp, f"{name}-access.log")


def cpu_ns(pid):
    """Process PID's CPU time so far (sum_exec_runtime), ns."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def load(binary, target, *args):
    """fcgi-load -k -c 1 ARGS; its final key=value line as a dict."""
    r = subprocess.run([binary, "-k", "-c", "1", "-q", *args, target],
                       capture_output=True, text=True, timeout=DUR + 60)
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    res = dict(kv.split("=", 1) for kv in last.split() if "=" in kv)
    if r.returncode != 0 or "requests" not in res or res["errors"] != "0":
        raise RuntimeError(f"fcgi-load failed on {target}:\n"
                           f"{r.stdout}{r.stderr}")
    return res


def syscalls(loader, tmp, name, target, worker):
    """{syscall: calls per request} in WORKER over REQS requests."""
    out = os.path.join(tmp, f"{name}-strace.txt")
    st = subprocess.Popen(["strace", "-f", "-c", "-o", out, "-p",
                           str(worker)], stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    # strace says "Process N attached" once it is.
    st.stderr.readline()
    n = int(load(loader, target, "-n", str(REQS))["requests"])
    st.send_signal(signal.SIGINT)
    st.wait(30)
    calls = {}
    with open(out) as f:
        for line in f:
            tok = line.split()
            if len(tok) >= 5 and tok[0][0].isdigit() and \
                    tok[3].isdigit() and tok[-1] != "total":
                calls[tok[-1]] = int(tok[3]) / n
    return calls


def run(b, loader, tmp):
    for name, binary in TARGETS:
        b.start_fpmd(name, binary=binary,
                     extra={"access.log": quote(access_log(tmp, name)),
                            "access.format": quote(FORMAT)})
    worker = {}
    for name, _ in TARGETS:
        kids = bench.workers(b.pids[name])
        if len(kids) != 1:
            raise RuntimeError(f"{name}: not one worker: {kids}")
        worker[name] = kids[0]
    log(f"access.format = {FORMAT}   transport = {TRANSPORT}")
    for name, _ in TARGETS:
        load(loader, b.fcgi[name], "-n", "20000")    # warm
    table = {}
    for name, _ in TARGETS:
        table[name] = syscalls(loader, tmp, name, b.fcgi[name],
                               worker[name])
    names = sorted({s for t in table.values() for s in t},
                   key=lambda s: -max(t.get(s, 0) for t in table.values()))
    print("\nsystem calls per request in the worker "
          f"(strace -f -c, {REQS} requests on one kept connection)")
    print(f"{'syscall':<14}" + "".join(f"{n:>12}" for n, _ in TARGETS))
    for s in names:
        print(f"{s:<14}" + "".join(f"{table[n].get(s, 0):>12.3f}"
                                   for n, _ in TARGETS))
    print(f"{'total':<14}" + "".join(f"{sum(table[n].values()):>12.3f}"
                                     for n, _ in TARGETS))
    # ABBA: a drifting machine favours no one.
    rps = {n: [] for n, _ in TARGETS}
    cpu = {n: [] for n, _ in TARGETS}
    order = [n for n, _ in TARGETS]
    for r in range(ROUNDS):
        for name in (order if r % 2 == 0 else order[::-1]):
            t0 = cpu_ns(worker[name])
            res = load(loader, b.fcgi[name], "-d", str(DUR))
            cpu[name].append((cpu_ns(worker[name]) - t0) / 1000 /
                             int(res["requests"]))
            rps[name].append(float(res["rps"]))
    print(f"\nkeep-conn, one worker, one connection, {ROUNDS} rounds "
          f"of {DUR} s")
    for what, fmt, table in (("req/s", ".0f", rps),
                             ("worker CPU per request, us", ".2f", cpu)):
        print(what)
        for name in order:
            v = table[name]
            mean = statistics.mean(v)
            print(f"  {name:<10} median {statistics.median(v):>8{fmt}}"
                  f"  min {min(v):>8{fmt}}  max {max(v):>8{fmt}}  "
                  f"+-{(max(v) - min(v)) / 2 / mean:5.1%}   rounds: " +
                  " ".join(f"{x:{fmt}}" for x in v))
        if len(TARGETS) == 2:
            # Each round's pair ran back to back: its ratio is the least
            # noisy figure.
            pairs = [x / y for x, y in zip(*(table[n] for n in order))]
            print(f"  fpmd / fpmd-alt, by round: median "
                  f"{statistics.median(pairs):.3f}, min {min(pairs):.3f},"
                  f" max {max(pairs):.3f}")
    print()
    for name in order:
        path = access_log(tmp, name)
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 4096))
            last = f.read().decode(errors="replace").splitlines()[-1]
        print(f"{path}: last access line: {last}")


def main():
    bench.need("strace", "strace")
    bench.need_fpmd("access")
    for _, binary in TARGETS[1:]:
        if not os.access(binary, os.X_OK):
            sys.exit(f"access: FPMD_ALT={binary} is not an executable")
    loader, _ = bench.build()
    tmp = bench.make_tmpdir("fpmd-access.")
    b = bench.Bench(tmp, loader, None, targets=[n for n, _ in TARGETS])
    bench.exit_on_signals("access")
    return bench.guarded("access", tmp, b.procs.stop_all,
                         lambda: run(b, loader, tmp),
                         (RuntimeError, subprocess.TimeoutExpired))


sys.exit(main())
PYTHON
