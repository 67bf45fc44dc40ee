/*
 * check_access.c -- access.format: every code rendered byte for byte for
 * one fixed request, the defaults when a request lacks what a code shows,
 * every malformed format refused with its reason, what each format needs
 * the worker to collect (and nothing more), and the response head read
 * whole whatever the writes it came in.  Times are in UTC (TZ set).
 */
#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "fpmd.h"
#include "unit.h"

struct param {
	const char	*name;
	const char	*value;
};

static const struct param full_params[] = {
	{ "REQUEST_METHOD", "POST" },
	{ "REQUEST_URI", "/app/index.php?a=1&b=2" },
	{ "QUERY_STRING", "a=1&b=2" },
	{ "SCRIPT_FILENAME", "/srv/app/index.php" },
	{ "SCRIPT_NAME", "/app/index.php" },
	{ "CONTENT_LENGTH", "1234" },
	{ "REMOTE_USER", "alice" },
	{ "HTTP_HOST", "example.org" },
	{ "HTTP_X_EVIL", "a\nb\x7f" },
	{ NULL, NULL }
};

static const struct param no_params[] = { { NULL, NULL } };

static const char full_head[] = "Status: 404 Not Found\r\n"
    "Content-Type: text/html; charset=utf-8\r\nX-Empty:\r\n\r\n<html>";

static const char *
lookup(void *ctx, const char *name)
{
	const struct param	*p;

	for (p = ctx; p->name != NULL; p++)
		if (strcmp(p->name, name) == 0)
			return p->value;
	return NULL;
}

/* Renders FMT for the fixed request (FULL) or an empty one. */
static char *
render(const char *fmt, bool full, const char *head)
{
	static struct access_head	 h;
	struct access_req		 r;
	struct buf			 out = { 0 };

	access_head_reset(&h);
	access_head_feed(&h, head, strlen(head));
	memset(&r, 0, sizeof(r));
	r.pool = "www";
	r.pid = 4242;
	r.master_pid = 1;
	r.param = lookup;
	r.ctx = (void *)(uintptr_t)(full ? full_params : no_params);
	r.head = &h;
	r.peer = "127.0.0.1";
	r.start = 1700000000.25;	/* 14 Nov 2023 22:13:20 UTC */
	r.end = 1700000001.48456;
	r.cpu_user = 0.6;
	r.cpu_system = 0.3;
	r.memory = 5 * 1048576 + 1000;
	ck_assert_ptr_null(access_format_check(fmt, (char[128]){ 0 }, 128));
	access_format(fmt, &r, &out);
	ck_assert(!out.failed);
	buf_add(&out, "", 1);
	return out.data;
}

static const struct {
	const char	*fmt;
	const char	*line;		/* without its newline */
} good[] = {
	{ "%R - %u %t \"%m %r\" %s",
	    "127.0.0.1 - alice 14/Nov/2023:22:13:20 +0000 "
	    "\"POST /app/index.php\" 404" },
	{ "100%% done", "100% done" },
	{ "%C %{user}C %{system}C %{total}C", "72.90 48.60 24.30 72.90" },
	{ "%d %{seconds}d %{milliseconds}d %{milli}d %{miliseconds}d "
	    "%{mili}d %{microseconds}d %{micro}d",
	    "1.235 1.235 1234.560 1234.560 1234.560 1234.560 1234560 "
	    "1234560" },
	{ "%{HTTP_HOST}e %{NOPE}e", "example.org -" },
	{ "%f", "/srv/app/index.php" },
	{ "%l", "1234" },
	{ "%m", "POST" },
	{ "%M %{bytes}M %{kilobytes}M %{kilo}M %{megabytes}M %{mega}M",
	    "5243880 5243880 5120 5120 5 5" },
	{ "%n", "www" },
	{ "%{Content-Type}o|%{content-type}o|%{X-Missing}o|%{X-Empty}o",
	    "text/html; charset=utf-8|text/html; charset=utf-8|-|-" },
	{ "%p %P", "4242 1" },
	{ "%q|%Q", "a=1&b=2|?" },
	{ "%r", "/app/index.php" },
	{ "%R", "127.0.0.1" },
	{ "%s", "404" },
	{ "%t|%T", "14/Nov/2023:22:13:20 +0000|14/Nov/2023:22:13:21 +0000" },
	{ "%{%Y-%m-%dT%H:%M:%S}t %{%s}T", "2023-11-14T22:13:20 1700000001" },
	{ "%u", "alice" },
	{ "[%{HTTP_X_EVIL}e]", "[a\\x0ab\\x7f]" },
	{ "no codes at all", "no codes at all" },
	{ "", "" },
};

START_TEST(test_codes)
{
	char	*line = render(good[_i].fmt, true, full_head), want[512];

	snprintf(want, sizeof(want), "%s\n", good[_i].line);
	ck_assert_str_eq(line, want);
	free(line);
}
END_TEST

