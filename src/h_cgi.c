/*
 * h_cgi.c -- the built-in cgi handler: runs the request's SCRIPT_FILENAME
 * as a CGI/1.1 program (RFC 3875), as fcgiwrap does, without fcgiwrap's
 * deadlock on large bodies, its unbounded waits and its httpoxy hole.
 *
 * Per request: check the script (an absolute path, one of
 * limit_extensions, under root after realpath(3), a regular executable
 * file), vfork a child in its own process group with stdout and stderr on
 * pipes, stdin on a pipe (or /dev/null without a body) and nothing else
 * open, then one poll(2) loop passes the request body to the
 * program while its stdout goes to the client and its stderr to the error
 * log, line by line.  The program is reaped before the request ends.
 *
 * Output the program writes while the client is still sending the body
 * is held in an unlinked temporary file until the body has ended (or the
 * program closed its stdin): nginx stops sending a request body once it
 * has passed the response header on, so a program that answers while it
 * still reads (an echo, an upload with progress) would wait forever.
 *
 * Taboos: nothing here may end the worker (no fatal(), no exit but the
 * forked child's _exit()); no fd stays open past the request; the only
 * wait without a deadline is the program's own run when timeout is 0.
 * A built-in, it reads its options from the pool's configuration; it
 * reaches the request only through the handler ABI, as a plugin would,
 * program_group() included: the program's process group goes into the
 * worker's scoreboard slot, so that it dies when the worker does.
 */
#include "config.h"

#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "fpmd/handler.h"
#include "fpmd.h"

#define CGI_BUF_SIZE	65536	/* one read of the body or of the output */
#define CGI_HEAD_MAX	65536	/* the program's response headers, at most */
#define CGI_LINE_MAX	4096	/* one stderr line in the log, at most */
#define CGI_GRACE_MS	1000	/* from SIGTERM to SIGKILL */
#define CGI_TICK_MS	10	/* without a pidfd: how often to look for
				   the exit of a program whose output ended */

extern char **environ;

struct cgi_worker {
	const char		*exts;		/* limit_extensions, or NULL */
	const char		*root;		/* NULL: scripts anywhere */
	int64_t			 timeout_ms;	/* 0: none */
	pid_t			 pid;		/* the worker's */
	int			 devnull;	/* stdin without a body, or -1 */
	int			 nsigs;		/* -1 until sigs[] holds */
	int			 sigs[NSIG];	/* the signals not at SIG_DFL */
	char			 ibuf[CGI_BUF_SIZE];
	char			 obuf[CGI_BUF_SIZE];
	char			 head[CGI_HEAD_MAX];
	char			 line[CGI_LINE_MAX];
	char			 sbuf[CGI_BUF_SIZE];	/* out of the spool */
};

/* How a program's run ended, as far as the relay loop is concerned. */
enum cgi_end {
	CGI_RUNNING,	/* not yet */
	CGI_EXITED,	/* it exited and closed its output */
	CGI_TIMEOUT,	/* it ran past handler.options timeout */
	CGI_STALLED,	/* the client stopped sending the body */
	CGI_GONE,	/* the client aborted or went away */
	CGI_BADHEAD,	/* its response headers are unusable: why */
	CGI_FAILED	/* a system call failed: logged */
};

/* What the child was doing when it could not exec. */
enum cgi_step {
	CGI_STEP_SETUP,
	CGI_STEP_CHDIR,
	CGI_STEP_EXEC
};

/* One program's run. */
struct cgi_run {
	const struct fpmd_host	*host;
	struct fpmd_request	*req;
	struct cgi_worker	*cw;
	const char		*script;	/* SCRIPT_FILENAME, as sent */
	char			 path[PATH_MAX];	/* realpath: it runs */
	char			 dir[PATH_MAX];		/* and its directory */
	pid_t			 pid;		/* also its process group */
	int			 pidfd;		/* -1: none yet, or poll by ticks */
	bool			 pidfd_tried;
	volatile int		 fail_step;	/* the vfork child's, when it */
	volatile int		 fail_errno;	/* cannot exec; 0: it did */
	int			 in, out, err;	/* our pipe ends, or -1 */
	bool			 exited;	/* a zombie until reaped */
	int64_t			 started_ms;
	int64_t			 stall_ms;	/* fastcgi.read_timeout */
	size_t			 ipos, ilen;	/* body bytes waiting in ibuf */
	bool			 body_done;	/* the client's stdin ended */
	bool			 conn_wait;	/* stdin needs conn_fd ready */
	int64_t			 wait_ms;	/* since when conn_wait holds */
	size_t			 hlen;		/* bytes in head */
	size_t			 hscan;		/* start of head's last line */
	bool			 head_done;
	int			 spool;		/* output held back, or -1 */
	off_t			 spool_len;
	bool			 sent;		/* output reached the client */
	size_t			 llen;		/* bytes in line */
	const char		*why;		/* why the headers are bad */
};

/*
 * CGI meta-variables (RFC 3875 section 4.1, and what web servers add).
 * The pool's own environment never supplies them: a request that lacks
 * one must not inherit a value that looks like request data.
 */
static const char *const cgi_meta[] = {
	"AUTH_TYPE", "CONTENT_LENGTH", "CONTENT_TYPE", "DOCUMENT_ROOT",
	"GATEWAY_INTERFACE", "HTTPS", "PATH_INFO", "PATH_TRANSLATED",
	"QUERY_STRING", "REMOTE_ADDR", "REMOTE_HOST", "REMOTE_IDENT",
	"REMOTE_PORT", "REMOTE_USER", "REQUEST_METHOD", "REQUEST_SCHEME",
	"REQUEST_URI", "SCRIPT_FILENAME", "SCRIPT_NAME", "SERVER_ADDR",
	"SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "SERVER_SOFTWARE",
};

static const char *const cgi_options[] = {
	"limit_extensions", "root", "timeout",
};

/* True when every word of the list EXTS is a file name ending. */
static bool
cgi_exts_valid(const char *exts)
{
	const char	*p = exts;
	size_t		 len;
	int		 n = 0;

	for (;;) {
		p += strspn(p, " \t");
		if (*p == '\0')
			return n > 0;
		len = strcspn(p, " \t");
		if (memchr(p, '/', len) != NULL)
			return false;
		p += len;
		n++;
	}
}

