/*
 * ctl.c -- the control socket fpmctl(8) talks to (control.listen).
 *
 * A Unix socket only root (the master's user) can use: mode 0600, in a
 * directory the operator controls.  One command a connection: a line in
 * ("status [POOL] [--json]", "reload [POOL]", "reopen", "stop [graceful]"),
 * an answer out whose first line starts "ok" or "error: ", then the
 * connection closes.
 *
 * Taboos: it runs in the master's loop and never blocks; a client that
 * sends nothing for CTL_TIMEOUT_MS is dropped.
 */
#include "config.h"

#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fpmd.h"

#define CTL_TIMEOUT_MS	5000
#define CTL_MAX_LINE	1024

struct ctl_conn {
	TAILQ_ENTRY(ctl_conn)	 entry;
	struct ev_source	 ev;
	int			 fd;
	char			 in[CTL_MAX_LINE];
	size_t			 inlen;
	struct buf		 out;
	size_t			 off;
	int64_t			 deadline;
};

static struct {
	int			 fd;
	int			 ep;
	struct sock_addr	 addr;
	struct ev_source	 ev;
	TAILQ_HEAD(, ctl_conn)	 conns;
} ctl = { .fd = -1, .ep = -1, .conns = TAILQ_HEAD_INITIALIZER(ctl.conns) };

int
ctl_open(const char *path, int ep, char *err, size_t errlen)
{
	struct epoll_event	 ev = { .events = EPOLLIN };
	struct stat		 st;
	mode_t			 old;
	int			 fd, rc;

	if (path == NULL)
		return 0;
	if (sock_addr_parse(path, &ctl.addr, err, errlen) == -1)
		return -1;
	if (ctl.addr.family != AF_UNIX) {
		snprintf(err, errlen, "%s: control.listen must be a Unix "
		    "socket path", path);
		return -1;
	}
	/* A live master answering there is not ours to replace. */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "%s exists and is not a socket",
			    path);
			return -1;
		}
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		rc = fd == -1 ? -1 : connect(fd,
		    (const struct sockaddr *)&ctl.addr.ss, ctl.addr.len);
		if (fd != -1)
			close(fd);
		if (rc == 0) {
			snprintf(err, errlen, "%s is in use by another master",
			    path);
			return -1;
		}
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1)
		goto syserr;
	/* Never reachable by anyone else, not even between bind and chmod. */
	old = umask(077);
	rc = bind(fd, (const struct sockaddr *)&ctl.addr.ss, ctl.addr.len);
	umask(old);
	if (rc == -1 || chmod(path, 0600) == -1 || listen(fd, 16) == -1)
		goto syserr;
	ctl.ev.kind = EV_CTL_LISTEN;
	ev.data.ptr = &ctl.ev;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == -1)
		goto syserr;
	ctl.fd = fd;
	ctl.ep = ep;
	return 0;
syserr:
	snprintf(err, errlen, "%s: %s", path, strerror(errno));
	if (fd != -1) {
		close(fd);
		unlink(path);
	}
	return -1;
}

/* Out of the loop before close(): see statusd_drop(). */
static void
ctl_drop(struct ctl_conn *c)
{
	TAILQ_REMOVE(&ctl.conns, c, entry);
	(void)epoll_ctl(ctl.ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	buf_free(&c->out);
	free(c);
}

void
ctl_accept(int ep)
{
	struct epoll_event	 ev = { .events = EPOLLIN };
	struct ctl_conn		*c;
	int			 fd;

	while ((fd = accept4(ctl.fd, NULL, NULL,
	    SOCK_NONBLOCK | SOCK_CLOEXEC)) != -1) {
		if ((c = calloc(1, sizeof(*c))) == NULL) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->ev.kind = EV_CTL_CONN;
		c->ev.ptr = c;
		c->deadline = now_ms() + CTL_TIMEOUT_MS;
		ev.data.ptr = &c->ev;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == -1) {
			close(fd);
			free(c);
			continue;
		}
		TAILQ_INSERT_TAIL(&ctl.conns, c, entry);
	}
}

