/*
 * access.c -- access.format: checked when the configuration is read, then
 * rendered into one access log line per request, with PHP-FPM's % codes
 * and their {} arguments; what a format needs the worker to collect, so
 * that a request pays only for the codes it shows; and the scan of the
 * response head a handler writes, for %s and %{Header}o.
 *
 * Pure: no I/O, no globals.  The worker gathers the facts of a request
 * into struct access_req (plog.c); times show in local time.  Values that
 * come from the request have their control characters written as \xHH,
 * so that no request can forge a line.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fpmd.h"

/* The default of %t and %T, as PHP-FPM's. */
#define ACCESS_TIME_FORMAT	"%d/%b/%Y:%H:%M:%S %z"

/* One step of the format: literal text, then a code (0 at the end). */
struct access_tok {
	const char	*lit;
	size_t		 litlen;
	char		 code;
	const char	*arg;		/* the {} argument, or NULL */
	size_t		 arglen;
};

/* The codes, and which take an argument in braces. */
static const char access_codes[] = "CdefilmMnopPqQrRstTu";
static const char access_braced[] = "CdeMotT";
static const char access_named[] = "eo";

static bool
access_arg_is(const struct access_tok *t, const char *word)
{
	return t->arglen == strlen(word) &&
	    strncasecmp(t->arg, word, t->arglen) == 0;
}

static bool
access_arg_in(const struct access_tok *t, const char *const *words)
{
	for (; *words != NULL; words++)
		if (access_arg_is(t, *words))
			return true;
	return false;
}

static const char *const access_cpu_args[] = { "user", "system", "total",
    NULL };
static const char *const access_sec_args[] = { "seconds", NULL };
static const char *const access_ms_args[] = { "milliseconds", "milli",
    "miliseconds", "mili", NULL };
static const char *const access_us_args[] = { "microseconds", "micro",
    NULL };
static const char *const access_kb_args[] = { "kilobytes", "kilo", NULL };
static const char *const access_mb_args[] = { "megabytes", "mega", NULL };
static const char *const access_b_args[] = { "bytes", NULL };

/*
 * Takes the next step of *FMT into T and advances *FMT.  Returns NULL, or
 * what is wrong with the format (in ERR).
 */
static const char *
access_next(const char **fmt, struct access_tok *t, char *err, size_t errlen)
{
	const char	*s = *fmt, *close;

	memset(t, 0, sizeof(*t));
	t->lit = s;
	while (*s != '\0' && !(s[0] == '%' && s[1] != '%'))
		s += s[0] == '%' ? 2 : 1;
	t->litlen = (size_t)(s - t->lit);
	if (*s == '\0') {
		*fmt = s;
		return NULL;
	}
	s++;
	if (*s == '{') {
		if ((close = strchr(s, '}')) == NULL) {
			snprintf(err, errlen, "missing closing brace after "
			    "\"%%%.20s\"", s);
			return err;
		}
		t->arg = s + 1;
		t->arglen = (size_t)(close - s - 1);
		s = close + 1;
	}
	if (*s == '\0') {
		snprintf(err, errlen, "a %% code is cut short at the end");
		return err;
	}
	t->code = *s++;
	*fmt = s;
	if (strchr(access_codes, t->code) == NULL) {
		snprintf(err, errlen, "unknown code %%%c", t->code);
		return err;
	}
	if (t->arg != NULL && strchr(access_braced, t->code) == NULL) {
		snprintf(err, errlen, "%%%c takes no {argument}", t->code);
		return err;
	}
	if (strchr(access_named, t->code) != NULL &&
	    (t->arg == NULL || t->arglen == 0)) {
		snprintf(err, errlen, "%%%c needs a name: %%{NAME}%c",
		    t->code, t->code);
		return err;
	}
	if (t->arg == NULL)
		return NULL;
	switch (t->code) {
	case 'C':
		if (!access_arg_in(t, access_cpu_args)) {
			snprintf(err, errlen, "%%{%.*s}C: expected user, system "
			    "or total", (int)t->arglen, t->arg);
			return err;
		}
		break;
	case 'd':
		if (!access_arg_in(t, access_sec_args) &&
		    !access_arg_in(t, access_ms_args) &&
		    !access_arg_in(t, access_us_args)) {
			snprintf(err, errlen, "%%{%.*s}d: expected seconds, "
			    "milliseconds or microseconds", (int)t->arglen,
			    t->arg);
			return err;
		}
		break;
	case 'M':
		if (!access_arg_in(t, access_b_args) &&
		    !access_arg_in(t, access_kb_args) &&
		    !access_arg_in(t, access_mb_args)) {
			snprintf(err, errlen, "%%{%.*s}M: expected bytes, "
			    "kilobytes or megabytes", (int)t->arglen, t->arg);
			return err;
		}
		break;
	default:
		break;
	}
	return NULL;
}