/* True when NAME ends in one of the words of EXTS. */
static bool
cgi_exts_match(const char *exts, const char *name)
{
	const char	*p = exts;
	size_t		 len, nlen = strlen(name);

	for (;;) {
		p += strspn(p, " \t");
		if (*p == '\0')
			return false;
		len = strcspn(p, " \t");
		if (len <= nlen && memcmp(name + nlen - len, p, len) == 0)
			return true;
		p += len;
	}
}

static int
cgi_check_options(const struct fpmd_host *host, struct fpmd_pool *pool,
    char *err, size_t errlen)
{
	const struct pool_conf	*pc = pool->conf;
	const struct kv		*o;
	int64_t			 ms;
	size_t			 i, k;

	for (i = 0; i < pc->nhandler_options; i++) {
		o = &pc->handler_options[i];
		for (k = 0; k < sizeof(cgi_options) / sizeof(cgi_options[0]);
		    k++)
			if (strcmp(o->key, cgi_options[k]) == 0)
				break;
		if (k == sizeof(cgi_options) / sizeof(cgi_options[0])) {
			snprintf(err, errlen, "%s: not an option of the cgi "
			    "handler (limit_extensions, root, timeout)",
			    o->key);
			return -1;
		}
		if (strcmp(o->key, "limit_extensions") == 0 &&
		    !cgi_exts_valid(o->value)) {
			snprintf(err, errlen, "limit_extensions: \"%s\": "
			    "expected file name endings separated by spaces, "
			    "such as \".cgi .pl\"", o->value);
			return -1;
		}
		if (strcmp(o->key, "root") == 0 && o->value[0] != '/') {
			snprintf(err, errlen, "root: \"%s\" is not an "
			    "absolute path", o->value);
			return -1;
		}
		if (strcmp(o->key, "timeout") == 0 &&
		    parse_duration_ms(o->value, &ms) == -1) {
			snprintf(err, errlen, "timeout: \"%s\" is not a "
			    "duration, such as 30s or 2m", o->value);
			return -1;
		}
	}
	return 0;
}

static int
cgi_worker_init(const struct fpmd_host *host, struct fpmd_pool *pool,
    void **data)
{
	struct cgi_worker	*cw;
	const char		*v;

	if ((cw = calloc(1, sizeof(*cw))) == NULL) {
		host->log(FPMD_LOG_ERROR, "cgi: out of memory");
		return -1;
	}
	cw->exts = host->option(pool, "limit_extensions");
	cw->root = host->option(pool, "root");
	/* check_options accepted it: it parses. */
	if ((v = host->option(pool, "timeout")) != NULL)
		(void)parse_duration_ms(v, &cw->timeout_ms);
	cw->pid = getpid();
	cw->nsigs = -1;
	/* None in a chroot without /dev: then a pipe, as with a body. */
	cw->devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	*data = cw;
	return 0;
}

static void
cgi_worker_fini(const struct fpmd_host *host, void *data)
{
	struct cgi_worker	*cw = data;

	if (cw->devnull != -1)
		close(cw->devnull);
	free(cw);
}

static void
cgi_close(int *fd)
{
	if (*fd != -1) {
		close(*fd);
		*fd = -1;
	}
}

/*
 * Answers with STATUS and a one-line page.  Once output went out, the
 * status went with it and a run that fails can no longer say so: the
 * response ends as broken instead (abort_response()), so that the web
 * server takes it for truncated rather than pass it on as complete.
 * Returns what handle returns: 0, or -1 when the client is gone.
 */
static int
cgi_answer(struct cgi_run *r, const char *status)
{
	char	 buf[256];
	int	 n;

	if (r->sent) {
		r->host->abort_response(r->req);
		return 0;
	}
	r->sent = true;
	cgi_close(&r->spool);
	n = snprintf(buf, sizeof(buf), "Status: %s\r\nContent-Type: "
	    "text/plain; charset=utf-8\r\n\r\n%s\n", status, status);
	return r->host->write_stdout(r->req, buf, (size_t)n);
}

/*
 * Decides whether the request's script may run: 0, or the HTTP status
 * to refuse it with, the reason logged.  Fills r->path and r->dir.
 */
static int
cgi_resolve(struct cgi_run *r)
{
	const struct fpmd_host	*host = r->host;
	const char		*s = r->script;
	char			 root[PATH_MAX], *slash;
	struct stat		 st;
	size_t			 rlen;
	int			 code;

	if (s == NULL || *s == '\0') {
		host->log(FPMD_LOG_WARNING, "cgi: the request has no "
		    "SCRIPT_FILENAME: set it in the web server (nginx: "
		    "fastcgi_param SCRIPT_FILENAME)");
		return 500;
	}
	if (s[0] != '/') {
		host->log(FPMD_LOG_WARNING, "%s: refused (403): not an "
		    "absolute path", s);
		return 403;
	}
	if (r->cw->exts != NULL && !cgi_exts_match(r->cw->exts, s)) {
		host->log(FPMD_LOG_WARNING, "%s: refused (403): its name "
		    "does not end in one of limit_extensions \"%s\"", s,
		    r->cw->exts);
		return 403;
	}
	if (realpath(s, r->path) == NULL) {
		code = errno == ENOENT || errno == ENOTDIR ? 404 : 403;
		host->log(FPMD_LOG_WARNING, "%s: refused (%d): %s", s, code,
		    strerror(errno));
		return code;
	}
	/* Resolved per request: root may be a symlink a deploy swaps. */
	if (r->cw->root != NULL) {
		if (realpath(r->cw->root, root) == NULL) {
			host->log(FPMD_LOG_WARNING, "%s: refused (500): "
			    "root %s: %s", s, r->cw->root, strerror(errno));
			return 500;
		}
		rlen = strlen(root);
		if (rlen > 1 && (strncmp(r->path, root, rlen) != 0 ||
		    r->path[rlen] != '/')) {
			host->log(FPMD_LOG_WARNING, "%s: refused (403): it is "
			    "%s, outside root %s", s, r->path, root);
			return 403;
		}
	}
	if (stat(r->path, &st) == -1) {
		host->log(FPMD_LOG_WARNING, "%s: refused (404): %s", s,
		    strerror(errno));
		return 404;
	}
	if (!S_ISREG(st.st_mode)) {
		host->log(FPMD_LOG_WARNING, "%s: refused (403): not a regular "
		    "file", s);
		return 403;
	}
	if (access(r->path, X_OK) == -1) {
		host->log(FPMD_LOG_WARNING, "%s: refused (403): not "
		    "executable by uid %lu: %s", s, (unsigned long)geteuid(),
		    strerror(errno));
		return 403;
	}
	strlcpy_(r->dir, r->path, sizeof(r->dir));
	slash = strrchr(r->dir, '/');
	slash[slash == r->dir ? 1 : 0] = '\0';
	return 0;
}

