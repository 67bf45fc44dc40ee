/*
 * status.c -- the status page and the ping, in PHP-FPM's formats (text,
 * JSON, XML, HTML) and OpenMetrics, rendered from a snapshot of the
 * scoreboard.
 *
 * status_collect() reads the shared memory (lock-free, see scoreboard.c);
 * status_render() is pure: a snapshot and a query in, CGI response bytes
 * out.  The same code answers in a worker (pm.status_path) and in the
 * master (pm.status_listen).
 *
 * PHP-FPM's field names, order, time formats and escaping are kept so
 * that its scrapers work unchanged; fpmd's extra fields come after them.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fpmd.h"

void
status_collect(const struct scoreboard *sb, const struct pool_conf *pc,
    int listen_fd, struct status *st)
{
	const struct sb_pool	*sp = sb->pool;
	struct sb_slot		 s;
	size_t			 i;
	int			 queue, backlog;

	memset(st, 0, sizeof(*st));
	st->pc = pc;
	st->start_time = sp->start_time;
	st->accepted_conn = __atomic_load_n(&sp->accepted_conn,
	    __ATOMIC_RELAXED);
	st->connections = __atomic_load_n(&sp->connections, __ATOMIC_RELAXED);
	st->max_children_reached = sp->max_children_reached;
	st->slow_requests = sp->slow_requests;
	st->max_active = __atomic_load_n(&sp->max_active, __ATOMIC_RELAXED);
	st->respawns = sp->respawns;
	st->kills_timeout = sp->kills_timeout;
	st->retired = sp->retired;
	st->generation = sp->generation;
	st->reload_time = sp->reload_time;
	st->listen_queue = sp->listen_queue;
	st->max_listen_queue = sp->max_listen_queue;
	st->listen_queue_len = sp->listen_queue_len;
	/* Measured now, not at the last tick: the page is a live view. */
	if (listen_fd != -1 && sock_listen_queue(listen_fd, pc->addr.family,
	    &queue, &backlog) == 0) {
		st->listen_queue = (uint32_t)queue;
		st->listen_queue_len = (uint32_t)backlog;
		if (st->listen_queue > st->max_listen_queue)
			st->max_listen_queue = st->listen_queue;
	}
	st->procs = calloc(sb->nslots, sizeof(*st->procs));
	for (i = 0; i < sb->nslots; i++) {
		sb_slot_read(&sb->slots[i], &s);
		if (s.state == SB_FREE || s.state >= SB_NSTATES || s.pid == 0)
			continue;
		st->by_state[s.state]++;
		if (s.state == SB_IDLE)
			st->idle++;
		else if (s.state != SB_STARTING)
			st->active++;
		if (st->procs != NULL)
			st->procs[st->nprocs++] = s;
	}
	/* After the slots: no request read there began after "now". */
	st->now = now_real();
	if ((uint64_t)st->active > st->max_active) {
		sb_max_active(sb->pool, (int32_t)st->active);
		st->max_active = (uint64_t)st->active;
	}
}

void
status_free(struct status *st)
{
	free(st->procs);
	st->procs = NULL;
}

static bool
status_has_key(const char *qs, const char *key)
{
	size_t		 klen = strlen(key);
	const char	*p = qs;

	while (p != NULL && *p != '\0') {
		if (strncmp(p, key, klen) == 0 &&
		    (p[klen] == '\0' || p[klen] == '&' || p[klen] == '='))
			return true;
		if ((p = strchr(p, '&')) != NULL)
			p++;
	}
	return false;
}

void
status_parse_query(const char *qs, enum status_format *fmt, bool *full)
{
	if (qs == NULL)
		qs = "";
	/* PHP-FPM's order: the first that matches wins. */
	if (status_has_key(qs, "html"))
		*fmt = STATUS_HTML;
	else if (status_has_key(qs, "xml"))
		*fmt = STATUS_XML;
	else if (status_has_key(qs, "json"))
		*fmt = STATUS_JSON;
	else if (status_has_key(qs, "openmetrics"))
		*fmt = STATUS_OPENMETRICS;
	else
		*fmt = STATUS_TEXT;
	*full = status_has_key(qs, "full");
}

