/*
 * libfcgi-echo.c -- fpmd's echo handler written against libfcgi, for the
 * side-by-side benchmark (run under spawn-fcgi).
 *
 * It prints the body fpmd's built-in echo handler prints, line for line, so
 * that both servers send responses of the same size:
 *
 *	Status: 200 OK\r\n
 *	Content-Type: text/plain; charset=utf-8\r\n
 *	\r\n
 *	fpmd echo\n
 *	role: RESPONDER\n
 *	pool: www\n			(argv[1], default "www": spawn-fcgi has no pools)
 *	pid: ...\n  uid: ...\n  gid: ...\n  groups: ...\n  cwd: ...\n
 *	requests: N\n			(served by this process, this one included)
 *	stdin_bytes: N\n		(all of FCGI_STDIN is read and counted)
 *	params: N\n
 *	NAME=VALUE\n ...		(in the order received)
 *
 * libfcgi adds an FCGI_ROLE param of its own to the ones the client sent;
 * it is left out, as fpmd lists only what arrived.
 *
 * The identity (uid, gid, groups, cwd) is read once at start, as fpmd's
 * echo handler reads it once per worker after the privilege drop: the two
 * do the same work per request.
 */
#define _GNU_SOURCE
#include <sys/types.h>

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <fastcgi.h>
#include <fcgiapp.h>

#define MAX_GROUPS	64
#define ROLE_PARAM	"FCGI_ROLE="

static const char *
role_name(int role)
{
	switch (role) {
	case FCGI_RESPONDER:
		return "RESPONDER";
	case FCGI_AUTHORIZER:
		return "AUTHORIZER";
	case FCGI_FILTER:
		return "FILTER";
	default:
		return "UNKNOWN";
	}
}

static int
is_role_param(const char *param)
{
	return strncmp(param, ROLE_PARAM, sizeof(ROLE_PARAM) - 1) == 0;
}

/* The "uid: ...\ngid: ...\ngroups: ...\ncwd: ...\n" lines, built once. */
static void
echo_ident(char *ident, size_t size)
{
	gid_t groups[MAX_GROUPS];
	char cwd[PATH_MAX];
	int i, n, len;

	len = snprintf(ident, size, "uid: %lu\ngid: %lu\ngroups:",
	    (unsigned long)getuid(), (unsigned long)getgid());
	n = getgroups(MAX_GROUPS, groups);
	for (i = 0; i < n && len < (int)size - 16; i++)
		len += snprintf(ident + len, size - (size_t)len, " %lu",
		    (unsigned long)groups[i]);
	if (getcwd(cwd, sizeof(cwd)) == NULL)
		strcpy(cwd, "?");
	snprintf(ident + len, size - (size_t)len, "\ncwd: %s\n", cwd);
}

static void
echo_request(FCGX_Request *req, const char *pool, const char *ident,
    unsigned long served)
{
	char buf[16384];
	unsigned long stdin_bytes = 0;
	char **p;
	int n, nparams = 0;

	while ((n = FCGX_GetStr(buf, sizeof(buf), req->in)) > 0)
		stdin_bytes += (unsigned long)n;
	for (p = req->envp; *p != NULL; p++)
		if (!is_role_param(*p))
			nparams++;

	FCGX_FPrintF(req->out, "Status: 200 OK\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n\r\n"
	    "fpmd echo\nrole: %s\npool: %s\npid: %ld\n%srequests: %lu\n"
	    "stdin_bytes: %lu\nparams: %d\n", role_name(req->role), pool,
	    (long)getpid(), ident, served, stdin_bytes, nparams);
	for (p = req->envp; *p != NULL; p++) {
		if (is_role_param(*p))
			continue;
		FCGX_PutS(*p, req->out);
		FCGX_PutS("\n", req->out);
	}
}

int
main(int argc, char *argv[])
{
	FCGX_Request req;
	const char *pool = argc > 1 ? argv[1] : "www";
	char ident[512];
	unsigned long served = 0;

	if (FCGX_Init() != 0 || FCGX_InitRequest(&req, 0, 0) != 0) {
		fprintf(stderr, "libfcgi-echo: cannot initialise libfcgi\n");
		return 1;
	}
	echo_ident(ident, sizeof(ident));
	while (FCGX_Accept_r(&req) >= 0) {
		echo_request(&req, pool, ident, ++served);
		FCGX_Finish_r(&req);
	}
	return 0;
}
