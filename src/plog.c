/*
 * plog.c -- a pool's log files, seen from both sides of fork: access.log
 * and slowlog, opened by the master before any worker forks and inherited
 * on fixed fd numbers, and the pool's own error_log (log.c routes to it);
 * in the worker, one access line per request, written by the worker
 * itself after the request, in one write, with no length limit.
 *
 * Reopening (SIGUSR1, fpmctl reopen) restarts no worker.  The master opens
 * each path again and dup3()s the new file onto the fd number the workers
 * inherited, then bumps the pool's log generation in the scoreboard.  A
 * worker compares it with its own at the start of each request; when it
 * moved, the worker fetches the files from the master over its log
 * channel (wlog_fetch) and dup3()s them onto the same numbers.  The worker
 * cannot open the paths itself: it has dropped privileges and may be
 * chrooted.  A worker idle meanwhile holds the old file until its next
 * request, and writes nothing to it.
 *
 * A request pays only for what its pool's access.format shows: the
 * worker asks access_needs() once, then makes the system calls of %C, %M
 * and %R only for a format that has them, and never asks for its own pid
 * or its master's again.
 */
#include "config.h"

#include <sys/resource.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fpmd.h"

/* Log files are created readable by the group, not the world. */
#define PLOG_FILE_MODE	0640

/*
 * What the worker's format needs, and the pids, which stay the same for
 * the worker's life (its parent is the master, and it dies with it).
 * Set at the first request, in the worker itself: no process that forks
 * workers serves requests, so no worker inherits another's.
 */
static struct {
	const char	*format;	/* what NEEDS was worked out for */
	unsigned int	 needs;		/* ACCESS_NEED_* */
	pid_t		 pid;
	pid_t		 master_pid;
} plog_worker;

/* The request a worker is serving: one at a time. */
static struct {
	bool			 on;	/* an access line is due */
	double			 start;
	struct rusage		 self;
	struct rusage		 children;
	struct access_head	 head;
	struct buf		 line;	/* reused: no allocation per request */
} plog_req;

static bool
plog_is_stream(const char *target)
{
	return strcmp(target, "stdout") == 0 || strcmp(target, "stderr") == 0;
}

/* A file, or a copy of the master's stdout or stderr (for containers). */
static int
plog_file(const char *target)
{
	if (strcmp(target, "stdout") == 0)
		return fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
	if (strcmp(target, "stderr") == 0)
		return fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
	return open(target, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
	    PLOG_FILE_MODE);
}

int
plog_open(struct pool *p, char *err, size_t errlen)
{
	const struct pool_conf	*pc = p->conf;

	p->access_fd = p->slow_fd = -1;
	if (pc->access_log != NULL &&
	    (p->access_fd = plog_file(pc->access_log)) == -1) {
		snprintf(err, errlen, "access.log %s: %s", pc->access_log,
		    strerror(errno));
		goto fail;
	}
	if (pc->slowlog != NULL && (p->slow_fd = plog_file(pc->slowlog)) == -1) {
		snprintf(err, errlen, "slowlog %s: %s", pc->slowlog,
		    strerror(errno));
		goto fail;
	}
	if (pc->error_log != NULL && log_pool_open(pc->name,
	    pc->error_log) == -1) {
		snprintf(err, errlen, "error_log %s: %s", pc->error_log,
		    strerror(errno));
		goto fail;
	}
	p->log_gen = p->sb->pool->log_gen;
	p->logs_open = true;
	return 0;
fail:
	if (p->access_fd != -1)
		close(p->access_fd);
	if (p->slow_fd != -1)
		close(p->slow_fd);
	p->access_fd = p->slow_fd = -1;
	return -1;
}

void
plog_close(struct pool *p)
{
	if (!p->logs_open)
		return;
	if (p->access_fd != -1)
		close(p->access_fd);
	if (p->slow_fd != -1)
		close(p->slow_fd);
	p->access_fd = p->slow_fd = -1;
	if (p->conf->error_log != NULL)
		log_pool_close(p->conf->name);
	p->logs_open = false;
}

/* Opens TARGET again onto FD's number. */
static int
plog_reopen_fd(int fd, const char *target)
{
	int	 nfd;

	if (fd == -1 || target == NULL || plog_is_stream(target))
		return 0;
	if ((nfd = plog_file(target)) == -1)
		return -1;
	if (dup3(nfd, fd, O_CLOEXEC) == -1) {
		close(nfd);
		return -1;
	}
	close(nfd);
	return 0;
}

int
plog_reopen(struct pool *p)
{
	const struct pool_conf	*pc = p->conf;
	int			 rc = 0;

	if (!p->logs_open)
		return 0;
	if (plog_reopen_fd(p->access_fd, pc->access_log) == -1) {
		log_warn("[pool %s] cannot reopen the access log %s", pc->name,
		    pc->access_log);
		rc = -1;
	}
	if (plog_reopen_fd(p->slow_fd, pc->slowlog) == -1) {
		log_warn("[pool %s] cannot reopen the slowlog %s", pc->name,
		    pc->slowlog);
		rc = -1;
	}
	/* Workers fetch the files at their next request. */
	p->log_gen++;
	__atomic_store_n(&p->sb->pool->log_gen, p->log_gen, __ATOMIC_RELEASE);
	return rc;
}

