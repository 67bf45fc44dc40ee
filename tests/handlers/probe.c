/*
 * probe.c -- a test handler plugin: reports what the worker serving the
 * request may reach, so that the isolation tests can run code inside a
 * pool's confinement.  Built against <fpmd/handler.h> alone, like any
 * out-of-tree plugin, and loaded by absolute path.
 *
 * Query string (values percent-decoded), each optional:
 *   open=PATH      open(PATH, O_RDONLY)
 *   connect=PATH   connect() to the Unix socket PATH
 *   kill=PID       kill(PID, 0)
 *   setuid=1       setuid(0)
 *   env=1          list the worker's environment
 * The body says "pid: N", then has one line per probe, "NAME: 0" on
 * success or "NAME: ERRNO" (the number) on failure, then "dumpable" and
 * "no_new_privs" (prctl's answers), then with env=1 one "env: NAME=VALUE"
 * line per variable.
 */
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <fpmd/handler.h>

extern char **environ;

/*
 * The value of KEY in the query string QS, percent-decoded into BUF;
 * NULL when absent or too long.
 */
static const char *
probe_query(const char *qs, const char *key, char *buf, size_t len)
{
	size_t		 klen = strlen(key), n = 0;
	const char	*p = qs;
	unsigned int	 hex;

	while (p != NULL && *p != '\0') {
		if (strncmp(p, key, klen) == 0 && p[klen] == '=')
			break;
		if ((p = strchr(p, '&')) != NULL)
			p++;
	}
	if (p == NULL || *p == '\0')
		return NULL;
	for (p += klen + 1; *p != '\0' && *p != '&'; p++) {
		if (n + 1 >= len)
			return NULL;
		if (*p == '%' && sscanf(p + 1, "%2x", &hex) == 1) {
			buf[n++] = (char)hex;
			p += 2;
		} else
			buf[n++] = *p == '+' ? ' ' : *p;
	}
	buf[n] = '\0';
	return buf;
}

static int
probe_connect(const char *path)
{
	struct sockaddr_un	 sun;
	int			 fd, rc, saved;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sun.sun_path, path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

/* Appends "NAME: 0" or "NAME: ERRNO" for the result RC of a probe. */
static int
probe_line(char *out, size_t len, const char *name, int rc)
{
	return snprintf(out, len, "%s: %d\n", name, rc == -1 ? errno : 0);
}

static int
probe_handle(const struct fpmd_host *host, struct fpmd_request *req,
    void *data)
{
	const char	*qs = host->param(req, "QUERY_STRING");
	char		 body[16384], arg[1024];
	char		**e;
	size_t		 n = 0;
	int		 fd, rc;

	(void)data;
	if (qs == NULL)
		qs = "";
	while (host->read_stdin(req, body, sizeof(body)) > 0)
		;
	n += (size_t)snprintf(body + n, sizeof(body) - n, "Status: 200 OK\r\n"
	    "Content-Type: text/plain\r\n\r\npid: %ld\n", (long)getpid());
	if (probe_query(qs, "open", arg, sizeof(arg)) != NULL) {
		if ((fd = open(arg, O_RDONLY | O_CLOEXEC)) != -1)
			close(fd);
		n += (size_t)probe_line(body + n, sizeof(body) - n, "open",
		    fd == -1 ? -1 : 0);
	}
	if (probe_query(qs, "connect", arg, sizeof(arg)) != NULL)
		n += (size_t)probe_line(body + n, sizeof(body) - n, "connect",
		    probe_connect(arg));
	if (probe_query(qs, "kill", arg, sizeof(arg)) != NULL)
		n += (size_t)probe_line(body + n, sizeof(body) - n, "kill",
		    kill((pid_t)strtol(arg, NULL, 10), 0));
	if (probe_query(qs, "setuid", arg, sizeof(arg)) != NULL) {
		rc = setuid(0);
		n += (size_t)probe_line(body + n, sizeof(body) - n, "setuid",
		    rc);
	}
	n += (size_t)snprintf(body + n, sizeof(body) - n, "dumpable: %d\n"
	    "no_new_privs: %d\n", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0),
	    prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
	if (probe_query(qs, "env", arg, sizeof(arg)) != NULL)
		/* clearenv(3) may leave environ NULL. */
		for (e = environ; e != NULL && *e != NULL && n < sizeof(body);
		    e++)
			n += (size_t)snprintf(body + n, sizeof(body) - n,
			    "env: %s\n", *e);
	if (n > sizeof(body))
		n = sizeof(body);
	return host->write_stdout(req, body, n);
}

const struct fpmd_handler fpmd_handler = {
	.abi_version = FPMD_HANDLER_ABI,
	.struct_size = sizeof(struct fpmd_handler),
	.name = "probe",
	.handle = probe_handle,
};
