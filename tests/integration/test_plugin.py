"""Handler plugins: fpmd installed into a DESTDIR, the example plugin in
contrib/handlers/hello built out of tree against the installed header
with pkg-config, then loaded and served; and every way a plugin can be
refused at `fpmd -t` (ABI mismatch, missing symbol, unloadable file, bad
handler.options), each named with the file and the reason."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import fcgi_client
from conftest import REPO, pool_conf, render_conf, run_fpmd

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
    return src / "hello.so"


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
    r = run_fpmd(fpmd_bin, "-t", "-c", str(write_conf(tmp_path, str(so))))
    assert r.returncode == 2, r
    assert 'does not export the symbol "fpmd_handler"' in r.stderr, r.stderr


def test_unloadable_file_is_refused(fpmd_bin, tmp_path):
    bogus = tmp_path / "bogus.so"
    bogus.write_text("not an ELF file\n")
    r = run_fpmd(fpmd_bin, "-t", "-c", str(write_conf(tmp_path,
                                                       str(bogus))))
    assert r.returncode == 2, r
    assert f"cannot load {bogus}" in r.stderr, r.stderr


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
