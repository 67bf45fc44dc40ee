/*
 * h_echo.c -- the built-in echo handler: a diagnostic page listing the
 * request's role, the worker's identity, how many stdin (and, for FILTER,
 * data) bytes arrived, and every param in the order it came.
 *
 * It uses only the public handler ABI, as a plugin would.
 */
#include "config.h"

#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fpmd/handler.h"
#include "fpmd.h"

struct echo_worker {
	struct fpmd_pool	*pool;
	long			 pid;		/* constant: asked once */
	unsigned long		 served;
	char			 ident[512];	/* uid, gid, groups, cwd */
};

static int
echo_check_options(const struct fpmd_host *host, struct fpmd_pool *pool,
    char *err, size_t errlen)
{
	const struct pool_conf	*pc = pool->conf;

	if (pc->nhandler_options > 0) {
		snprintf(err, errlen, "%s: the echo handler takes no options",
		    pc->handler_options[0].key);
		return -1;
	}
	return 0;
}

static int
echo_worker_init(const struct fpmd_host *host, struct fpmd_pool *pool,
    void **data)
{
	struct echo_worker	*ew;
	gid_t			 groups[64];
	char			 cwd[PATH_MAX];
	int			 n, i, len;

	if ((ew = calloc(1, sizeof(*ew))) == NULL)
		return -1;
	ew->pool = pool;
	ew->pid = (long)getpid();
	/* The identity does not change after the privilege drop: once. */
	len = snprintf(ew->ident, sizeof(ew->ident), "uid: %lu\ngid: %lu\n"
	    "groups:", (unsigned long)getuid(), (unsigned long)getgid());
	n = getgroups(64, groups);
	for (i = 0; i < n && len < (int)sizeof(ew->ident) - 16; i++)
		len += snprintf(ew->ident + len, sizeof(ew->ident) - (size_t)len,
		    " %lu", (unsigned long)groups[i]);
	if (getcwd(cwd, sizeof(cwd)) == NULL)
		strcpy(cwd, "?");
	snprintf(ew->ident + len, sizeof(ew->ident) - (size_t)len,
	    "\ncwd: %s\n", cwd);
	*data = ew;
	return 0;
}

static const char *
echo_role_name(enum fpmd_role role)
{
	switch (role) {
	case FPMD_ROLE_RESPONDER:
		return "RESPONDER";
	case FPMD_ROLE_AUTHORIZER:
		return "AUTHORIZER";
	case FPMD_ROLE_FILTER:
		return "FILTER";
	}
	return "UNKNOWN";
}

static int
echo_drain(const struct fpmd_host *host, struct fpmd_request *req,
    ssize_t (*rd)(struct fpmd_request *, void *, size_t),
    unsigned long long *total)
{
	char	 buf[16384];
	ssize_t	 n;

	*total = 0;
	while ((n = rd(req, buf, sizeof(buf))) > 0)
		*total += (unsigned long long)n;
	return n == -1 ? -1 : 0;
}

static int
echo_handle(const struct fpmd_host *host, struct fpmd_request *req,
    void *data)
{
	struct echo_worker	*ew = data;
	unsigned long long	 in = 0, dat = 0;
	const char		*name, *value;
	char			 head[1024];
	size_t			 i, nparams = 0;
	int			 len;

	ew->served++;
	if (echo_drain(host, req, host->read_stdin, &in) == -1)
		return -1;
	if (host->role(req) == FPMD_ROLE_FILTER &&
	    echo_drain(host, req, host->read_data, &dat) == -1)
		return -1;
	while (host->param_at(req, nparams, &name, &value) == 0)
		nparams++;

	len = snprintf(head, sizeof(head), "Status: 200 OK\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n\r\n"
	    "fpmd echo\nrole: %s\npool: %s\npid: %ld\n%srequests: %lu\n"
	    "stdin_bytes: %llu\n", echo_role_name(host->role(req)),
	    host->pool_name(ew->pool), ew->pid, ew->ident, ew->served,
	    in);
	if (host->role(req) == FPMD_ROLE_FILTER)
		len += snprintf(head + len, sizeof(head) - (size_t)len,
		    "data_bytes: %llu\n", dat);
	len += snprintf(head + len, sizeof(head) - (size_t)len,
	    "params: %zu\n", nparams);
	if (host->write_stdout(req, head, (size_t)len) == -1)
		return -1;
	for (i = 0; i < nparams; i++) {
		(void)host->param_at(req, i, &name, &value);
		if (host->write_stdout(req, name, strlen(name)) == -1 ||
		    host->write_stdout(req, "=", 1) == -1 ||
		    host->write_stdout(req, value, strlen(value)) == -1 ||
		    host->write_stdout(req, "\n", 1) == -1)
			return -1;
	}
	return 0;
}

static void
echo_worker_fini(const struct fpmd_host *host, void *data)
{
	free(data);
}

const struct fpmd_handler h_echo = {
	.abi_version = FPMD_HANDLER_ABI,
	.struct_size = sizeof(struct fpmd_handler),
	.name = "echo",
	.check_options = echo_check_options,
	.worker_init = echo_worker_init,
	.handle = echo_handle,
	.worker_fini = echo_worker_fini,
};