const char *
access_format_check(const char *fmt, char *err, size_t errlen)
{
	struct access_tok	 t;

	do {
		if (access_next(&fmt, &t, err, errlen) != NULL)
			return err;
	} while (t.code != '\0');
	return NULL;
}

/*
 * Most codes show what the worker holds anyway (the params, the times,
 * the pool's name); for these four it must go and fetch something.
 */
unsigned int
access_needs(const char *fmt)
{
	struct access_tok	 t;
	unsigned int		 needs = 0;
	char			 err[128];

	for (;;) {
		if (access_next(&fmt, &t, err, sizeof(err)) != NULL ||
		    t.code == '\0')
			return needs;
		switch (t.code) {
		case 'C':
			needs |= ACCESS_NEED_CPU;
			break;
		case 'M':
			needs |= ACCESS_NEED_MEMORY;
			break;
		case 'R':
			needs |= ACCESS_NEED_PEER;
			break;
		case 's':
		case 'o':
			needs |= ACCESS_NEED_HEAD;
			break;
		default:
			break;
		}
	}
}

/* Literal text of the format: "%%" is one "%". */
static void
access_put_lit(struct buf *out, const char *s, size_t n)
{
	const char	*end = s + n, *pct;

	while (s < end && (pct = memchr(s, '%', (size_t)(end - s))) != NULL) {
		buf_add(out, s, (size_t)(pct - s) + 1);
		s = pct + 2;
	}
	if (s < end)
		buf_add(out, s, (size_t)(end - s));
}

/* A value from the request: control characters become \xHH. */
static void
access_put(struct buf *out, const char *s, size_t n)
{
	size_t		 i, from = 0;
	unsigned char	 ch;

	for (i = 0; i < n; i++) {
		ch = (unsigned char)s[i];
		if (ch >= 0x20 && ch != 0x7f)
			continue;
		buf_add(out, s + from, i - from);
		buf_printf(out, "\\x%02x", ch);
		from = i + 1;
	}
	buf_add(out, s + from, n - from);
}

static void
access_put_str(struct buf *out, const char *s, const char *none)
{
	if (s == NULL || *s == '\0')
		s = none;
	access_put(out, s, strlen(s));
}

static const char *
access_param(const struct access_req *r, const char *name)
{
	return r->param(r->ctx, name);
}