/* True when the inherited variable NAME (LEN bytes) may reach the program. */
static bool
cgi_env_inherit(struct cgi_run *r, const char *name, size_t len)
{
	const char	*pn, *pv;
	size_t		 i;

	if (len >= 5 && strncmp(name, "HTTP_", 5) == 0)
		return false;
	for (i = 0; i < sizeof(cgi_meta) / sizeof(cgi_meta[0]); i++)
		if (strlen(cgi_meta[i]) == len &&
		    strncmp(cgi_meta[i], name, len) == 0)
			return false;
	/* What the request sets, it sets. */
	for (i = 0; r->host->param_at(r->req, i, &pn, &pv) == 0; i++)
		if (strlen(pn) == len && strncmp(pn, name, len) == 0)
			return false;
	return true;
}

/* True when the request parameter NAME may become a variable. */
static bool
cgi_env_param(const char *name)
{
	/*
	 * httpoxy: a client's "Proxy:" header arrives as HTTP_PROXY, which
	 * HTTP libraries take for the proxy to use.
	 */
	return name[0] != '\0' && strchr(name, '=') == NULL &&
	    strcmp(name, "HTTP_PROXY") != 0;
}

/*
 * The program's environment, in one allocation: the request's params in
 * the order received (on a repeated name getenv(3) finds the first, as
 * the handler's param() does), GATEWAY_INTERFACE when the web server did
 * not send it, then the worker's own (the pool's clear_env and env).
 */
static char **
cgi_env(struct cgi_run *r)
{
	static char	 gateway[] = "GATEWAY_INTERFACE=CGI/1.1";
	const char	*name, *value, *eq;
	char		**env, *s;
	size_t		 n, m, size = 0, k = 0;

	for (n = 0; r->host->param_at(r->req, n, &name, &value) == 0; n++)
		size += strlen(name) + strlen(value) + 2;
	/* clearenv() with no env {} leaves environ NULL. */
	for (m = 0; environ != NULL && environ[m] != NULL; m++)
		;
	if ((env = malloc((n + m + 2) * sizeof(*env) + size)) == NULL)
		return NULL;
	s = (char *)(env + n + m + 2);
	for (n = 0; r->host->param_at(r->req, n, &name, &value) == 0; n++) {
		if (!cgi_env_param(name))
			continue;
		env[k++] = s;
		s = stpcpy(stpcpy(stpcpy(s, name), "="), value) + 1;
	}
	if (r->host->param(r->req, "GATEWAY_INTERFACE") == NULL)
		env[k++] = gateway;
	for (m = 0; environ != NULL && environ[m] != NULL; m++)
		if ((eq = strchr(environ[m], '=')) != NULL &&
		    cgi_env_inherit(r, environ[m], (size_t)(eq - environ[m])))
			env[k++] = environ[m];
	env[k] = NULL;
	return env;
}

/* Closes every fd from LOWFD up. */
static void
cgi_closefrom(int lowfd)
{
	long	 fd, max;

	if (close_range((unsigned int)lowfd, ~0U, 0) == 0)
		return;
	/* A kernel before 5.9. */
	max = sysconf(_SC_OPEN_MAX);
	for (fd = lowfd; fd < max; fd++)
		(void)close((int)fd);
}

/*
 * The worker's signals that are not at SIG_DFL: its handlers, SIGPIPE
 * ignored.  Looked up once, at the first program: by then the worker has
 * installed all it ever will (fpmd's worker loop, the crash answer, the
 * slowlog), and a disposition that went back to SIG_DFL since (SIGTERM's
 * SA_RESETHAND) only costs the child one useless sigaction(2).  So the
 * child resets a handful, not all 64 (glibc's posix_spawn asks all).
 */
static void
cgi_signals(struct cgi_worker *cw)
{
	struct sigaction	 old;
	int			 sig;

	cw->nsigs = 0;
	for (sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP &&
		    sigaction(sig, NULL, &old) == 0 &&
		    old.sa_handler != SIG_DFL)
			cw->sigs[cw->nsigs++] = sig;
}

/*
 * The child between vfork and exec: its own process group, default
 * signal dispositions and an empty mask, FDS (stdin, stdout, stderr) on
 * 0-2 and no other fd, the script's directory.  If it cannot exec, it
 * leaves the step and errno in r->fail_* (vfork: our memory is the
 * worker's, which reads them once we are gone) and exits.
 */
static void __attribute__((noreturn))
cgi_child(struct cgi_run *r, char **env, int fds[3])
{
	struct sigaction	 sa;
	sigset_t		 none;
	char			*argv[2];
	int			 i;

	r->fail_step = CGI_STEP_SETUP;
	if (setpgid(0, 0) == -1)
		goto fail;
	/*
	 * A worker that dies mid-request takes its program along: the
	 * program itself by its parent-death signal, the rest of its group
	 * by the hand of the master (or of the dying worker), which learns
	 * the group here, before exec, so before the program can fork.
	 */
	r->host->program_group(r->req, getpid());
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1)
		goto fail;
	if (getppid() != r->cw->pid)
		_exit(127);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	for (i = 0; i < r->cw->nsigs; i++)
		(void)sigaction(r->cw->sigs[i], &sa, NULL);
	sigemptyset(&none);
	if (sigprocmask(SIG_SETMASK, &none, NULL) == -1)
		goto fail;
	/*
	 * An end on 0-2 (the worker had one of them closed) moves above 2
	 * first, so that no dup2 lands on an end in use, and dup2(fd, fd)
	 * never keeps its close-on-exec.
	 */
	if (fds[0] < 3 || fds[1] < 3 || fds[2] < 3)
		for (i = 0; i < 3; i++)
			if ((fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3)) == -1)
				goto fail;
	for (i = 0; i < 3; i++)
		if (dup2(fds[i], i) == -1)
			goto fail;
	cgi_closefrom(3);
	r->fail_step = CGI_STEP_CHDIR;
	if (chdir(r->dir) == -1)
		goto fail;
	r->fail_step = CGI_STEP_EXEC;
	argv[0] = r->path;
	argv[1] = NULL;
	execve(r->path, argv, env);
