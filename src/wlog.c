/*
 * wlog.c -- what workers write, carried to the master, seen from both
 * sides of fork.
 *
 * Every worker gets, before fork, a SOCK_SEQPACKET socketpair: its log
 * channel.  The worker's own log lines (log.c) go over it one line a
 * message, so they need no framing and arrive whole; the master writes
 * them to the error log, which it alone holds, so that reopening the log
 * covers every worker without restarting any.  The channel is also how a
 * worker fetches its pool's access and slow logs after a reopen: it asks,
 * the master answers with the files (SCM_RIGHTS).
 *
 * With catch_workers_output, the worker's stdout and stderr are a pipe
 * each (a handler's or a library's plain writes need no framing of
 * ours); the master splits them into lines and logs each at WARNING, as
 * PHP-FPM does.  Without it, they are /dev/null.  Each worker has its own
 * pipes and the master writes whole lines, so lines of two workers never
 * interleave; a line longer than log_limit becomes consecutive lines.
 *
 * The master's ends are non-blocking and O_CLOEXEC; the child's ends are
 * blocking (a fast writer waits for the master rather than losing lines).
 */
#include "config.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fpmd.h"

/* A line longer than this is logged in parts as it comes. */
#define WLOG_LINE_MAX	(1024 * 1024)
/* Read per event from one pipe, so that one chatty worker cannot starve
 * the rest (the loop is level-triggered: the rest comes next round). */
#define WLOG_READ_MAX	(64 * 1024)
/* Messages taken per event from one channel, for the same reason. */
#define WLOG_MSGS_MAX	64
/* The largest record: a log line (log.c caps it at 64 KiB) and a header. */
#define WLOG_REC_MAX	(64 * 1024 + 16)
/* How long a worker waits for its log files after a reopen. */
#define WLOG_FETCH_MS	1000

enum wlog_msg {
	WLOG_MSG_LOG = 1,	/* worker -> master: level, then the text */
	WLOG_MSG_FETCH,		/* worker -> master: my pool's log files? */
	WLOG_MSG_FILES		/* master -> worker: here (SCM_RIGHTS) */
};

struct wlog_hdr {
	uint8_t	 type;
	uint8_t	 level;		/* WLOG_MSG_LOG */
	uint8_t	 mask;		/* WLOG_MSG_FILES: bit i, fds[i] is sent */
	uint8_t	 pad;
};

struct wlog_stream {
	struct ev_source	 ev;
	struct wlog		*w;
	const char		*name;		/* "stdout", "stderr" */
	int			 fd;		/* the master's end, or -1 */
	int			 child_fd;	/* before fork only */
	char			*buf;		/* a line not yet ended */
	size_t			 len;
	size_t			 cap;
};

struct wlog {
	struct pool		*pool;
	pid_t			 pid;
	int			 chan;		/* the master's end, or -1 */
	int			 child_chan;	/* before fork only */
	struct ev_source	 ev_chan;
	struct wlog_stream	 out[2];
	SLIST_ENTRY(wlog)	 spare;
};

static int	 wlog_ep = -1;
/*
 * A freed wlog is kept for the next worker, never given back: events for
 * its fds may still wait in the batch epoll_wait returned (the child was
 * reaped earlier in the same batch), and must find a struct whose fds are
 * -1, or those of another worker, where a read finds nothing.
 */
static SLIST_HEAD(, wlog) wlog_spares = SLIST_HEAD_INITIALIZER(wlog_spares);

void
wlog_init(int ep)
{
	wlog_ep = ep;
}

static void
wlog_close(int *fd)
{
	if (*fd != -1) {
		close(*fd);
		*fd = -1;
	}
}

/* Stops watching FD and closes it (other processes may hold copies). */
static void
wlog_unwatch(int *fd)
{
	if (*fd != -1 && wlog_ep != -1)
		(void)epoll_ctl(wlog_ep, EPOLL_CTL_DEL, *fd, NULL);
	wlog_close(fd);
}

