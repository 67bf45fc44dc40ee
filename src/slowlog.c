/*
 * slowlog.c -- request_slowlog_timeout, without ptrace, seen from both
 * sides of fork.
 *
 * The master sees from the scoreboard, in its tick, that a request has run
 * past the timeout; it logs a warning, counts a slow request and sends the
 * worker SLOWLOG_SIGNAL, once per request.  The worker's handler writes
 * the entry -- the time, the pool, its pid, the script, the request, the
 * time elapsed and its own native stack from backtrace(3) -- to the
 * slowlog in one write, so entries of two workers never mix.  Unlike
 * PHP-FPM's ptrace tracer it needs no CAP_SYS_PTRACE (containers) and
 * never stops the worker.
 *
 * Taboos, in the handler: only async-signal-safe calls.  It formats by
 * hand (no stdio, no localtime: the UTC offset is taken at each request),
 * and backtrace() was called once at worker start, so that its first
 * call, which loads libgcc_s, is not made in the handler.
 */
#include "config.h"

#include <sys/mman.h>

#include <errno.h>
#include <execinfo.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "fpmd.h"

/* The room for an entry: SLOWLOG_DEPTH_MAX frames fit. */
#define SLOWLOG_BUF	16384

/* What the handler needs, set up before it can run. */
static struct {
	const char	*pool;
	struct sb_slot	*slot;
	int		 fd;		/* the pool's slowlog (a fixed number) */
	int		 frames;	/* memfd for backtrace_symbols_fd */
	int		 depth;		/* request_slowlog_trace_depth */
	long		 utc_offset;	/* seconds east of UTC, lately */
	char		 buf[SLOWLOG_BUF];
	size_t		 len;
} sw = { .fd = -1, .frames = -1 };

/* "METHOD URI" with "?QUERY" unless the URI has it already. */
static void
slowlog_request_text(const struct sb_slot *s, char *out, size_t len)
{
	bool	 query = s->query[0] != '\0' && strchr(s->uri, '?') == NULL;

	snprintf(out, len, "%s %s%s%s", s->method, s->uri, query ? "?" : "",
	    query ? s->query : "");
}

int64_t
slowlog_check(struct pool *p)
{
	const struct pool_conf	*pc = p->conf;
	int64_t			 tmo = pc->request_slowlog_timeout_ms;
	int64_t			 next = PM_TICK_MS, left;
	struct child		*c;
	struct sb_slot		 s;
	double			 now, ran;
	char			 req[600];

	if (tmo == 0 || p->slow_fd == -1)
		return PM_TICK_MS;
	now = now_real();
	TAILQ_FOREACH(c, &p->children, entry) {
		if (c->flags & (CHILD_TERM_SENT | CHILD_KILL_SENT |
		    CHILD_PENDING))
			continue;
		sb_slot_read(&p->sb->slots[c->slot], &s);
		/* One entry per request: a request is known by its start. */
		if (s.state != SB_RUNNING || s.req_started == 0 ||
		    s.req_started == c->slow_logged)
			continue;
		ran = now - s.req_started;
		left = tmo - (int64_t)(ran * 1000);
		if (left > 0) {
			if (left < next)
				next = left;
			continue;
		}
		slowlog_request_text(&s, req, sizeof(req));
		log_warnx("[pool %s] child %ld, script '%s' (request: \"%s\") "
		    "executing too slow (%.3f sec), logging", pc->name,
		    (long)c->pid, s.script, req, ran);
		c->slow_logged = s.req_started;
		p->sb->pool->slow_requests++;
		if (kill(c->pid, SLOWLOG_SIGNAL) == -1)
			log_warn("[pool %s] kill(%ld, SIG%s)", pc->name,
			    (long)c->pid, signal_name(SLOWLOG_SIGNAL));
	}
	return next;
}

/* Signal-safe formatting into sw.buf. */
static void
slowlog_put(const char *s, size_t n)
{
	if (n > sizeof(sw.buf) - sw.len)
		n = sizeof(sw.buf) - sw.len;
	memcpy(sw.buf + sw.len, s, n);
	sw.len += n;
}

static void
slowlog_puts(const char *s, size_t max)
{
	slowlog_put(s, strnlen(s, max));
}

static void
slowlog_putn(unsigned long long v, int width)
{
	char	 d[24];
	int	 i = (int)sizeof(d);

	do {
		d[--i] = (char)('0' + v % 10);
		v /= 10;
		width--;
	} while (v > 0 || width > 0);
	slowlog_put(d + i, sizeof(d) - (size_t)i);
}