static void
access_put_time(struct buf *out, const struct access_tok *t, double when)
{
	char		 fmt[256], text[1024];
	struct tm	 tm;
	time_t		 secs = (time_t)when;
	size_t		 n;

	if (t->arg == NULL || t->arglen == 0 || t->arglen >= sizeof(fmt))
		strlcpy_(fmt, ACCESS_TIME_FORMAT, sizeof(fmt));
	else
		snprintf(fmt, sizeof(fmt), "%.*s", (int)t->arglen, t->arg);
	localtime_r(&secs, &tm);
	/* The format is the operator's, from access.format, by design. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	n = strftime(text, sizeof(text), fmt, &tm);
#pragma GCC diagnostic pop
	buf_add(out, text, n);
}

static void
access_put_code(struct buf *out, const struct access_tok *t,
    const struct access_req *r)
{
	double		 dur = r->end > r->start ? r->end - r->start : 0, cpu;
	char		 name[256];
	const char	*v, *q;
	size_t		 n;

	switch (t->code) {
	case 'C':
		cpu = r->cpu_user + r->cpu_system;
		if (t->arg != NULL && access_arg_is(t, "user"))
			cpu = r->cpu_user;
		else if (t->arg != NULL && access_arg_is(t, "system"))
			cpu = r->cpu_system;
		buf_printf(out, "%.2f", dur > 0 ? cpu / dur * 100 : 0.0);
		break;
	case 'd':
		if (t->arg != NULL && access_arg_in(t, access_ms_args))
			buf_printf(out, "%.3f", dur * 1000);
		else if (t->arg != NULL && access_arg_in(t, access_us_args))
			buf_printf(out, "%llu",
			    (unsigned long long)(dur * 1e6 + 0.5));
		else
			buf_printf(out, "%.3f", dur);
		break;
	case 'e':
		v = NULL;
		if (t->arglen < sizeof(name)) {
			snprintf(name, sizeof(name), "%.*s", (int)t->arglen,
			    t->arg);
			v = access_param(r, name);
		}
		access_put_str(out, v, "-");
		break;
	case 'f':
		access_put_str(out, access_param(r, "SCRIPT_FILENAME"), "-");
		break;
	case 'l':
		v = access_param(r, "CONTENT_LENGTH");
		buf_printf(out, "%llu", v != NULL && *v >= '0' && *v <= '9' ?
		    strtoull(v, NULL, 10) : 0ULL);
		break;
	case 'm':
		access_put_str(out, access_param(r, "REQUEST_METHOD"), "-");
		break;
	case 'M':
		if (t->arg != NULL && access_arg_in(t, access_kb_args))
			buf_printf(out, "%llu",
			    (unsigned long long)(r->memory / 1024));
		else if (t->arg != NULL && access_arg_in(t, access_mb_args))
			buf_printf(out, "%llu",
			    (unsigned long long)(r->memory / 1024 / 1024));
		else
			buf_printf(out, "%llu", (unsigned long long)r->memory);
		break;
	case 'n':
		access_put_str(out, r->pool, "-");
		break;
	case 'o':
		snprintf(name, sizeof(name), "%.*s", (int)t->arglen, t->arg);
		v = access_head_get(r->head, name, &n);
		if (v != NULL && n > 0)
			access_put(out, v, n);
		else
			buf_add(out, "-", 1);
		break;
	case 'p':
		buf_printf(out, "%ld", (long)r->pid);
		break;
	case 'P':
		buf_printf(out, "%ld", (long)r->master_pid);
		break;
	case 'q':
		access_put_str(out, access_param(r, "QUERY_STRING"), "");
		break;
	case 'Q':
		v = access_param(r, "QUERY_STRING");
		if (v != NULL && *v != '\0')
			buf_add(out, "?", 1);
		break;
	case 'r':
		/* The URI the client asked for, not the script it became. */
		if ((v = access_param(r, "REQUEST_URI")) != NULL) {
			q = strchr(v, '?');
			access_put(out, v, q != NULL ? (size_t)(q - v) :
			    strlen(v));
		} else
			access_put_str(out, access_param(r, "SCRIPT_NAME"), "");
		break;
	case 'R':
		access_put_str(out, r->peer, "-");
		break;
	case 's':
		buf_printf(out, "%d", access_head_status(r->head));
		break;
	case 't':
		access_put_time(out, t, r->start);
		break;
	case 'T':
		access_put_time(out, t, r->end);
		break;
	case 'u':
		access_put_str(out, access_param(r, "REMOTE_USER"), "");
		break;
	default:
		break;
	}
}

void
access_format(const char *fmt, const struct access_req *r, struct buf *out)
{
	struct access_tok	 t;
	char			 err[128];

	for (;;) {
		if (access_next(&fmt, &t, err, sizeof(err)) != NULL)
			break;
		access_put_lit(out, t.lit, t.litlen);
		if (t.code == '\0')
			break;
		access_put_code(out, &t, r);
	}
	buf_add(out, "\n", 1);
}

void
access_head_reset(struct access_head *h)
{
	h->len = 0;
	h->done = false;
}