/* Once a worker: the pool's format and address never change in it. */
static void
plog_worker_init(const struct pool *p)
{
	plog_worker.format = p->conf->access_format;
	plog_worker.needs = access_needs(plog_worker.format);
	/* access.suppress_path looks at the status. */
	if (p->conf->naccess_suppress_path > 0)
		plog_worker.needs |= ACCESS_NEED_HEAD;
	/* On a Unix socket %R shows "-": nothing to ask. */
	if (p->conf->addr.family == AF_UNIX)
		plog_worker.needs &= ~(unsigned int)ACCESS_NEED_PEER;
	plog_worker.pid = getpid();
	plog_worker.master_pid = getppid();
}

void
plog_request_begin(struct pool *p)
{
	uint32_t	 gen;
	int		 fds[2] = { p->access_fd, p->slow_fd };

	gen = __atomic_load_n(&p->sb->pool->log_gen, __ATOMIC_ACQUIRE);
	/* On failure the old files stay, and the next request tries again. */
	if (gen != p->log_gen && (fds[0] != -1 || fds[1] != -1) &&
	    wlog_fetch(log_fd(), fds) == 0)
		p->log_gen = gen;
	if (p->slow_fd != -1)
		slowlog_request_begin();
	plog_req.on = p->access_fd != -1;
	if (!plog_req.on)
		return;
	if (plog_worker.format != p->conf->access_format)
		plog_worker_init(p);
	plog_req.start = now_real();
	if (plog_worker.needs & ACCESS_NEED_CPU) {
		getrusage(RUSAGE_SELF, &plog_req.self);
		getrusage(RUSAGE_CHILDREN, &plog_req.children);
	}
	access_head_reset(&plog_req.head);
}

void
plog_response(const void *data, size_t len)
{
	if (plog_req.on && (plog_worker.needs & ACCESS_NEED_HEAD))
		access_head_feed(&plog_req.head, data, len);
}

static const char *
plog_param(void *ctx, const char *name)
{
	return handler_host.param(ctx, name);
}

static double
plog_secs(const struct timeval *tv)
{
	return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

/* %C: the CPU since the request began, the worker's and its programs'. */
static void
plog_cpu(struct access_req *a, const struct rusage *self)
{
	struct rusage	 children;

	getrusage(RUSAGE_CHILDREN, &children);
	a->cpu_user = plog_secs(&self->ru_utime) -
	    plog_secs(&plog_req.self.ru_utime) +
	    plog_secs(&children.ru_utime) -
	    plog_secs(&plog_req.children.ru_utime);
	a->cpu_system = plog_secs(&self->ru_stime) -
	    plog_secs(&plog_req.self.ru_stime) +
	    plog_secs(&children.ru_stime) -
	    plog_secs(&plog_req.children.ru_stime);
}

/*
 * %R: the address of the FastCGI peer (the web server), as the worker's
 * accept4() gave it, so that no request asks the kernel; "-" for Unix.
 */
static void
plog_peer(const struct sockaddr_storage *ss, char *out, size_t len)
{
	const void	*a = NULL;

	strlcpy_(out, "-", len);
	if (ss->ss_family == AF_INET)
		a = &((const struct sockaddr_in *)ss)->sin_addr;
	else if (ss->ss_family == AF_INET6)
		a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
	if (a != NULL && inet_ntop(ss->ss_family, a, out, (socklen_t)len) ==
	    NULL)
		strlcpy_(out, "-", len);
}

void
plog_request_end(struct pool *p, struct fpmd_request *r)
{
	struct access_req	 a;
	struct rusage		 self;
	char			 peer[INET6_ADDRSTRLEN] = "-";
	const char		*s;
	size_t			 left;
	ssize_t			 n;

	if (!plog_req.on || p->access_fd == -1)
		return;
	plog_req.on = false;
	memset(&a, 0, sizeof(a));
	a.pool = p->conf->name;
	a.pid = plog_worker.pid;
	a.master_pid = plog_worker.master_pid;
	a.param = plog_param;
	a.ctx = r;
	a.head = &plog_req.head;
	a.peer = peer;
	a.start = plog_req.start;
	a.end = now_real();
	if (access_suppressed(p->conf->access_suppress_path,
	    p->conf->naccess_suppress_path, &a))
		return;
	if (plog_worker.needs & (ACCESS_NEED_CPU | ACCESS_NEED_MEMORY)) {
		getrusage(RUSAGE_SELF, &self);
		a.memory = (uint64_t)self.ru_maxrss * 1024;
		if (plog_worker.needs & ACCESS_NEED_CPU)
			plog_cpu(&a, &self);
	}
	if (plog_worker.needs & ACCESS_NEED_PEER)
		plog_peer(worker_peer(r), peer, sizeof(peer));
	plog_req.line.len = 0;
	plog_req.line.failed = false;
	access_format(p->conf->access_format, &a, &plog_req.line);
	if (plog_req.line.failed) {
		log_warnx("access log: out of memory, a line is lost");
		return;
	}
	/* One write a line (O_APPEND): lines of workers never mix. */
	s = plog_req.line.data;
	left = plog_req.line.len;
	while (left > 0) {
		n = write(p->access_fd, s, left);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			log_warn("cannot write the access log");
			return;
		}
		s += n;
		left -= (size_t)n;
	}
}