static void
status_time(char *out, size_t len, double t)
{
	time_t		 tt = (time_t)t;
	struct tm	 tm;

	localtime_r(&tt, &tm);
	strftime(out, len, "%d/%b/%Y:%H:%M:%S %z", &tm);
}

/*
 * The length of the valid UTF-8 sequence at P (NUL-terminated), or 0.
 * Request URIs are bytes, and slots cut them at any byte: what is not
 * UTF-8 becomes U+FFFD, so that every page stays valid JSON, XML and HTML.
 */
static size_t
status_utf8_len(const unsigned char *p)
{
	size_t	 n, i;
	uint32_t cp;

	if (*p < 0x80)
		return 1;
	if ((*p & 0xe0) == 0xc0) {
		n = 2;
		cp = *p & 0x1f;
	} else if ((*p & 0xf0) == 0xe0) {
		n = 3;
		cp = *p & 0x0f;
	} else if ((*p & 0xf8) == 0xf0) {
		n = 4;
		cp = *p & 0x07;
	} else
		return 0;
	for (i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	/* No overlong forms, no surrogates, nothing past U+10FFFF. */
	if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) ||
	    (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* JSON string escaping (RFC 8259): quotes, backslash, controls. */
static void
status_json_str(struct buf *b, const char *s)
{
	const unsigned char	*p;
	size_t			 n;

	buf_add(b, "\"", 1);
	for (p = (const unsigned char *)s; *p != '\0'; p += n) {
		n = status_utf8_len(p);
		if (n == 0) {
			buf_add(b, "\\ufffd", 6);
			n = 1;
		} else if (*p == '"' || *p == '\\')
			buf_printf(b, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			buf_printf(b, "\\u%04x", *p);
		else
			buf_add(b, p, n);
	}
	buf_add(b, "\"", 1);
}

/*
 * The text format is read line by line: a request's bytes must not start
 * a line of their own (a URI with "\nactive processes: 999").  DST gets
 * SRC with control characters as '?'; "-" when SRC is empty.
 */
static const char *
status_text_clean(char *dst, size_t len, const char *src)
{
	size_t	 i;

	if (src[0] == '\0')
		return "-";
	for (i = 0; src[i] != '\0' && i < len - 1; i++)
		dst[i] = (unsigned char)src[i] < 0x20 || src[i] == 0x7f ? '?' :
		    src[i];
	dst[i] = '\0';
	return dst;
}

/* XML and HTML escaping of text and attribute values. */
static void
status_xml_str(struct buf *b, const char *s)
{
	const unsigned char	*p;
	size_t			 n;

	for (p = (const unsigned char *)s; *p != '\0'; p += n) {
		if ((n = status_utf8_len(p)) == 0) {
			buf_add(b, "&#xFFFD;", 8);
			n = 1;
			continue;
		}
		switch (*p) {
		case '<':
			buf_add(b, "&lt;", 4);
			break;
		case '>':
			buf_add(b, "&gt;", 4);
			break;
		case '&':
			buf_add(b, "&amp;", 5);
			break;
		case '"':
			buf_add(b, "&quot;", 6);
			break;
		case '\'':
			buf_add(b, "&#39;", 5);
			break;
		default:
			if (*p < 0x20 && *p != '\t')
				buf_printf(b, "&#xFFFD;");
			else
				buf_add(b, p, n);
		}
	}
}

/* OpenMetrics label values: backslash, quote and newline escaped. */
static void
status_om_label(struct buf *b, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\' || *s == '"')
			buf_printf(b, "\\%c", *s);
		else if (*s == '\n')
			buf_add(b, "\\n", 2);
		else
			buf_add(b, s, 1);
	}
}

/* The request duration in µs: the current request's, or the last one's. */
static uint64_t
status_duration(const struct status *st, const struct sb_slot *s)
{
	double	 d;

	if (s->state == SB_IDLE || s->state == SB_STARTING ||
	    s->state == SB_KEEPALIVE || s->req_started == 0)
		return s->req_duration_us;
	d = (st->now - s->req_started) * 1e6;
	return d > 0 ? (uint64_t)d : 0;
}

/* Seconds from THEN to NOW; 0 if the wall clock stepped back past THEN. */
static uint64_t
status_since(double now, double then)
{
	return now > then ? (uint64_t)(now - then) : 0;
}

/*
 * One field of a page, named as PHP-FPM names it in each format, with
 * its value: 's' a string (each format escapes it), 'u' a count, 'd' a
 * percentage.  The pool's fields and each worker's are lists of these,
 * so that every format renders the same data in the same order.
 */
struct status_field {
	const char	*name;		/* text (and JSON unless json is set) */
	const char	*json;
	const char	*xml;
	char		 type;
	const char	*s;
	uint64_t	 u;
	double		 d;
};

#define S(nm, x, v)	f[n++] = (struct status_field){ nm, NULL, x, 's', \
			    v, 0, 0 }
#define U(nm, x, v)	f[n++] = (struct status_field){ nm, NULL, x, 'u', \
			    NULL, (uint64_t)(v), 0 }