START_TEST(test_missing)
{
	char	*line;

	line = render("%m|%f|%u|%q|%Q|%r|%s|%l|%{X}e|%{X}o", false, "");
	ck_assert_str_eq(line, "-|-|||||200|0|-|-\n");
	free(line);
	/* No REQUEST_URI: the script's name. */
	line = render("%r", false, "Location: /elsewhere\r\n\r\n");
	ck_assert_str_eq(line, "\n");
	free(line);
}
END_TEST

static const struct {
	const char	*head;
	int		 status;
} heads[] = {
	{ "", 200 },
	{ "Content-Type: text/plain\r\n\r\nbody", 200 },
	{ "Status: 201\r\n\r\n", 201 },
	{ "status:503 Service Unavailable\n\n", 503 },
	{ "Location: /there\r\n\r\n", 302 },
	{ "Location: /there\r\nStatus: 301 Moved\r\n\r\n", 301 },
	{ "Status: 20x\r\n\r\n", 200 },
	{ "Status: 404 Not Found\r\nno end of the head", 200 },
};

START_TEST(test_status)
{
	char	*line = render("%s", true, heads[_i].head), want[16];

	snprintf(want, sizeof(want), "%d\n", heads[_i].status);
	ck_assert_str_eq(line, want);
	free(line);
}
END_TEST

/* The head arrives in two writes, split at every byte. */
START_TEST(test_head_split)
{
	struct access_head	 h;
	const char		*v;
	size_t			 n, at = (size_t)_i;

	access_head_reset(&h);
	access_head_feed(&h, full_head, at);
	access_head_feed(&h, full_head + at, strlen(full_head) - at);
	ck_assert_int_eq(access_head_status(&h), 404);
	v = access_head_get(&h, "Content-Type", &n);
	ck_assert_ptr_nonnull(v);
	ck_assert_int_eq((int)n, 24);
	ck_assert(memcmp(v, "text/html; charset=utf-8", n) == 0);
}
END_TEST

START_TEST(test_head_too_long)
{
	static struct access_head	 h;
	char				 big[ACCESS_HEAD_MAX + 100];

	memset(big, 'x', sizeof(big));
	memcpy(big, "Status: 500\r\nX: ", 16);
	access_head_reset(&h);
	access_head_feed(&h, big, sizeof(big));
	ck_assert_int_eq(access_head_status(&h), 200);
}
END_TEST

static const struct {
	const char	*fmt;
	const char	*error;
} bad[] = {
	{ "%x", "unknown code %x" },
	{ "abc %", "cut short" },
	{ "%{user}", "cut short" },
	{ "abc %{user", "missing closing brace" },
	{ "%{x}m", "%m takes no {argument}" },
	{ "%{x}s", "%s takes no {argument}" },
	{ "%e", "%e needs a name: %{NAME}e" },
	{ "%{}o", "%o needs a name" },
	{ "%{weekly}C", "expected user, system or total" },
	{ "%{hours}d", "expected seconds, milliseconds or microseconds" },
	{ "%{gigabytes}M", "expected bytes, kilobytes or megabytes" },
};

START_TEST(test_bad)
{
	char		 err[256];
	const char	*msg;

	msg = access_format_check(bad[_i].fmt, err, sizeof(err));
	ck_assert_msg(msg != NULL, "\"%s\" accepted", bad[_i].fmt);
	ck_assert_msg(strstr(msg, bad[_i].error) != NULL,
	    "\"%s\": got \"%s\", want \"%s\"", bad[_i].fmt, msg,
	    bad[_i].error);
}
END_TEST

#define CPU	ACCESS_NEED_CPU
#define MEM	ACCESS_NEED_MEMORY
#define PEER	ACCESS_NEED_PEER
#define HEAD	ACCESS_NEED_HEAD

/* A code costs only when it is one: not in literal text, nor an argument. */
static const struct {
	const char	*fmt;
	unsigned int	 needs;
} needs[] = {
	{ "%R - %u %t \"%m %r\" %s", PEER | HEAD },	/* the default */
	{ "", 0 },
	{ "no codes at all", 0 },
	{ "%m %r%Q%q %f %u %l %n %p %P %d %{micro}d %t %{%s}T %{HOST}e", 0 },
	{ "%C", CPU },
	{ "%{user}C %{system}C %{total}C", CPU },
	{ "%M", MEM },
	{ "%{kilo}M %C", CPU | MEM },
	{ "%R", PEER },
	{ "%s", HEAD },
	{ "%{Content-Type}o", HEAD },
	{ "%C %M %R %s %{X}o", CPU | MEM | PEER | HEAD },
	{ "100%% %%C %%R %%M %%s", 0 },
	{ "%{%C %M}t %{R}e %{s}T", 0 },
	{ "%%%C", CPU },
};