struct wlog *
wlog_new(struct pool *p)
{
	struct wlog	*w;
	int		 sv[2], fds[2], i, saved;

	if ((w = SLIST_FIRST(&wlog_spares)) != NULL) {
		SLIST_REMOVE_HEAD(&wlog_spares, spare);
		memset(w, 0, sizeof(*w));
	} else if ((w = calloc(1, sizeof(*w))) == NULL)
		return NULL;
	w->pool = p;
	w->chan = w->child_chan = -1;
	for (i = 0; i < 2; i++) {
		w->out[i].fd = w->out[i].child_fd = -1;
		w->out[i].w = w;
		w->out[i].name = i == 0 ? "stdout" : "stderr";
		w->out[i].ev.kind = EV_WORKER_OUTPUT;
		w->out[i].ev.pool = p;
		w->out[i].ev.ptr = &w->out[i];
	}
	w->ev_chan.kind = EV_WORKER_LOG;
	w->ev_chan.pool = p;
	w->ev_chan.ptr = w;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1)
		goto fail;
	w->chan = sv[0];
	w->child_chan = sv[1];
	if (fd_set_flags(w->chan, true) == -1)
		goto fail;
	for (i = 0; p->conf->catch_workers_output && i < 2; i++) {
		if (pipe2(fds, O_CLOEXEC) == -1)
			goto fail;
		w->out[i].fd = fds[0];
		w->out[i].child_fd = fds[1];
		if (fd_set_flags(fds[0], true) == -1)
			goto fail;
	}
	return w;
fail:
	saved = errno;
	wlog_free(w);
	errno = saved;
	return NULL;
}

void
wlog_child(struct wlog *w)
{
	wlog_child_fds(w->child_chan, w->out[0].child_fd, w->out[1].child_fd);
}

void
wlog_child_fds(int chan, int out, int err)
{
	int	 null, i, fds[2] = { out, err };

	/*
	 * The child's ends may sit on 0-2 if the master was started with
	 * those closed: lift them out of the way first.
	 */
	if (chan <= STDERR_FILENO)
		chan = fcntl(chan, F_DUPFD_CLOEXEC, 3);
	for (i = 0; i < 2; i++)
		if (fds[i] != -1 && fds[i] <= STDERR_FILENO)
			fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
	log_set_channel(chan);
	if ((null = open("/dev/null", O_RDWR | O_CLOEXEC)) == -1) {
		log_warn("open /dev/null");
		return;
	}
	(void)dup2(null, STDIN_FILENO);
	for (i = 0; i < 2; i++) {
		(void)dup2(fds[i] != -1 ? fds[i] : null, STDOUT_FILENO + i);
		if (fds[i] != -1)
			close(fds[i]);
	}
	if (null > STDERR_FILENO)
		close(null);
}

void
wlog_child_ends(const struct wlog *w, int fds[3])
{
	fds[0] = w->child_chan;
	fds[1] = w->out[0].child_fd;
	fds[2] = w->out[1].child_fd;
}

void
wlog_parent(struct wlog *w, pid_t pid)
{
	struct epoll_event	 ev = { .events = EPOLLIN };
	int			 i;

	w->pid = pid;
	wlog_close(&w->child_chan);
	ev.data.ptr = &w->ev_chan;
	if (epoll_ctl(wlog_ep, EPOLL_CTL_ADD, w->chan, &ev) == -1)
		log_warn("[pool %s] child %ld: epoll_ctl (log channel)",
		    w->pool->conf->name, (long)pid);
	for (i = 0; i < 2; i++) {
		wlog_close(&w->out[i].child_fd);
		if (w->out[i].fd == -1)
			continue;
		ev.data.ptr = &w->out[i].ev;
		if (epoll_ctl(wlog_ep, EPOLL_CTL_ADD, w->out[i].fd, &ev) == -1)
			log_warn("[pool %s] child %ld: epoll_ctl (%s)",
			    w->pool->conf->name, (long)pid, w->out[i].name);
	}
}

/* One line of a worker's stdout or stderr, into the error log. */
static void
wlog_line(struct wlog_stream *st, const char *text, size_t len)
{
	const struct pool_conf	*pc = st->w->pool->conf;
	struct log_rec		 r;
	char			 prefix[320];

	memset(&r, 0, sizeof(r));
	r.level = LOG_WARNING;
	r.pool = pc->name;
	r.poollen = strlen(pc->name);
	r.pid = st->w->pid;
	r.text = text;
	r.len = len;
	if (pc->decorate_workers_output) {
		snprintf(prefix, sizeof(prefix), "[pool %s] child %ld said "
		    "into %s: \"", pc->name, (long)st->w->pid, st->name);
		r.prefix = prefix;
		r.suffix = "\"";
	} else
		r.bare = true;
	log_emit(&r);
}

/* Logs every whole line in the stream's buffer, and keeps the rest. */
static void
wlog_lines(struct wlog_stream *st)
{
	char	*p = st->buf, *end = st->buf + st->len, *nl;

	while (p < end && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		wlog_line(st, p, (size_t)(nl - p));
		p = nl + 1;
	}
	st->len = (size_t)(end - p);
	memmove(st->buf, p, st->len);
	/* Too long to wait for its end: log what came as a line. */
	if (st->len == WLOG_LINE_MAX) {
		wlog_line(st, st->buf, st->len);
		st->len = 0;
	}
}