static size_t
status_pool_fields(const struct status *st, struct status_field *f,
    char *tbuf, size_t tlen, bool epoch)
{
	const struct pool_conf	*pc = st->pc;
	size_t			 n = 0;

	S("pool", "pool", pc->name);
	S("process manager", "process-manager", pm_style_name(pc->pm));
	if (epoch)
		U("start time", "start-time", st->start_time);
	else {
		status_time(tbuf, tlen, st->start_time);
		S("start time", "start-time", tbuf);
	}
	U("start since", "start-since", status_since(st->now, st->start_time));
	U("accepted conn", "accepted-conn", st->accepted_conn);
	U("listen queue", "listen-queue", st->listen_queue);
	U("max listen queue", "max-listen-queue", st->max_listen_queue);
	U("listen queue len", "listen-queue-len", st->listen_queue_len);
	U("idle processes", "idle-processes", st->idle);
	U("active processes", "active-processes", st->active);
	U("total processes", "total-processes", st->idle + st->active);
	U("max active processes", "max-active-processes", st->max_active);
	U("max children reached", "max-children-reached",
	    st->max_children_reached);
	U("slow requests", "slow-requests", st->slow_requests);
	/* fpmd's own, after PHP-FPM's: added, never renamed. */
	U("max children", "max-children", pc->max_children);
	U("min spare servers", "min-spare-servers", pc->min_spare_servers);
	U("max spare servers", "max-spare-servers", pc->max_spare_servers);
	U("keepalive processes", "keepalive-processes",
	    st->by_state[SB_KEEPALIVE]);
	U("starting processes", "starting-processes",
	    st->by_state[SB_STARTING]);
	U("respawns", "respawns", st->respawns);
	U("timeout kills", "timeout-kills", st->kills_timeout);
	U("retired processes", "retired-processes", st->retired);
	U("connections", "connections", st->connections);
	U("generation", "generation", st->generation);
	U("last reload", "last-reload", st->reload_time);
	return n;
}

/* One worker's fields, PHP-FPM's (&full).  CPU and memory only when Idle. */
static size_t
status_proc_fields(const struct status *st, const struct sb_slot *s,
    struct status_field *f, char *tbuf, size_t tlen, bool epoch)
{
	bool	 idle = s->state == SB_IDLE;
	size_t	 n = 0;

	U("pid", "pid", s->pid);
	S("state", "state", sb_state_name(s->state));
	if (epoch)
		U("start time", "start-time", s->started);
	else {
		status_time(tbuf, tlen, s->started);
		S("start time", "start-time", tbuf);
	}
	U("start since", "start-since", status_since(st->now, s->started));
	U("requests", "requests", s->requests);
	U("request duration", "request-duration", status_duration(st, s));
	S("request method", "request-method", s->method[0] ? s->method : "-");
	f[n++] = (struct status_field){ "request URI", "request uri",
	    "request-uri", 's', s->uri[0] ? s->uri : "-", 0, 0 };
	U("content length", "content-length", s->content_length);
	S("user", "user", s->user[0] ? s->user : "-");
	S("script", "script", s->script[0] ? s->script : "-");
	f[n++] = (struct status_field){ "last request cpu", NULL,
	    "last-request-cpu", 'd', NULL, 0, idle ? s->last_cpu : 0.0 };
	U("last request memory", "last-request-memory",
	    idle ? s->last_memory : 0);
	return n;
}

