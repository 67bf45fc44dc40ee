/*
 * util.c -- small pure helpers shared by every module: clocks, strict
 * number, duration and size parsing, signal names.
 *
 * Taboos: no logging, no global state.
 */
#include "config.h"

#include <sys/resource.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fpmd.h"

int64_t
now_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double
now_real(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
parse_long(const char *s, long min, long max, long *out)
{
	char	*end;
	long	 v;

	if (s == NULL || *s == '\0' || isspace((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* A number followed by at most one unit letter from UNITS. */
static int
parse_scaled(const char *s, const char *units, const int64_t *scale,
    int64_t defscale, int64_t *out)
{
	char		 num[32];
	size_t		 len;
	const char	*u;
	int64_t		 mul = defscale;
	long		 v;

	if (s == NULL || (len = strlen(s)) == 0 || len >= sizeof(num))
		return -1;
	memcpy(num, s, len + 1);
	if (!isdigit((unsigned char)num[len - 1])) {
		u = strchr(units, num[len - 1]);
		if (u == NULL || len == 1)
			return -1;
		mul = scale[u - units];
		num[len - 1] = '\0';
	}
	if (parse_long(num, 0, LONG_MAX, &v) == -1)
		return -1;
	if (v > INT64_MAX / mul)
		return -1;
	*out = (int64_t)v * mul;
	return 0;
}

int
parse_duration_ms(const char *s, int64_t *out)
{
	static const int64_t scale[] = { 1000, 60000, 3600000, 86400000 };

	return parse_scaled(s, "smhd", scale, 1000, out);
}

int
parse_size(const char *s, uint64_t *out)
{
	static const int64_t scale[] = { 1024, 1024, 1048576, 1048576,
	    1073741824, 1073741824 };
	int64_t	 v;

	if (parse_scaled(s, "kKmMgG", scale, 1, &v) == -1)
		return -1;
	*out = (uint64_t)v;
	return 0;
}

const char *
signal_name(int sig)
{
	const char	*s = sigabbrev_np(sig);

	return s != NULL ? s : "?";
}

size_t
strlcpy_(char *dst, const char *src, size_t size)
{
	size_t	 len = strlen(src);

	if (size > 0) {
		size_t	 n = len < size - 1 ? len : size - 1;

		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return len;
}

void
buf_add(struct buf *b, const void *p, size_t len)
{
	char	*nd;
	size_t	 cap;

	if (b->failed || len == 0)
		return;
	if (b->len + len + 1 > b->cap) {
		cap = b->cap ? b->cap : 4096;
		while (cap < b->len + len + 1)
			cap *= 2;
		if ((nd = realloc(b->data, cap)) == NULL) {
			b->failed = true;
			return;
		}
		b->data = nd;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, len);
	b->len += len;
	b->data[b->len] = '\0';
}

void
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list	 ap;
	char	 small[512], *big;
	int	 n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(small)) {
		buf_add(b, small, (size_t)n);
		return;
	}
	va_start(ap, fmt);
	n = vasprintf(&big, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = true;
		return;
	}
	buf_add(b, big, (size_t)n);
	free(big);
}

void
buf_free(struct buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

int
rlimit_apply(int resource, long value)
{
	struct rlimit	 rl;

	if (value == RLIMIT_UNSET)
		return 0;
	rl.rlim_cur = rl.rlim_max = value == RLIMIT_UNLIMITED ?
	    RLIM_INFINITY : (rlim_t)value;
	return setrlimit(resource, &rl);
}

int
fd_set_flags(int fd, bool nonblock)
{
	int	 fl;

	if (fcntl(fd, F_SETFD, FD_CLOEXEC) == -1)
		return -1;
	if (!nonblock)
		return 0;
	if ((fl = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1)
		return -1;
	return 0;
}
