#!/usr/bin/env bash
# contrib/dev.sh -- from a fresh Debian 12 machine to a running demo or a
# passing test suite.
#
#   contrib/dev.sh run     install what is missing, build, run fpmd on
#                          conf/demo.conf behind a private nginx on
#                          127.0.0.1:8080; Ctrl-C stops both
#   contrib/dev.sh check   install what is missing, build, run every test
#                          (unit, integration with nginx, both again under
#                          ASan/UBSan, then the fuzzers when clang is there)
#   contrib/dev.sh build [default|asan]   build only, into _build/VARIANT
#
# Builds are out of tree (_build/default, _build/asan), so the source tree
# stays clean.  Root is needed to install packages; the suite itself runs
# as any user, and tests privilege drops when run as root (as CI does).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

# Debian packages: build, tests, demo, benchmarks.  Kept in one place.
PACKAGES=(
	# build
	build-essential autoconf automake libtool pkg-config
	libconfuse-dev libsystemd-dev libacl1-dev check mandoc
	# tests: the real peers and tools the integration suite drives
	nginx-light curl python3 python3-pytest python3-prometheus-client
	apache2 haproxy lighttpd libfcgi-bin fcgiwrap spawn-fcgi
	gitweb git perl acl logrotate systemd chromium
	# fuzzing
	clang libclang-rt-14-dev
	# benchmarks (contrib/bench)
	wrk php8.2-fpm libfcgi-dev
)

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'dev.sh: %s\n' "$*" >&2; exit 1; }

deps() {
	local missing=() p
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
		    grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	say "installing ${missing[*]}"
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null || die "need root to install: ${missing[*]}"
		SUDO=sudo
	else
		SUDO=
	fi
	$SUDO apt-get update -q -o DPkg::Lock::Timeout=600
	# Installing nginx, apache2, lighttpd or php-fpm must not start the
	# system's copies (they would fight over port 80): the tests run
	# private instances.  policy-rc.d is Debian's switch for that.
	local policy=/usr/sbin/policy-rc.d added=
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
		$SUDO chmod 755 "$policy"
		added=1
	fi
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q \
	    -o DPkg::Lock::Timeout=600 \
	    --no-install-recommends "${missing[@]}"
	[ -z "$added" ] || $SUDO rm -f "$policy"
}

build() {
	local variant=${1:-default} dir flags=(--enable-werror)
	dir="$top/_build/$variant"
	[ "$variant" = asan ] && flags+=(--enable-sanitizers)
	if [ -f "$top/config.status" ]; then
		die "the source tree is configured in place; run 'make distclean' first"
	fi
	if [ ! -x "$top/configure" ] || [ "$top/configure.ac" -nt "$top/configure" ] ||
	    [ "$top/Makefile.am" -nt "$top/configure" ]; then
		say "autoreconf"
		(cd "$top" && autoreconf -fi >/dev/null)
	fi
	mkdir -p "$dir"
	if [ ! -f "$dir/Makefile" ] || [ "$top/configure" -nt "$dir/Makefile" ]; then
		say "configure ($variant)"
		(cd "$dir" && "$top/configure" -q "${flags[@]}")
	fi
	say "make ($variant)"
	make -s -C "$dir" -j"$(nproc)" >/dev/null
	make -s -C "$dir" -j"$(nproc)" check TESTS= >/dev/null
}

