/*
 * slow.c -- a test handler plugin: answers after a delay, so that tests
 * can hold workers busy.  Built against <fpmd/handler.h> alone, like any
 * out-of-tree plugin, and loaded by absolute path.
 *
 * Query string: ms=N sleeps N milliseconds (in 10 ms steps, stopping if
 * the request is aborted); crash=1 dies of SIGSEGV; exit=1 exits at once.
 * The body says which worker answered: "pid N".
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <fpmd/handler.h>

#include "query.h"

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
	if (query_long(qs, "crash", 0))
		raise(SIGSEGV);
	if (query_long(qs, "exit", 0))
		_exit(3);
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
