/*
 * log.c -- the error log: levels, PHP-FPM's line format, one write(2) per
 * line, reopen on SIGUSR1.
 *
 * log_warn and log_error append strerror(errno); the x variants do not.
 * fatal() is for start-up and broken invariants only, never the request
 * path.  Taboos: no allocation (a failing malloc must still be loggable).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fpmd.h"

#define LOG_LINE_MAX	8192

static struct {
	int	 fd;
	char	 path[4096];	/* empty for stderr */
	int	 level;
	char	 prefix[96];	/* "[pool www] child 42: " inside a worker */
} logger = { .fd = STDERR_FILENO, .level = LOG_NOTICE };

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

static int
log_open_path(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

int
log_open(const char *target)
{
	int	 fd;

	if (target == NULL || strcmp(target, "stderr") == 0) {
		if (logger.fd != STDERR_FILENO)
			close(logger.fd);
		logger.fd = STDERR_FILENO;
		logger.path[0] = '\0';
		return 0;
	}
	if (strlen(target) >= sizeof(logger.path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((fd = log_open_path(target)) == -1)
		return -1;
	if (logger.fd != STDERR_FILENO)
		close(logger.fd);
	logger.fd = fd;
	strlcpy_(logger.path, target, sizeof(logger.path));
	return 0;
}

/*
 * Opens the path again (after logrotate moved it) and swaps the fd in
 * place with dup2, so that a worker's copy of the number stays valid.
 */
int
log_reopen(void)
{
	int	 fd;

	if (logger.path[0] == '\0')
		return 0;
	if ((fd = log_open_path(logger.path)) == -1)
		return -1;
	if (dup3(fd, logger.fd, O_CLOEXEC) == -1) {
		close(fd);
		return -1;
	}
	close(fd);
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
	return logger.fd;
}

void
log_set_worker(const char *pool, pid_t pid)
{
	snprintf(logger.prefix, sizeof(logger.prefix), "[pool %s] child %ld: ",
	    pool, (long)pid);
}

/*
 * Formats one message and writes it as one line, or, when it is longer
 * than LOG_LINE_MAX, as several lines each carrying the prefix, so that
 * nothing is lost.
 */
static void
log_write(int level, const char *errstr, const char *fmt, va_list ap)
{
	static char	 msg[64 * 1024];
	char		 line[LOG_LINE_MAX + 256];
	struct tm	 tm;
	time_t		 t;
	size_t		 mlen, plen, off = 0, chunk, room;
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
	t = time(NULL);
	localtime_r(&t, &tm);
	plen = strftime(line, 64, "[%d-%b-%Y %H:%M:%S] ", &tm);
	room = sizeof(line) - plen - LOG_LINE_MAX - 1;
	n = snprintf(line + plen, room, "%s: %s", log_label(level),
	    logger.prefix);
	if (n > 0)
		plen += (size_t)n < room ? (size_t)n : room - 1;
	do {
		chunk = mlen - off < LOG_LINE_MAX ? mlen - off : LOG_LINE_MAX;
		memcpy(line + plen, msg + off, chunk);
		line[plen + chunk] = '\n';
		off += chunk;
		/* One write a line: concurrent writers never interleave. */
		while (write(logger.fd, line, plen + chunk + 1) == -1 &&
		    errno == EINTR)
			;
	} while (off < mlen);
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