/* Runs one command line; the answer goes to OUT. */
static void
ctl_exec(char *line, struct buf *out)
{
	char		*words[4], *save = NULL, *w;
	size_t		 n = 0;
	struct buf	 page = { 0 };
	bool		 json = false;
	const char	*pool = NULL;

	for (w = strtok_r(line, " \t\r", &save); w != NULL && n < 4;
	    w = strtok_r(NULL, " \t\r", &save))
		words[n++] = w;
	if (n == 0) {
		buf_printf(out, "error: empty command\n");
		return;
	}
	if (strcmp(words[0], "status") == 0) {
		for (size_t i = 1; i < n; i++) {
			if (strcmp(words[i], "--json") == 0)
				json = true;
			else
				pool = words[i];
		}
		if (master_ctl_status(pool, json, &page) == -1)
			buf_printf(out, "error: no pool %s\n", pool);
		else {
			buf_printf(out, "ok\n");
			buf_add(out, page.data, page.len);
		}
		buf_free(&page);
	} else if (strcmp(words[0], "reload") == 0 && n <= 2) {
		(void)master_reload(n == 2 ? words[1] : NULL, &page);
		buf_add(out, page.data, page.len);
		buf_add(out, "\n", 1);
		buf_free(&page);
	} else if (strcmp(words[0], "reopen") == 0 && n == 1) {
		if (master_reopen() == -1)
			buf_printf(out, "error: cannot reopen the error log: "
			    "%s\n", strerror(errno));
		else
			buf_printf(out, "ok: logs reopened\n");
	} else if (strcmp(words[0], "stop") == 0 && (n == 1 ||
	    (n == 2 && strcmp(words[1], "graceful") == 0))) {
		buf_printf(out, "ok: stopping\n");
		master_ctl_stop(n == 2);
	} else
		buf_printf(out, "error: unknown command \"%s\"\n", words[0]);
}

static int
ctl_flush(struct ctl_conn *c, int ep)
{
	struct epoll_event	 ev = { .events = EPOLLOUT, .data.ptr = &c->ev };
	ssize_t			 n;

	while (c->off < c->out.len) {
		n = send(c->fd, c->out.data + c->off, c->out.len - c->off,
		    MSG_NOSIGNAL);
		if (n > 0)
			c->off += (size_t)n;
		else if (n == -1 && errno == EINTR)
			continue;
		else if (n == -1 && errno == EAGAIN)
			return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) == -1 ?
			    -1 : 1;
		else
			return -1;
	}
	return 0;
}

void
ctl_on_event(struct ctl_conn *c, int ep, uint32_t events)
{
	char	*nl;
	ssize_t	 n;

	if (c->out.len == 0 && (events & EPOLLIN)) {
		n = recv(c->fd, c->in + c->inlen, sizeof(c->in) - 1 - c->inlen,
		    0);
		if (n <= 0) {
			if (n == 0 || errno != EAGAIN)
				ctl_drop(c);
			return;
		}
		c->inlen += (size_t)n;
		c->in[c->inlen] = '\0';
		if ((nl = strchr(c->in, '\n')) == NULL) {
			if (c->inlen == sizeof(c->in) - 1)
				ctl_drop(c);
			return;
		}
		*nl = '\0';
		ctl_exec(c->in, &c->out);
		if (c->out.failed) {
			ctl_drop(c);
			return;
		}
	}
	if (c->out.len > 0 && ctl_flush(c, ep) != 1)
		ctl_drop(c);
}

void
ctl_expire(int64_t now)
{
	struct ctl_conn	*c, *next;

	TAILQ_FOREACH_SAFE(c, &ctl.conns, entry, next)
		if (now >= c->deadline)
			ctl_drop(c);
}

void
ctl_close(void)
{
	struct ctl_conn	*c;

	while ((c = TAILQ_FIRST(&ctl.conns)) != NULL)
		ctl_drop(c);
	if (ctl.fd != -1) {
		(void)epoll_ctl(ctl.ep, EPOLL_CTL_DEL, ctl.fd, NULL);
		sock_close(ctl.fd, &ctl.addr);
		ctl.fd = -1;
	}
}