/* "[26-Nov-2026 12:34:56]" for T (local time, by the offset). */
static void
slowlog_put_date(time_t t)
{
	static const char	 months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	long			 days, rem, era, yy;
	unsigned long		 doe, yoe, doy, mp, d, mo;

	t += sw.utc_offset;
	days = (long)(t / 86400);
	rem = (long)(t % 86400);
	if (rem < 0) {
		rem += 86400;
		days--;
	}
	/* Days to a civil date (Howard Hinnant's algorithm). */
	days += 719468;
	era = (days >= 0 ? days : days - 146096) / 146097;
	doe = (unsigned long)(days - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	yy = (long)yoe + era * 400;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	d = doy - (153 * mp + 2) / 5 + 1;
	mo = mp < 10 ? mp + 3 : mp - 9;
	if (mo <= 2)
		yy++;
	slowlog_put("[", 1);
	slowlog_putn(d, 2);
	slowlog_put("-", 1);
	slowlog_put(months + (mo - 1) * 3, 3);
	slowlog_put("-", 1);
	slowlog_putn((unsigned long long)yy, 4);
	slowlog_put(" ", 1);
	slowlog_putn((unsigned long long)(rem / 3600), 2);
	slowlog_put(":", 1);
	slowlog_putn((unsigned long long)(rem % 3600 / 60), 2);
	slowlog_put(":", 1);
	slowlog_putn((unsigned long long)(rem % 60), 2);
	slowlog_put("]", 1);
}

static void
slowlog_on_signal(int sig)
{
	const struct sb_slot	*s = sw.slot;
	void			*frames[SLOWLOG_DEPTH_MAX + 1];
	struct timespec		 ts;
	int			 saved = errno, depth;
	long long		 ms;
	ssize_t			 n;
	size_t			 off = 0;

	clock_gettime(CLOCK_REALTIME, &ts);
	sw.len = 0;
	slowlog_put("\n", 1);
	slowlog_put_date(ts.tv_sec);
	slowlog_put("  [pool ", 8);
	slowlog_puts(sw.pool, 256);
	slowlog_put("] pid ", 6);
	slowlog_putn((unsigned long long)getpid(), 1);
	slowlog_put("\nscript_filename = ", 19);
	slowlog_puts(s->script, sizeof(s->script));
	slowlog_put("\nrequest = ", 11);
	slowlog_puts(s->method, sizeof(s->method));
	slowlog_put(" ", 1);
	slowlog_puts(s->uri, sizeof(s->uri));
	if (s->query[0] != '\0' && memchr(s->uri, '?', strnlen(s->uri,
	    sizeof(s->uri))) == NULL) {
		slowlog_put("?", 1);
		slowlog_puts(s->query, sizeof(s->query));
	}
	ms = (long long)(((double)ts.tv_sec + (double)ts.tv_nsec / 1e9 -
	    s->req_started) * 1000);
	if (ms < 0)
		ms = 0;
	slowlog_put("\nelapsed = ", 11);
	slowlog_putn((unsigned long long)(ms / 1000), 1);
	slowlog_put(".", 1);
	slowlog_putn((unsigned long long)(ms % 1000), 3);
	slowlog_put(" sec\n", 5);
	/* The frames, through the memfd, so that the entry is one write. */
	depth = backtrace(frames, sw.depth + 1);
	if (sw.frames != -1 && depth > 1 && ftruncate(sw.frames, 0) == 0 &&
	    lseek(sw.frames, 0, SEEK_SET) == 0) {
		/* Frame 0 is this handler. */
		backtrace_symbols_fd(frames + 1, depth - 1, sw.frames);
		if (lseek(sw.frames, 0, SEEK_SET) == 0 &&
		    (n = read(sw.frames, sw.buf + sw.len,
		    sizeof(sw.buf) - sw.len)) > 0)
			sw.len += (size_t)n;
	}
	while (off < sw.len) {
		n = write(sw.fd, sw.buf + off, sw.len - off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	errno = saved;
}

void
slowlog_request_begin(void)
{
	struct tm	 tm;
	time_t		 t = time(NULL);

	if (localtime_r(&t, &tm) != NULL)
		sw.utc_offset = tm.tm_gmtoff;
}

void
slowlog_worker_init(struct pool *p, struct sb_slot *slot)
{
	struct sigaction	 sa;
	void			*frames[4];

	if (p->slow_fd == -1)
		return;
	sw.pool = p->conf->name;
	sw.slot = slot;
	sw.fd = p->slow_fd;
	sw.depth = p->conf->request_slowlog_trace_depth;
	(void)backtrace(frames, 4);
	sw.frames = memfd_create("fpmd-slowlog", MFD_CLOEXEC);
	slowlog_request_begin();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = slowlog_on_signal;
	sigemptyset(&sa.sa_mask);
	/* Restart what can be: a handler's reads should not see EINTR. */
	sa.sa_flags = SA_RESTART;
	sigaction(SLOWLOG_SIGNAL, &sa, NULL);
}