#undef S
#undef U

#define STATUS_MAXFIELDS	32

/* A field's value as a number, or written by ESCAPE for a string. */
static void
status_value(struct buf *b, const struct status_field *f,
    void (*escape)(struct buf *, const char *))
{
	if (f->type == 's')
		escape(b, f->s);
	else if (f->type == 'd')
		buf_printf(b, "%.2f", f->d);
	else
		buf_printf(b, "%llu", (unsigned long long)f->u);
}

static void
status_text_str(struct buf *b, const char *s)
{
	char	 clean[512];

	buf_printf(b, "%s", status_text_clean(clean, sizeof(clean), s));
}

/* "name:" padded to column 23, as PHP-FPM writes it, one line a field. */
static void
status_text_fields(struct buf *b, const struct status_field *f, size_t n)
{
	char	 name[32];
	size_t	 i;

	for (i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "%s:", f[i].name);
		buf_printf(b, "%-22s", name);
		status_value(b, &f[i], status_text_str);
		buf_add(b, "\n", 1);
	}
}

static void
status_json_fields(struct buf *b, const struct status_field *f, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++) {
		buf_printf(b, "%s\"%s\":", i ? "," : "",
		    f[i].json != NULL ? f[i].json : f[i].name);
		status_value(b, &f[i], status_json_str);
	}
}

static void
status_xml_fields(struct buf *b, const struct status_field *f, size_t n,
    const char *sep)
{
	size_t	 i;

	for (i = 0; i < n; i++) {
		buf_printf(b, "<%s>", f[i].xml);
		status_value(b, &f[i], status_xml_str);
		buf_printf(b, "</%s>%s", f[i].xml, sep);
	}
}

static void
status_text(const struct status *st, bool full, struct buf *b)
{
	struct status_field	 f[STATUS_MAXFIELDS];
	char			 tbuf[64];
	size_t			 i;

	status_text_fields(b, f, status_pool_fields(st, f, tbuf, sizeof(tbuf),
	    false));
	for (i = 0; full && i < st->nprocs; i++) {
		buf_printf(b, "\n************************\n");
		status_text_fields(b, f, status_proc_fields(st, &st->procs[i], f,
		    tbuf, sizeof(tbuf), false));
	}
}

static void
status_json(const struct status *st, bool full, struct buf *b)
{
	struct status_field	 f[STATUS_MAXFIELDS];
	char			 tbuf[64];
	size_t			 i;

	buf_add(b, "{", 1);
	status_json_fields(b, f, status_pool_fields(st, f, tbuf, sizeof(tbuf),
	    true));
	if (full) {
		buf_printf(b, ", \"processes\":[");
		for (i = 0; i < st->nprocs; i++) {
			buf_printf(b, "%s{", i ? "," : "");
			status_json_fields(b, f, status_proc_fields(st,
			    &st->procs[i], f, tbuf, sizeof(tbuf), true));
			buf_add(b, "}", 1);
		}
		buf_add(b, "]", 1);
	}
	buf_add(b, "}", 1);
}

static void
status_xml(const struct status *st, bool full, struct buf *b)
{
	struct status_field	 f[STATUS_MAXFIELDS];
	char			 tbuf[64];
	size_t			 i;

	buf_printf(b, "<?xml version=\"1.0\" ?>\n<status>\n");
	status_xml_fields(b, f, status_pool_fields(st, f, tbuf, sizeof(tbuf),
	    true), "\n");
	if (full) {
		buf_printf(b, "<processes>\n");
		for (i = 0; i < st->nprocs; i++) {
			buf_printf(b, "<process>");
			status_xml_fields(b, f, status_proc_fields(st,
			    &st->procs[i], f, tbuf, sizeof(tbuf), true), "");
			buf_printf(b, "</process>\n");
		}
		buf_printf(b, "</processes>\n");
	}
	buf_printf(b, "</status>\n");
}

