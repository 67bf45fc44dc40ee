/*
 * check_status.c -- the status page and the ping.  A real scoreboard with
 * workers in several states (and slots status_collect() must skip) is
 * collected, then rendered in every format; the expected pages are built
 * here from the same inputs by PHP-FPM's rules (the text page's column,
 * its JSON keys and XML tags), with requests whose URI, script and user
 * carry quotes, backslashes, markup, control characters and broken
 * UTF-8, each written out by hand in the form each format must give it.
 * Then the query switches, the paths, the ping and the CGI head.  Times
 * are in UTC (TZ set).
 */
#include "config.h"

#include <check.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "fpmd.h"
#include "unit.h"

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))

#define T0	1700000000.0	/* 14 Nov 2023 22:13:20 UTC */
#define NOW	(T0 + 100)	/* the snapshot's "now" */

static char	 www[] = "www", status_path[] = "/status", ping_path[] = "/ping",
		 pong[] = "pong";

static struct pool_conf	 pc = {
	.name = www,
	.pm = PM_DYNAMIC,
	.max_children = 5,
	.min_spare_servers = 1,
	.max_spare_servers = 3,
	.status_path = status_path,
	.ping_path = ping_path,
	.ping_response = pong,
};

static const struct sb_pool	 pool_in = {
	.start_time = T0,
	.accepted_conn = 42,
	.connections = 40,
	.max_children_reached = 3,
	.slow_requests = 2,
	.max_active = 1,	/* below the workers busy now: raised */
	.respawns = 4,
	.kills_timeout = 1,
	.retired = 6,
	.generation = 2,
	.reload_time = T0 + 50,
	.listen_queue = 2,
	.max_listen_queue = 7,
	.listen_queue_len = 128,
};

/* What each format must make of the running request's strings. */
#define URI_RAW		"/q?a=\"b\"&c=<d>\\e\x01'\x7f\xc3\xa9"
#define URI_TEXT	"/q?a=\"b\"&c=<d>\\e?'?\xc3\xa9"
#define URI_JSON	"/q?a=\\\"b\\\"&c=<d>\\\\e\\u0001'\\u007f\xc3\xa9"
#define URI_XML		"/q?a=&quot;b&quot;&amp;c=&lt;d&gt;\\e&#xFFFD;&#39;" \
			"\x7f\xc3\xa9"
#define SCRIPT_RAW	"/srv/\"x\"\\y\xff.php"
#define SCRIPT_JSON	"/srv/\\\"x\\\"\\\\y\\ufffd.php"
#define SCRIPT_XML	"/srv/&quot;x&quot;\\y&#xFFFD;.php"
#define USER_RAW	"bob\"\n\t"
#define USER_TEXT	"bob\"??"
#define USER_JSON	"bob\\\"\\u000a\\u0009"
#define USER_XML	"bob&quot;&#xFFFD;\t"

#define NSLOTS	7

/*
 * Live: 1 (Idle), 2 (Running), 4 (Starting), 5 (Idle, kept connection).
 * Skipped: 0 (no pid), 3 (Free), 6 (a state out of range).
 */
static const struct sb_slot	 slot_in[NSLOTS] = {
	[0] = { .pid = 0, .state = SB_RUNNING, .requests = 99 },
	[1] = { .pid = 101, .state = SB_IDLE, .started = T0 + 10,
	    .requests = 11, .req_started = T0 + 60, .req_duration_us = 1500,
	    .method = "GET", .uri = "/a", .script = "/srv/a.php",
	    .last_cpu = 12.5, .last_memory = 2097152 },
	[2] = { .pid = 102, .state = SB_RUNNING, .started = T0 + 20,
	    .requests = 3, .req_started = NOW - 4.5, .req_duration_us = 777,
	    .content_length = 123, .method = "POST", .uri = URI_RAW,
	    .script = SCRIPT_RAW, .user = USER_RAW, .last_cpu = 50.0,
	    .last_memory = 999 },
	[3] = { .pid = 103, .state = SB_FREE },
	[4] = { .pid = 104, .state = SB_STARTING, .started = NOW - 1 },
	[5] = { .pid = 105, .state = SB_KEEPALIVE, .started = T0 + 30,
	    .requests = 8, .req_started = NOW - 50, .req_duration_us = 2500,
	    .method = "GET", .uri = "/k", .script = "/srv/k.php",
	    .user = "alice", .last_cpu = 3.0, .last_memory = 5 },
	[6] = { .pid = 106, .state = 99 },
};

#define NLIVE	4

/* Writes SRC into the shared slot DST as its one writer would. */
static void
slot_set(struct sb_slot *dst, const struct sb_slot *src)
{
	sb_slot_begin(dst);
	memcpy((char *)dst + sizeof(dst->seq), (const char *)src +
	    sizeof(src->seq), sizeof(*dst) - sizeof(dst->seq));
	sb_slot_end(dst);
}

/* The scoreboard above, collected for pool P, with a fixed "now". */
static struct scoreboard *
fixture(const struct pool_conf *p, struct status *st)
{
	struct scoreboard	*sb = sb_new(NSLOTS);
	size_t			 i;

	ck_assert_ptr_nonnull(sb);
	*sb->pool = pool_in;
	sb->pool->wake_fd = -1;
	for (i = 0; i < NSLOTS; i++)
		slot_set(&sb->slots[i], &slot_in[i]);
	status_collect(sb, p, -1, st);
	ck_assert_ptr_nonnull(st->procs);
	st->now = NOW;
	return sb;
}

static char *
page(const struct status *st, enum status_format fmt, bool full)
{
	struct buf	 b = { 0 };

	status_body(st, fmt, full, &b);
	ck_assert(!b.failed);
	ck_assert_ptr_nonnull(b.data);
	return b.data;
}

/*
 * One expected field: PHP-FPM's name (the text page's; JSON's key is it
 * in lower case, XML's tag also with '-' for ' ') and the value as each
 * format writes it (JSON's with its quotes).
 */
