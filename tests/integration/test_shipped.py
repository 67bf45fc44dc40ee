"""What fpmd ships works as shipped: conf/fpmd.conf and conf/pool.d/www.conf
start a pool that fpmctl(8) reaches on control.listen, and nginx, given
the snippets of contrib/nginx, serves that pool over kept connections,
with its status page and ping for local clients only.  The one change
made to the files is /run/fpmd, moved to a private directory (and the
status lines uncommented where a test says so)."""

import http.client
import json
import os
import pwd
import re
import shutil
import stat

import pytest

from conftest import (FASTCGI_PARAMS, IS_ROOT, REPO, Nginx,
                      parse_echo)

RUN = "/run/fpmd"


def www_data():
    try:
        return pwd.getpwnam("www-data")
    except KeyError:
        return None


pytestmark = pytest.mark.skipif(
    not IS_ROOT or www_data() is None,
    reason="the shipped pool runs as www-data: needs root and that user")


def shipped_text(rel, rundir, status=False):
    """conf/REL with /run/fpmd moved to RUNDIR (and, with STATUS, the
    status page and ping switched on as its comment says)."""
    text = (REPO / "conf" / rel).read_text().replace(RUN, str(rundir))
    if status:
        for line in ("pm.status_path = /status", "ping.path = /ping"):
            assert f"#{line}" in text, line
            text = text.replace(f"#{line}", line)
    return text


@pytest.fixture
def shipped(fpmd, sockdir, tmp_path):
    """Factory: shipped(status=False) -> (fpmd process, run directory),
    fpmd started on the shipped configuration."""
    def make(status=False):
        etc = tmp_path / "etc"
        (etc / "pool.d").mkdir(parents=True)
        (etc / "pool.d" / "www.conf").write_text(
            shipped_text("pool.d/www.conf", sockdir, status))
        return fpmd(config=shipped_text("fpmd.conf", sockdir),
                    workdir=etc), sockdir
    return make


def test_shipped_config_starts_and_fpmctl_reaches_it(shipped, fpmctl):
    proc, rundir = shipped()
    assert len(proc.wait_workers(5)) == 5
    # The pool's socket, as its comments promise nginx (www-data).
    st = os.stat(rundir / "www.sock")
    user = www_data()
    assert stat.S_ISSOCK(st.st_mode)
    assert (st.st_uid, st.st_gid) == (user.pw_uid, user.pw_gid)
    assert stat.S_IMODE(st.st_mode) == 0o660
    ctl = rundir / "fpmd.ctl"
    assert stat.S_IMODE(os.stat(ctl).st_mode) == 0o600
    r = fpmctl(ctl, "status", "--json")
    assert r.returncode == 0, r.stderr
    pools = json.loads(r.stdout)
    assert [(p["pool"], p["total processes"]) for p in pools] == \
        [("www", 5)], pools


def test_shipped_control_socket_is_where_fpmctl_looks(fpmctl):
    """fpmctl without -s must find the shipped fpmd's control socket."""
    m = re.search(r'^control\.listen = "([^"]+)"',
                  (REPO / "conf" / "fpmd.conf").read_text(), re.M)
    assert m, "conf/fpmd.conf sets no control.listen"
    r = fpmctl(None, "-h")
    assert f"SOCKET defaults to {m.group(1)} " in r.stdout + r.stderr


class SnippetNginx(Nginx):
    """nginx configured with contrib/nginx's snippets, included as their
    comments say, /run/fpmd moved to RUNDIR."""

    def __init__(self, workdir, rundir):
        self.rundir = rundir
        super().__init__(workdir, None)

    def http_body(self):
        d = self.workdir
        snippets = d / "snippets"
        snippets.mkdir(exist_ok=True)
        for src in sorted((REPO / "contrib" / "nginx").glob("*.conf")):
            (snippets / src.name).write_text(
                src.read_text().replace(RUN, str(self.rundir)))
        # "include fastcgi_params" is relative to nginx.conf's directory.
        shutil.copy(FASTCGI_PARAMS, d / "fastcgi_params")
        return (f"    include {snippets / 'fpmd-upstream.conf'};\n"
                "    server {\n"
                f"        listen 127.0.0.1:{self.port};\n"
                f"        include {snippets / 'fpmd-status.conf'};\n"
                "        location /app/ {\n"
                f"            include {snippets / 'fpmd-fastcgi.conf'};\n"
                "        }\n"
                "    }\n")


@pytest.fixture
def snippet_nginx(tmp_path):
    started = []

    def make(rundir):
        web = SnippetNginx(tmp_path / "nginx", rundir)
        started.append(web)
        return web.start()
    yield make
    for web in started:
        web.cleanup()


def status_json(web, conn=None):
    code, _, body = web.request("GET", "/status?json", conn=conn)
    assert code == 200, body
    return json.loads(body)


def test_nginx_snippets_serve_the_pool_over_kept_connections(
        shipped, snippet_nginx):
    proc, rundir = shipped(status=True)
    web = snippet_nginx(rundir)
    before = status_json(web)
    assert before["pool"] == "www"
    conn = web.connection()
    try:
        for i in range(10):
            code, _, body = web.request("GET", f"/app/x?i={i}", conn=conn)
            assert code == 200, body
            page = parse_echo(body)
            assert ("QUERY_STRING", f"i={i}") in page.params
            assert page.uid == www_data().pw_uid
        after = status_json(web, conn)
    finally:
        conn.close()
    # 11 requests (10 and this page) on kept connections: nginx opened a
    # new one for few of them, if any.
    assert after["accepted conn"] - before["accepted conn"] == 11
    assert after["connections"] - before["connections"] <= 2, after
    code, _, body = web.request("GET", "/ping")
    assert (code, body) == (200, b"pong")


def test_nginx_status_snippet_refuses_other_clients(shipped, snippet_nginx):
    proc, rundir = shipped(status=True)
    web = snippet_nginx(rundir)
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=30,
                                      source_address=("127.0.0.2", 0))
    try:
        for path in ("/status", "/ping"):
            code, _, _ = web.request("GET", path, conn=conn)
            assert code == 403, path
        # The application itself is for everybody.
        code, _, _ = web.request("GET", "/app/", conn=conn)
        assert code == 200
    finally:
        conn.close()
