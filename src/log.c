/*
 * log.c -- the error log: levels, PHP-FPM's line format, log_limit, and
 * where lines go: stderr, a file (reopened on SIGUSR1), syslog or the
 * journal, globally and, for a pool that has its own error_log, per pool.
 *
 * Only the master writes the log.  In a worker every line goes to the
 * master over the worker's log channel (wlog.c), so that the master's
 * reopen covers the workers too and a worker needs no log fd of its own.
 *
 * log_warn and log_error append strerror(errno); the x variants do not.
 * fatal() is for start-up and broken invariants only, never the request
 * path.  Taboos: no allocation while logging to a file or stderr (a
 * failing malloc must still be loggable; syslog(3) and the journal are
 * their libraries' business); opening a log may allocate.
 */
#include "config.h"

#include <sys/uio.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#include "fpmd.h"

/* A log file is created readable by the group (adm, say), not the world. */
#define LOG_FILE_MODE	0640
/* Where libsystemd sends; its absence means no journal to log to. */
#define LOG_JOURNAL_SOCKET	"/run/systemd/journal/socket"
/* Whatever the prefix, a split line carries at least this much text. */
#define LOG_PIECE_MIN	64

enum sink_kind {
	SINK_FD,		/* stderr or a file */
	SINK_SYSLOG,
	SINK_JOURNAL
};

struct sink {
	enum sink_kind	 kind;
	int		 fd;		/* SINK_FD */
	char		*target;	/* as configured; NULL: stderr */
	bool		 file;		/* target is a path to reopen */
};

/* A pool's own error log, shared by the generations of the pool. */
struct pool_sink {
	char		*name;
	int		 refs;
	struct sink	 sink;
};

static struct {
	struct sink	 global;
	struct pool_sink *pools;
	size_t		 npools;
	int		 level;
	size_t		 limit;
	int		 channel;	/* in a worker: to the master; else -1 */
	int		 facility;
	char		 ident[64];
	bool		 syslog_open;
} logger = {
	.global = { .kind = SINK_FD, .fd = STDERR_FILENO },
	.level = LOG_NOTICE,
	.limit = 8192,
	.channel = -1,
	.facility = LOG_DAEMON,
	.ident = FPMD_NAME,
};

static const struct {
	const char	*name;
	const char	*label;
	int		 level;
} log_levels[] = {
	{ "debug", "DEBUG", LOG_DEBUG },
	{ "notice", "NOTICE", LOG_NOTICE },
	{ "warning", "WARNING", LOG_WARNING },
	{ "error", "ERROR", LOG_ERR },
	{ "alert", "ALERT", LOG_ALERT },
};

static const struct {
	const char	*name;
	int		 facility;
} log_facilities[] = {
	{ "auth", LOG_AUTH }, { "authpriv", LOG_AUTHPRIV },
	{ "cron", LOG_CRON }, { "daemon", LOG_DAEMON }, { "ftp", LOG_FTP },
	{ "kern", LOG_KERN }, { "lpr", LOG_LPR }, { "mail", LOG_MAIL },
	{ "news", LOG_NEWS }, { "syslog", LOG_SYSLOG }, { "user", LOG_USER },
	{ "uucp", LOG_UUCP }, { "local0", LOG_LOCAL0 },
	{ "local1", LOG_LOCAL1 }, { "local2", LOG_LOCAL2 },
	{ "local3", LOG_LOCAL3 }, { "local4", LOG_LOCAL4 },
	{ "local5", LOG_LOCAL5 }, { "local6", LOG_LOCAL6 },
	{ "local7", LOG_LOCAL7 },
};

int
log_level_parse(const char *s, int *out)
{
	size_t	 i;

	for (i = 0; i < sizeof(log_levels) / sizeof(log_levels[0]); i++) {
		if (strcmp(s, log_levels[i].name) == 0) {
			*out = log_levels[i].level;
			return 0;
		}
	}
	return -1;
}

const char *
log_level_name(int level)
{
	size_t	 i;

	for (i = 0; i < sizeof(log_levels) / sizeof(log_levels[0]); i++)
		if (log_levels[i].level == level)
			return log_levels[i].name;
	return "notice";
}

static const char *
log_label(int level)
{
	size_t	 i;

	for (i = 0; i < sizeof(log_levels) / sizeof(log_levels[0]); i++)
		if (log_levels[i].level == level)
			return log_levels[i].label;
	return level > LOG_NOTICE ? "DEBUG" : "ALERT";
}