struct want {
	const char	*name;
	char		 text[320];
	char		 json[320];
	char		 xml[320];
};

#define WANT_MAX	32

struct want_list {
	struct want	 f[WANT_MAX];
	size_t		 n;
};

static struct want_list	 want_pool, want_procs[NLIVE];

static struct want *
want_add(struct want_list *l, const char *name)
{
	ck_assert_uint_lt(l->n, WANT_MAX);
	l->f[l->n].name = name;
	return &l->f[l->n++];
}

static void
want_u(struct want_list *l, const char *name, unsigned long long v)
{
	struct want	*w = want_add(l, name);

	snprintf(w->text, sizeof(w->text), "%llu", v);
	snprintf(w->json, sizeof(w->json), "%llu", v);
	snprintf(w->xml, sizeof(w->xml), "%llu", v);
}

static void
want_pct(struct want_list *l, const char *name, double v)
{
	struct want	*w = want_add(l, name);

	snprintf(w->text, sizeof(w->text), "%.2f", v);
	snprintf(w->json, sizeof(w->json), "%.2f", v);
	snprintf(w->xml, sizeof(w->xml), "%.2f", v);
}

static void
want_str(struct want_list *l, const char *name, const char *text,
    const char *json, const char *xml)
{
	struct want	*w = want_add(l, name);

	snprintf(w->text, sizeof(w->text), "%s", text);
	snprintf(w->json, sizeof(w->json), "\"%s\"", json);
	snprintf(w->xml, sizeof(w->xml), "%s", xml);
}

/* A string no format escapes. */
static void
want_plain(struct want_list *l, const char *name, const char *s)
{
	want_str(l, name, s, s, s);
}

/*
 * T, at most an hour after T0, as the text and HTML pages date it in UTC:
 * counted from T0's "14/Nov/2023:22:13:20", not asked of strftime(3) as
 * the code under test does.
 */
static void
fmt_time(char *out, size_t len, double t)
{
	long	 s = 13 * 60 + 20 + (long)(t - T0);

	ck_assert(t >= T0 && t - T0 < 3600 - 13 * 60 - 20);
	snprintf(out, len, "14/Nov/2023:22:%02ld:%02ld +0000", s / 60, s % 60);
}

/* The text and HTML pages show a date; JSON and XML the Unix time. */
static void
want_time(struct want_list *l, const char *name, double t)
{
	struct want	*w = want_add(l, name);

	fmt_time(w->text, sizeof(w->text), t);
	snprintf(w->json, sizeof(w->json), "%llu", (unsigned long long)t);
	snprintf(w->xml, sizeof(w->xml), "%llu", (unsigned long long)t);
}

/* The first fields of a worker; DURATION in microseconds. */
static void
want_proc(struct want_list *l, const struct sb_slot *s, const char *state,
    uint64_t duration)
{
	want_u(l, "pid", (unsigned long long)s->pid);
	want_plain(l, "state", state);
	want_time(l, "start time", s->started);
	want_u(l, "start since", (unsigned long long)(NOW - s->started));
	want_u(l, "requests", s->requests);
	want_u(l, "request duration", duration);
}

static void
build_wants(void)
{
	struct want_list	*l = &want_pool;
	const struct sb_slot	*s;

	memset(&want_pool, 0, sizeof(want_pool));
	memset(want_procs, 0, sizeof(want_procs));
	want_plain(l, "pool", "www");
	want_plain(l, "process manager", "dynamic");
	want_time(l, "start time", pool_in.start_time);
	want_u(l, "start since", (unsigned long long)(NOW - pool_in.start_time));
	want_u(l, "accepted conn", pool_in.accepted_conn);
	want_u(l, "listen queue", pool_in.listen_queue);
	want_u(l, "max listen queue", pool_in.max_listen_queue);
	want_u(l, "listen queue len", pool_in.listen_queue_len);
	want_u(l, "idle processes", 1);			/* 1 */
	want_u(l, "active processes", 2);		/* 2, 5 */
	want_u(l, "total processes", 3);
	want_u(l, "max active processes", 2);
	want_u(l, "max children reached", pool_in.max_children_reached);
	want_u(l, "slow requests", pool_in.slow_requests);
	want_u(l, "max children", (unsigned long long)pc.max_children);
	want_u(l, "min spare servers", (unsigned long long)pc.min_spare_servers);
	want_u(l, "max spare servers", (unsigned long long)pc.max_spare_servers);
	want_u(l, "keepalive processes", 1);		/* 5 */
	want_u(l, "starting processes", 1);		/* 4 */
	want_u(l, "respawns", pool_in.respawns);
	want_u(l, "timeout kills", pool_in.kills_timeout);
	want_u(l, "retired processes", pool_in.retired);
	want_u(l, "connections", pool_in.connections);
	want_u(l, "generation", pool_in.generation);
	want_u(l, "last reload", (unsigned long long)pool_in.reload_time);

	/* Idle: its last request, with CPU and memory. */
	l = &want_procs[0];
	s = &slot_in[1];
	want_proc(l, s, "Idle", s->req_duration_us);
	want_plain(l, "request method", "GET");
	want_plain(l, "request URI", "/a");
	want_u(l, "content length", s->content_length);
	want_plain(l, "user", "-");
	want_plain(l, "script", "/srv/a.php");
	want_pct(l, "last request cpu", s->last_cpu);
	want_u(l, "last request memory", s->last_memory);

	/* Running for 4.5 s: the current request's time, no CPU yet. */
	l = &want_procs[1];
	s = &slot_in[2];
	want_proc(l, s, "Running", 4500000);
	want_plain(l, "request method", "POST");
	want_str(l, "request URI", URI_TEXT, URI_JSON, URI_XML);
	want_u(l, "content length", s->content_length);
	want_str(l, "user", USER_TEXT, USER_JSON, USER_XML);
	want_str(l, "script", SCRIPT_RAW, SCRIPT_JSON, SCRIPT_XML);
	want_pct(l, "last request cpu", 0);
	want_u(l, "last request memory", 0);

	/* Starting: nothing yet. */
	l = &want_procs[2];
	s = &slot_in[4];
	want_proc(l, s, "Starting", 0);
	want_plain(l, "request method", "-");
	want_plain(l, "request URI", "-");
	want_u(l, "content length", s->content_length);
	want_plain(l, "user", "-");
	want_plain(l, "script", "-");
	want_pct(l, "last request cpu", 0);
	want_u(l, "last request memory", 0);

	/* On a kept connection: the last request's time. */
	l = &want_procs[3];
	s = &slot_in[5];
	want_proc(l, s, "Idle (kept connection)", s->req_duration_us);
	want_plain(l, "request method", "GET");
	want_plain(l, "request URI", "/k");
	want_u(l, "content length", s->content_length);
	want_plain(l, "user", "alice");
	want_plain(l, "script", "/srv/k.php");
	want_pct(l, "last request cpu", 0);
	want_u(l, "last request memory", 0);
}

