"""The command line and the configuration check (fpmd -t / -T / -h / -v).

Bad configurations are written with a `# ERR` comment on the line the
error must be reported at, so each case documents its own expectation:
exit status 2, and `FILE:LINE:` on stderr naming that file and line.
"""

import re
import socket
import textwrap
from pathlib import Path

import pytest

from conftest import (IS_ROOT, REPO, Endpoint, echo_request, free_port,
                      nobody_group, run_fpmd, wait_for)

MARK = "# ERR"


def user_lines(indent="    "):
    """Pools need an unprivileged user when the suite runs as root."""
    if not IS_ROOT:
        return ""
    return f"{indent}user = nobody\n{indent}group = {nobody_group()}\n"


_MARKED = {}


def write(path, text):
    """Write a config file.  `# ERR` markers (optionally numbered) are
    removed from the file, so that it holds no comments, and remembered
    for marked_lines()."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = textwrap.dedent(text).lstrip("\n").split("\n")
    _MARKED[path] = lines
    path.write_text("\n".join(re.sub(r"\s*# ERR\d*$", "", line)
                              for line in lines))
    return path


def marked_lines(path, marker=MARK):
    """1-based numbers of the lines of PATH that carried MARKER."""
    return [i for i, line in enumerate(_MARKED[Path(path)], 1)
            if marker in line]


def reported_at(stderr, path, lines, cwd):
    """True when STDERR holds `FILE:LINE:` for PATH (spelt absolute or
    relative to CWD) and one of LINES."""
    spellings = {str(path)}
    try:
        spellings.add(str(Path(path).relative_to(cwd)))
    except ValueError:
        pass
    names = "|".join(re.escape(s) for s in sorted(spellings, key=len,
                                                   reverse=True))
    nums = "|".join(str(n) for n in lines)
    return re.search(rf"(?<![\w./-])(?:{names}):(?:{nums}):", stderr)


def pool_with(*lines, header="pool www {", footer="}"):
    """A pool section whose body is LINES (each may carry MARK)."""
    body = "".join(f"    {line}\n" for line in lines)
    return f"{header}\n{body}{user_lines()}{footer}\n"


GLOBALS = 'pid = "fpmd.pid"\nerror_log = "error.log"\n'


def good_config(tmp_path, tcp_port):
    return write(tmp_path / "fpmd.conf", GLOBALS
                 + "log_level = notice\n"
                 + "process_control_timeout = 10s\n"
                 + pool_with('listen = "www.sock"',
                             'listen.mode = "0660"',
                             "pm = static",
                             "pm.max_children = 4",
                             "pm.max_requests = 0",
                             "handler = echo",
                             "clear_env = yes",
                             'env { FOO = "bar" }')
                 + pool_with(f'listen = "127.0.0.1:{tcp_port}"',
                             "pm = static",
                             "pm.max_children = 3",
                             "handler = echo",
                             header="pool api {"))


def port_listening(port):
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


# ------------------------------------------------------------ good config

def test_good_config_passes_the_test_and_binds_nothing(fpmd_bin, tmp_path):
    port = free_port()
    conf = good_config(tmp_path, port)
    r = run_fpmd(fpmd_bin, "-t", "-c", str(conf), cwd=tmp_path)
    assert r.returncode == 0, r
    assert "configuration OK" in r.stdout + r.stderr
    assert not (tmp_path / "www.sock").exists()
    assert not (tmp_path / "fpmd.pid").exists()
    assert not port_listening(port)


def test_test_print_shows_the_effective_config(fpmd_bin, tmp_path):
    conf = good_config(tmp_path, free_port())
    r = run_fpmd(fpmd_bin, "-T", "-c", str(conf), cwd=tmp_path)
    assert r.returncode == 0, r
    out = r.stdout
    assert re.search(r"pool\s+www\b", out), out
    assert re.search(r"pool\s+api\b", out), out
    assert re.search(r"pm\.max_children\s*=\s*\"?4\b", out), out
    assert re.search(r"pm\.max_children\s*=\s*\"?3\b", out), out
    # Effective means defaults too: listen.backlog is set nowhere above.
    assert "listen.backlog" in out, out
    # ... and relative paths resolved against the config's directory.
    assert str(tmp_path / "www.sock") in out, out


def test_prefix_option_resolves_relative_paths(fpmd_bin, tmp_path):
    conf = good_config(tmp_path, free_port())
    prefix = tmp_path / "elsewhere"
    prefix.mkdir()
    r = run_fpmd(fpmd_bin, "-T", "-p", str(prefix), "-c", str(conf),
                 cwd=tmp_path)
    assert r.returncode == 0, r
    assert str(prefix / "www.sock") in r.stdout, r.stdout
    assert str(tmp_path / "www.sock") not in r.stdout, r.stdout


def test_included_pools_resolve_against_the_including_file(fpmd_bin,
                                                           tmp_path):
    etc = tmp_path / "etc"
    conf = write(etc / "fpmd.conf", """
        pid = "fpmd.pid"
        error_log = "error.log"
        include("pool.d/*.conf")
        """)
    for name in ("alpha", "beta"):
        write(etc / "pool.d" / f"{name}.conf", pool_with(
            f'listen = "{name}.sock"', "pm = static", "pm.max_children = 2",
            "handler = echo", header=f"pool {name} {{"))
    # Run from tmp_path, where no pool.d exists: the glob must be taken
    # relative to etc/fpmd.conf, not to the working directory.
    r = run_fpmd(fpmd_bin, "-T", "-c", str(conf), cwd=tmp_path)
    assert r.returncode == 0, r
    assert re.search(r"pool\s+alpha\b", r.stdout), r.stdout
    assert re.search(r"pool\s+beta\b", r.stdout), r.stdout


# ------------------------------------------------------------- bad configs

BAD_CONFIGS = {
    "unknown_directive": GLOBALS + pool_with(
        'listen = "www.sock"',
        "pm = static",
        f"pm.max_childs = 4   {MARK}",
        "handler = echo"),
    "unknown_global_directive": GLOBALS + f"no_such_thing = 1   {MARK}\n"
    + pool_with('listen = "www.sock"', "pm = static",
                "pm.max_children = 4", "handler = echo"),
    "max_children_zero": GLOBALS + pool_with(
        'listen = "www.sock"',
        "pm = static",
        f"pm.max_children = 0   {MARK}",
        "handler = echo"),
    "max_children_not_a_number": GLOBALS + pool_with(
        'listen = "www.sock"',
        "pm = static",
        f"pm.max_children = lots   {MARK}",
        "handler = echo"),
    "missing_listen": GLOBALS + pool_with(
        "pm = static",
        "pm.max_children = 4",
        "handler = echo",
        header=f"pool www {{   {MARK}", footer=f"}}   {MARK}"),
    "unknown_pm": GLOBALS + pool_with(
        'listen = "www.sock"',
        f"pm = turbo   {MARK}",
        "pm.max_children = 4",
        "handler = echo"),
    "bad_log_level": f"log_level = chatty   {MARK}\n" + GLOBALS + pool_with(
        'listen = "www.sock"', "pm = static", "pm.max_children = 4",
        "handler = echo"),
    "syntax_error": GLOBALS + pool_with(
        'listen = "www.sock"',
        "pm = static",
        f"pm.max_children == 4   {MARK}",
        "handler = echo"),
    "two_pools_one_unix_address": GLOBALS + pool_with(
        'listen = "www.sock"', "pm = static", "pm.max_children = 2",
        "handler = echo", header="pool one {") + pool_with(
        f'listen = "www.sock"   {MARK}', "pm = static",
        "pm.max_children = 2", "handler = echo",
        header=f"pool two {{   {MARK}"),
    "two_pools_one_tcp_address": GLOBALS + pool_with(
        'listen = "127.0.0.1:9"', "pm = static", "pm.max_children = 2",
        "handler = echo", header="pool one {") + pool_with(
        f'listen = "127.0.0.1:9"   {MARK}', "pm = static",
        "pm.max_children = 2", "handler = echo",
        header=f"pool two {{   {MARK}"),
}
# Where a case marks several lines, any one of them is accepted: a missing
# listen may be reported at the pool's first or last line, a duplicate
# address at the second pool or at its listen line.


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_is_reported_at_its_line(fpmd_bin, tmp_path, case):
    conf = write(tmp_path / "fpmd.conf", BAD_CONFIGS[case])
    r = run_fpmd(fpmd_bin, "-t", "-c", str(conf), cwd=tmp_path)
    assert r.returncode == 2, r
    assert "configuration OK" not in r.stdout + r.stderr
    lines = marked_lines(conf)
    assert reported_at(r.stderr, conf, lines, tmp_path), (
        f"expected {conf.name}:{lines}: on stderr, got:\n{r.stderr}")


@pytest.mark.parametrize("address", ["127.0.0.1:99999", "127.0.0.1:abc",
                                     "[::1:9000", "", "127.0.0.1:0"])
def test_bad_listen_address_is_reported_at_its_line(fpmd_bin, tmp_path,
                                                     address):
    conf = write(tmp_path / "fpmd.conf", GLOBALS + pool_with(
        "pm = static", f'listen = "{address}"   {MARK}',
        "pm.max_children = 2", "handler = echo"))
    r = run_fpmd(fpmd_bin, "-t", "-c", str(conf), cwd=tmp_path)
    assert r.returncode == 2, r
    assert reported_at(r.stderr, conf, marked_lines(conf), tmp_path), \
        r.stderr


def test_error_in_included_file_names_that_file(fpmd_bin, tmp_path):
    conf = write(tmp_path / "fpmd.conf", GLOBALS
                 + 'include("pool.d/*.conf")\n')
    write(tmp_path / "pool.d" / "a.conf", pool_with(
        'listen = "a.sock"', "pm = static", "pm.max_children = 2",
        "handler = echo", header="pool a {"))
    bad = write(tmp_path / "pool.d" / "b.conf", pool_with(
        'listen = "b.sock"', "pm = static",
        f"pm.max_children = 0   {MARK}", "handler = echo",
        header="pool b {"))
    r = run_fpmd(fpmd_bin, "-t", "-c", str(conf), cwd=tmp_path)
    assert r.returncode == 2, r
    assert reported_at(r.stderr, bad, marked_lines(bad), tmp_path), (
        f"expected pool.d/b.conf:{marked_lines(bad)}: in:\n{r.stderr}")


def test_every_error_is_reported(fpmd_bin, tmp_path):
    conf = write(tmp_path / "fpmd.conf", GLOBALS + pool_with(
        'listen = "a.sock"', "pm = static",
        f"pm.max_children = 0   {MARK}1", "handler = echo",
        header="pool a {") + pool_with(
        'listen = "b.sock"', "pm = static",
        f"pm.max_children = 0   {MARK}2", "handler = echo",
        header="pool b {"))
    r = run_fpmd(fpmd_bin, "-t", "-c", str(conf), cwd=tmp_path)
    assert r.returncode == 2, r
    for marker in (f"{MARK}1", f"{MARK}2"):
        lines = marked_lines(conf, marker)
        assert reported_at(r.stderr, conf, lines, tmp_path), (
            f"expected {conf.name}:{lines}: in:\n{r.stderr}")


def test_error_line_is_right_after_comments(fpmd_bin, tmp_path):
    """Real configs are full of comments; they must not shift the line
    numbers of errors.  The marked line is line 9 of the file."""
    text = ("# fpmd test config\n"
            "# with comments\n"
            'pid = "fpmd.pid"   # trailing comment\n'
            'error_log = "error.log"\n'
            "pool www {\n"
            "    # a comment inside the pool\n"
            '    listen = "www.sock"   # trailing\n'
            "    pm = static\n"
            "    pm.max_children = 0\n"
            "    handler = echo\n"
            f"{user_lines()}"
            "}\n")
    conf = tmp_path / "fpmd.conf"
    conf.write_text(text)
    r = run_fpmd(fpmd_bin, "-t", "-c", str(conf), cwd=tmp_path)
    assert r.returncode == 2, r
    assert reported_at(r.stderr, conf, [9], tmp_path), (
        f"expected fpmd.conf:9: in:\n{r.stderr}")


def test_missing_config_file_is_a_config_error(fpmd_bin, tmp_path):
    missing = tmp_path / "nope.conf"
    r = run_fpmd(fpmd_bin, "-t", "-c", str(missing), cwd=tmp_path)
    assert r.returncode == 2, r
    assert "nope.conf" in r.stderr


@pytest.mark.parametrize("listen_kind", ["unix", "tcp"])
def test_bad_config_never_starts_anything(fpmd, tmp_path, listen_kind):
    port = free_port()
    listen = "www.sock" if listen_kind == "unix" else f"127.0.0.1:{port}"
    conf = write(tmp_path / "fpmd.conf", GLOBALS + pool_with(
        f'listen = "{listen}"', "pm = static", "pm.max_children = 2",
        "handler = echo", "pm.bogus = 1"))
    # Not -t: a real start, which must refuse before binding or forking.
    proc = fpmd(config=conf.read_text(), start=False)
    proc.start(wait=False)
    rc = proc.wait_exit(10)
    assert rc == 2, f"exit status {rc}:\n{proc.log_tail()}"
    assert not (tmp_path / "www.sock").exists()
    assert not (tmp_path / "fpmd.pid").exists()
    assert not port_listening(port)


# -------------------------------------------------------------- options

def test_help_exits_zero(fpmd_bin):
    r = run_fpmd(fpmd_bin, "-h")
    assert r.returncode == 0, r
    out = r.stdout + r.stderr
    for opt in ("-c", "-t", "-T", "-F", "-D", "-R", "-v"):
        assert opt in out, f"{opt} missing from -h output:\n{out}"


def configured_version():
    text = (REPO / "configure.ac").read_text()
    m = re.search(r"AC_INIT\(\[fpmd\],\s*\[([^\]]+)\]", text)
    return m.group(1) if m else None


def test_version_prints_the_version(fpmd_bin):
    r = run_fpmd(fpmd_bin, "-v")
    assert r.returncode == 0, r
    out = r.stdout + r.stderr
    assert "fpmd" in out, out
    version = configured_version()
    if version:
        assert version in out, f"expected {version} in {out!r}"
    else:
        assert re.search(r"\d+\.\d+", out), out


@pytest.mark.parametrize("args", [["-Z"], ["--no-such-option"],
                                  ["-c"], ["extra-argument"]])
def test_bad_usage_exits_two(fpmd_bin, tmp_path, args):
    r = run_fpmd(fpmd_bin, *args, cwd=tmp_path, timeout=10)
    assert r.returncode == 2, r
    assert r.stderr.strip(), "usage error without a message"


# ------------------------------------------------------------- pool prefix

def test_pool_prefix_resolves_that_pools_relative_paths(fpmd, tmp_path):
    """PHP-FPM's pool prefix: the pool's socket and logs resolve against
    it, and a relative prefix against the global one."""
    site = tmp_path / "sites" / "a"
    site.mkdir(parents=True)
    config = GLOBALS + pool_with(
        'prefix = "sites/a"', 'listen = "a.sock"', 'access.log = "access.log"',
        'access.format = "%m %r %s"', "pm = static", "pm.max_children = 1",
        "handler = echo")
    ep = Endpoint("unix", path=str(site / "a.sock"))
    proc = fpmd(config=config, endpoints=[ep],
                log_path=tmp_path / "error.log")
    assert not (tmp_path / "a.sock").exists()
    echo_request(ep.client, {"REQUEST_METHOD": "GET",
                             "REQUEST_URI": "/from-a"})
    wait_for(lambda: (site / "access.log").exists()
             and "GET /from-a 200" in (site / "access.log").read_text(),
             10, "the access line in the pool's prefix")
    assert (tmp_path / "fpmd.pid").exists(), "the global prefix moved"
    assert proc.running()


def test_pool_prefix_must_be_a_directory(fpmd_bin, tmp_path):
    conf = write(tmp_path / "fpmd.conf", GLOBALS + pool_with(
        f'prefix = "nowhere"   {MARK}', 'listen = "www.sock"',
        "handler = echo"))
    r = run_fpmd(fpmd_bin, "-t", "-c", str(conf), cwd=tmp_path)
    assert r.returncode == 2, r
    assert reported_at(r.stderr, conf, marked_lines(conf), tmp_path), \
        r.stderr
    assert f"prefix: {tmp_path / 'nowhere'} is not a directory" in r.stderr