int
log_facility_parse(const char *s, int *out)
{
	size_t	 i;

	for (i = 0; i < sizeof(log_facilities) / sizeof(log_facilities[0]);
	    i++) {
		if (strcasecmp(s, log_facilities[i].name) == 0) {
			*out = log_facilities[i].facility;
			return 0;
		}
	}
	return -1;
}

static void
log_sink_close(struct sink *s)
{
	if (s->kind == SINK_FD && s->fd != STDERR_FILENO && s->fd != -1)
		close(s->fd);
	free(s->target);
	memset(s, 0, sizeof(*s));
	s->fd = -1;
}

/* Opens TARGET into S; S is left alone on failure (-1, errno). */
static int
log_sink_open(struct sink *s, const char *target)
{
	struct sink	 n = { .kind = SINK_FD, .fd = STDERR_FILENO };

	if (target != NULL && strcmp(target, "syslog") == 0) {
		n.kind = SINK_SYSLOG;
		if (!logger.syslog_open) {
			openlog(logger.ident, LOG_PID | LOG_NDELAY,
			    logger.facility);
			logger.syslog_open = true;
		}
	} else if (target != NULL && strcmp(target, "journal") == 0) {
		/* Refused at start, rather than lost line by line. */
		if (access(LOG_JOURNAL_SOCKET, W_OK) == -1)
			return -1;
		n.kind = SINK_JOURNAL;
	} else if (target != NULL && strcmp(target, "stderr") != 0) {
		n.fd = open(target, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
		    LOG_FILE_MODE);
		if (n.fd == -1)
			return -1;
		n.file = true;
	}
	if (target != NULL && (n.target = strdup(target)) == NULL) {
		if (n.file)
			close(n.fd);
		return -1;
	}
	log_sink_close(s);
	*s = n;
	return 0;
}

/*
 * Opens the path again (after logrotate moved it) and puts the new file
 * on the old fd number with dup3, so that nothing holding the number
 * needs telling.
 */