/* NAME as a JSON key (SEP ' ') or an XML tag (SEP '-'). */
static const char *
key(char *out, size_t len, const char *name, char sep)
{
	size_t	 i;

	for (i = 0; name[i] != '\0' && i < len - 1; i++)
		out[i] = name[i] == ' ' ? sep :
		    (char)tolower((unsigned char)name[i]);
	out[i] = '\0';
	return out;
}

static void
text_fields(struct buf *b, const struct want_list *l)
{
	char	 name[40];
	size_t	 i;

	for (i = 0; i < l->n; i++) {
		snprintf(name, sizeof(name), "%s:", l->f[i].name);
		buf_printf(b, "%-22s%s\n", name, l->f[i].text);
	}
}

static void
json_fields(struct buf *b, const struct want_list *l)
{
	char	 k[40];
	size_t	 i;

	for (i = 0; i < l->n; i++)
		buf_printf(b, "%s\"%s\":%s", i ? "," : "",
		    key(k, sizeof(k), l->f[i].name, ' '), l->f[i].json);
}

static void
xml_fields(struct buf *b, const struct want_list *l, const char *sep)
{
	char	 k[40];
	size_t	 i;

	for (i = 0; i < l->n; i++) {
		key(k, sizeof(k), l->f[i].name, '-');
		buf_printf(b, "<%s>%s</%s>%s", k, l->f[i].xml, k, sep);
	}
}

static char *
want_page(enum status_format fmt, bool full)
{
	struct buf	 b = { 0 };
	size_t		 i;

	build_wants();
	switch (fmt) {
	case STATUS_TEXT:
		text_fields(&b, &want_pool);
		for (i = 0; full && i < NLIVE; i++) {
			buf_printf(&b, "\n************************\n");
			text_fields(&b, &want_procs[i]);
		}
		break;
	case STATUS_JSON:
		buf_printf(&b, "{");
		json_fields(&b, &want_pool);
		if (full) {
			buf_printf(&b, ", \"processes\":[");
			for (i = 0; i < NLIVE; i++) {
				buf_printf(&b, "%s{", i ? "," : "");
				json_fields(&b, &want_procs[i]);
				buf_printf(&b, "}");
			}
			buf_printf(&b, "]");
		}
		buf_printf(&b, "}");
		break;
	case STATUS_XML:
		buf_printf(&b, "<?xml version=\"1.0\" ?>\n<status>\n");
		xml_fields(&b, &want_pool, "\n");
		if (full) {
			buf_printf(&b, "<processes>\n");
			for (i = 0; i < NLIVE; i++) {
				buf_printf(&b, "<process>");
				xml_fields(&b, &want_procs[i], "");
				buf_printf(&b, "</process>\n");
			}
			buf_printf(&b, "</processes>\n");
		}
		buf_printf(&b, "</status>\n");
		break;
	default:
		ck_abort_msg("no expected page for format %d", fmt);
	}
	ck_assert(!b.failed);
	return b.data;
}

/* The length of the line at S, without its newline. */
static int
line_len(const char *s)
{
	const char	*nl = strchr(s, '\n');

	return nl != NULL ? (int)(nl - s) : (int)strlen(s);
}

/* Equal, or the first line where they differ, for a readable failure. */
static void
assert_page_eq(const char *got, const char *want)
{
	size_t	 i, line = 1, bol = 0;

	for (i = 0; got[i] != '\0' && got[i] == want[i]; i++)
		if (got[i] == '\n') {
			line++;
			bol = i + 1;
		}
	ck_assert_msg(got[i] == want[i], "line %zu differs at byte %zu:\n"
	    " got: %.*s\nwant: %.*s", line, i - bol, line_len(got + bol),
	    got + bol, line_len(want + bol), want + bol);
}

/*
 * A strict RFC 8259 check: one value, UTF-8 throughout, no raw control
 * characters in strings, nothing after the value.
 */