/* Reads what one pipe holds, up to WLOG_READ_MAX; false once it closed. */
static bool
wlog_read(struct wlog_stream *st, size_t max)
{
	size_t	 want, got = 0;
	ssize_t	 n;
	char	*nb;

	while (got < max) {
		if (st->cap - st->len < 4096 && st->cap < WLOG_LINE_MAX) {
			want = st->cap == 0 ? 16384 : st->cap * 2;
			if (want > WLOG_LINE_MAX)
				want = WLOG_LINE_MAX;
			if ((nb = realloc(st->buf, want)) == NULL) {
				log_warn("[pool %s] child %ld: %s",
				    st->w->pool->conf->name, (long)st->w->pid,
				    st->name);
				return false;
			}
			st->buf = nb;
			st->cap = want;
		}
		n = read(st->fd, st->buf + st->len, st->cap - st->len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return n == -1 && (errno == EAGAIN ||
			    errno == EWOULDBLOCK);
		st->len += (size_t)n;
		got += (size_t)n;
		wlog_lines(st);
	}
	return true;
}

/*
 * The pipe closed (or the child is gone): what is left, the last line,
 * then close.  Bounded: a program the worker ran may still hold the pipe.
 */
static void
wlog_stream_end(struct wlog_stream *st)
{
	if (st->fd != -1)
		(void)wlog_read(st, WLOG_LINE_MAX);
	if (st->len > 0)
		wlog_line(st, st->buf, st->len);
	st->len = 0;
	wlog_unwatch(&st->fd);
	free(st->buf);
	st->buf = NULL;
	st->cap = 0;
}

/* Answers a worker's fetch: its pool's access and slow log files. */
static void
wlog_send_files(struct wlog *w)
{
	const struct pool	*p = w->pool;
	struct wlog_hdr		 h = { .type = WLOG_MSG_FILES };
	int			 fds[2], n = 0;
	union {
		struct cmsghdr	 hdr;
		char		 buf[CMSG_SPACE(sizeof(fds))];
	}			 cm;
	struct iovec		 iov = { .iov_base = &h, .iov_len = sizeof(h) };
	struct msghdr		 msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr		*c;

	if (p->access_fd != -1) {
		h.mask |= 1;
		fds[n++] = p->access_fd;
	}
	if (p->slow_fd != -1) {
		h.mask |= 2;
		fds[n++] = p->slow_fd;
	}
	if (n > 0) {
		memset(&cm, 0, sizeof(cm));
		msg.msg_control = cm.buf;
		msg.msg_controllen = CMSG_SPACE(n * sizeof(int));
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(n * sizeof(int));
		memcpy(CMSG_DATA(c), fds, n * sizeof(int));
	}
	if (sendmsg(w->chan, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) == -1)
		log_warn("[pool %s] child %ld: cannot hand over the reopened "
		    "logs", p->conf->name, (long)w->pid);
}

/* Takes what a channel holds, up to MAX messages; false once it closed. */
static bool
wlog_recv(struct wlog *w, int max)
{
	static char		 rec[WLOG_REC_MAX];
	const struct pool_conf	*pc = w->pool->conf;
	struct wlog_hdr		 h;
	struct log_rec		 r;
	char			 prefix[320];
	ssize_t			 n;

	while (max-- > 0) {
		n = recv(w->chan, rec, sizeof(rec), MSG_DONTWAIT | MSG_TRUNC);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return n == -1 && (errno == EAGAIN ||
			    errno == EWOULDBLOCK);
		if ((size_t)n < sizeof(h))
			continue;
		if ((size_t)n > sizeof(rec))
			n = sizeof(rec);
		memcpy(&h, rec, sizeof(h));
		if (h.type == WLOG_MSG_FETCH) {
			wlog_send_files(w);
			continue;
		}
		if (h.type != WLOG_MSG_LOG)
			continue;
		snprintf(prefix, sizeof(prefix), "[pool %s] child %ld: ",
		    pc->name, (long)w->pid);
		memset(&r, 0, sizeof(r));
		r.level = h.level;
		r.pool = pc->name;
		r.poollen = strlen(pc->name);
		r.pid = w->pid;
		r.prefix = prefix;
		r.text = rec + sizeof(h);
		r.len = (size_t)n - sizeof(h);
		log_emit(&r);
	}
	return true;
}

void
wlog_on_event(struct ev_source *src, uint32_t events)
{
	struct wlog_stream	*st;
	struct wlog		*w;

	if (src->kind == EV_WORKER_OUTPUT) {
		st = src->ptr;
		if (st->fd != -1 && !wlog_read(st, WLOG_READ_MAX))
			wlog_stream_end(st);
		return;
	}
	w = src->ptr;
	if (w->chan != -1 && !wlog_recv(w, WLOG_MSGS_MAX))
		wlog_unwatch(&w->chan);
}

void
wlog_free(struct wlog *w)
{
	int	 i;

	if (w == NULL)
		return;
	if (w->chan != -1 && w->pid != 0)
		(void)wlog_recv(w, INT_MAX);
	for (i = 0; i < 2; i++) {
		if (w->pid != 0)
			wlog_stream_end(&w->out[i]);
		wlog_unwatch(&w->out[i].fd);
		wlog_close(&w->out[i].child_fd);
		free(w->out[i].buf);
	}
	wlog_unwatch(&w->chan);
	wlog_close(&w->child_chan);
	SLIST_INSERT_HEAD(&wlog_spares, w, spare);
}

void
wlog_send(int channel, int level, const char *msg, size_t len)
{
	struct wlog_hdr	 h = { .type = WLOG_MSG_LOG, .level = (uint8_t)level };
	struct iovec	 iov[2];
	struct msghdr	 m = { .msg_iov = iov, .msg_iovlen = 2 };

	iov[0].iov_base = &h;
	iov[0].iov_len = sizeof(h);
	iov[1].iov_base = (void *)(uintptr_t)msg;
	iov[1].iov_len = len < WLOG_REC_MAX - sizeof(h) ? len :
	    WLOG_REC_MAX - sizeof(h);
	/* Blocking: the master always reads, and a line must not be lost. */
	while (sendmsg(channel, &m, MSG_NOSIGNAL) == -1 && errno == EINTR)
		;
}

/* Puts the files of a WLOG_MSG_FILES answer on the numbers in FDS. */
static void
wlog_take_files(const struct wlog_hdr *h, struct msghdr *msg,
    const int fds[2])
{
	struct cmsghdr	*c;
	int		 got[2] = { -1, -1 }, n = 0, i, j = 0;

	for (c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR(msg, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			n = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			if (n > 2)
				n = 2;
			memcpy(got, CMSG_DATA(c), (size_t)n * sizeof(int));
		}
	for (i = 0; i < 2; i++) {
		if (!(h->mask & (1 << i)))
			continue;
		if (j < n && fds[i] != -1 && got[j] != -1)
			(void)dup3(got[j], fds[i], O_CLOEXEC);
		if (j < n && got[j] != -1)
			close(got[j]);
		j++;
	}
}

/*
 * Reads one answer from the master, waiting at most TIMEOUT_MS (0: not
 * at all).  1 when one came, 0 when none, -1 when the channel failed.
 */
static int
wlog_answer(int channel, const int fds[2], int timeout_ms)
{
	struct wlog_hdr	 h;
	struct iovec	 iov = { .iov_base = &h, .iov_len = sizeof(h) };
	union {
		struct cmsghdr	 hdr;
		char		 buf[CMSG_SPACE(2 * sizeof(int))];
	}		 cm;
	struct msghdr	 msg;
	struct pollfd	 pfd = { .fd = channel, .events = POLLIN };
	ssize_t		 n;
	int		 rc;

	for (;;) {
		memset(&msg, 0, sizeof(msg));
		msg.msg_iov = &iov;
		msg.msg_iovlen = 1;
		msg.msg_control = cm.buf;
		msg.msg_controllen = sizeof(cm.buf);
		n = recvmsg(channel, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n >= (ssize_t)sizeof(h) && h.type == WLOG_MSG_FILES) {
			wlog_take_files(&h, &msg, fds);
			return 1;
		}
		if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR))
			return -1;
		if (n > 0 || (n == -1 && errno == EINTR))
			continue;
		if (timeout_ms == 0)
			return 0;
		rc = poll(&pfd, 1, timeout_ms);
		if (rc == 0)
			return 0;
		if (rc == -1 && errno != EINTR)
			return -1;
	}
}

int
wlog_fetch(int channel, const int fds[2])
{
	struct wlog_hdr	 h = { .type = WLOG_MSG_FETCH };

	/* A late answer to an earlier fetch that timed out: apply, go on. */
	while (wlog_answer(channel, fds, 0) == 1)
		;
	if (send(channel, &h, sizeof(h), MSG_NOSIGNAL) == -1)
		return -1;
	return wlog_answer(channel, fds, WLOG_FETCH_MS) == 1 ? 0 : -1;
}
