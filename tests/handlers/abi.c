/*
 * abi.c -- a test handler plugin for the host functions appended to
 * struct fpmd_host after the ABI's first release (option_at,
 * read_timeout_ms, abort_response), each called as an out-of-tree plugin
 * would: behind FPMD_HOST_HAS.  Built against <fpmd/handler.h> alone and
 * loaded by absolute path.
 *
 * It reads the whole body first, unless the query string says noread=1.
 * Then, without abort=N: a 200 page that says "pid: N" (the worker's),
 * "has: A B C" (1 or 0 for each of the three functions),
 * "read_timeout_ms: N", then one "option: NAME=VALUE" line per
 * handler.options entry, in order.
 * With abort=N: a 200 header block and N bytes of "x", left in the
 * buffer (never flushed), then abort_response(); with head=0, no
 * header block either.  It then tries one more write and one more read
 * and logs what they returned ("abi: after abort_response: write -1,
 * read -1, aborted 1").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <fpmd/handler.h>

#include "query.h"

struct abi {
	struct fpmd_pool	*pool;
};

static int
abi_worker_init(const struct fpmd_host *host, struct fpmd_pool *pool,
    void **data)
{
	struct abi	*a;

	if ((a = calloc(1, sizeof(*a))) == NULL) {
		host->log(FPMD_LOG_ERROR, "abi: out of memory");
		return -1;
	}
	/* The pool outlives the worker: option_at() needs it per request. */
	a->pool = pool;
	*data = a;
	return 0;
}

static int
abi_abort(const struct fpmd_host *host, struct fpmd_request *req, long n,
    int head)
{
	static const char	 hdr[] = "Status: 200 OK\r\n"
	    "Content-Type: text/plain\r\n\r\n";
	char			 x[4096];
	ssize_t			 rd;
	long			 k;
	int			 wr;

	if (!FPMD_HOST_HAS(host, abort_response)) {
		host->log(FPMD_LOG_ERROR, "abi: no abort_response");
		return -1;
	}
	memset(x, 'x', sizeof(x));
	if (head && host->write_stdout(req, hdr, sizeof(hdr) - 1) == -1)
		return -1;
	for (; n > 0; n -= k) {
		k = n < (long)sizeof(x) ? n : (long)sizeof(x);
		if (host->write_stdout(req, x, (size_t)k) == -1)
			return -1;
	}
	host->abort_response(req);
	wr = host->write_stdout(req, "late", 4);
	rd = host->read_stdin(req, x, sizeof(x));
	host->log(FPMD_LOG_NOTICE, "abi: after abort_response: write %d, "
	    "read %zd, aborted %d", wr, rd, host->aborted(req) != 0);
	return 0;
}

static int
abi_handle(const struct fpmd_host *host, struct fpmd_request *req,
    void *data)
{
	struct abi	*a = data;
	const char	*qs = host->param(req, "QUERY_STRING");
	const char	*name, *value;
	char		 body[16384];
	size_t		 n = 0, i;

	if (qs == NULL)
		qs = "";
	if (query_long(qs, "noread", 0) == 0)
		while (host->read_stdin(req, body, sizeof(body)) > 0)
			;
	if (query_long(qs, "abort", -1) >= 0)
		return abi_abort(host, req, query_long(qs, "abort", 0),
		    query_long(qs, "head", 1) != 0);

	n += (size_t)snprintf(body + n, sizeof(body) - n, "Status: 200 OK\r\n"
	    "Content-Type: text/plain\r\n\r\npid: %ld\nhas: %d %d %d\n",
	    (long)getpid(), FPMD_HOST_HAS(host, option_at),
	    FPMD_HOST_HAS(host, read_timeout_ms),
	    FPMD_HOST_HAS(host, abort_response));
	if (FPMD_HOST_HAS(host, read_timeout_ms))
		n += (size_t)snprintf(body + n, sizeof(body) - n,
		    "read_timeout_ms: %ld\n", host->read_timeout_ms(req));
	for (i = 0; FPMD_HOST_HAS(host, option_at) && n < sizeof(body) &&
	    host->option_at(a->pool, i, &name, &value) == 0; i++)
		n += (size_t)snprintf(body + n, sizeof(body) - n,
		    "option: %s=%s\n", name, value);
	if (n > sizeof(body))
		n = sizeof(body);
	return host->write_stdout(req, body, n);
}

static void
abi_worker_fini(const struct fpmd_host *host, void *data)
{
	(void)host;
	free(data);
}

const struct fpmd_handler fpmd_handler = {
	.abi_version = FPMD_HANDLER_ABI,
	.struct_size = sizeof(struct fpmd_handler),
	.name = "abi",
	.worker_init = abi_worker_init,
	.handle = abi_handle,
	.worker_fini = abi_worker_fini,
};