/*
 * Keeps the response's first bytes until the blank line that ends its
 * head; a head too long for the buffer counts as none.
 */
void
access_head_feed(struct access_head *h, const void *data, size_t len)
{
	size_t	 n, i, from;

	if (h->done)
		return;
	n = len < sizeof(h->buf) - h->len ? len : sizeof(h->buf) - h->len;
	/* The blank line may straddle two writes: look back 3 bytes. */
	from = h->len > 3 ? h->len - 3 : 0;
	memcpy(h->buf + h->len, data, n);
	h->len += n;
	for (i = from; i < h->len; i++) {
		if (h->buf[i] != '\n')
			continue;
		if (i + 1 < h->len && h->buf[i + 1] == '\n') {
			h->len = i + 1;
			h->done = true;
			return;
		}
		if (i + 2 < h->len && h->buf[i + 1] == '\r' &&
		    h->buf[i + 2] == '\n') {
			h->len = i + 1;
			h->done = true;
			return;
		}
	}
	if (h->len == sizeof(h->buf)) {
		h->len = 0;
		h->done = true;
	}
}

const char *
access_head_get(const struct access_head *h, const char *name, size_t *len)
{
	const char	*line = h->buf, *end = h->buf + h->len, *eol, *v;
	size_t		 nlen = strlen(name);

	if (!h->done)
		return NULL;
	for (; line < end; line = eol + 1) {
		if ((eol = memchr(line, '\n', (size_t)(end - line))) == NULL)
			eol = end;
		if ((size_t)(eol - line) <= nlen || line[nlen] != ':' ||
		    strncasecmp(line, name, nlen) != 0)
			continue;
		v = line + nlen + 1;
		while (v < eol && (*v == ' ' || *v == '\t'))
			v++;
		while (eol > v && (eol[-1] == '\r' || eol[-1] == ' ' ||
		    eol[-1] == '\t'))
			eol--;
		*len = (size_t)(eol - v);
		return v;
	}
	return NULL;
}

int
access_head_status(const struct access_head *h)
{
	const char	*v;
	size_t		 n;

	if ((v = access_head_get(h, "Status", &n)) != NULL && n >= 3 &&
	    v[0] >= '1' && v[0] <= '9' && v[1] >= '0' && v[1] <= '9' &&
	    v[2] >= '0' && v[2] <= '9' && (n == 3 || v[3] == ' '))
		return (v[0] - '0') * 100 + (v[1] - '0') * 10 + (v[2] - '0');
	/* CGI/1.1: a Location without a Status is a redirect. */
	if (access_head_get(h, "Location", &n) != NULL)
		return 302;
	return 200;
}

/*
 * As PHP-FPM's access.suppress_path: health checks and the like stay out
 * of the log while they succeed; anything else about them is logged.
 */
bool
access_suppressed(char *const *paths, size_t n, const struct access_req *a)
{
	const char	*method, *qs, *len, *uri, *q;
	size_t		 plen, i;
	int		 status;

	if (n == 0)
		return false;
	method = a->param(a->ctx, "REQUEST_METHOD");
	if (method == NULL || (strcmp(method, "GET") != 0 &&
	    strcmp(method, "HEAD") != 0))
		return false;
	if ((qs = a->param(a->ctx, "QUERY_STRING")) != NULL && *qs != '\0')
		return false;
	if ((len = a->param(a->ctx, "CONTENT_LENGTH")) != NULL &&
	    *len != '\0' && strspn(len, "0") != strlen(len))
		return false;
	status = access_head_status(a->head);
	if (status < 200 || status > 299)
		return false;
	if ((uri = a->param(a->ctx, "REQUEST_URI")) == NULL &&
	    (uri = a->param(a->ctx, "SCRIPT_NAME")) == NULL)
		return false;
	/* A bare '?' carries no query string, but it is not the path. */
	plen = (q = strchr(uri, '?')) != NULL ? (size_t)(q - uri) : strlen(uri);
	for (i = 0; i < n; i++)
		if (strlen(paths[i]) == plen && memcmp(paths[i], uri, plen) == 0)
			return true;
	return false;
}