static void
status_html(const struct status *st, bool full, struct buf *b)
{
	struct status_field	 f[STATUS_MAXFIELDS];
	char			 tbuf[64];
	size_t			 i, j, n;

	n = status_pool_fields(st, f, tbuf, sizeof(tbuf), false);
	buf_printf(b, "<!DOCTYPE html>\n<html lang=\"en\"><head>"
	    "<meta charset=\"utf-8\"><meta http-equiv=\"refresh\" "
	    "content=\"5\"><title>fpmd status: ");
	status_xml_str(b, st->pc->name);
	buf_printf(b, "</title><style>"
	    "body{font:14px/1.4 system-ui,sans-serif;margin:2em;"
	    "color:#222;background:#fafafa}"
	    "h1{font-size:1.4em;margin:0 0 .2em}"
	    ".sub{color:#666;margin-bottom:1.2em}"
	    ".cards{display:flex;flex-wrap:wrap;gap:.8em;margin-bottom:1.5em}"
	    ".card{background:#fff;border:1px solid #ddd;border-radius:6px;"
	    "padding:.6em 1em;min-width:9em}"
	    ".card b{display:block;font-size:1.6em}"
	    ".card span{color:#666;font-size:.85em}"
	    "table{border-collapse:collapse;background:#fff}"
	    "th,td{border:1px solid #ddd;padding:.3em .6em;text-align:left}"
	    "th{background:#eee}td.n{text-align:right}"
	    "tr.Idle td:nth-child(2){color:#080}"
	    "tr.Running td:nth-child(2){color:#a60}"
	    "</style></head><body>\n<h1>Pool ");
	status_xml_str(b, st->pc->name);
	buf_printf(b, "</h1>\n<div class=\"sub\">fpmd " PACKAGE_VERSION
	    ", process manager %s, up since %s; this page refreshes every 5 "
	    "seconds</div>\n<div class=\"cards\">\n",
	    pm_style_name(st->pc->pm), f[2].s);
	buf_printf(b, "<div class=\"card\" id=\"active\"><b>%d</b>"
	    "<span>active of %d max</span></div>\n", st->active,
	    st->pc->max_children);
	buf_printf(b, "<div class=\"card\" id=\"idle\"><b>%d</b>"
	    "<span>idle</span></div>\n", st->idle);
	buf_printf(b, "<div class=\"card\" id=\"accepted\"><b>%llu</b>"
	    "<span>accepted conn</span></div>\n",
	    (unsigned long long)st->accepted_conn);
	buf_printf(b, "<div class=\"card\" id=\"queue\"><b>%u</b>"
	    "<span>listen queue (max %u, len %u)</span></div>\n",
	    st->listen_queue, st->max_listen_queue, st->listen_queue_len);
	buf_printf(b, "<div class=\"card\" id=\"reached\"><b>%llu</b>"
	    "<span>max children reached</span></div>\n",
	    (unsigned long long)st->max_children_reached);
	buf_printf(b, "</div>\n<table id=\"pool\">\n");
	for (i = 0; i < n; i++) {
		buf_printf(b, "<tr><th>%s</th><td>", f[i].name);
		status_value(b, &f[i], status_xml_str);
		buf_printf(b, "</td></tr>\n");
	}
	buf_printf(b, "</table>\n");
	if (full) {
		buf_printf(b, "<h2>Processes</h2>\n<table id=\"processes\">");
		for (i = 0; i < st->nprocs; i++) {
			const struct sb_slot	*s = &st->procs[i];

			n = status_proc_fields(st, s, f, tbuf, sizeof(tbuf),
			    false);
			if (i == 0) {
				buf_printf(b, "<tr>");
				for (j = 0; j < n; j++)
					buf_printf(b, "<th>%s</th>", f[j].name);
				buf_printf(b, "</tr>\n");
			}
			/* The row's class colours the state; pid comes first. */
			buf_printf(b, "<tr class=\"%s\">", s->state == SB_IDLE ?
			    "Idle" : s->state == SB_RUNNING ? "Running" :
			    "Other");
			for (j = 0; j < n; j++) {
				buf_printf(b, "<td%s>", f[j].type == 's' ? "" :
				    " class=\"n\"");
				status_value(b, &f[j], status_xml_str);
				buf_printf(b, "</td>");
			}
			buf_printf(b, "</tr>\n");
		}
		buf_printf(b, "</table>\n");
	} else
		buf_printf(b, "<p><a href=\"?html&amp;full\">every "
		    "process</a></p>\n");
	buf_printf(b, "</body></html>\n");
}