static size_t
utf8_len(const unsigned char *p)
{
	size_t		 n, i;
	uint32_t	 cp;

	if (*p < 0x80)
		return 1;
	if (*p >= 0xc2 && *p <= 0xdf) {
		n = 2;
		cp = *p & 0x1f;
	} else if ((*p & 0xf0) == 0xe0) {
		n = 3;
		cp = *p & 0x0f;
	} else if (*p >= 0xf0 && *p <= 0xf4) {
		n = 4;
		cp = *p & 0x07;
	} else
		return 0;
	for (i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

static void
json_ws(const unsigned char **p)
{
	while (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r')
		(*p)++;
}

static bool
json_string(const unsigned char **p)
{
	const unsigned char	*s = *p;
	size_t			 n, i;

	if (*s++ != '"')
		return false;
	while (*s != '"') {
		if (*s < 0x20)
			return false;
		if (*s == '\\') {
			s++;
			if (*s == 'u') {
				for (i = 1; i <= 4; i++)
					if (!isxdigit(s[i]))
						return false;
				s += 5;
			} else if (*s != '\0' && strchr("\"\\/bfnrt",
			    *s) != NULL)
				s++;
			else
				return false;
			continue;
		}
		if ((n = utf8_len(s)) == 0)
			return false;
		s += n;
	}
	*p = s + 1;
	return true;
}

static bool
json_number(const unsigned char **p)
{
	const unsigned char	*s = *p;

	if (*s == '-')
		s++;
	if (*s == '0')
		s++;
	else if (*s >= '1' && *s <= '9')
		while (isdigit(*s))
			s++;
	else
		return false;
	if (*s == '.') {
		if (!isdigit(*++s))
			return false;
		while (isdigit(*s))
			s++;
	}
	if (*s == 'e' || *s == 'E') {
		if (*++s == '+' || *s == '-')
			s++;
		if (!isdigit(*s))
			return false;
		while (isdigit(*s))
			s++;
	}
	*p = s;
	return true;
}

static bool
json_value(const unsigned char **p)
{
	char	 close;

	json_ws(p);
	switch (**p) {
	case '"':
		if (!json_string(p))
			return false;
		break;
	case '{':
	case '[':
		close = **p == '{' ? '}' : ']';
		(*p)++;
		json_ws(p);
		if (**p == close) {
			(*p)++;
			break;
		}
		for (;;) {
			if (close == '}') {
				json_ws(p);
				if (!json_string(p))
					return false;
				json_ws(p);
				if (*(*p)++ != ':')
					return false;
			}
			if (!json_value(p))
				return false;
			if (**p == close) {
				(*p)++;
				break;
			}
			if (*(*p)++ != ',')
				return false;
		}
		break;
	case 't':
		if (strncmp((const char *)*p, "true", 4) != 0)
			return false;
		*p += 4;
		break;
	case 'f':
		if (strncmp((const char *)*p, "false", 5) != 0)
			return false;
		*p += 5;
		break;
	case 'n':
		if (strncmp((const char *)*p, "null", 4) != 0)
			return false;
		*p += 4;
		break;
	default:
		if (!json_number(p))
			return false;
	}
	json_ws(p);
	return true;
}

static bool
json_valid(const char *doc)
{
	const unsigned char	*p = (const unsigned char *)doc;

	return json_value(&p) && *p == '\0';
}

/* The validator itself, on a few documents either way. */
START_TEST(test_json_validator)
{
	ck_assert(json_valid("{\"a\":[1,-2.5e+3,\"\\u00e9\\n\",true,null],"
	    "\"b\":{}}"));
	ck_assert(json_valid(" [ ] "));
	ck_assert(!json_valid("{\"a\":1,}"));
	ck_assert(!json_valid("{\"a\" 1}"));
	ck_assert(!json_valid("[\"a\nb\"]"));
	ck_assert(!json_valid("[\"\\x41\"]"));
	ck_assert(!json_valid("[\"\xff\"]"));
	ck_assert(!json_valid("[\"\xc3\"]"));
	ck_assert(!json_valid("[01]"));
	ck_assert(!json_valid("[1.]"));
	ck_assert(!json_valid("[nan]"));
	ck_assert(!json_valid("{} {}"));
	ck_assert(!json_valid("\"open"));
}
END_TEST

START_TEST(test_collect)
{
	struct status		 st;
	struct scoreboard	*sb = fixture(&pc, &st);

	ck_assert_ptr_eq(st.pc, &pc);
	ck_assert_uint_eq(st.nprocs, NLIVE);
	ck_assert_int_eq(st.procs[0].pid, 101);
	ck_assert_int_eq(st.procs[1].pid, 102);
	ck_assert_int_eq(st.procs[2].pid, 104);
	ck_assert_int_eq(st.procs[3].pid, 105);
	ck_assert_str_eq(st.procs[1].uri, URI_RAW);
	ck_assert_int_eq(st.idle, 1);
	ck_assert_int_eq(st.active, 2);
	ck_assert_int_eq(st.by_state[SB_FREE], 0);
	ck_assert_int_eq(st.by_state[SB_STARTING], 1);
	ck_assert_int_eq(st.by_state[SB_IDLE], 1);
	ck_assert_int_eq(st.by_state[SB_READING], 0);
	ck_assert_int_eq(st.by_state[SB_RUNNING], 1);
	ck_assert_int_eq(st.by_state[SB_KEEPALIVE], 1);
	ck_assert_uint_eq(st.accepted_conn, pool_in.accepted_conn);
	ck_assert_uint_eq(st.connections, pool_in.connections);
	ck_assert_uint_eq(st.generation, pool_in.generation);
	ck_assert_uint_eq(st.listen_queue_len, pool_in.listen_queue_len);
	/* Two busy now, one seen before: raised, in the snapshot and the
	 * shared counter alike. */
	ck_assert_uint_eq(st.max_active, 2);
	ck_assert_uint_eq(sb->pool->max_active, 2);
	status_free(&st);
	ck_assert_ptr_null(st.procs);

	/* A higher one seen before stays. */
	sb->pool->max_active = 9;
	status_collect(sb, &pc, -1, &st);
	ck_assert_uint_eq(st.max_active, 9);
	ck_assert_uint_eq(sb->pool->max_active, 9);
	status_free(&st);
	sb_free(sb);
}
END_TEST

static const enum status_format exact_formats[] = {
	STATUS_TEXT, STATUS_JSON, STATUS_XML,
};

/* Text, JSON and XML byte for byte, without and with &full. */
START_TEST(test_page)
{
	enum status_format	 fmt = exact_formats[_i / 2];
	bool			 full = _i % 2;
	struct status		 st;
	struct scoreboard	*sb = fixture(&pc, &st);
	char			*got, *want;

	got = page(&st, fmt, full);
	want = want_page(fmt, full);
	assert_page_eq(got, want);
	if (fmt == STATUS_JSON)
		ck_assert_msg(json_valid(got), "invalid JSON: %s", got);
	free(got);
	free(want);
	status_free(&st);
	sb_free(sb);
}
END_TEST

/* PHP-FPM's column, spelled out once. */
START_TEST(test_text_column)
{
	struct status		 st;
	struct scoreboard	*sb = fixture(&pc, &st);
	char			*got = page(&st, STATUS_TEXT, true);
	const char		*head = "pool:                 www\n"
	    "process manager:      dynamic\n"
	    "start time:           14/Nov/2023:22:13:20 +0000\n";

	ck_assert(strncmp(got, head, strlen(head)) == 0);
	ck_assert_ptr_nonnull(strstr(got, "\nrequest URI:          "
	    URI_TEXT "\n"));
	free(got);
	status_free(&st);
	sb_free(sb);
}
END_TEST

START_TEST(test_html)
{
	struct status		 st;
	struct scoreboard	*sb = fixture(&pc, &st);
	char			*got, want[512];

	got = page(&st, STATUS_HTML, false);
	ck_assert(strncmp(got, "<!DOCTYPE html>\n", 16) == 0);
	ck_assert_ptr_nonnull(strstr(got, "<title>fpmd status: www</title>"));
	ck_assert_ptr_nonnull(strstr(got,
	    "<tr><th>pool</th><td>www</td></tr>\n"));
	ck_assert_ptr_nonnull(strstr(got,
	    "<tr><th>start time</th><td>14/Nov/2023:22:13:20 +0000</td></tr>"));
	ck_assert_ptr_nonnull(strstr(got, "up since 14/Nov/2023:22:13:20 "
	    "+0000;"));
	ck_assert_ptr_nonnull(strstr(got, "<div class=\"card\" id=\"active\">"
	    "<b>2</b><span>active of 5 max</span></div>"));
	snprintf(want, sizeof(want), "<div class=\"card\" id=\"accepted\">"
	    "<b>%llu</b>", (unsigned long long)pool_in.accepted_conn);
	ck_assert_ptr_nonnull(strstr(got, want));
	ck_assert_ptr_nonnull(strstr(got, "<a href=\"?html&amp;full\">"));
	ck_assert_ptr_null(strstr(got, "<h2>Processes</h2>"));
	ck_assert(strcmp(got + strlen(got) - 15, "</body></html>\n") == 0);
	free(got);

	got = page(&st, STATUS_HTML, true);
	ck_assert_ptr_nonnull(strstr(got, "<tr><th>pid</th><th>state</th>"));
	ck_assert_ptr_nonnull(strstr(got, "<th>request URI</th>"));
	ck_assert_ptr_nonnull(strstr(got, "<tr class=\"Idle\"><td class=\"n\">"
	    "101</td><td>Idle</td>"));
	ck_assert_ptr_nonnull(strstr(got, "<tr class=\"Running\"><td "
	    "class=\"n\">102</td><td>Running</td>"));
	ck_assert_ptr_nonnull(strstr(got, "<tr class=\"Other\"><td class=\"n\">"
	    "105</td><td>Idle (kept connection)</td>"));
	ck_assert_ptr_nonnull(strstr(got, "<td>POST</td><td>" URI_XML
	    "</td><td class=\"n\">123</td><td>" USER_XML "</td><td>"
	    SCRIPT_XML "</td><td class=\"n\">0.00</td><td class=\"n\">0</td>"
	    "</tr>\n"));
	/* Nothing of the request's own markup got through. */
	ck_assert_ptr_null(strstr(got, "<d>"));
	ck_assert_ptr_null(strstr(got, "\"b\""));
	ck_assert_ptr_null(strstr(got, "href=\"?html&amp;full\""));
	free(got);
	status_free(&st);
	sb_free(sb);
}
END_TEST

/* A pool name with every character a format must escape. */
static char	 nasty_name[] = "a\"b\\c\n<d>&'";

static const struct {
	enum status_format	 fmt;
	const char		*want;
} name_cases[] = {
	{ STATUS_TEXT, "pool:                 a\"b\\c?<d>&'\n" },
	{ STATUS_JSON, "{\"pool\":\"a\\\"b\\\\c\\u000a<d>&'\"," },
	{ STATUS_XML, "<pool>a&quot;b\\c&#xFFFD;&lt;d&gt;&amp;&#39;</pool>\n" },
	{ STATUS_HTML, "<title>fpmd status: a&quot;b\\c&#xFFFD;&lt;d&gt;"
	    "&amp;&#39;</title>" },
	{ STATUS_HTML, "<h1>Pool a&quot;b\\c&#xFFFD;&lt;d&gt;&amp;&#39;</h1>" },
	{ STATUS_OPENMETRICS, "fpmd_up{pool=\"a\\\"b\\\\c\\n<d>&'\"} 1\n" },
};

START_TEST(test_pool_name_escaped)
{
	struct pool_conf	 p = pc;
	struct status		 st;
	struct scoreboard	*sb;
	char			*got;

	p.name = nasty_name;
	sb = fixture(&p, &st);
	got = page(&st, name_cases[_i].fmt, true);
	ck_assert_msg(strstr(got, name_cases[_i].want) != NULL,
	    "no \"%s\" in:\n%s", name_cases[_i].want, got);
	if (name_cases[_i].fmt == STATUS_JSON)
		ck_assert(json_valid(got));
	free(got);
	status_free(&st);
	sb_free(sb);
}
END_TEST

static const struct {
	const char	*name;
	const char	*type;
	uint64_t	 value;
} om_families[] = {
	{ "up", "gauge", 1 },
	{ "start_time_seconds", "gauge", 1700000000 },
	{ "accepted_connections", "counter", 42 },
	{ "connections", "counter", 40 },
	{ "listen_queue", "gauge", 2 },
	{ "max_listen_queue", "gauge", 7 },
	{ "listen_queue_length", "gauge", 128 },
	{ "idle_processes", "gauge", 1 },
	{ "active_processes", "gauge", 2 },
	{ "total_processes", "gauge", 3 },
	{ "max_active_processes", "gauge", 2 },
	{ "max_children_reached", "counter", 3 },
	{ "slow_requests", "counter", 2 },
	{ "max_children", "gauge", 5 },
	{ "min_spare_servers", "gauge", 1 },
	{ "max_spare_servers", "gauge", 3 },
	{ "respawns", "counter", 4 },
	{ "terminate_timeout_kills", "counter", 1 },
	{ "retired_processes", "counter", 6 },
};

#define OM_POOL	"a\\\"b\\\\c\\n<d>&'"

static const struct {
	const char	*state;
	int		 n;
} om_states[] = {
	{ "Starting", 1 }, { "Idle", 1 }, { "Reading headers", 0 },
	{ "Running", 1 }, { "Finishing", 0 }, { "Ending", 0 },
	{ "Idle (kept connection)", 1 },
};

START_TEST(test_openmetrics)
{
	struct pool_conf	 p = pc;
	struct status		 st;
	struct scoreboard	*sb;
	char			*got, *at, *prev, want[256];
	const char		*line;
	size_t			 i, len;

	p.name = nasty_name;
	sb = fixture(&p, &st);
	got = page(&st, STATUS_OPENMETRICS, false);
	/* Each family: TYPE, HELP, then its one sample, in this order. */
	prev = got;
	for (i = 0; i < NELEM(om_families); i++) {
		snprintf(want, sizeof(want), "# TYPE fpmd_%s %s\n# HELP fpmd_%s ",
		    om_families[i].name, om_families[i].type,
		    om_families[i].name);
		at = strstr(prev, want);
		ck_assert_msg(at != NULL, "no \"%s\"", want);
		snprintf(want, sizeof(want), "\nfpmd_%s%s{pool=\"" OM_POOL
		    "\"} %llu\n", om_families[i].name,
		    strcmp(om_families[i].type, "counter") == 0 ? "_total" : "",
		    (unsigned long long)om_families[i].value);
		ck_assert_msg((prev = strstr(at, want)) != NULL, "no \"%s\"",
		    want);
	}
	ck_assert_ptr_nonnull(prev = strstr(prev, "# TYPE fpmd_processes gauge\n"
	    "# HELP fpmd_processes "));
	for (i = 0; i < NELEM(om_states); i++) {
		snprintf(want, sizeof(want), "\nfpmd_processes{pool=\"" OM_POOL
		    "\",state=\"%s\"} %d\n", om_states[i].state, om_states[i].n);
		ck_assert_msg((prev = strstr(prev, want)) != NULL, "no \"%s\"",
		    want);
	}
	/* The end, once; the escaped newline started no line of its own. */
	len = strlen(got);
	ck_assert(len > 6 && strcmp(got + len - 6, "# EOF\n") == 0);
	ck_assert_ptr_eq(strstr(got, "# EOF"), got + len - 6);
	for (line = got; *line != '\0'; line = strchr(line, '\n') + 1)
		ck_assert_msg(strncmp(line, "# TYPE fpmd_", 12) == 0 ||
		    strncmp(line, "# HELP fpmd_", 12) == 0 ||
		    strncmp(line, "fpmd_", 5) == 0 ||
		    strcmp(line, "# EOF\n") == 0, "stray line: %.60s", line);
	free(got);
	status_free(&st);
	sb_free(sb);
}
END_TEST

/*
 * Every byte a slot can hold, in the URI, script and user: JSON stays
 * valid, XML has no raw control character nor a stray '&' or '<', and
 * the text page gains no line.
 */
START_TEST(test_every_byte)
{
	struct status		 st;
	struct scoreboard	*sb;
	struct sb_slot		 s = slot_in[2];
	char			*got, *x, *end;
	size_t			 i, lines;

	for (i = 0; i < sizeof(s.uri) - 1; i++)
		s.uri[i] = (char)(i + 1);
	s.uri[i] = '\0';
	for (i = 0; i < sizeof(s.script) - 1; i++)
		s.script[i] = (char)(255 - i);
	s.script[i] = '\0';
	for (i = 0; i < sizeof(s.user) - 1; i++)
		s.user[i] = (char)(0x80 + i);
	s.user[i] = '\0';
	sb = fixture(&pc, &st);
	st.procs[1] = s;

	got = page(&st, STATUS_JSON, true);
	ck_assert_msg(json_valid(got), "invalid JSON: %s", got);
	free(got);

	got = page(&st, STATUS_XML, true);
	for (x = got; *x != '\0'; x++) {
		ck_assert_msg((unsigned char)*x >= 0x20 || *x == '\n' ||
		    *x == '\t', "byte %#x at %td", (unsigned int)(unsigned char)*x, x - got);
		if (*x == '&')
			ck_assert_msg(strncmp(x, "&lt;", 4) == 0 ||
			    strncmp(x, "&gt;", 4) == 0 ||
			    strncmp(x, "&amp;", 5) == 0 ||
			    strncmp(x, "&quot;", 6) == 0 ||
			    strncmp(x, "&#39;", 5) == 0 ||
			    strncmp(x, "&#xFFFD;", 8) == 0, "stray &: %.10s", x);
	}
	x = strstr(got, "<request-uri>");
	ck_assert_ptr_nonnull(x);
	end = strstr(x, "</request-uri>");
	ck_assert_ptr_nonnull(end);
	ck_assert_ptr_null(memchr(x + 13, '<', (size_t)(end - x - 13)));
	free(got);

	got = page(&st, STATUS_TEXT, true);
	for (lines = 0, x = got; *x != '\0'; x++)
		lines += *x == '\n';
	build_wants();
	ck_assert_uint_eq(lines, want_pool.n + NLIVE * (2 +
	    want_procs[0].n));
	free(got);
	status_free(&st);
	sb_free(sb);
}
END_TEST

/* A URI cut by the slot in the middle of a character. */
START_TEST(test_cut_character)
{
	struct status		 st;
	struct scoreboard	*sb = fixture(&pc, &st);
	struct sb_slot		*s = &st.procs[1];
	char			*got, want[1024];
	size_t			 i;

	for (i = 0; i + 2 < sizeof(s->uri); i += 2)
		memcpy(s->uri + i, "\xc3\xa9", 2);
	s->uri[i++] = '\xc3';
	s->uri[i] = '\0';
	ck_assert_uint_eq(i, sizeof(s->uri) - 1);

	got = page(&st, STATUS_JSON, true);
	ck_assert(json_valid(got));
	memcpy(want, s->uri, i - 1);
	strcpy(want + i - 1, "\\ufffd\",");
	ck_assert_ptr_nonnull(strstr(got, want));
	free(got);

	got = page(&st, STATUS_XML, true);
	memcpy(want, s->uri, i - 1);
	strcpy(want + i - 1, "&#xFFFD;</request-uri>");
	ck_assert_ptr_nonnull(strstr(got, want));
	free(got);
	status_free(&st);
	sb_free(sb);
}
END_TEST

/* The wall clock stepped back: a request cannot have run for < 0 s. */
START_TEST(test_duration_after_a_clock_step)
{
	struct status		 st;
	struct scoreboard	*sb = fixture(&pc, &st);
	char			*got;

	st.procs[1].req_started = NOW + 10;
	got = page(&st, STATUS_JSON, true);
	ck_assert_ptr_nonnull(strstr(got, "{\"pid\":102,"));
	ck_assert_ptr_nonnull(strstr(got, "\"request duration\":0,"
	    "\"request method\":\"POST\""));
	free(got);
	status_free(&st);
	sb_free(sb);
}
END_TEST

/*
 * "start since" when the wall clock stepped back past the pool's or a
 * worker's start (NTP, a VM resumed): 0, as request durations are, not a
 * negative double cast to uint64_t (18446744073709551606 for -10 s).
 */
START_TEST(test_start_since_after_a_clock_step)
{
	struct status		 st;
	struct scoreboard	*sb = fixture(&pc, &st);
	char			*got;

	st.start_time = NOW + 10;
	st.procs[0].started = NOW + 20;
	got = page(&st, STATUS_JSON, true);
	ck_assert_msg(strstr(got, "\"start since\":0,\"accepted conn\"") !=
	    NULL, "pool: %.60s", strstr(got, "\"start since\""));
	ck_assert_msg(strstr(got, "\"start since\":0,\"requests\":11,") !=
	    NULL, "worker: %.60s", strstr(got, "{\"pid\":101,"));
	free(got);
	status_free(&st);
	sb_free(sb);
}
END_TEST

static const struct {
	enum status_format	 fmt;
	const char		*ctype;
} ctypes[] = {
	{ STATUS_TEXT, "text/plain" },
	{ STATUS_JSON, "application/json" },
	{ STATUS_XML, "text/xml" },
	{ STATUS_HTML, "text/html; charset=utf-8" },
	{ STATUS_OPENMETRICS, "application/openmetrics-text; version=1.0.0; "
	    "charset=utf-8" },
};

#define NOCACHE	"Expires: Thu, 01 Jan 1970 00:00:00 GMT\r\n" \
	"Cache-Control: no-cache, no-store, must-revalidate, max-age=0\r\n"

/* The CGI head, then the body unless HEAD: for each format, both ways. */
START_TEST(test_render)
{
	enum status_format	 fmt = ctypes[_i / 2].fmt;
	bool			 head = _i % 2;
	struct status		 st;
	struct scoreboard	*sb = fixture(&pc, &st);
	struct buf		 out = { 0 }, want = { 0 };
	char			*body = page(&st, fmt, true);

	status_render(&st, fmt, true, head, &out);
	ck_assert(!out.failed);
	buf_printf(&want, "Status: 200 OK\r\nContent-Type: %s\r\n" NOCACHE
	    "Content-Length: %zu\r\n\r\n%s", ctypes[_i / 2].ctype,
	    strlen(body), head ? "" : body);
	ck_assert_uint_eq(out.len, want.len);
	ck_assert(memcmp(out.data, want.data, want.len) == 0);
	buf_free(&out);
	buf_free(&want);
	free(body);
	status_free(&st);
	sb_free(sb);
}
END_TEST

START_TEST(test_ping)
{
	struct pool_conf	 p = pc;
	struct buf		 out = { 0 };
	static char		 alive[] = "I am alive";

	status_ping(&p, false, &out);
	ck_assert_str_eq(out.data, "Status: 200 OK\r\nContent-Type: "
	    "text/plain\r\n" NOCACHE "Content-Length: 4\r\n\r\npong");
	buf_free(&out);
	status_ping(&p, true, &out);
	ck_assert_str_eq(out.data, "Status: 200 OK\r\nContent-Type: "
	    "text/plain\r\n" NOCACHE "Content-Length: 4\r\n\r\n");
	buf_free(&out);
	p.ping_response = alive;
	status_ping(&p, false, &out);
	ck_assert_str_eq(out.data, "Status: 200 OK\r\nContent-Type: "
	    "text/plain\r\n" NOCACHE "Content-Length: 10\r\n\r\nI am alive");
	buf_free(&out);
}
END_TEST

static char	 other_status[] = "/other";

static const struct {
	const char		*status_path;	/* NULL: none */
	const char		*ping_path;
	const char		*script;
	enum status_page	 page;
} match_cases[] = {
	{ "/status", "/ping", "/status", STATUS_PAGE_STATUS },
	{ "/status", "/ping", "/ping", STATUS_PAGE_PING },
	{ "/status", "/ping", NULL, STATUS_PAGE_NONE },
	{ "/status", "/ping", "", STATUS_PAGE_NONE },
	{ "/status", "/ping", "/index.php", STATUS_PAGE_NONE },
	{ "/status", "/ping", "/statusx", STATUS_PAGE_NONE },
	{ "/status", "/ping", "/status/", STATUS_PAGE_NONE },
	{ "/status", "/ping", "/Status", STATUS_PAGE_NONE },
	{ "/status", "/ping", "/sta", STATUS_PAGE_NONE },
	{ "/status", "/ping", "/pingx", STATUS_PAGE_NONE },
	{ NULL, "/ping", "/status", STATUS_PAGE_NONE },
	{ NULL, "/ping", "/ping", STATUS_PAGE_PING },
	{ "/status", NULL, "/ping", STATUS_PAGE_NONE },
	{ "/status", NULL, "/status", STATUS_PAGE_STATUS },
	{ NULL, NULL, "/status", STATUS_PAGE_NONE },
	/* One path for both: the ping. */
	{ "/x", "/x", "/x", STATUS_PAGE_PING },
};

static char *
dup_or_null(const char *s)
{
	char	*d;

	if (s == NULL)
		return NULL;
	d = strdup(s);
	ck_assert_ptr_nonnull(d);
	return d;
}

START_TEST(test_match)
{
	struct pool_conf	 p = pc;

	p.status_path = dup_or_null(match_cases[_i].status_path);
	p.ping_path = dup_or_null(match_cases[_i].ping_path);
	ck_assert_int_eq(status_match(&p, match_cases[_i].script),
	    match_cases[_i].page);
	/* The same against the path given, whatever the pool's is. */
	ck_assert_int_eq(status_match_path(&p, p.status_path,
	    match_cases[_i].script), match_cases[_i].page);
	free(p.status_path);
	free(p.ping_path);
}
END_TEST

/* pm.status_listen's own path beside (not instead of) pm.status_path. */
START_TEST(test_match_path)
{
	ck_assert_int_eq(status_match_path(&pc, other_status, "/other"),
	    STATUS_PAGE_STATUS);
	ck_assert_int_eq(status_match_path(&pc, other_status, "/status"),
	    STATUS_PAGE_NONE);
	ck_assert_int_eq(status_match_path(&pc, other_status, "/ping"),
	    STATUS_PAGE_PING);
	ck_assert_int_eq(status_match_path(&pc, NULL, "/status"),
	    STATUS_PAGE_NONE);
	ck_assert_int_eq(status_match_path(&pc, NULL, "/ping"),
	    STATUS_PAGE_PING);
}
END_TEST

static const struct {
	const char		*qs;
	enum status_format	 fmt;
	bool			 full;
} query_cases[] = {
	{ NULL, STATUS_TEXT, false },
	{ "", STATUS_TEXT, false },
	{ "json", STATUS_JSON, false },
	{ "xml", STATUS_XML, false },
	{ "html", STATUS_HTML, false },
	{ "openmetrics", STATUS_OPENMETRICS, false },
	{ "full", STATUS_TEXT, true },
	{ "json&full", STATUS_JSON, true },
	{ "full&json", STATUS_JSON, true },
	{ "xml&full", STATUS_XML, true },
	{ "html&full", STATUS_HTML, true },
	{ "openmetrics&full", STATUS_OPENMETRICS, true },
	{ "json=1&full=yes", STATUS_JSON, true },
	{ "json=", STATUS_JSON, false },
	{ "a=1&b=2&json&c", STATUS_JSON, false },
	{ "&&json&", STATUS_JSON, false },
	/* PHP-FPM's order: html, xml, json, openmetrics. */
	{ "json&html", STATUS_HTML, false },
	{ "json&xml", STATUS_XML, false },
	{ "openmetrics&json", STATUS_JSON, false },
	{ "xml&html&full", STATUS_HTML, true },
	/* Keys whole, not prefixes nor suffixes nor values. */
	{ "jsonx", STATUS_TEXT, false },
	{ "xjson", STATUS_TEXT, false },
	{ "jso", STATUS_TEXT, false },
	{ "htmlfull", STATUS_TEXT, false },
	{ "xmlish&fullness", STATUS_TEXT, false },
	{ "fullness", STATUS_TEXT, false },
	{ "fulls&json", STATUS_JSON, false },
	{ "ful", STATUS_TEXT, false },
	{ "format=json", STATUS_TEXT, false },
	{ "a=json&b=full", STATUS_TEXT, false },
	{ "fullness&full", STATUS_TEXT, true },
	{ "JSON&FULL", STATUS_TEXT, false },
	{ "unknown&other=1", STATUS_TEXT, false },
};

START_TEST(test_parse_query)
{
	enum status_format	 fmt = (enum status_format)-1;
	bool			 full = !query_cases[_i].full;

	status_parse_query(query_cases[_i].qs, &fmt, &full);
	ck_assert_msg(fmt == query_cases[_i].fmt, "\"%s\": format %d, want %d",
	    query_cases[_i].qs ? query_cases[_i].qs : "(null)", fmt,
	    query_cases[_i].fmt);
	ck_assert_msg(full == query_cases[_i].full, "\"%s\": full %d",
	    query_cases[_i].qs ? query_cases[_i].qs : "(null)", full);
}
END_TEST

static Suite *
status_suite(void)
{
	Suite	*s = suite_create("status");
	TCase	*tc;

	tc = tcase_create("page");
	tcase_add_test(tc, test_json_validator);
	tcase_add_test(tc, test_collect);
	tcase_add_loop_test(tc, test_page, 0, 2 * NELEM(exact_formats));
	tcase_add_test(tc, test_text_column);
	tcase_add_test(tc, test_html);
	tcase_add_loop_test(tc, test_pool_name_escaped, 0, NELEM(name_cases));
	tcase_add_test(tc, test_openmetrics);
	tcase_add_test(tc, test_every_byte);
	tcase_add_test(tc, test_cut_character);
	tcase_add_test(tc, test_duration_after_a_clock_step);
	tcase_add_test(tc, test_start_since_after_a_clock_step);
	tcase_add_loop_test(tc, test_render, 0, 2 * NELEM(ctypes));
	suite_add_tcase(s, tc);


	tc = tcase_create("request");
	tcase_add_test(tc, test_ping);
	tcase_add_loop_test(tc, test_match, 0, NELEM(match_cases));
	tcase_add_test(tc, test_match_path);
	tcase_add_loop_test(tc, test_parse_query, 0, NELEM(query_cases));
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	setenv("TZ", "UTC", 1);
	tzset();
	return unit_run(status_suite(), CK_FORK);
}
