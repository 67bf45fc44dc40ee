/*
 * slow.c -- a test handler plugin: answers after a delay, so that tests
 * can hold workers busy.  Built against <fpmd/handler.h> alone, like any
 * out-of-tree plugin, and loaded by absolute path.
 *
 * Query string: ms=N sleeps N milliseconds (in 10 ms steps, stopping if
 * the request is aborted); crash=1 dies of SIGSEGV (raised), crash=2 of
 * SIGSEGV once its headers have been flushed to the client, crash=3 of a
 * stack overflow, crash=4 of abort(); exit=1 exits at once; announce=1
 * writes "sleeping" on FastCGI STDERR before the sleep, so that a client
 * knows the handler runs.
 * The body says which worker answered: "pid N".
 */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <fpmd/handler.h>

#include "query.h"

/* Deeper until the stack runs out (the bound is never reached). */
static long
slow_overflow(long depth)
{
	volatile char	 frame[4096];

	frame[0] = (char)depth;
	if (depth == LONG_MAX)
		return frame[0];
	return slow_overflow(depth + 1) + frame[0];
}

static int
slow_handle(const struct fpmd_host *host, struct fpmd_request *req,
    void *data)
{
	const char	*qs = host->param(req, "QUERY_STRING");
	struct timespec	 step = { 0, 10 * 1000 * 1000 };
	char		 buf[4096];
	long		 ms;
	int		 n;

	(void)data;
	if (qs == NULL)
		qs = "";
	while (host->read_stdin(req, buf, sizeof(buf)) > 0)
		;
	switch (query_long(qs, "crash", 0)) {
	case 1:
		raise(SIGSEGV);
		break;
	case 2:
		n = snprintf(buf, sizeof(buf), "Status: 200 OK\r\n"
		    "Content-Type: text/plain\r\n\r\nbefore the crash\n");
		if (host->write_stdout(req, buf, (size_t)n) == 0 &&
		    host->flush(req) == 0)
			raise(SIGSEGV);
		break;
	case 3:
		return (int)slow_overflow(0);
	case 4:
		abort();
	}
	if (query_long(qs, "exit", 0))
		_exit(3);
	if (query_long(qs, "announce", 0) &&
	    host->write_stderr(req, "sleeping\n", 9) == -1)
		return -1;
	for (ms = query_long(qs, "ms", 0); ms > 0 && !host->aborted(req);
	    ms -= 10)
		nanosleep(&step, NULL);
	n = snprintf(buf, sizeof(buf), "Status: 200 OK\r\n"
	    "Content-Type: text/plain\r\n\r\npid %ld\n", (long)getpid());
	return host->write_stdout(req, buf, (size_t)n);
}

const struct fpmd_handler fpmd_handler = {
	.abi_version = FPMD_HANDLER_ABI,
	.struct_size = sizeof(struct fpmd_handler),
	.name = "slow",
	.handle = slow_handle,
};