/* One OpenMetrics family with the pool label. */
static void
status_om(struct buf *b, const char *pool, const char *name,
    const char *type, const char *help, uint64_t v)
{
	buf_printf(b, "# TYPE fpmd_%s %s\n# HELP fpmd_%s %s\n", name, type,
	    name, help);
	buf_printf(b, "fpmd_%s%s{pool=\"", name,
	    strcmp(type, "counter") == 0 ? "_total" : "");
	status_om_label(b, pool);
	buf_printf(b, "\"} %llu\n", (unsigned long long)v);
}

static void
status_openmetrics(const struct status *st, struct buf *b)
{
	const char	*pool = st->pc->name;
	int		 i;

	status_om(b, pool, "up", "gauge", "Whether the pool is up.", 1);
	status_om(b, pool, "start_time_seconds", "gauge",
	    "When the pool started (Unix time).", (uint64_t)st->start_time);
	status_om(b, pool, "accepted_connections", "counter",
	    "Requests the pool's workers began (PHP-FPM's accepted conn).",
	    st->accepted_conn);
	status_om(b, pool, "connections", "counter",
	    "Connections the pool's workers accepted (several requests each "
	    "when kept).", st->connections);
	status_om(b, pool, "listen_queue", "gauge",
	    "Connections waiting in the listen queue.", st->listen_queue);
	status_om(b, pool, "max_listen_queue", "gauge",
	    "The most connections seen waiting in the listen queue.",
	    st->max_listen_queue);
	status_om(b, pool, "listen_queue_length", "gauge",
	    "The size of the listen queue (backlog).", st->listen_queue_len);
	status_om(b, pool, "idle_processes", "gauge", "Idle workers.",
	    (uint64_t)st->idle);
	status_om(b, pool, "active_processes", "gauge", "Busy workers.",
	    (uint64_t)st->active);
	status_om(b, pool, "total_processes", "gauge",
	    "Idle and busy workers.", (uint64_t)(st->idle + st->active));
	status_om(b, pool, "max_active_processes", "gauge",
	    "The most busy workers seen at once.", st->max_active);
	status_om(b, pool, "max_children_reached", "counter",
	    "Times the pool hit pm.max_children.", st->max_children_reached);
	status_om(b, pool, "slow_requests", "counter",
	    "Requests that ran past request_slowlog_timeout.",
	    st->slow_requests);
	status_om(b, pool, "max_children", "gauge",
	    "pm.max_children: the most workers the pool may have.",
	    (uint64_t)st->pc->max_children);
	status_om(b, pool, "min_spare_servers", "gauge",
	    "pm.min_spare_servers.", (uint64_t)st->pc->min_spare_servers);
	status_om(b, pool, "max_spare_servers", "gauge",
	    "pm.max_spare_servers.", (uint64_t)st->pc->max_spare_servers);
	status_om(b, pool, "respawns", "counter",
	    "Workers replaced after dying unasked.", st->respawns);
	status_om(b, pool, "terminate_timeout_kills", "counter",
	    "Workers killed by request_terminate_timeout.", st->kills_timeout);
	status_om(b, pool, "retired_processes", "counter",
	    "Idle workers retired by the process manager.", st->retired);
	buf_printf(b, "# TYPE fpmd_processes gauge\n# HELP fpmd_processes "
	    "Workers by state.\n");
	for (i = SB_STARTING; i < SB_NSTATES; i++) {
		buf_printf(b, "fpmd_processes{pool=\"");
		status_om_label(b, pool);
		buf_printf(b, "\",state=\"%s\"} %d\n",
		    sb_state_name((enum sb_state)i), st->by_state[i]);
	}
	buf_printf(b, "# EOF\n");
}

