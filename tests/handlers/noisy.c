/*
 * noisy.c -- a test handler plugin that writes to its worker's stdout and
 * stderr, for the logging tests.  Built against <fpmd/handler.h> alone and
 * loaded by absolute path.
 *
 * Query string (all optional):
 *   fd=1|2      where the lines go (default 2, stderr)
 *   lines=K     how many lines (default 1)
 *   len=N       each line: TAG then N filler bytes "0123...xyz0123..."
 *   tag=STR     what each line starts with (default "noisy")
 *   nonl=1      no newline after the last line
 *   ms=N        sleep N milliseconds first (holds the worker busy)
 *   log=1       also log "noisy TAG" through the host's log, at warning
 *   status=NNN  the response status (default 200), with an X-Noisy header
 * The body says which worker answered: "pid N".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <fpmd/handler.h>

static const char	 filler[] = "0123456789abcdefghijklmnopqrstuvwxyz";

/* The value of KEY in the query string QS, copied into OUT; 0 or -1. */
static int
query_get(const char *qs, const char *key, char *out, size_t len)
{
	size_t		 klen = strlen(key), n;
	const char	*p = qs, *end;

	while (p != NULL && *p != '\0') {
		if (strncmp(p, key, klen) == 0 && p[klen] == '=') {
			p += klen + 1;
			end = strchr(p, '&');
			n = end != NULL ? (size_t)(end - p) : strlen(p);
			if (n >= len)
				n = len - 1;
			memcpy(out, p, n);
			out[n] = '\0';
			return 0;
		}
		if ((p = strchr(p, '&')) != NULL)
			p++;
	}
	return -1;
}

static long
query_long(const char *qs, const char *key, long def)
{
	char	 v[32];

	return query_get(qs, key, v, sizeof(v)) == 0 ? strtol(v, NULL, 10) :
	    def;
}

static void
write_all(int fd, const char *p, size_t len)
{
	ssize_t	 n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		p += n;
		len -= (size_t)n;
	}
}

static int
noisy_handle(const struct fpmd_host *host, struct fpmd_request *req,
    void *data)
{
	const char	*qs = host->param(req, "QUERY_STRING");
	char		 tag[128], buf[4096], *line;
	long		 fd, lines, len, ms, i, j, status;
	size_t		 tlen, n;
	struct timespec	 ts;

	(void)data;
	if (qs == NULL)
		qs = "";
	while (host->read_stdin(req, buf, sizeof(buf)) > 0)
		;
	if (query_get(qs, "tag", tag, sizeof(tag)) == -1)
		strcpy(tag, "noisy");
	fd = query_long(qs, "fd", 2);
	lines = query_long(qs, "lines", 1);
	len = query_long(qs, "len", 0);
	ms = query_long(qs, "ms", 0);
	status = query_long(qs, "status", 200);
	if (ms > 0) {
		ts.tv_sec = ms / 1000;
		ts.tv_nsec = (ms % 1000) * 1000000;
		while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
			;
	}
	tlen = strlen(tag);
	if (len < 0 || (line = malloc(tlen + (size_t)len + 1)) == NULL)
		return -1;
	memcpy(line, tag, tlen);
	for (j = 0; j < len; j++)
		line[tlen + (size_t)j] = filler[j % (long)(sizeof(filler) - 1)];
	for (i = 0; i < lines; i++) {
		n = tlen + (size_t)len;
		if (!(i == lines - 1 && query_long(qs, "nonl", 0)))
			line[n++] = '\n';
		write_all(fd == 1 ? 1 : 2, line, n);
	}
	free(line);
	if (query_long(qs, "log", 0))
		host->log(FPMD_LOG_WARNING, "noisy %s", tag);
	n = (size_t)snprintf(buf, sizeof(buf), "Status: %ld Noisy\r\n"
	    "Content-Type: text/plain\r\nX-Noisy: yes\r\n\r\npid %ld\n",
	    status, (long)getpid());
	return host->write_stdout(req, buf, n);
}

const struct fpmd_handler fpmd_handler = {
	.abi_version = FPMD_HANDLER_ABI,
	.struct_size = sizeof(struct fpmd_handler),
	.name = "noisy",
	.handle = noisy_handle,
};