# Runs the Check suites of a build, then the integration suite against it.
suite() {
	local variant=$1 dir="$top/_build/$1"
	say "unit tests ($variant)"
	if ! make -s -C "$dir" check; then
		cat "$dir"/tests/unit/*.log >&2 || true
		return 1
	fi
	say "integration tests ($variant)"
	FPMD_BIN="$dir/src/fpmd" FPMD_BUILDDIR="$dir" \
	    /usr/bin/python3 -m pytest -q -p no:cacheprovider "$top/tests/integration"
}

check() {
	deps
	build default
	suite default
	build asan
	# Leaks are checked by the unit tests; the daemon's workers leave by
	# _exit and their few long-lived buffers are not leaks.
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:halt_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    suite asan
	ASAN_OPTIONS=detect_leaks=1 make -s -C "$top/_build/asan" check
	if command -v clang >/dev/null && [ -x "$top/tests/fuzz/run.sh" ]; then
		say "fuzzing (${FUZZ_SECONDS:-20}s per harness)"
		FUZZ_SECONDS=${FUZZ_SECONDS:-20} "$top/tests/fuzz/run.sh"
	fi
	say "mandoc -Tlint"
	mandoc -Tlint -W warning "$top"/man/*.[0-9]
	say "all tests passed"
}

wait_for() {	# wait_for SECONDS CMD...: poll CMD until it succeeds
	local deadline=$((SECONDS + $1)); shift
	until "$@" 2>/dev/null; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.1
	done
}

run() {
	deps
	build default
	# Not local: the EXIT trap runs after run() has returned.
	rundir= fpmd_pid= nginx_pid= port=${PORT:-8080}
	rundir=$(mktemp -d /tmp/fpmd-demo.XXXXXX)
	chmod 755 "$rundir"	# nginx's workers reach the socket through it
	mkdir -p "$rundir/nginx"
	cat >"$rundir/nginx.conf" <<-EOF
		daemon off;
		worker_processes 1;
		pid $rundir/nginx/nginx.pid;
		error_log $rundir/nginx/error.log notice;
		events { worker_connections 256; }
		http {
		    access_log off;
		    client_body_temp_path $rundir/nginx/body;
		    proxy_temp_path $rundir/nginx/proxy;
		    fastcgi_temp_path $rundir/nginx/fastcgi;
		    uwsgi_temp_path $rundir/nginx/uwsgi;
		    scgi_temp_path $rundir/nginx/scgi;
		    upstream fpmd {
		        server unix:$rundir/demo.sock;
		        keepalive 8;
		    }
		    server {
		        listen 127.0.0.1:$port;
		        location / {
		            include /etc/nginx/fastcgi_params;
		            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
		            fastcgi_keep_conn on;
		            fastcgi_pass fpmd;
		        }
		    }
		}
	EOF
	"$top/_build/default/src/fpmd" -F -c "$top/conf/demo.conf" -p "$rundir" &
	fpmd_pid=$!
	stop() {
		# Ctrl-C reached them too: either may be gone already.
		trap - INT TERM EXIT
		set +e
		[ -n "${nginx_pid:-}" ] && kill -QUIT "$nginx_pid" 2>/dev/null
		kill -TERM "$fpmd_pid" 2>/dev/null
		wait 2>/dev/null
		rm -rf "$rundir"
		say "stopped"
	}
	trap stop INT TERM EXIT
	wait_for 10 test -S "$rundir/demo.sock" || die "fpmd did not start"
	/usr/sbin/nginx -c "$rundir/nginx.conf" -e "$rundir/nginx/error.log" &
	nginx_pid=$!
	wait_for 10 curl -sf -o /dev/null "http://127.0.0.1:$port/" ||
	    die "nginx did not start: $(cat "$rundir/nginx/error.log")"
	cat >&2 <<-EOF

		fpmd is serving the demo pool behind nginx.  Try:
		    curl 'http://127.0.0.1:$port/hello?name=world'
		    curl -d 'some body' http://127.0.0.1:$port/form
		    kill -KILL <a worker's pid>   (the page shows it; fpmd replaces it)
		fpmd's log is on this terminal; its run directory is $rundir.
		Ctrl-C stops both.

	EOF
	wait "$fpmd_pid"
}

case "${1:-}" in
run) run ;;
check) check ;;
build) deps; build "${2:-default}" ;;
deps) deps ;;
*) echo "usage: contrib/dev.sh run | check | build [default|asan] | deps" >&2; exit 2 ;;
esac