static const char *const status_ctypes[] = {
	[STATUS_TEXT] = "text/plain",
	[STATUS_JSON] = "application/json",
	[STATUS_XML] = "text/xml",
	[STATUS_HTML] = "text/html; charset=utf-8",
	[STATUS_OPENMETRICS] = "application/openmetrics-text; version=1.0.0; "
	    "charset=utf-8",
};

#define STATUS_NOCACHE	"Expires: Thu, 01 Jan 1970 00:00:00 GMT\r\n" \
	"Cache-Control: no-cache, no-store, must-revalidate, max-age=0\r\n"

void
status_body(const struct status *st, enum status_format fmt, bool full,
    struct buf *body)
{
	switch (fmt) {
	case STATUS_TEXT:
		status_text(st, full, body);
		break;
	case STATUS_JSON:
		status_json(st, full, body);
		break;
	case STATUS_XML:
		status_xml(st, full, body);
		break;
	case STATUS_HTML:
		status_html(st, full, body);
		break;
	case STATUS_OPENMETRICS:
		status_openmetrics(st, body);
		break;
	}
}

void
status_render(const struct status *st, enum status_format fmt, bool full,
    bool head, struct buf *out)
{
	struct buf	 body = { 0 };

	status_body(st, fmt, full, &body);
	buf_printf(out, "Status: 200 OK\r\nContent-Type: %s\r\n" STATUS_NOCACHE
	    "Content-Length: %zu\r\n\r\n", status_ctypes[fmt], body.len);
	if (!head)
		buf_add(out, body.data, body.len);
	if (body.failed)
		out->failed = true;
	buf_free(&body);
}

void
status_ping(const struct pool_conf *pc, bool head, struct buf *out)
{
	buf_printf(out, "Status: 200 OK\r\nContent-Type: text/plain\r\n"
	    STATUS_NOCACHE "Content-Length: %zu\r\n\r\n",
	    strlen(pc->ping_response));
	if (!head)
		buf_printf(out, "%s", pc->ping_response);
}

enum status_page
status_match(const struct pool_conf *pc, const char *script_name)
{
	return status_match_path(pc, pc->status_path, script_name);
}

enum status_page
status_match_path(const struct pool_conf *pc, const char *status_path,
    const char *script_name)
{
	if (script_name == NULL)
		return STATUS_PAGE_NONE;
	if (pc->ping_path != NULL && strcmp(script_name, pc->ping_path) == 0)
		return STATUS_PAGE_PING;
	if (status_path != NULL && strcmp(script_name, status_path) == 0)
		return STATUS_PAGE_STATUS;
	return STATUS_PAGE_NONE;
}

void
status_respond(const struct scoreboard *sb, const struct pool_conf *pc,
    int listen_fd, enum status_page page, const char *method,
    const char *query, struct buf *out)
{
	struct status		 st;
	enum status_format	 fmt;
	bool			 full, head;

	head = method != NULL && strcmp(method, "HEAD") == 0;
	if (page == STATUS_PAGE_PING) {
		status_ping(pc, head, out);
		return;
	}
	status_parse_query(query, &fmt, &full);
	status_collect(sb, pc, listen_fd, &st);
	if (st.procs == NULL) {
		buf_printf(out, "Status: 500 Internal Server Error\r\n"
		    "Content-Type: text/plain\r\n\r\nInternal error. Please "
		    "review log file for errors.\n");
		return;
	}
	status_render(&st, fmt, full, head, out);
	status_free(&st);
}
