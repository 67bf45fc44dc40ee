#!/bin/sh
# fpmd's cgi handler beside fcgiwrap: the same CGI program run per request by
# both, N processes each, behind one private nginx, loaded with wrk through
# nginx, interleaved rounds.  Two programs: a /bin/sh script (the shell's
# start-up dominates) and a small compiled C program.  See README.md ("CGI:
# cgi.sh").
#
#   contrib/bench/cgi.sh                        # about 1 min 30 s
#   DUR=8 ROUNDS=2 WARM=1 contrib/bench/cgi.sh  # a 45 s smoke run
#
# The program is the Python below (stdin of /usr/bin/python3); it imports
# bench.py for the helpers (processes by pid, free ports, the nginx config,
# spawn-fcgi, fpmd, wrk).
exec /usr/bin/python3 - "$0" "$@" <<'PYTHON'
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(sys.argv[1]))
sys.path.insert(0, HERE)
import bench  # noqa: E402
from bench import env_int, log  # noqa: E402

DUR = env_int("DUR", 20, 1, 600)      # counted seconds per (program, server)
WARM = env_int("WARM", 2, 0, 60)      # uncounted, before the first round
ROUNDS = env_int("ROUNDS", 4, 1, 20)  # ABBA rounds of DUR / ROUNDS seconds
PER = max(1, DUR // ROUNDS)
N = bench.N                           # processes per server (4)
CONC = 16                             # bench.run_wrk's -c16 -t2
PROGRAMS = os.environ.get("PROGRAMS", "sh c").split()
TARGET_RATIO = 1.3                    # the issue's goal: fpmd >= 1.3x
FCGIWRAP = "/usr/sbin/fcgiwrap"
QUERY = "a=1&b=two"                   # bench.URI's query string
# A second fpmd binary, say a patched build, as one more row.
FPMD_ALT = os.environ.get("FPMD_ALT", "")
SERVERS = ("fcgiwrap", "fpmd") + (("fpmd-alt",) if FPMD_ALT else ())
LABEL = {"fcgiwrap": f"fcgiwrap x{N} (spawn-fcgi -F {N})",
         "fpmd": f"fpmd cgi (pm static, {N})",
         "fpmd-alt": "fpmd cgi, FPMD_ALT"}

# The same page from both programs: a CGI header block and a 100-byte body.
BODY_FMT = "fpmd cgi bench, {kind:<2} program: QUERY_STRING={qs}"
SH_SCRIPT = r"""#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\n'
printf '%-99s\n' "fpmd cgi bench, sh program: QUERY_STRING=$QUERY_STRING"
"""
C_PROGRAM = r"""/* cgi.sh's compiled CGI program: its shell script's page. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int
main(void)
{
	const char	*qs = getenv("QUERY_STRING");
	char		 line[256], buf[512];
	int		 n;

	(void)snprintf(line, sizeof(line), "fpmd cgi bench, c  program: "
	    "QUERY_STRING=%s", qs != NULL ? qs : "");
	n = snprintf(buf, sizeof(buf), "Content-Type: text/plain\r\n\r\n"
	    "%-99s\n", line);
	return write(1, buf, (size_t)n) == n ? 0 : 1;
}
"""


def expected_body(kind):
    return (BODY_FMT.format(kind=kind, qs=QUERY).ljust(99) + "\n").encode()


def build_programs(tmp):
    """The CGI programs, in TMP (which the pools' user can reach)."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        sys.exit("cgi: no C compiler (cc): install gcc")
    paths = {}
    sh = os.path.join(tmp, "hello-sh.cgi")
    with open(sh, "w") as f:
        f.write(SH_SCRIPT)
    paths["sh"] = sh
    src = os.path.join(tmp, "hello-c.c")
    with open(src, "w") as f:
        f.write(C_PROGRAM)
    paths["c"] = os.path.join(tmp, "hello-c.cgi")
    r = subprocess.run([cc, *bench.CFLAGS, "-o", paths["c"], src],
                       capture_output=True, text=True)
    if r.returncode != 0 or r.stderr.strip():
        sys.exit(f"cgi: building the C program failed or warned:\n{r.stderr}")
    for p in paths.values():
        os.chmod(p, 0o755)
    return paths


def target(server, kind):
    return f"{server}/{kind}"


def run_all(b):
    """PROGRAMS x SERVERS, each DUR seconds in ROUNDS runs, A B, B A..."""
    rounds = []
    for kind in PROGRAMS:
        order = [target(s, kind) for s in SERVERS]
        for rnd in range(ROUNDS):
            for t in (order if rnd % 2 == 0 else order[::-1]):
                log(f"cgi: round {rnd + 1}/{ROUNDS} {kind:<2} {t} ...")
                busy0 = bench.cpu_sample()
                res = b.run_wrk(t, PER, WARM if rnd == 0 else 0)
                res["cpu"] = bench.cpu_share(busy0, bench.cpu_sample())
                res.update(target=t, round=rnd + 1, conc=CONC)
                rounds.append(res)
    results = {}
    for kind in PROGRAMS:
        for s in SERVERS:
            t = target(s, kind)
            runs = [r for r in rounds if r["target"] == t]
            res = bench.combine(runs)
            res["cpu"] = sum(r["cpu"] for r in runs) / len(runs)
            results[t] = res
    return results, rounds


def report(results, busy, fpmd_bin):
    print()
    print(f"CGI benchmark: fcgiwrap against fpmd's cgi handler, {N} processes "
          f"each, {bench.TRANSPORT}, {ROUNDS}x{PER}s per row (ABBA order) "
          f"after {WARM}s warm-up, {os.cpu_count()} CPUs")
    print(f"  wrk -t2 -c{CONC} through one nginx (worker_processes "
          f"{bench.NGINX_WORKERS}, a new FastCGI connection per request)")
    print(f"  fpmd: {fpmd_bin}" + (f"; FPMD_ALT: {FPMD_ALT}" if FPMD_ALT
                                     else ""))
    print("  req/s: mean of the rounds; +-: half their range, in % of the "
          "mean; cpu: machine busy during the rows")
    print(f"  CPU busy before the run (other work): {busy:.0%}" +
          ("  <- the machine is busy: figures are noisy" if busy > 0.2
           else ""))
    print()
    hdr = (f"{'program':<8} {'server':<30} {'req/s':>8} {'+-':>4} "
           f"{'p50':>9} {'p99':>9} {'errors':>6} {'cpu':>4} "
           f"{'x fcgiwrap':>10}")
    print(hdr)
    print("-" * len(hdr))
    for kind in PROGRAMS:
        ref = results[target("fcgiwrap", kind)]["rps"]
        for s in SERVERS:
            r = results[target(s, kind)]
            x = bench.ratio(r["rps"], ref) if s != "fcgiwrap" else ""
            print(f"{kind:<8} {LABEL[s]:<30} {r['rps']:>8.0f} "
                  f"{r['spread'] * 50:>3.0f}% {bench.fmt_us(r['p50_us']):>9} "
                  f"{bench.fmt_us(r['p99_us']):>9} {r['errors']:>6} "
                  f"{r['cpu']:>4.0%} {x:>10}")
    print()
    for kind in PROGRAMS:
        w = results[target("fcgiwrap", kind)]["rps"]
        for s in SERVERS[1:]:
            f = results[target(s, kind)]["rps"]
            x = f / w if w else 0.0
            verdict = "meets" if x >= TARGET_RATIO else "BELOW"
            print(f"  {kind:<3} {s}/fcgiwrap {x:.2f}  ({verdict} the "
                  f"{TARGET_RATIO}x target)")


def main():
    bench.need("nginx", "nginx")
    bench.need("wrk", "wrk")
    bench.need("spawn-fcgi", "spawn-fcgi")
    bench.need(FCGIWRAP, "fcgiwrap")
    for kind in PROGRAMS:
        if kind not in ("sh", "c"):
            sys.exit(f"cgi: unknown program {kind!r} in PROGRAMS (sh c)")
    fpmd_bin = bench.FPMD_BIN
    bench.need_fpmd("cgi")
    if FPMD_ALT and not os.access(FPMD_ALT, os.X_OK):
        sys.exit(f"cgi: FPMD_ALT={FPMD_ALT} is not an executable")
    bench.become_subreaper()
    busy = bench.cpu_busy()
    if busy > 0.2:
        log(f"cgi: the CPUs are {busy:.0%} busy before the run: "
            f"the figures will be noisy")
    tmp = tempfile.mkdtemp(prefix="fpmd-cgi-bench.")
    os.chmod(tmp, 0o755)
    progs = build_programs(tmp)
    targets = [target(s, k) for k in PROGRAMS for s in SERVERS]
    b = bench.Bench(tmp, None, None, targets=targets)
    ok = False

    def on_signal(signum, frame):
        log(f"cgi: {signal.Signals(signum).name}: stopping everything")
        raise SystemExit(128 + signum)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    n_meas = len(targets)
    log(f"cgi: {n_meas} rows of {ROUNDS}x{PER}s after {WARM}s warm-up: "
        f"about {n_meas * (ROUNDS * PER + WARM) + 8}s; temp dir {tmp}")
    try:
        # fcgiwrap the way Debian runs it: spawn-fcgi binds the socket and
        # forks N fcgiwrap processes on it (as nobody when we are root).
        b.start_spawn_fcgi("fcgiwrap", [FCGIWRAP])
        b.start_fpmd("fpmd", handler="cgi", options={"root": tmp})
        if FPMD_ALT:
            b.start_fpmd("fpmd-alt", handler="cgi", options={"root": tmp},
                         binary=FPMD_ALT)
        for t in targets:
            server, kind = t.split("/")
            b.fcgi[t] = b.fcgi[server]
            b.script[t] = progs[kind]
        b.start_nginx()
        for t in targets:
            body = b.http_body(t)
            want = expected_body(t.split("/")[1])
            if body != want:
                raise RuntimeError(f"{t} through nginx sent {body!r}, "
                                   f"not {want!r}")
        results, rounds = run_all(b)
        report(results, busy, fpmd_bin)
        for s in SERVERS[1:]:
            with open(os.path.join(tmp, f"{s}-error.log"),
                      errors="replace") as f:
                warned = [ln for ln in f if "WARNING" in ln or "ERROR" in ln]
            if warned:
                print(f"\n{s} logged {len(warned)} warnings or errors, "
                      f"the last: {warned[-1].strip()}")
        path = os.path.join(bench.OUT, "last-cgi-run.json")
        os.makedirs(bench.OUT, exist_ok=True)
        with open(path, "w") as f:
            json.dump({"N": N, "DUR": DUR, "WARM": WARM, "ROUNDS": ROUNDS,
                       "transport": bench.TRANSPORT, "cpu_busy_before": busy,
                       "fpmd": fpmd_bin, "fpmd_alt": FPMD_ALT or None,
                       "results": results,
                       "rounds": rounds}, f, indent=1)
        print(f"\n(raw figures: {path})")
        ok = True
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        log(f"cgi: {e}")
    finally:
        b.procs.stop_all()
        if ok and not bench.KEEP_TMP:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"cgi: logs and configs kept in {tmp}")
    return 0 if ok else 1


sys.exit(main())
PYTHON