static int
log_sink_reopen(struct sink *s)
{
	int	 fd;

	if (!s->file)
		return 0;
	fd = open(s->target, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
	    LOG_FILE_MODE);
	if (fd == -1)
		return -1;
	if (dup3(fd, s->fd, O_CLOEXEC) == -1) {
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

int
log_open(const char *target)
{
	return log_sink_open(&logger.global, target);
}

int
log_reopen(void)
{
	size_t	 i;
	int	 rc = 0, saved = 0;

	if (log_sink_reopen(&logger.global) == -1) {
		rc = -1;
		saved = errno;
	}
	for (i = 0; i < logger.npools; i++)
		if (log_sink_reopen(&logger.pools[i].sink) == -1 && rc == 0) {
			rc = -1;
			saved = errno;
		}
	errno = saved;
	return rc;
}

static struct pool_sink *
log_pool_find(const char *pool, size_t len)
{
	size_t	 i;

	for (i = 0; i < logger.npools; i++)
		if (strncmp(logger.pools[i].name, pool, len) == 0 &&
		    logger.pools[i].name[len] == '\0')
			return &logger.pools[i];
	return NULL;
}

int
log_pool_open(const char *pool, const char *target)
{
	struct pool_sink	*ps, *np;

	if ((ps = log_pool_find(pool, strlen(pool))) != NULL) {
		/* A new generation: the same file stays, another replaces. */
		if (strcmp(ps->sink.target, target) != 0 &&
		    log_sink_open(&ps->sink, target) == -1)
			return -1;
		ps->refs++;
		return 0;
	}
	np = reallocarray(logger.pools, logger.npools + 1, sizeof(*np));
	if (np == NULL)
		return -1;
	logger.pools = np;
	ps = &np[logger.npools];
	memset(ps, 0, sizeof(*ps));
	ps->sink.fd = -1;
	if ((ps->name = strdup(pool)) == NULL)
		return -1;
	if (log_sink_open(&ps->sink, target) == -1) {
		free(ps->name);
		return -1;
	}
	ps->refs = 1;
	logger.npools++;
	return 0;
}

void
log_pool_close(const char *pool)
{
	struct pool_sink	*ps;

	if ((ps = log_pool_find(pool, strlen(pool))) == NULL ||
	    --ps->refs > 0)
		return;
	log_sink_close(&ps->sink);
	free(ps->name);
	*ps = logger.pools[--logger.npools];
}

void
log_set_limit(size_t limit)
{
	logger.limit = limit;
}

int
log_set_syslog(const char *facility, const char *ident)
{
	if (log_facility_parse(facility, &logger.facility) == -1)
		return -1;
	strlcpy_(logger.ident, ident, sizeof(logger.ident));
	/* openlog keeps a pointer to logger.ident: the new one is seen. */
	if (logger.syslog_open)
		openlog(logger.ident, LOG_PID | LOG_NDELAY, logger.facility);
	return 0;
}

void
log_set_level(int level)
{
	logger.level = level;
}

int
log_get_level(void)
{
	return logger.level;
}

int
log_fd(void)
{
	if (logger.channel != -1)
		return logger.channel;
	return logger.global.kind == SINK_FD ? logger.global.fd : -1;
}

void
log_set_channel(int channel)
{
	logger.channel = channel;
}

/* Writes the whole of IOV, resuming after a short write. */
static void
log_writev(int fd, struct iovec *iov, int n)
{
	ssize_t	 w;

	while (n > 0) {
		w = writev(fd, iov, n);
		if (w == -1 && errno == EINTR)
			continue;
		if (w == -1)
			return;
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
}

/* One line to a file or stderr: one writev, so appenders never mix. */
static void
log_line_fd(int fd, const struct log_rec *r, const char *head,
    const char *piece, size_t n)
{
	struct iovec	 iov[5];
	int		 i = 0;

	if (!r->bare) {
		iov[i].iov_base = (void *)(uintptr_t)head;
		iov[i++].iov_len = strlen(head);
		iov[i].iov_base = (void *)(uintptr_t)r->prefix;
		iov[i++].iov_len = strlen(r->prefix);
	}
	iov[i].iov_base = (void *)(uintptr_t)piece;
	iov[i++].iov_len = n;
	if (!r->bare) {
		iov[i].iov_base = (void *)(uintptr_t)r->suffix;
		iov[i++].iov_len = strlen(r->suffix);
	}
	iov[i].iov_base = (void *)(uintptr_t)"\n";
	iov[i++].iov_len = 1;
	log_writev(fd, iov, i);
}

/* One line to the journal, with the pool and the child as fields. */
static int
log_line_journal(const struct log_rec *r, const char *pre, const char *suf,
    const char *piece, size_t n)
{
	char	 pool[256];

	if (r->pool == NULL)
		return sd_journal_send("MESSAGE=%s%.*s%s", pre, (int)n, piece,
		    suf, "PRIORITY=%d", r->level, "SYSLOG_IDENTIFIER=%s",
		    logger.ident, NULL);
	snprintf(pool, sizeof(pool), "%.*s", (int)r->poollen, r->pool);
	if (r->pid <= 0)
		return sd_journal_send("MESSAGE=%s%.*s%s", pre, (int)n, piece,
		    suf, "PRIORITY=%d", r->level, "SYSLOG_IDENTIFIER=%s",
		    logger.ident, "POOL=%s", pool, NULL);
	return sd_journal_send("MESSAGE=%s%.*s%s", pre, (int)n, piece, suf,
	    "PRIORITY=%d", r->level, "SYSLOG_IDENTIFIER=%s", logger.ident,
	    "POOL=%s", pool, "CHILD_PID=%ld", (long)r->pid, NULL);
}

void
log_emit(const struct log_rec *r)
{
	const struct sink	*s = &logger.global;
	const struct pool_sink	*ps;
	const char		*pre, *suf;
	char			 head[64];
	struct log_rec		 plain;
	struct tm		 tm;
	time_t			 t;
	size_t			 off = 0, room, used, n;

	if (r->level > logger.level)
		return;
	if (r->pool != NULL && (ps = log_pool_find(r->pool, r->poollen)) !=
	    NULL)
		s = &ps->sink;
	pre = r->bare || r->prefix == NULL ? "" : r->prefix;
	suf = r->bare || r->suffix == NULL ? "" : r->suffix;
	plain = *r;
	plain.prefix = pre;
	plain.suffix = suf;
	used = strlen(pre) + strlen(suf);
	if (s->kind == SINK_FD && !r->bare) {
		t = time(NULL);
		localtime_r(&t, &tm);
		n = strftime(head, sizeof(head), "[%d-%b-%Y %H:%M:%S] ", &tm);
		snprintf(head + n, sizeof(head) - n, "%s: ",
		    log_label(r->level));
		used += strlen(head);
	} else
		head[0] = '\0';
	/* log_limit counts the whole line but its newline. */
	room = r->bare ? logger.limit : logger.limit > used + LOG_PIECE_MIN ?
	    logger.limit - used : LOG_PIECE_MIN;
	do {
		n = r->len - off < room ? r->len - off : room;
		switch (s->kind) {
		case SINK_FD:
			log_line_fd(s->fd, &plain, head, r->text + off, n);
			break;
		case SINK_SYSLOG:
			syslog(r->level, "%s%.*s%s", pre, (int)n,
			    r->text + off, suf);
			break;
		case SINK_JOURNAL:
			/* The journal went away: stderr, rather than nothing. */
			if (log_line_journal(r, pre, suf, r->text + off,
			    n) < 0)
				log_line_fd(STDERR_FILENO, &plain, "", r->text +
				    off, n);
			break;
		}
		off += n;
	} while (off < r->len);
}

/*
 * A master message names its pool as "[pool NAME]" and often its child as
 * "child PID": the pool routes it, and both become journal fields.
 */
static void
log_route(struct log_rec *r)
{
	const char	*end, *p;
	size_t		 max;
	long		 pid = 0;

	if (r->len < 8 || memcmp(r->text, "[pool ", 6) != 0)
		return;
	max = r->len - 6 < 256 ? r->len - 6 : 256;
	if ((end = memchr(r->text + 6, ']', max)) == NULL)
		return;
	r->pool = r->text + 6;
	r->poollen = (size_t)(end - r->pool);
	p = end + 1;
	if ((size_t)(p - r->text) + 7 > r->len || memcmp(p, " child ", 7) != 0)
		return;
	for (p += 7; p < r->text + r->len && *p >= '0' && *p <= '9' &&
	    pid < 1L << 30; p++)
		pid = pid * 10 + (*p - '0');
	r->pid = (pid_t)pid;
}

static void
log_write(int level, const char *errstr, const char *fmt, va_list ap)
{
	static char	 msg[64 * 1024];
	struct log_rec	 r;
	size_t		 mlen;
	int		 n;

	if (level > logger.level)
		return;
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	mlen = n < 0 ? 0 : (size_t)n < sizeof(msg) ? (size_t)n :
	    sizeof(msg) - 1;
	if (errstr != NULL && mlen < sizeof(msg) - 1) {
		n = snprintf(msg + mlen, sizeof(msg) - mlen, ": %s", errstr);
		if (n > 0)
			mlen = mlen + (size_t)n < sizeof(msg) ? mlen + (size_t)n :
			    sizeof(msg) - 1;
	}
	if (logger.channel != -1) {
		wlog_send(logger.channel, level, msg, mlen);
		return;
	}
	memset(&r, 0, sizeof(r));
	r.level = level;
	r.text = msg;
	r.len = mlen;
	log_route(&r);
	log_emit(&r);
}

void
log_vlog(int level, const char *fmt, va_list ap)
{
	log_write(level, NULL, fmt, ap);
}

#define LOG_FN(fn, level, witherr)				\
void								\
fn(const char *fmt, ...)					\
{								\
	va_list	 ap;						\
	int	 saved = errno;					\
								\
	va_start(ap, fmt);					\
	log_write(level, witherr ? strerror(saved) : NULL, fmt, ap); \
	va_end(ap);						\
	errno = saved;						\
}

LOG_FN(log_debug, LOG_DEBUG, false)
LOG_FN(log_notice, LOG_NOTICE, false)
LOG_FN(log_warn, LOG_WARNING, true)
LOG_FN(log_warnx, LOG_WARNING, false)
LOG_FN(log_error, LOG_ERR, true)
LOG_FN(log_errorx, LOG_ERR, false)

void
fatal(const char *fmt, ...)
{
	va_list	 ap;
	int	 saved = errno;

	va_start(ap, fmt);
	log_write(LOG_ALERT, strerror(saved), fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_write(LOG_ALERT, NULL, fmt, ap);
	va_end(ap);
	exit(1);
}