fail:
	r->fail_errno = errno != 0 ? errno : EINVAL;
	_exit(127);
}

static int
cgi_pidfd_open(pid_t pid)
{
	/* Through syscall(2): glibc before 2.36 has no wrapper. */
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* Notes, without reaping it, whether the program has exited. */
static void
cgi_check_exit(struct cgi_run *r)
{
	siginfo_t	 si;

	memset(&si, 0, sizeof(si));
	if (!r->exited && waitid(P_PID, (id_t)r->pid, &si,
	    WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == r->pid)
		r->exited = true;
}

/*
 * Its output has ended but it has not exited (or not quite yet): a pidfd
 * to poll for its exit, opened only now because most programs are gone
 * by the time their output ends.  Without one (Linux before 5.3) the
 * relay looks every CGI_TICK_MS.
 */
static void
cgi_watch_exit(struct cgi_run *r)
{
	if (r->pidfd == -1 && !r->pidfd_tried && !r->exited) {
		r->pidfd_tried = true;
		r->pidfd = cgi_pidfd_open(r->pid);
	}
}

/* Reaps the program; returns its wait status. */
static int
cgi_reap(struct cgi_run *r)
{
	int	 status = 0;

	/* While it is unreaped, its pid names no other group. */
	r->host->program_group(r->req, 0);
	while (waitpid(r->pid, &status, 0) == -1 && errno == EINTR)
		;
	cgi_close(&r->pidfd);
	return status;
}

static void
cgi_exit_str(int status, char *buf, size_t len)
{
	if (WIFSIGNALED(status))
		snprintf(buf, len, "was killed by signal %d (SIG%s)",
		    WTERMSIG(status), signal_name(WTERMSIG(status)));
	else
		snprintf(buf, len, "exited with code %d", WEXITSTATUS(status));
}

/*
 * vfork(2): no copy of the worker's page tables, and no copy-on-write
 * faults in the worker after it.  The child borrows our memory and stack
 * until it execs, so no handler of ours may run in it: every signal stays
 * blocked until cgi_child() has reset the handled ones to SIG_DFL.  Alone
 * in its function, so that nothing of the caller's lives across the vfork.
 */
static pid_t __attribute__((noinline))
cgi_vfork(struct cgi_run *r, char **env, int child[3])
{
	sigset_t	 all, saved;
	pid_t		 pid;
	int		 e;

	sigfillset(&all);
	(void)sigprocmask(SIG_SETMASK, &all, &saved);
	if ((pid = vfork()) == 0)
		cgi_child(r, env, child);
	e = errno;
	(void)sigprocmask(SIG_SETMASK, &saved, NULL);
	errno = e;
	return pid;
}

/* Our end of a pipe: it must not block the relay. */
static int
cgi_nonblock(int fd)
{
	/* A new pipe end has no other status flag to keep. */
	return fcntl(fd, F_SETFL, O_NONBLOCK);
}

/*
 * Forks and execs the program.  Returns 0, or the HTTP status to answer
 * with (logged) when it could not start, or -1 after a logged failure.
 * Its stdin is /dev/null when the body has ended already (a GET): no
 * pipe to make, fill and close.
 */
static int
cgi_spawn(struct cgi_run *r)
{
	const struct fpmd_host	*host = r->host;
	int			 in[2] = { -1, -1 }, out[2] = { -1, -1 };
	int			 err[2] = { -1, -1 };
	int			 child[3], code = 500;
	bool			 devnull;
	char			**env;

	if ((env = cgi_env(r)) == NULL) {
		host->log(FPMD_LOG_ERROR, "%s: cannot run it: out of memory",
		    r->script);
		return 500;
	}
	if (r->cw->nsigs == -1)
		cgi_signals(r->cw);
	devnull = r->body_done && r->ilen == 0 && r->cw->devnull != -1;
	if ((!devnull && pipe2(in, O_CLOEXEC) == -1) ||
	    pipe2(out, O_CLOEXEC) == -1 || pipe2(err, O_CLOEXEC) == -1) {
		host->log(FPMD_LOG_ERROR, "%s: cannot run it: pipe: %s",
		    r->script, strerror(errno));
		goto fail;
	}
	child[0] = devnull ? r->cw->devnull : in[0];
	child[1] = out[1];
	child[2] = err[1];
	r->fail_errno = 0;
	/* Back here once it has exec'd or exited: it set its group first. */
	if ((r->pid = cgi_vfork(r, env, child)) == -1) {
		host->log(FPMD_LOG_ERROR, "%s: cannot run it: vfork: %s",
		    r->script, strerror(errno));
		goto fail;
	}
	r->started_ms = now_ms();
	free(env);
	env = NULL;
	cgi_close(&in[0]);
	cgi_close(&out[1]);
	cgi_close(&err[1]);
	if (r->fail_errno != 0) {
		host->log(FPMD_LOG_WARNING, "%s: cannot %s %s: %s%s",
		    r->script, r->fail_step == CGI_STEP_CHDIR ? "chdir to" :
		    r->fail_step == CGI_STEP_EXEC ? "execute" :
		    "prepare to run", r->fail_step == CGI_STEP_CHDIR ?
		    r->dir : r->path, strerror(r->fail_errno),
		    r->fail_step == CGI_STEP_EXEC && r->fail_errno == ENOENT ?
		    " (is its #! interpreter installed?)" : "");
		code = r->fail_errno == EACCES ? 403 : 500;
		(void)cgi_reap(r);
		goto fail;
	}
	r->in = in[1];
	r->out = out[0];
	r->err = err[0];
	if ((r->in != -1 && cgi_nonblock(r->in) == -1) ||
	    cgi_nonblock(r->out) == -1 || cgi_nonblock(r->err) == -1) {
		host->log(FPMD_LOG_ERROR, "%s: fcntl: %s", r->script,
		    strerror(errno));
		return -1;
	}
	return 0;
fail:
	free(env);
	cgi_close(&in[0]);
	cgi_close(&in[1]);
	cgi_close(&out[0]);
	cgi_close(&out[1]);
	cgi_close(&err[0]);
	cgi_close(&err[1]);
	return code;
}

/*
 * Takes what the client has sent of the body into ibuf, without waiting:
 * CGI_GONE, or CGI_RUNNING with ilen bytes there, body_done at its end,
 * or conn_wait when the client owes more.
 */
static enum cgi_end
cgi_body_read(struct cgi_run *r)
{
	ssize_t	 n;

	n = r->host->read_stdin_nowait(r->req, r->cw->ibuf,
	    sizeof(r->cw->ibuf));
	if (n == -1)
		return CGI_GONE;
	if (n == -2) {
		/* The stall clock runs only while the client owes. */
		r->conn_wait = true;
		r->wait_ms = now_ms();
		return CGI_RUNNING;
	}
	r->ipos = 0;
	r->ilen = (size_t)n;
	if (n == 0)
		r->body_done = true;
	return CGI_RUNNING;
}

/*
 * Moves the request body on: takes more from the client when the last
 * piece went to the program, writes what is waiting.  Once the program
 * closed its stdin the rest of the body is read and dropped, so that the
 * connection stays usable.  Returns CGI_RUNNING or CGI_GONE.
 */
static enum cgi_end
cgi_body(struct cgi_run *r)
{
	ssize_t	 n;

	for (;;) {
		while (r->in != -1 && r->ipos < r->ilen) {
			n = write(r->in, r->cw->ibuf + r->ipos,
			    r->ilen - r->ipos);
			if (n > 0) {
				r->ipos += (size_t)n;
				continue;
			}
			if (n == -1 && errno == EINTR)
				continue;
			if (n == -1 && errno == EAGAIN)
				return CGI_RUNNING;
			/* EPIPE: it will not read the rest. */
			cgi_close(&r->in);
		}
		if (r->body_done) {
			cgi_close(&r->in);
			return CGI_RUNNING;
		}
		if (r->conn_wait)
			return CGI_RUNNING;
		if (cgi_body_read(r) == CGI_GONE)
			return CGI_GONE;
		if (r->conn_wait)
			return CGI_RUNNING;
	}
}

/*
 * True while the program's output must wait: the client still sends the
 * body and the program may still read it.
 */
static bool
cgi_holding(const struct cgi_run *r)
{
	return !r->body_done && r->in != -1;
}

/* Holds output back in an unlinked file under $TMPDIR (or /tmp). */
static enum cgi_end
cgi_spool(struct cgi_run *r, const char *buf, size_t len)
{
	const char	*dir = getenv("TMPDIR");
	char		 tmpl[PATH_MAX];
	ssize_t		 n;

	if (dir == NULL || *dir == '\0')
		dir = "/tmp";
	if (r->spool == -1 && (r->spool = open(dir, O_TMPFILE | O_RDWR |
	    O_CLOEXEC, 0600)) == -1 && errno == EOPNOTSUPP) {
		/* A file system without O_TMPFILE (overlayfs before 6.6). */
		snprintf(tmpl, sizeof(tmpl), "%s/fpmd-cgi.XXXXXX", dir);
		if ((r->spool = mkostemp(tmpl, O_CLOEXEC)) != -1)
			(void)unlink(tmpl);
	}
	if (r->spool == -1) {
		r->host->log(FPMD_LOG_ERROR, "%s: cannot hold its output until "
		    "the request body is read: %s: %s", r->script, dir,
		    strerror(errno));
		return CGI_FAILED;
	}
	while (len > 0) {
		if ((n = write(r->spool, buf, len)) == -1) {
			if (errno == EINTR)
				continue;
			r->host->log(FPMD_LOG_ERROR, "%s: cannot hold its "
			    "output until the request body is read: %s",
			    r->script, strerror(errno));
			return CGI_FAILED;
		}
		buf += n;
		len -= (size_t)n;
		r->spool_len += n;
	}
	return CGI_RUNNING;
}

/* Sends what was held back, if anything, then lets output flow. */
static enum cgi_end
cgi_unspool(struct cgi_run *r)
{
	off_t	 off = 0;
	ssize_t	 n;

	if (r->spool == -1)
		return CGI_RUNNING;
	while (off < r->spool_len) {
		n = pread(r->spool, r->cw->sbuf, sizeof(r->cw->sbuf), off);
		if (n <= 0) {
			r->host->log(FPMD_LOG_ERROR, "%s: reading its held "
			    "output: %s", r->script, n == 0 ? "truncated" :
			    strerror(errno));
			return CGI_FAILED;
		}
		r->sent = true;
		if (r->host->write_stdout(r->req, r->cw->sbuf, (size_t)n) ==
		    -1)
			return CGI_GONE;
		off += n;
	}
	cgi_close(&r->spool);
	return r->host->flush(r->req) == -1 ? CGI_GONE : CGI_RUNNING;
}

/* Output for the client: held back or sent, in order. */
static enum cgi_end
cgi_emit(struct cgi_run *r, const char *buf, size_t len)
{
	enum cgi_end	 end;

	if (cgi_holding(r))
		return cgi_spool(r, buf, len);
	if ((end = cgi_unspool(r)) != CGI_RUNNING)
		return end;
	r->sent = true;
	return r->host->write_stdout(r->req, buf, len) == -1 ? CGI_GONE :
	    CGI_RUNNING;
}

/* Sends what cgi_emit() buffered, unless it is held back. */
static enum cgi_end
cgi_flush(struct cgi_run *r)
{
	if (cgi_holding(r))
		return CGI_RUNNING;
	return r->host->flush(r->req) == -1 ? CGI_GONE : CGI_RUNNING;
}

static bool
cgi_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') ||
	    (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* True when V (LEN bytes) is "NNN" or "NNN reason" with NNN in 100-599. */
static bool
cgi_status_valid(const char *v, size_t len)
{
	return len >= 3 && v[0] >= '1' && v[0] <= '5' && v[1] >= '0' &&
	    v[1] <= '9' && v[2] >= '0' && v[2] <= '9' &&
	    (len == 3 || v[3] == ' ' || v[3] == '\t');
}

/*
 * The header block head[0..end) is complete: checks it, then sends it
 * with a Status first and CR LF line ends (CGI allows bare LF), then
 * what came after it.
 *
 * Status: as the program says.  Without it, a Location means a redirect.
 * RFC 3875 6.2.2 wants a local one ("Location: /path") served by the
 * server itself, as if requested; but the web server routes requests,
 * not fpmd, and a FastCGI response cannot ask it to.  fcgiwrap passes the
 * header on and leaves the rest to the web server (nginx answers 302,
 * others differ); fpmd says "302 Found" itself, so that every web server
 * sends the client to the same path, which serves what the local
 * redirect would have.  An absolute URI is a client redirect: 302 too
 * (6.2.3).  Neither: 200 OK, said explicitly for the same reason.
 */
/*
 * The head line at P (the head ends before END, after its blank line):
 * its length without the CR LF, 0 for the blank line; *NEXT is the line
 * after it.
 */
static size_t
cgi_head_line(const char *p, const char *end, const char **next)
{
	const char	*nl = memchr(p, '\n', (size_t)(end - p));
	size_t		 len = (size_t)(nl - p);

	*next = nl + 1;
	return len > 0 && p[len - 1] == '\r' ? len - 1 : len;
}

static enum cgi_end
cgi_head_send(struct cgi_run *r, size_t end)
{
	const char		*h = r->cw->head, *p, *next, *colon, *v;
	const char		*status = NULL;
	size_t			 len, nlen, vlen, slen = 0, nlines = 0;
	bool			 location = false;
	enum cgi_end		 e;

	for (p = h; p < h + end &&
	    (len = cgi_head_line(p, h + end, &next)) > 0; p = next) {
		colon = memchr(p, ':', len);
		nlen = colon == NULL ? 0 : (size_t)(colon - p);
		for (vlen = 0; vlen < nlen && cgi_tchar((unsigned char)p[vlen]);
		    vlen++)
			;
		if (nlen == 0 || vlen != nlen) {
			r->why = "a header line is not \"Name: value\"";
			return CGI_BADHEAD;
		}
		v = colon + 1;
		vlen = len - nlen - 1;
		while (vlen > 0 && (*v == ' ' || *v == '\t')) {
			v++;
			vlen--;
		}
		while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
			vlen--;
		if (nlen == 6 && strncasecmp(p, "Status", 6) == 0) {
			if (status != NULL) {
				r->why = "two Status headers";
				return CGI_BADHEAD;
			}
			if (!cgi_status_valid(v, vlen)) {
				r->why = "a Status header without a code "
				    "from 100 to 599";
				return CGI_BADHEAD;
			}
			status = v;
			slen = vlen;
		} else if (nlen == 8 && strncasecmp(p, "Location", 8) == 0)
			location = true;
		nlines++;
	}
	if (nlines == 0) {
		r->why = "no header before the blank line";
		return CGI_BADHEAD;
	}

	r->head_done = true;
	if (status == NULL) {
		status = location ? "302 Found" : "200 OK";
		slen = strlen(status);
	}
	if ((e = cgi_emit(r, "Status: ", 8)) != CGI_RUNNING ||
	    (e = cgi_emit(r, status, slen)) != CGI_RUNNING ||
	    (e = cgi_emit(r, "\r\n", 2)) != CGI_RUNNING)
		return e;
	for (p = h; p < h + end &&
	    (len = cgi_head_line(p, h + end, &next)) > 0; p = next) {
		if (strncasecmp(p, "Status:", 7) == 0)
			continue;
		if ((e = cgi_emit(r, p, len)) != CGI_RUNNING ||
		    (e = cgi_emit(r, "\r\n", 2)) != CGI_RUNNING)
			return e;
	}
	if ((e = cgi_emit(r, "\r\n", 2)) != CGI_RUNNING ||
	    (e = cgi_emit(r, h + end, r->hlen - end)) != CGI_RUNNING)
		return e;
	return cgi_flush(r);
}

/* LEN bytes of the program's stdout: headers until they end, then body. */
static enum cgi_end
cgi_output(struct cgi_run *r, const char *buf, size_t len)
{
	struct cgi_worker	*cw = r->cw;
	const char		*p, *nl;
	size_t			 take;
	enum cgi_end		 end;

	if (r->head_done) {
		if ((end = cgi_emit(r, buf, len)) != CGI_RUNNING)
			return end;
		return cgi_flush(r);
	}
	take = len < CGI_HEAD_MAX - r->hlen ? len : CGI_HEAD_MAX - r->hlen;
	memcpy(cw->head + r->hlen, buf, take);
	r->hlen += take;
	/* A blank line ends the headers; look only at what is new. */
	for (p = cw->head + r->hscan; (nl = memchr(p, '\n',
	    r->hlen - (size_t)(p - cw->head))) != NULL; p = nl + 1) {
		if (nl == p || (nl == p + 1 && *p == '\r')) {
			end = cgi_head_send(r, (size_t)(nl + 1 - cw->head));
			if (end != CGI_RUNNING || take == len)
				return end;
			return cgi_output(r, buf + take, len - take);
		}
	}
	r->hscan = (size_t)(p - cw->head);
	if (r->hlen == CGI_HEAD_MAX) {
		r->why = "headers longer than 64 KB";
		return CGI_BADHEAD;
	}
	return CGI_RUNNING;
}

/* Logs the stderr line gathered so far, if it holds anything. */
static void
cgi_log_line(struct cgi_run *r)
{
	size_t	 len = r->llen;

	if (len > 0 && r->cw->line[len - 1] == '\r')
		len--;
	if (len > 0)
		r->host->log(FPMD_LOG_WARNING, "%s said into stderr: \"%.*s\"",
		    r->script, (int)len, r->cw->line);
	r->llen = 0;
}

/* LEN bytes of the program's stderr: one log line per line. */
static void
cgi_stderr(struct cgi_run *r, const char *buf, size_t len)
{
	unsigned char	 c;
	size_t		 i;

	for (i = 0; i < len; i++) {
		c = (unsigned char)buf[i];
		if (c == '\n') {
			cgi_log_line(r);
			continue;
		}
		if (r->llen == CGI_LINE_MAX)
			cgi_log_line(r);
		/* No control characters in the log, a \r at the end aside. */
		r->cw->line[r->llen++] = (c < 0x20 && c != '\t' && c != '\r') ||
		    c == 0x7f ? '?' : (char)c;
	}
}

/* Reads what the program wrote on FD (its stdout or stderr) once. */
static enum cgi_end
cgi_read(struct cgi_run *r, int *fd)
{
	char	 buf[4096];
	ssize_t	 n;

	if (fd == &r->out)
		n = read(*fd, r->cw->obuf, sizeof(r->cw->obuf));
	else
		n = read(*fd, buf, sizeof(buf));
	if (n == -1 && (errno == EINTR || errno == EAGAIN))
		return CGI_RUNNING;
	if (n <= 0) {
		if (n == -1)
			r->host->log(FPMD_LOG_WARNING, "%s: read: %s",
			    r->script, strerror(errno));
		if (fd == &r->err)
			cgi_log_line(r);
		cgi_close(fd);
		return CGI_RUNNING;
	}
	if (fd == &r->out)
		return cgi_output(r, r->cw->obuf, (size_t)n);
	cgi_stderr(r, buf, (size_t)n);
	return CGI_RUNNING;
}

/* How long poll may wait, in ms (-1: no limit). */
static int
cgi_poll_ms(const struct cgi_run *r, int64_t now)
{
	const struct cgi_worker	*cw = r->cw;
	int64_t			 ms = INT_MAX, left;
	bool			 limited = false;

	if (cw->timeout_ms > 0) {
		ms = r->started_ms + cw->timeout_ms - now;
		limited = true;
	}
	if (r->stall_ms > 0 && r->conn_wait && !r->body_done) {
		left = r->wait_ms + r->stall_ms - now;
		ms = left < ms ? left : ms;
		limited = true;
	}
	/* Its output ended: only its exit is awaited now. */
	if (r->pidfd == -1 && !r->exited && r->out == -1 && r->err == -1) {
		ms = ms < CGI_TICK_MS ? ms : CGI_TICK_MS;
		limited = true;
	}
	if (!limited)
		return -1;
	return ms < 0 ? 0 : ms > INT_MAX ? INT_MAX : (int)ms;
}

/*
 * The relay: body to the program, its stdout to the client, its stderr to
 * the log, until it has exited and closed both, or something ends it.
 * Waits on the client only for the body or a hang-up: a kept connection
 * may hold records for later, which are not ours to read.
 */
static enum cgi_end
cgi_relay(struct cgi_run *r)
{
	const struct fpmd_host	*host = r->host;
	struct pollfd		 pfd[5];
	int			 npfd, ci, ii, oi, ei, pi, ms;
	int64_t			 now;
	enum cgi_end		 end;

	for (;;) {
		if (host->aborted(r->req))
			return CGI_GONE;
		if ((end = cgi_body(r)) != CGI_RUNNING)
			return end;
		if (!cgi_holding(r) && (end = cgi_unspool(r)) != CGI_RUNNING)
			return end;
		if (r->out == -1 && r->err == -1) {
			cgi_check_exit(r);
			if (r->exited)
				return CGI_EXITED;
			cgi_watch_exit(r);
		}
		now = now_ms();
		if (r->cw->timeout_ms > 0 &&
		    now >= r->started_ms + r->cw->timeout_ms)
			return CGI_TIMEOUT;
		if (r->stall_ms > 0 && r->conn_wait && !r->body_done &&
		    now >= r->wait_ms + r->stall_ms)
			return CGI_STALLED;

		npfd = 0;
		ci = npfd++;
		pfd[ci].fd = host->conn_fd(r->req);
		pfd[ci].events = POLLRDHUP |
		    (r->conn_wait && !r->body_done ? POLLIN : 0);
		ii = oi = ei = pi = -1;
		/* POLLERR when the program closes its stdin. */
		if (r->in != -1) {
			ii = npfd++;
			pfd[ii].fd = r->in;
			pfd[ii].events = r->ipos < r->ilen ? POLLOUT : 0;
		}
		if (r->out != -1) {
			oi = npfd++;
			pfd[oi].fd = r->out;
			pfd[oi].events = POLLIN;
		}
		if (r->err != -1) {
			ei = npfd++;
			pfd[ei].fd = r->err;
			pfd[ei].events = POLLIN;
		}
		if (r->pidfd != -1 && !r->exited) {
			pi = npfd++;
			pfd[pi].fd = r->pidfd;
			pfd[pi].events = POLLIN;
		}
		ms = cgi_poll_ms(r, now);
		if (poll(pfd, (nfds_t)npfd, ms) == -1) {
			if (errno == EINTR)
				continue;
			host->log(FPMD_LOG_ERROR, "%s: poll: %s", r->script,
			    strerror(errno));
			return CGI_FAILED;
		}
		if (pfd[ci].revents & (POLLRDHUP | POLLHUP | POLLERR |
		    POLLNVAL))
			return CGI_GONE;
		if (pfd[ci].revents & POLLIN)
			r->conn_wait = false;
		if (oi != -1 && pfd[oi].revents != 0 &&
		    (end = cgi_read(r, &r->out)) != CGI_RUNNING)
			return end;
		if (ei != -1 && pfd[ei].revents != 0)
			(void)cgi_read(r, &r->err);
		if (pi != -1 && pfd[pi].revents != 0)
			cgi_check_exit(r);
		/* A POLLOUT on stdin is taken by cgi_body(). */
		if (ii != -1 && pfd[ii].revents & (POLLERR | POLLHUP))
			cgi_close(&r->in);
	}
}

/*
 * Ends the program's whole process group, the program's own children
 * included: SIGTERM, up to CGI_GRACE_MS for the program to exit, then
 * SIGKILL for whatever is left.  The program stays unreaped until after
 * the last killpg(), so that its pid cannot name another group.
 */
static void
cgi_kill(struct cgi_run *r)
{
	int64_t		 until = now_ms() + CGI_GRACE_MS, left;
	struct pollfd	 pfd;

	cgi_watch_exit(r);
	pfd.fd = r->pidfd;
	pfd.events = POLLIN;
	(void)killpg(r->pid, SIGTERM);
	for (;;) {
		cgi_check_exit(r);
		left = until - now_ms();
		if (r->exited || left <= 0)
			break;
		(void)poll(r->pidfd != -1 ? &pfd : NULL,
		    r->pidfd != -1 ? 1 : 0, (int)(left < CGI_TICK_MS ||
		    r->pidfd != -1 ? left : CGI_TICK_MS));
	}
	(void)killpg(r->pid, SIGKILL);
}

/* Logs how the run ended and answers if it still can; handle's value. */
static int
cgi_finish(struct cgi_run *r, enum cgi_end end, int status)
{
	const struct fpmd_host	*host = r->host;
	char			 how[64];

	cgi_exit_str(status, how, sizeof(how));
	switch (end) {
	case CGI_RUNNING:
	case CGI_EXITED:
		/*
		 * A signal may have stopped it anywhere in its body: a
		 * response begun ends as broken, one held back becomes 502.
		 */
		if (r->head_done && WIFSIGNALED(status)) {
			host->log(FPMD_LOG_WARNING, "%s %s %s", r->script, how,
			    r->sent ? "after its response had begun: ended "
			    "it as truncated" : "after its headers: answered "
			    "502");
			return cgi_answer(r, "502 Bad Gateway");
		}
		if (r->head_done) {
			if (WEXITSTATUS(status) != 0)
				host->log(FPMD_LOG_WARNING, "%s %s", r->script,
				    how);
			/* Held back while a child of it kept stdin open. */
			switch (cgi_unspool(r)) {
			case CGI_RUNNING:
				return 0;
			case CGI_GONE:
				return -1;
			default:
				return cgi_answer(r, "500 Internal Server "
				    "Error");
			}
		}
		host->log(FPMD_LOG_WARNING, "%s %s %s: answered 502",
		    r->script, how, r->hlen == 0 ? "without any output" :
		    "before the end of its headers");
		return cgi_answer(r, "502 Bad Gateway");
	case CGI_TIMEOUT:
		host->log(FPMD_LOG_WARNING, "%s ran past timeout (%lld ms): "
		    "killed its process group, %s", r->script,
		    (long long)r->cw->timeout_ms, r->sent ? "ended its "
		    "response as truncated" : "answered 504");
		return cgi_answer(r, "504 Gateway Timeout");
	case CGI_STALLED:
		host->log(FPMD_LOG_WARNING, "%s: the client sent no more of "
		    "the request body for %lld ms: killed its process group, "
		    "%s", r->script, (long long)r->stall_ms, r->sent ?
		    "ended its response as truncated" : "answered 408");
		return cgi_answer(r, "408 Request Timeout");
	case CGI_GONE:
		host->log(FPMD_LOG_NOTICE, "%s: the client went away: killed "
		    "its process group", r->script);
		return -1;
	case CGI_BADHEAD:
		host->log(FPMD_LOG_WARNING, "%s sent malformed response "
		    "headers (%s): killed its process group, answered 502",
		    r->script, r->why);
		return cgi_answer(r, "502 Bad Gateway");
	case CGI_FAILED:
		break;
	}
	return cgi_answer(r, "500 Internal Server Error");
}

static const char *
cgi_status_text(int code)
{
	switch (code) {
	case 403:
		return "403 Forbidden";
	case 404:
		return "404 Not Found";
	default:
		return "500 Internal Server Error";
	}
}

static int
cgi_handle(const struct fpmd_host *host, struct fpmd_request *req,
    void *data)
{
	struct cgi_run	 r;
	enum cgi_end	 end;
	int		 code, status;

	memset(&r, 0, sizeof(r));
	r.host = host;
	r.req = req;
	r.cw = data;
	r.in = r.out = r.err = r.pidfd = r.spool = -1;
	r.script = host->param(req, "SCRIPT_FILENAME");
	/* read_stdin_nowait() leaves the stall limit to us. */
	r.stall_ms = host->read_timeout_ms(req);
	/* CGI has no second input stream for FCGI_DATA. */
	if (host->role(req) == FPMD_ROLE_FILTER) {
		host->log(FPMD_LOG_WARNING, "cgi: a FILTER request: the cgi "
		    "handler runs RESPONDER and AUTHORIZER requests only");
		return cgi_answer(&r, "501 Not Implemented");
	}
	if ((code = cgi_resolve(&r)) != 0)
		return cgi_answer(&r, cgi_status_text(code));
	/* What has come of the body: none at all (a GET) needs no pipe. */
	if (cgi_body_read(&r) == CGI_GONE) {
		host->log(FPMD_LOG_NOTICE, "%s: the client went away before "
		    "it started", r.script);
		return -1;
	}
	if ((code = cgi_spawn(&r)) > 0)
		return cgi_answer(&r, cgi_status_text(code));
	end = code == -1 ? CGI_FAILED : cgi_relay(&r);
	if (end != CGI_EXITED)
		cgi_kill(&r);
	cgi_close(&r.in);
	cgi_close(&r.out);
	cgi_close(&r.err);
	cgi_log_line(&r);
	status = cgi_reap(&r);
	code = cgi_finish(&r, end, status);
	cgi_close(&r.spool);
	return code;
}

const struct fpmd_handler h_cgi = {
	.abi_version = FPMD_HANDLER_ABI,
	.struct_size = sizeof(struct fpmd_handler),
	.name = "cgi",
	.check_options = cgi_check_options,
	.worker_init = cgi_worker_init,
	.handle = cgi_handle,
	.worker_fini = cgi_worker_fini,
};