START_TEST(test_needs)
{
	ck_assert_ptr_null(access_format_check(needs[_i].fmt,
	    (char[128]){ 0 }, 128));
	ck_assert_msg(access_needs(needs[_i].fmt) == needs[_i].needs,
	    "\"%s\": needs %#x, want %#x", needs[_i].fmt,
	    access_needs(needs[_i].fmt), needs[_i].needs);
}
END_TEST

/*
 * access.suppress_path: a request is left out of the log only when it is
 * a plain successful GET or HEAD of one of the paths, exactly.
 */
static char		 ping_path[] = "/ping", live_path[] = "/health/live";
static char *const	 suppress_paths[] = { ping_path, live_path };

static const struct {
	const char	*method;
	const char	*uri;		/* REQUEST_URI; NULL: none sent */
	const char	*script;	/* SCRIPT_NAME */
	const char	*qs;
	const char	*length;	/* CONTENT_LENGTH */
	const char	*head;
	bool		 suppressed;
} suppress[] = {
	{ "GET", "/ping", "/ping", "", "", "", true },
	{ "HEAD", "/ping", "/ping", "", "", "", true },
	{ "GET", "/health/live", "/x", NULL, NULL, "Status: 204\r\n\r\n",
	    true },
	{ "GET", "/ping", "/ping", "", "0", "", true },
	/* A bare '?' has no query string: still the path. */
	{ "GET", "/ping?", "/ping", "", "", "", true },
	/* No REQUEST_URI: SCRIPT_NAME is the path. */
	{ "GET", NULL, "/ping", "", "", "", true },
	/* Anything else about them is logged. */
	{ "GET", "/ping?x=1", "/ping", "x=1", "", "", false },
	{ "POST", "/ping", "/ping", "", "", "", false },
	{ "GET", "/ping", "/ping", "", "12", "", false },
	{ "GET", "/ping", "/ping", "", "", "Status: 500\r\n\r\n", false },
	{ "GET", "/ping", "/ping", "", "", "Location: /x\r\n\r\n", false },
	{ "GET", "/ping", "/ping", "", "", "Status: 199\r\n\r\n", false },
	{ "GET", "/pingx", "/pingx", "", "", "", false },
	{ "GET", "/pin", "/pin", "", "", "", false },
	{ "GET", "/Ping", "/Ping", "", "", "", false },
	{ "GET", "/health", "/health", "", "", "", false },
	{ "get", "/ping", "/ping", "", "", "", false },
	{ NULL, "/ping", "/ping", "", "", "", false },
};

START_TEST(test_suppressed)
{
	struct param		 params[6], *p = params;
	struct access_head	 h;
	struct access_req	 r;

	memset(params, 0, sizeof(params));
	if (suppress[_i].method != NULL)
		*p++ = (struct param){ "REQUEST_METHOD", suppress[_i].method };
	if (suppress[_i].uri != NULL)
		*p++ = (struct param){ "REQUEST_URI", suppress[_i].uri };
	*p++ = (struct param){ "SCRIPT_NAME", suppress[_i].script };
	if (suppress[_i].qs != NULL)
		*p++ = (struct param){ "QUERY_STRING", suppress[_i].qs };
	if (suppress[_i].length != NULL)
		*p++ = (struct param){ "CONTENT_LENGTH", suppress[_i].length };
	access_head_reset(&h);
	access_head_feed(&h, suppress[_i].head, strlen(suppress[_i].head));
	memset(&r, 0, sizeof(r));
	r.param = lookup;
	r.ctx = params;
	r.head = &h;
	ck_assert_msg(access_suppressed(suppress_paths, 2, &r) ==
	    suppress[_i].suppressed, "case %d: %s %s", _i,
	    suppress[_i].method ? suppress[_i].method : "(none)",
	    suppress[_i].uri ? suppress[_i].uri : suppress[_i].script);
	/* No paths: nothing is suppressed. */
	ck_assert(!access_suppressed(suppress_paths, 0, &r));
}
END_TEST

static Suite *
access_suite(void)
{
	Suite	*s = suite_create("access");
	TCase	*tc = tcase_create("format");

	tcase_add_loop_test(tc, test_codes, 0, sizeof(good) / sizeof(good[0]));
	tcase_add_test(tc, test_missing);
	tcase_add_loop_test(tc, test_status, 0,
	    sizeof(heads) / sizeof(heads[0]));
	tcase_add_loop_test(tc, test_head_split, 0, (int)sizeof(full_head));
	tcase_add_test(tc, test_head_too_long);
	tcase_add_loop_test(tc, test_bad, 0, sizeof(bad) / sizeof(bad[0]));
	tcase_add_loop_test(tc, test_needs, 0,
	    sizeof(needs) / sizeof(needs[0]));
	tcase_add_loop_test(tc, test_suppressed, 0,
	    sizeof(suppress) / sizeof(suppress[0]));
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	setenv("TZ", "UTC", 1);
	tzset();
	return unit_run(access_suite(), CK_FORK);
}
