/*
 * worker.c -- a worker's life after fork and privilege drop: accept on the
 * pool's socket, read one FastCGI request at a time, run the handler,
 * stream its output, end the request, keep the connection if asked.
 *
 * The request API of fpmd/handler.h (handler_host) lives here, since it
 * is a view of the request being served.
 *
 * Rules: a bad peer costs its connection, never the worker (no fatal()
 * here); every wait has a deadline; the worker leaves only at the top of
 * its accept loop, never with an accepted connection unserved.  A
 * graceful stop (SIGQUIT) only sets a flag and wakes the waits through a
 * self-pipe, so it is acted on exactly where the worker is idle.
 */
#include "config.h"

#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/uio.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fpmd.h"

#define RBUF_SIZE	(64 * 1024)
/* Header + largest content + largest alignment padding, then the empty
 * STDOUT record and END_REQUEST that end a response. */
#define OBUF_SIZE	(FCGI_HEADER_LEN + FCGI_MAX_CONTENT + 7 + \
			    FCGI_HEADER_LEN + FCGI_HEADER_LEN + 8)

volatile sig_atomic_t worker_quit;

/* What the content of the record being read is for. */
enum rec_use {
	REC_SKIP,	/* not ours: an ended or never begun id, junk */
	REC_KEEP,	/* a small record to act on at its end: kept in rec */
	REC_PARAMS,	/* appended to the request's params */
	REC_STDIN,	/* handed to the handler's read_stdin */
	REC_DATA	/* handed to the handler's read_data */
};

/* What a pump waits for. */
enum want {
	WANT_BEGIN,
	WANT_PARAMS,
	WANT_STDIN,
	WANT_DATA,
	WANT_NOTHING	/* only what is there: an abort, a close, management */
};

struct conn {
	int			 fd;
	struct fcgi_parser	 parser;
	uint8_t			*rbuf;
	size_t			 rpos;
	size_t			 rlen;
	enum rec_use		 use;
	uint8_t			 rec[FCGI_MAX_CONTENT];
	size_t			 reclen;
	const uint8_t		*pend;		/* unread STDIN or DATA */
	size_t			 pend_len;
	enum rec_use		 pend_use;
	int64_t			 rcvtimeo_ms;	/* SO_RCVTIMEO set on fd */
	bool			 dead;		/* nothing more can be written */
	bool			 close;		/* close after this response */
	bool			 linger;	/* the client may still be sending */
	const char		*why;		/* why it ended, for the log */
	struct sockaddr_storage	 peer;		/* accept4() said (%R) */
};

struct param {
	const char	*name;
	const char	*value;
};

struct fpmd_request {
	struct worker_ctx	*w;
	struct conn		*c;
	bool			 active;
	uint16_t		 id;
	uint16_t		 role;
	bool			 keep_conn;
	bool			 params_done;
	bool			 params_too_big;
	bool			 stdin_done;
	bool			 data_done;
	bool			 aborted;
	bool			 timed_out;	/* the client stalled mid-request */
	uint64_t		 stdin_bytes;
	/* The raw PARAMS stream, then NUL-terminated copies of each pair. */
	uint8_t			*praw;
	size_t			 praw_len;
	size_t			 praw_cap;
	char			*pstore;
	size_t			 pstore_cap;
	struct param		*params;
	size_t			 nparams;
	size_t			 params_cap;
	/* STDOUT being built: obuf[8..8+olen) is the next record's content. */
	uint8_t			*obuf;
	size_t			 olen;
	bool			 out_sent;	/* any STDOUT left the worker */
	bool			 broken;	/* ends without END_REQUEST */
};

/*
 * A worker that dies in a request still answers it, if none of the answer
 * has left yet (STDERR records may have): a Status header on STDOUT and
 * END_REQUEST, where nginx would turn a bare close into 502.  It dies so
 * of a crash in the handler (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT:
 * 500), of the master's request_terminate_timeout (SIGTERM: 504) or of a
 * stop that could not wait (SIGTERM: 503).  Only async-signal-safe work: the records are
 * built in a static buffer and sent with one send().  Once some of the
 * answer may have left, nothing: the close says it is cut short; nor
 * while a record may be half written, which the answer would corrupt.
 */
#define LAST_ANSWER(status)	"Status: " status "\r\nContent-Type: " \
				"text/plain\r\n\r\n" status "\n"

static const char	 answer_500[] = LAST_ANSWER("500 Internal Server Error");
static const char	 answer_503[] = LAST_ANSWER("503 Service Unavailable");
static const char	 answer_504[] = LAST_ANSWER("504 Gateway Timeout");

static struct {
	volatile sig_atomic_t	 armed;		/* a request is under way */
	volatile sig_atomic_t	 sent;		/* its STDOUT or END_REQUEST
						 * may have left */
	volatile sig_atomic_t	 writing;	/* a record may be half out */
	volatile int		 fd;
	volatile uint16_t	 id;
} last;

static void
worker_last_answer(const char *body, size_t len)
{
	static uint8_t	 out[FCGI_HEADER_LEN + 128 + 8 + 2 * FCGI_HEADER_LEN +
			    8];
	uint8_t		 pad = fcgi_padding_for(len), *p = out;

	if (!last.armed || last.sent || last.writing || len > 128)
		return;
	last.sent = 1;
	fcgi_header_encode(p, FCGI_STDOUT, last.id, (uint16_t)len, pad);
	p += FCGI_HEADER_LEN;
	memcpy(p, body, len);
	memset(p + len, 0, pad);
	p += len + pad;
	fcgi_header_encode(p, FCGI_STDOUT, last.id, 0, 0);
	fcgi_header_encode(p + FCGI_HEADER_LEN, FCGI_END_REQUEST, last.id, 8,
	    0);
	fcgi_end_encode(p + 2 * FCGI_HEADER_LEN, 1, FCGI_REQUEST_COMPLETE);
	p += 2 * FCGI_HEADER_LEN + 8;
	(void)send(last.fd, out, (size_t)(p - out), MSG_NOSIGNAL |
	    MSG_DONTWAIT);
}

/*
 * A graceful stop (SIGQUIT) must end the waits between requests and
 * nothing else: the handler sets worker_quit and makes the self-pipe
 * readable, which the accept and poll waits watch, so no stop is lost
 * whatever instruction the signal lands on.  A wait on a kept connection
 * sees it within a slice (worker_idle_recv()).
 */
static int			 quit_pipe[2] = { -1, -1 };

static void
worker_on_quit(int sig)
{
	int	 saved = errno;

	worker_quit = 1;
	(void)write(quit_pipe[1], "q", 1);
	errno = saved;
}

/*
 * TERM means exit now, and a program the handler runs (see
 * worker_program_group()) goes with the worker.  The master kills the
 * program's group as well once it has reaped the worker, but a worker
 * terminated because the master itself died (the parent-death signal)
 * has nobody to do it.  SA_RESETHAND put the default action back: the
 * raise() kills the worker with the signal, as if it had none.
 */
static struct sb_slot		*term_slot;

static void
worker_on_term(int sig)
{
	int	 saved = errno;
	pid_t	 pgid;

	/* The master says why: request_terminate_timeout, or a stop. */
	if (__atomic_load_n(&term_slot->term_timeout, __ATOMIC_RELAXED))
		worker_last_answer(answer_504, sizeof(answer_504) - 1);
	else
		worker_last_answer(answer_503, sizeof(answer_503) - 1);
	errno = saved;
	pgid = __atomic_load_n(&term_slot->program_pgid, __ATOMIC_RELAXED);
	if (pgid > 0)
		(void)kill(-pgid, SIGKILL);
	(void)raise(sig);
}

/*
 * A crash in the handler: the 500, then the signal's default action
 * (SA_RESETHAND), delivered when this returns: the worker dies of it,
 * with a core dump where one is allowed, and the master logs it.
 */
static const int		 crash_signals[] = {
	SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT,
};

static void
worker_on_crash(int sig)
{
	int	 saved = errno;

	worker_last_answer(answer_500, sizeof(answer_500) - 1);
	errno = saved;
	(void)raise(sig);
}

/*
 * Before worker_init: the crash answer for the signals still at their
 * default action.  One a plugin took in pool_init (a runtime that handles
 * its own faults), or takes in worker_init, stays the plugin's.  An
 * alternate stack lets the answer out of a stack overflow too.
 */
void
worker_crash_guard(void)
{
	static uint8_t		 altstack[64 * 1024];
	stack_t			 ss = { .ss_sp = altstack,
				    .ss_size = sizeof(altstack) };
	struct sigaction	 sa, old;
	size_t			 i;

	(void)sigaltstack(&ss, NULL);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = worker_on_crash;
	sa.sa_flags = SA_RESETHAND | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	for (i = 0; i < sizeof(crash_signals) / sizeof(crash_signals[0]); i++)
		if (sigaction(crash_signals[i], NULL, &old) == 0 &&
		    old.sa_handler == SIG_DFL && !(old.sa_flags & SA_SIGINFO))
			(void)sigaction(crash_signals[i], &sa, NULL);
}

/*
 * Waits until FD is ready for EVENTS, at most TIMEOUT_MS (no limit when
 * negative).  With QUIT_OK a graceful stop interrupts the wait.  Returns 1
 * ready, 0 timed out or interrupted by a stop, -1 on error.
 */
static int
worker_wait(int fd, short events, int64_t timeout_ms, bool quit_ok)
{
	struct pollfd	 pfd[2] = {
		{ .fd = fd, .events = events },
		{ .fd = quit_pipe[0], .events = POLLIN },
	};
	int64_t		 deadline = now_ms() + timeout_ms, left;
	struct timespec	 ts;
	int		 n;

	for (;;) {
		if (quit_ok && worker_quit)
			return 0;
		left = deadline - now_ms();
		if (timeout_ms >= 0 && left <= 0)
			return 0;
		ts.tv_sec = left / 1000;
		ts.tv_nsec = (left % 1000) * 1000000;
		n = ppoll(pfd, quit_ok ? 2 : 1, timeout_ms < 0 ? NULL : &ts,
		    NULL);
		if (n > 0 && pfd[0].revents != 0)
			return 1;
		if (n > 0)
			continue;	/* the stop: seen at the top */
		if (n == 0)
			return 0;
		if (errno != EINTR)
			return -1;
	}
}

static int
worker_send_all(struct conn *c, const void *buf, size_t len, int64_t tmo)
{
	const uint8_t	*p = buf;
	ssize_t		 n;

	if (c->dead)
		return -1;
	while (len > 0) {
		n = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK) &&
		    worker_wait(c->fd, POLLOUT, tmo, false) == 1)
			continue;
		c->dead = true;
		c->why = n == -1 && errno != EAGAIN ? "write failed" :
		    "write timed out";
		return -1;
	}
	return 0;
}

/* Sends BUF whole; while it does, no last answer may come between. */
static int
worker_write_all(struct conn *c, const void *buf, size_t len, int64_t tmo)
{
	int	 rc;

	last.writing++;
	rc = worker_send_all(c, buf, len, tmo);
	last.writing--;
	return rc;
}

/* Sends one record whose content is CONTENT[0..LEN). */
static int
worker_send_record(struct conn *c, enum fcgi_type type, uint16_t id,
    const void *content, size_t len, int64_t tmo)
{
	static const uint8_t	 zeros[8];
	uint8_t			 hdr[FCGI_HEADER_LEN];
	uint8_t			 pad = fcgi_padding_for(len);
	struct iovec		 iov[3];
	struct msghdr		 msg;
	ssize_t			 n;
	size_t			 total = FCGI_HEADER_LEN + len + pad;

	fcgi_header_encode(hdr, type, id, (uint16_t)len, pad);
	iov[0].iov_base = hdr;
	iov[0].iov_len = sizeof(hdr);
	iov[1].iov_base = (void *)(uintptr_t)content;
	iov[1].iov_len = len;
	iov[2].iov_base = (void *)(uintptr_t)zeros;
	iov[2].iov_len = pad;
	if (c->dead)
		return -1;
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = iov;
	msg.msg_iovlen = 3;
	n = sendmsg(c->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n == (ssize_t)total)
		return 0;
	if (n == -1 && errno != EAGAIN && errno != EINTR) {
		c->dead = true;
		c->why = "write failed";
		return -1;
	}
	/* A short write: finish it piece by piece. */
	if (n < 0)
		n = 0;
	if ((size_t)n < sizeof(hdr)) {
		if (worker_write_all(c, hdr + n, sizeof(hdr) - (size_t)n,
		    tmo) == -1)
			return -1;
		n = 0;
	} else
		n -= (ssize_t)sizeof(hdr);
	if ((size_t)n < len) {
		if (worker_write_all(c, (const uint8_t *)content + n,
		    len - (size_t)n, tmo) == -1)
			return -1;
		n = 0;
	} else
		n -= (ssize_t)len;
	return worker_write_all(c, zeros, pad - (size_t)n, tmo);
}

static int
worker_write_record(struct conn *c, enum fcgi_type type, uint16_t id,
    const void *content, size_t len, int64_t tmo)
{
	int	 rc;

	last.writing++;
	rc = worker_send_record(c, type, id, content, len, tmo);
	last.writing--;
	return rc;
}

static void
worker_end_request(struct conn *c, uint16_t id, uint32_t app_status,
    enum fcgi_protocol_status ps, int64_t tmo)
{
	uint8_t	 body[8];

	fcgi_end_encode(body, app_status, ps);
	last.sent = 1;
	(void)worker_write_record(c, FCGI_END_REQUEST, id, body, 8, tmo);
}

/* Answers FCGI_GET_VALUES from the names in c->rec. */
static void
worker_get_values(struct worker_ctx *w, struct conn *c)
{
	uint8_t		 out[1024];
	size_t		 pos = 0, olen = 0, n;
	struct fcgi_nv	 nv;
	char		 val[16];
	const char	*v;

	snprintf(val, sizeof(val), "%d", w->pool->conf->max_children);
	while (fcgi_nv_decode(c->rec, c->reclen, &pos, &nv) == 1) {
		if (nv.name_len == 14 && memcmp(nv.name, "FCGI_MAX_CONNS",
		    14) == 0)
			v = val;
		else if (nv.name_len == 13 && memcmp(nv.name, "FCGI_MAX_REQS",
		    13) == 0)
			v = val;
		else if (nv.name_len == 15 && memcmp(nv.name,
		    "FCGI_MPXS_CONNS", 15) == 0)
			v = "0";
		else
			continue;	/* unknown names are omitted */
		n = fcgi_nv_encode(out + olen, sizeof(out) - olen, nv.name,
		    nv.name_len, v, strlen(v));
		olen += n;
	}
	(void)worker_write_record(c, FCGI_GET_VALUES_RESULT, 0, out, olen,
	    w->read_tmo);
}

/* A record has begun: decide what its content is for. */
static int
worker_on_header(struct fpmd_request *r, struct conn *c)
{
	const struct fcgi_header	*h = &c->parser.hdr;

	c->reclen = 0;
	c->use = REC_SKIP;
	if (h->request_id == 0) {
		if (h->type == FCGI_BEGIN_REQUEST) {
			c->why = "BEGIN_REQUEST with request id 0";
			return -1;
		}
		c->use = REC_KEEP;	/* management: GET_VALUES or unknown */
		return 0;
	}
	switch (h->type) {
	case FCGI_BEGIN_REQUEST:
		if (h->content_length != 8) {
			c->why = "BEGIN_REQUEST body is not 8 bytes";
			return -1;
		}
		c->use = REC_KEEP;
		break;
	case FCGI_ABORT_REQUEST:
		if (r->active && h->request_id == r->id)
			c->use = REC_KEEP;
		break;
	case FCGI_PARAMS:
		if (r->active && h->request_id == r->id && !r->params_done)
			c->use = REC_PARAMS;
		break;
	case FCGI_STDIN:
		if (r->active && h->request_id == r->id && r->params_done &&
		    !r->stdin_done)
			c->use = REC_STDIN;
		break;
	case FCGI_DATA:
		if (r->active && h->request_id == r->id && r->params_done &&
		    !r->data_done)
			c->use = REC_DATA;
		break;
	default:
		break;
	}
	return 0;
}

static void
worker_on_params(struct fpmd_request *r, const uint8_t *p, size_t len)
{
	uint64_t	 limit = r->w->pool->conf->max_params_size;
	size_t		 cap;
	uint8_t		*np;

	if (r->params_too_big)
		return;
	if (r->praw_len + len > limit) {
		r->params_too_big = true;
		return;
	}
	if (r->praw_len + len > r->praw_cap) {
		cap = r->praw_cap ? r->praw_cap : 16384;
		while (cap < r->praw_len + len)
			cap *= 2;
		if ((np = realloc(r->praw, cap)) == NULL) {
			r->params_too_big = true;
			return;
		}
		r->praw = np;
		r->praw_cap = cap;
	}
	memcpy(r->praw + r->praw_len, p, len);
	r->praw_len += len;
}

/* A record is complete: act on it. */
static int
worker_on_record_end(struct worker_ctx *w, struct fpmd_request *r,
    struct conn *c)
{
	const struct fcgi_header	*h = &c->parser.hdr;
	struct fcgi_begin		 b;
	int64_t				 tmo = w->read_tmo;

	switch (c->use) {
	case REC_SKIP:
		return 0;
	case REC_PARAMS:
		if (h->content_length == 0)
			r->params_done = true;
		return 0;
	case REC_STDIN:
		if (h->content_length == 0)
			r->stdin_done = true;
		return 0;
	case REC_DATA:
		if (h->content_length == 0)
			r->data_done = true;
		return 0;
	case REC_KEEP:
		break;
	}
	if (h->request_id == 0) {
		if (h->type == FCGI_GET_VALUES) {
			worker_get_values(w, c);
		} else {
			uint8_t	 body[8];

			fcgi_unknown_type_encode(body, h->type);
			(void)worker_write_record(c, FCGI_UNKNOWN_TYPE, 0,
			    body, 8, tmo);
		}
		return c->dead ? -1 : 0;
	}
	if (h->type == FCGI_ABORT_REQUEST) {
		r->aborted = true;
		return 0;
	}
	/* BEGIN_REQUEST. */
	(void)fcgi_begin_decode(c->rec, c->reclen, &b);
	if (r->active && h->request_id == r->id) {
		/* Ending it twice would end the client's request too soon. */
		c->why = "BEGIN_REQUEST for the request id already active";
		return -1;
	}
	if (r->active) {
		worker_end_request(c, h->request_id, 0, FCGI_CANT_MPX_CONN, tmo);
		return c->dead ? -1 : 0;
	}
	if (b.role < FPMD_ROLE_RESPONDER || b.role > FPMD_ROLE_FILTER) {
		worker_end_request(c, h->request_id, 0, FCGI_UNKNOWN_ROLE, tmo);
		if (c->dead || (b.flags & FCGI_KEEP_CONN))
			return c->dead ? -1 : 0;
		/* Its body may follow: drain it, or the client gets a reset. */
		c->close = c->linger = true;
		return -1;
	}
	r->active = true;
	r->id = h->request_id;
	r->role = b.role;
	r->keep_conn = (b.flags & FCGI_KEEP_CONN) != 0;
	return 0;
}

static bool
worker_want_met(const struct fpmd_request *r, const struct conn *c,
    enum want want)
{
	switch (want) {
	case WANT_BEGIN:
		return r->active;
	case WANT_PARAMS:
		return r->params_done || r->aborted;
	case WANT_STDIN:
		return r->stdin_done || r->aborted ||
		    (c->pend_len > 0 && c->pend_use == REC_STDIN);
	case WANT_DATA:
		return r->data_done || r->aborted ||
		    (c->pend_len > 0 && c->pend_use == REC_DATA);
	case WANT_NOTHING:
		return r->aborted;
	}
	return true;
}

/*
 * Waits on a kept connection for the client's next request, blocking in
 * recv() as libfcgi does (no poll first), for at most TIMEOUT_MS.
 * Returns recv()'s result, or -2 when the wait ran out or the worker must
 * leave.
 *
 * The wait is cut in slices of IDLE_SLICE_MS (SO_RCVTIMEO; a signal also
 * ends it, since a recv() with a timeout is never restarted).  A worker
 * asked to leave does not drop a kept connection the moment it hears:
 * the client may be writing a request on it right then (a POST lost that
 * way is a 502, nginx does not retry it).  It waits one more slice; a
 * request that comes is served, and after it the worker waits only
 * QUIT_SETTLE_MS (see worker_serve()).  A connection quiet that long is
 * closed.
 */
#define IDLE_SLICE_MS	250
#define QUIT_SETTLE_MS	20

static ssize_t
worker_idle_recv(struct conn *c, int64_t timeout_ms)
{
	struct timeval	 tv;
	int64_t		 slice, deadline, quit_deadline = 0, now;
	ssize_t		 n;

	if (timeout_ms <= 0)
		return -2;
	slice = timeout_ms < IDLE_SLICE_MS ? timeout_ms : IDLE_SLICE_MS;
	if (c->rcvtimeo_ms != slice) {
		tv.tv_sec = slice / 1000;
		tv.tv_usec = (slice % 1000) * 1000;
		if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv,
		    sizeof(tv)) == -1)
			return -1;
		c->rcvtimeo_ms = slice;
	}
	deadline = now_ms() + timeout_ms;
	for (;;) {
		n = recv(c->fd, c->rbuf, RBUF_SIZE, 0);
		if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != EINTR))
			return n;
		now = now_ms();
		if (worker_quit && quit_deadline == 0)
			quit_deadline = now + slice;
		if (now >= deadline || (quit_deadline != 0 &&
		    now >= quit_deadline))
			return -2;
	}
}

/*
 * Reads and acts on records until WANT is met.  Returns 0; -1 when the
 * connection is finished (c->why says why; NULL for a clean close); -2
 * when the client sent nothing for TIMEOUT_MS (we may still answer); -3
 * when TIMEOUT_MS is 0 and nothing more can be read without waiting.
 * QUIT_OK lets a graceful stop end the wait (between requests only).
 */
static int
worker_pump(struct worker_ctx *w, struct fpmd_request *r, enum want want,
    int64_t timeout_ms, bool quit_ok)
{
	struct conn	*c = r->c;
	enum fcgi_event	 ev;
	size_t		 used;
	ssize_t		 n;
	int		 rc;

	while (!worker_want_met(r, c, want)) {
		/* Content not taken by its reader is dropped now. */
		c->pend_len = 0;
		/*
		 * Parse first, even with no bytes left: a zero-length record
		 * completes without any.  Read only when the parser wants more.
		 */
		ev = fcgi_parse(&c->parser, c->rbuf + c->rpos,
		    c->rlen - c->rpos, &used);
		c->rpos += used;
		if (ev == FCGI_EV_NEED_MORE) {
			/*
			 * On a kept connection the client speaks only after
			 * our answer: block in recv() (SO_RCVTIMEO bounds it,
			 * a stop shuts its read side), as libfcgi does, and
			 * save a poll.  Anywhere else: never block.
			 */
			if (quit_ok) {
				n = worker_idle_recv(c, timeout_ms);
				quit_ok = false;
			} else
				n = recv(c->fd, c->rbuf, RBUF_SIZE,
				    MSG_DONTWAIT);
			if (n > 0) {
				c->rpos = 0;
				c->rlen = (size_t)n;
				continue;
			}
			if (n == -2) {
				c->why = NULL;	/* idle too long, or a stop */
				c->close = true;
				return -2;
			}
			if (n == 0) {
				c->why = want == WANT_BEGIN &&
				    c->parser.state == FCGI_ST_HEADER &&
				    c->parser.hfill == 0 ? NULL :
				    "the client closed the connection "
				    "mid-request";
				return -1;
			}
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				c->why = "read failed";
				return -1;
			}
			if (timeout_ms == 0 && !quit_ok)
				return -3;
			rc = worker_wait(c->fd, POLLIN, timeout_ms, quit_ok);
			if (rc == 1)
				continue;
			if (rc == -1) {
				c->why = "poll failed";
				return -1;
			}
			c->why = quit_ok ? NULL : "read timed out";
			c->close = true;
			return -2;
		}
		switch (ev) {
		case FCGI_EV_NEED_MORE:
			break;
		case FCGI_EV_ERROR:
			c->why = fcgi_error_str(c->parser.error);
			return -1;
		case FCGI_EV_HEADER:
			if (worker_on_header(r, c) == -1)
				return -1;
			break;
		case FCGI_EV_CONTENT:
			switch (c->use) {
			case REC_SKIP:
				break;
			case REC_KEEP:
				memcpy(c->rec + c->reclen, c->parser.ev_data,
				    c->parser.ev_len);
				c->reclen += c->parser.ev_len;
				break;
			case REC_PARAMS:
				worker_on_params(r, c->parser.ev_data,
				    c->parser.ev_len);
				break;
			case REC_STDIN:
			case REC_DATA:
				c->pend = c->parser.ev_data;
				c->pend_len = c->parser.ev_len;
				c->pend_use = c->use;
				if (worker_want_met(r, c, want))
					return 0;
				break;
			}
			break;
		case FCGI_EV_RECORD_END:
			if (worker_on_record_end(w, r, c) == -1)
				return -1;
			break;
		}
	}
	return 0;
}

/* Turns the raw PARAMS stream into NUL-terminated pairs; 0 or -1. */
static int
worker_decode_params(struct fpmd_request *r)
{
	struct fcgi_nv	 nv;
	size_t		 pos = 0, spos = 0, n = 0;
	struct param	*np;
	char		*ns;
	int		 rc;

	/* Copies need at most the raw size plus two NULs per pair. */
	while ((rc = fcgi_nv_decode(r->praw, r->praw_len, &pos, &nv)) == 1)
		n++;
	if (rc == -1)
		return -1;
	if (n > r->params_cap) {
		if ((np = reallocarray(r->params, n, sizeof(*np))) == NULL)
			return -1;
		r->params = np;
		r->params_cap = n;
	}
	if (r->praw_len + 2 * n > r->pstore_cap) {
		if ((ns = realloc(r->pstore, r->praw_len + 2 * n)) == NULL)
			return -1;
		r->pstore = ns;
		r->pstore_cap = r->praw_len + 2 * n;
	}
	pos = 0;
	r->nparams = 0;
	while (fcgi_nv_decode(r->praw, r->praw_len, &pos, &nv) == 1) {
		struct param	*p = &r->params[r->nparams++];

		p->name = r->pstore + spos;
		memcpy(r->pstore + spos, nv.name, nv.name_len);
		spos += nv.name_len;
		r->pstore[spos++] = '\0';
		p->value = r->pstore + spos;
		memcpy(r->pstore + spos, nv.value, nv.value_len);
		spos += nv.value_len;
		r->pstore[spos++] = '\0';
	}
	return 0;
}

/* Sends the STDOUT content gathered in obuf as one record. */
static int
worker_flush_stdout(struct fpmd_request *r)
{
	struct conn	*c = r->c;
	uint8_t		 pad = fcgi_padding_for(r->olen);
	int		 rc;

	if (r->olen == 0)
		return c->dead ? -1 : 0;
	fcgi_header_encode(r->obuf, FCGI_STDOUT, r->id, (uint16_t)r->olen,
	    pad);
	memset(r->obuf + FCGI_HEADER_LEN + r->olen, 0, pad);
	last.sent = 1;
	rc = worker_write_all(c, r->obuf, FCGI_HEADER_LEN + r->olen + pad,
	    r->w->read_tmo);
	r->olen = 0;
	r->out_sent = true;
	return rc;
}

/*
 * Ends the response: the last STDOUT content, the empty STDOUT record and
 * END_REQUEST leave in one write.
 */
static void
worker_finish(struct fpmd_request *r, uint32_t app_status)
{
	uint8_t		*p;
	size_t		 len = 0;
	uint8_t		 pad = fcgi_padding_for(r->olen);

	if (r->olen > 0) {
		fcgi_header_encode(r->obuf, FCGI_STDOUT, r->id,
		    (uint16_t)r->olen, pad);
		memset(r->obuf + FCGI_HEADER_LEN + r->olen, 0, pad);
		len = FCGI_HEADER_LEN + r->olen + pad;
		p = r->obuf + len;
	} else
		p = r->obuf;
	fcgi_header_encode(p, FCGI_STDOUT, r->id, 0, 0);
	fcgi_header_encode(p + FCGI_HEADER_LEN, FCGI_END_REQUEST, r->id, 8, 0);
	fcgi_end_encode(p + 2 * FCGI_HEADER_LEN, app_status,
	    FCGI_REQUEST_COMPLETE);
	len = (size_t)(p - r->obuf) + 2 * FCGI_HEADER_LEN + 8;
	last.sent = 1;
	(void)worker_write_all(r->c, r->obuf, len,
	    r->w->read_tmo);
	r->olen = 0;
}

/* An error answer nginx understands: a Status header on STDOUT. */
static void
worker_error_response(struct fpmd_request *r, const char *status)
{
	char	 buf[256];
	int	 n;

	if (r->out_sent || r->olen > 0)
		return;
	n = snprintf(buf, sizeof(buf), "Status: %s\r\nContent-Type: "
	    "text/plain\r\n\r\n%s\n", status, status);
	(void)handler_host.write_stdout(r, buf, (size_t)n);
}

static void
worker_slot_request(struct worker_ctx *w, struct fpmd_request *r)
{
	struct sb_slot	*s = w->slot;
	const char	*v;

	sb_slot_begin(s);
	s->state = SB_RUNNING;
	s->req_started = now_real();
	v = handler_host.param(r, "REQUEST_METHOD");
	strlcpy_(s->method, v ? v : "-", sizeof(s->method));
	v = handler_host.param(r, "REQUEST_URI");
	strlcpy_(s->uri, v ? v : "-", sizeof(s->uri));
	v = handler_host.param(r, "QUERY_STRING");
	strlcpy_(s->query, v ? v : "", sizeof(s->query));
	v = handler_host.param(r, "SCRIPT_FILENAME");
	strlcpy_(s->script, v ? v : "-", sizeof(s->script));
	v = handler_host.param(r, "CONTENT_LENGTH");
	s->content_length = v ? strtoull(v, NULL, 10) : 0;
	v = handler_host.param(r, "REMOTE_USER");
	strlcpy_(s->user, v ? v : "-", sizeof(s->user));
	sb_slot_end(s);
}

static void
worker_slot_state(struct worker_ctx *w, enum sb_state st)
{
	sb_slot_begin(w->slot);
	w->slot->state = st;
	if (st == SB_IDLE || st == SB_KEEPALIVE)
		w->slot->idle_since_ms = now_ms();
	/*
	 * The handler has returned, so it runs no program any more: a group
	 * a plugin forgot to clear must not outlive its leader's pid.
	 */
	if (st == SB_FINISHING)
		__atomic_store_n(&w->slot->program_pgid, 0, __ATOMIC_RELAXED);
	/* A request begins with its headers: its clock starts now. */
	if (st == SB_READING) {
		w->slot->req_started = now_real();
		strlcpy_(w->slot->method, "-", sizeof(w->slot->method));
		strlcpy_(w->slot->uri, "-", sizeof(w->slot->uri));
		w->slot->query[0] = '\0';
		strlcpy_(w->slot->script, "-", sizeof(w->slot->script));
	}
	sb_slot_end(w->slot);
}

/* The worker's process group, the master's: never a program's. */
static pid_t			 own_pgrp;

void
worker_program_group(struct fpmd_request *r, pid_t pgid)
{
	struct sb_slot	*s = r->w->slot;

	/*
	 * Never the worker's own group, which is the master's: a handler
	 * that forgot setpgid() would have the master kill itself.
	 */
	if (pgid < 0 || (pgid > 0 && pgid == own_pgrp))
		pgid = 0;
	sb_slot_begin(s);
	/* Atomic: worker_on_term() reads it without the sequence count. */
	__atomic_store_n(&s->program_pgid, pgid, __ATOMIC_RELAXED);
	sb_slot_end(s);
}

/*
 * After a request: its duration, the CPU it used and the peak RSS.  CPU
 * comes from the process's own usage (between requests a worker uses next
 * to none).  getrusage() costs as much as the rest of a small request's
 * syscalls, so requests under 1 ms are sampled: their CPU is averaged over
 * the requests of the last 100 ms.
 */
#define SLOT_CPU_EVERY_MS	100
#define SLOT_CPU_ALWAYS_US	1000

static struct {
	double	 cpu_before;	/* the process's CPU seconds at the last sample */
	double	 wall_since;	/* seconds in requests since then */
	int64_t	 sampled_ms;
} slot_cpu;

static double
worker_cpu_seconds(const struct rusage *ru)
{
	return (double)ru->ru_utime.tv_sec + (double)ru->ru_utime.tv_usec / 1e6 +
	    (double)ru->ru_stime.tv_sec + (double)ru->ru_stime.tv_usec / 1e6;
}

/* The worker's start-up is not the first request's CPU. */
static void
worker_slot_cpu_prime(void)
{
	struct rusage	 ru;

	getrusage(RUSAGE_SELF, &ru);
	slot_cpu.cpu_before = worker_cpu_seconds(&ru);
	slot_cpu.sampled_ms = now_ms();
}

static void
worker_slot_done(struct worker_ctx *w, long served)
{
	struct rusage	 ru;
	struct sb_slot	*s = w->slot;
	double		 cpu, wall;
	int64_t		 now = now_ms();
	bool		 sample;

	wall = now_real() - s->req_started;
	if (wall < 0)
		wall = 0;
	slot_cpu.wall_since += wall;
	sample = wall * 1e6 >= SLOT_CPU_ALWAYS_US ||
	    now - slot_cpu.sampled_ms >= SLOT_CPU_EVERY_MS;
	if (sample)
		getrusage(RUSAGE_SELF, &ru);
	sb_slot_begin(s);
	s->requests = (uint64_t)served;
	s->req_duration_us = (uint64_t)(wall * 1e6);
	if (sample) {
		cpu = worker_cpu_seconds(&ru);
		s->last_cpu = slot_cpu.wall_since > 0 ? (cpu -
		    slot_cpu.cpu_before) / slot_cpu.wall_since * 100.0 : 0;
		/*
		 * The delta also holds the accept and close around short
		 * requests: one thread cannot have used more than all of it.
		 */
		if (s->last_cpu > 100.0)
			s->last_cpu = 100.0;
		s->last_memory = (uint64_t)ru.ru_maxrss * 1024;
		slot_cpu.cpu_before = cpu;
		slot_cpu.wall_since = 0;
		slot_cpu.sampled_ms = now;
	}
	sb_slot_end(s);
}

/* The status page or the ping, from the scoreboard, instead of the handler. */
static void
worker_status(struct worker_ctx *w, struct fpmd_request *r,
    enum status_page page)
{
	struct buf	 out = { 0 };

	status_respond(w->pool->sb, w->pool->conf, w->pool->listen_fd, page,
	    handler_host.param(r, "REQUEST_METHOD"),
	    handler_host.param(r, "QUERY_STRING"), &out);
	if (out.failed)
		worker_error_response(r, "500 Internal Server Error");
	else
		(void)handler_host.write_stdout(r, out.data, out.len);
	buf_free(&out);
	worker_slot_state(w, SB_FINISHING);
	worker_finish(r, 0);
}

/* One request, from its BEGIN_REQUEST to its END_REQUEST. */
static void
worker_request_run(struct worker_ctx *w, struct fpmd_request *r)
{
	const struct pool_conf	*pc = w->pool->conf;
	struct conn		*c = r->c;
	enum status_page	 page;
	int			 rc;

	plog_request_begin(w->pool);
	rc = worker_pump(w, r, WANT_PARAMS, w->read_tmo, false);
	if (rc == -2) {
		worker_error_response(r, "408 Request Timeout");
		worker_finish(r, 1);
	}
	if (rc != 0)
		return;
	if (r->aborted) {
		worker_end_request(c, r->id, 0, FCGI_REQUEST_COMPLETE,
		    w->read_tmo);
		return;
	}
	if (r->params_too_big) {
		log_warnx("request params exceed fastcgi.max_params_size "
		    "(%llu bytes): refused with 431",
		    (unsigned long long)pc->max_params_size);
		r->nparams = 0;
		worker_error_response(r, "431 Request Header Fields Too Large");
		worker_finish(r, 1);
		return;
	}
	if (worker_decode_params(r) == -1) {
		c->dead = true;
		c->why = "malformed name-value pairs in PARAMS";
		return;
	}
	worker_slot_request(w, r);
	page = status_match(pc, handler_host.param(r, "SCRIPT_NAME"));
	if (page != STATUS_PAGE_NONE) {
		worker_status(w, r, page);
		return;
	}
	rc = w->handler->handle(&handler_host, r, w->handler_data);
	/* Ended as broken: closing without END_REQUEST says so. */
	if (r->broken) {
		worker_slot_state(w, SB_FINISHING);
		return;
	}
	if (rc == -1 && r->timed_out)
		worker_error_response(r, "408 Request Timeout");
	else if (rc == -1 && !r->aborted)
		worker_error_response(r, "500 Internal Server Error");
	worker_slot_state(w, SB_FINISHING);
	worker_finish(r, rc == -1 ? 1 : 0);
}

/* The request, with a last answer ready should the worker die in it. */
static void
worker_request(struct worker_ctx *w, struct fpmd_request *r)
{
	last.fd = r->c->fd;
	last.id = r->id;
	last.sent = 0;
	last.armed = 1;
	worker_request_run(w, r);
	last.armed = 0;
}

static void
worker_request_reset(struct fpmd_request *r)
{
	r->active = false;
	r->params_done = r->params_too_big = false;
	r->stdin_done = r->data_done = r->aborted = false;
	r->timed_out = false;
	r->stdin_bytes = 0;
	r->praw_len = 0;
	r->nparams = 0;
	r->olen = 0;
	r->out_sent = false;
	r->broken = false;
}

/*
 * Closes a connection.  When the client may still be sending (its STDIN
 * was not read to the end), shut our side first and drain for a bounded
 * time, so that it reads our answer instead of a reset.
 */
static void
worker_close(struct worker_ctx *w, struct conn *c, bool linger)
{
	int64_t	 deadline;
	ssize_t	 n;

	if (linger && shutdown(c->fd, SHUT_WR) == 0) {
		deadline = now_ms() + w->pool->conf->linger_timeout_ms;
		while (now_ms() < deadline) {
			n = recv(c->fd, c->rbuf, RBUF_SIZE, MSG_DONTWAIT);
			if (n == 0 || (n == -1 && errno != EAGAIN &&
			    errno != EINTR))
				break;
			if (n == -1 && worker_wait(c->fd, POLLIN,
			    deadline - now_ms(), false) != 1)
				break;
		}
	}
	close(c->fd);
}

static void
worker_serve(struct worker_ctx *w, struct conn *c, struct fpmd_request *r,
    long *served)
{
	const struct pool_conf	*pc = w->pool->conf;
	bool			 first = true, linger = false;
	int64_t			 leaving_since = 0;

	fcgi_parser_init(&c->parser);
	c->rpos = c->rlen = 0;
	c->pend_len = 0;
	c->dead = c->close = c->linger = false;
	c->why = NULL;
	c->rcvtimeo_ms = 0;
	r->c = c;
	for (;;) {
		worker_request_reset(r);
		if (!first)
			worker_slot_state(w, SB_KEEPALIVE);
		/*
		 * Leaving (a stop, a reload, pm.max_requests): a client that
		 * reuses the connection right after our answer gets one more
		 * (for IDLE_SLICE_MS at most); closing at once could drop a
		 * request it is writing.  Quiet for QUIT_SETTLE_MS: closed.
		 */
		if (worker_pump(w, r, WANT_BEGIN, first ? w->read_tmo :
		    leaving_since != 0 ? QUIT_SETTLE_MS :
		    pc->keepalive_timeout_ms, !first) != 0)
			break;
		if (!first)
			worker_slot_state(w, SB_READING);
		/* PHP-FPM's "accepted conn": every request, kept or not. */
		__atomic_fetch_add(&w->pool->sb->pool->accepted_conn, 1,
		    __ATOMIC_RELAXED);
		worker_request(w, r);
		if (r->active && r->params_done) {
			(*served)++;
			worker_slot_done(w, *served);
			plog_request_end(w->pool, r);
		}
		linger = !r->stdin_done;
		if (c->dead || c->close || !r->keep_conn)
			break;
		/* Stopping or recycled: settle, bounded (see above). */
		if (leaving_since == 0 && (worker_quit || (w->max_requests > 0 &&
		    *served >= w->max_requests)))
			leaving_since = now_ms();
		if (leaving_since != 0 &&
		    now_ms() - leaving_since >= IDLE_SLICE_MS)
			break;
		first = false;
		linger = false;
	}
	if (c->why != NULL)
		log_notice("connection closed: %s", c->why);
	worker_close(w, c, (linger || c->linger) && !c->dead);
}

int
worker_run(struct worker_ctx *w)
{
	struct sigaction	 sa;
	struct epoll_event	 ev = { .events = EPOLLIN | EPOLLEXCLUSIVE };
	struct epoll_event	 evs[2];
	bool			 woken = false;
	int			 n, i;
	struct conn		*c;
	struct fpmd_request	 r;
	struct epoll_event	 qev = { .events = EPOLLIN };
	sigset_t		 qset;
	struct sockaddr_storage	 peer;
	socklen_t		 peerlen;
	long			 served = 0;
	int			 ep, fd;

	if (pipe2(quit_pipe, O_CLOEXEC | O_NONBLOCK) == -1) {
		log_warn("pipe2");
		return -1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = worker_on_quit;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGQUIT, &sa, NULL);
	term_slot = w->slot;
	own_pgrp = getpgrp();
	sa.sa_handler = worker_on_term;
	sa.sa_flags = SA_RESETHAND;
	sigaction(SIGTERM, &sa, NULL);
	/* Blocked since the fork (child_signals()): a pending one lands now. */
	sigemptyset(&qset);
	sigaddset(&qset, SIGQUIT);
	sigprocmask(SIG_UNBLOCK, &qset, NULL);
	/* fastcgi.read_timeout = 0: wait as long as the client wants. */
	w->read_tmo = w->pool->conf->read_timeout_ms > 0 ?
	    w->pool->conf->read_timeout_ms : -1;

	ev.data.fd = w->pool->listen_fd;
	qev.data.fd = quit_pipe[0];
	if ((ep = epoll_create1(EPOLL_CLOEXEC)) == -1 ||
	    epoll_ctl(ep, EPOLL_CTL_ADD, w->pool->listen_fd, &ev) == -1 ||
	    epoll_ctl(ep, EPOLL_CTL_ADD, quit_pipe[0], &qev) == -1) {
		log_warn("epoll");
		return -1;
	}
	c = calloc(1, sizeof(*c));
	memset(&r, 0, sizeof(r));
	r.w = w;
	r.obuf = malloc(OBUF_SIZE);
	if (c == NULL || r.obuf == NULL || (c->rbuf = malloc(RBUF_SIZE)) ==
	    NULL) {
		log_warn("worker buffers");
		return -1;
	}

	/* Ready: counted idle, and the master hears of it. */
	worker_slot_cpu_prime();
	worker_slot_state(w, SB_IDLE);
	sb_worker_ready(w->pool->sb);
	/*
	 * EPOLLEXCLUSIVE wakes one worker per new connection.  One woken
	 * for a connection takes it even if a stop came meanwhile: leaving
	 * instead would strand it in the queue, every other worker asleep.
	 */
	while ((!worker_quit || woken) &&
	    (w->max_requests == 0 || served < w->max_requests)) {
		/* Blocking sockets: see worker_idle_recv(). */
		peerlen = sizeof(peer);
		fd = accept4(w->pool->listen_fd, (struct sockaddr *)&peer,
		    &peerlen, SOCK_CLOEXEC);
		woken = false;
		if (fd == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				if (worker_quit)
					break;
				n = epoll_wait(ep, evs, 2, -1);
				if (n == -1 && errno != EINTR)
					log_warn("epoll_wait");
				for (i = 0; i < n; i++)
					if (evs[i].data.fd ==
					    w->pool->listen_fd)
						woken = true;
			} else if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM) {
				log_warn("accept");
				(void)worker_wait(w->pool->listen_fd, 0, 100,
				    true);
			}
			continue;
		}
		if (!sock_peer_allowed(w->pool->conf,
		    w->pool->conf->addr.family, &peer, peerlen)) {
			close(fd);
			continue;
		}
		worker_slot_state(w, SB_READING);
		sb_idle_change(w->pool->sb, true);
		__atomic_fetch_add(&w->pool->sb->pool->connections, 1,
		    __ATOMIC_RELAXED);
		c->fd = fd;
		memcpy(&c->peer, &peer, sizeof(c->peer));
		worker_serve(w, c, &r, &served);
		worker_slot_state(w, SB_IDLE);
		sb_idle_change(w->pool->sb, false);
	}
	/* Leaving: no longer idle; the master replaces it if it must. */
	worker_slot_state(w, SB_ENDING);
	sb_idle_change(w->pool->sb, true);
	close(ep);
	free(c->rbuf);
	free(c);
	free(r.obuf);
	free(r.praw);
	free(r.pstore);
	free(r.params);
	return 0;
}

const struct sockaddr_storage *
worker_peer(const struct fpmd_request *r)
{
	return &r->c->peer;
}

/* The request API (fpmd/handler.h). */

static const char *
host_param(struct fpmd_request *r, const char *name)
{
	size_t	 i;

	for (i = 0; i < r->nparams; i++)
		if (strcmp(r->params[i].name, name) == 0)
			return r->params[i].value;
	return NULL;
}

static int
host_param_at(struct fpmd_request *r, size_t n, const char **name,
    const char **value)
{
	if (n >= r->nparams)
		return -1;
	*name = r->params[n].name;
	*value = r->params[n].value;
	return 0;
}

static enum fpmd_role
host_role(struct fpmd_request *r)
{
	return (enum fpmd_role)r->role;
}

static ssize_t
host_read_stream(struct fpmd_request *r, void *buf, size_t len,
    enum want want, bool wait)
{
	struct conn	*c = r->c;
	enum rec_use	 use = want == WANT_STDIN ? REC_STDIN : REC_DATA;
	size_t		 n;

	if (len == 0)
		return 0;
	if (c->dead || r->aborted || r->timed_out || r->broken)
		return -1;
	if (!(c->pend_len > 0 && c->pend_use == use)) {
		switch (worker_pump(r->w, r, want, wait ? r->w->read_tmo : 0,
		    false)) {
		case 0:
			break;
		case -3:
			return -2;
		case -2:
			r->timed_out = true;
			return -1;
		default:
			c->dead = true;
			return -1;
		}
		if (r->aborted)
			return -1;
		if (c->pend_len == 0 || c->pend_use != use)
			return 0;	/* the stream ended */
	}
	n = c->pend_len < len ? c->pend_len : len;
	memcpy(buf, c->pend, n);
	c->pend += n;
	c->pend_len -= n;
	if (want == WANT_STDIN)
		r->stdin_bytes += n;
	return (ssize_t)n;
}

static ssize_t
host_read_stdin(struct fpmd_request *r, void *buf, size_t len)
{
	return host_read_stream(r, buf, len, WANT_STDIN, true);
}

static ssize_t
host_read_stdin_nowait(struct fpmd_request *r, void *buf, size_t len)
{
	return host_read_stream(r, buf, len, WANT_STDIN, false);
}

static int
host_conn_fd(struct fpmd_request *r)
{
	return r->c->fd;
}

static ssize_t
host_read_data(struct fpmd_request *r, void *buf, size_t len)
{
	if (r->role != FPMD_ROLE_FILTER)
		return 0;
	/* FCGI_DATA follows STDIN: skip what the handler left of STDIN. */
	while (!r->stdin_done && !r->aborted && !r->c->dead) {
		uint8_t	 sink[4096];

		if (host_read_stdin(r, sink, sizeof(sink)) <= 0)
			break;
	}
	return host_read_stream(r, buf, len, WANT_DATA, true);
}

static int
host_write_stdout(struct fpmd_request *r, const void *buf, size_t len)
{
	const uint8_t	*p = buf;
	size_t		 n;

	if (r->broken)
		return -1;
	plog_response(buf, len);
	while (len > 0) {
		if (r->c->dead)
			return -1;
		n = FCGI_MAX_CONTENT - r->olen;
		if (n > len)
			n = len;
		memcpy(r->obuf + FCGI_HEADER_LEN + r->olen, p, n);
		r->olen += n;
		p += n;
		len -= n;
		if (r->olen == FCGI_MAX_CONTENT && worker_flush_stdout(r) == -1)
			return -1;
	}
	return r->c->dead ? -1 : 0;
}

static int
host_write_stderr(struct fpmd_request *r, const void *buf, size_t len)
{
	const uint8_t	*p = buf;
	size_t		 n;

	if (r->broken)
		return -1;
	while (len > 0) {
		n = len < FCGI_MAX_CONTENT ? len : FCGI_MAX_CONTENT;
		if (worker_write_record(r->c, FCGI_STDERR, r->id, p, n,
		    r->w->read_tmo) == -1)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

static int
host_flush(struct fpmd_request *r)
{
	return r->broken ? -1 : worker_flush_stdout(r);
}

/*
 * Once the body has been read nothing else reads the connection while the
 * handler runs: look at what arrived (an ABORT_REQUEST, a close, a
 * management record), without waiting.
 */
static int
host_aborted(struct fpmd_request *r)
{
	if (!r->aborted && !r->timed_out && !r->c->dead && !r->broken &&
	    r->stdin_done && (r->role != FPMD_ROLE_FILTER || r->data_done) &&
	    worker_pump(r->w, r, WANT_NOTHING, 0, false) == -1)
		r->c->dead = true;
	return r->aborted || r->timed_out || r->c->dead || r->broken;
}

static void
host_log(enum fpmd_log_level level, const char *fmt, ...)
{
	va_list	 ap;

	/* The worker's log prefix already names the pool and the pid. */
	va_start(ap, fmt);
	log_vlog((int)level, fmt, ap);
	va_end(ap);
}

static const char *
host_option(struct fpmd_pool *p, const char *name)
{
	size_t	 i;

	for (i = 0; i < p->conf->nhandler_options; i++)
		if (strcmp(p->conf->handler_options[i].key, name) == 0)
			return p->conf->handler_options[i].value;
	return NULL;
}

static int
host_option_at(struct fpmd_pool *p, size_t n, const char **name,
    const char **value)
{
	if (n >= p->conf->nhandler_options)
		return -1;
	*name = p->conf->handler_options[n].key;
	*value = p->conf->handler_options[n].value;
	return 0;
}

static long
host_read_timeout_ms(struct fpmd_request *r)
{
	return (long)r->w->pool->conf->read_timeout_ms;
}

/*
 * Sends what is buffered and ends the request there: worker_request()
 * writes no END_REQUEST and worker_serve() closes the connection (after
 * draining a body still on its way): a web server that waits for
 * END_REQUEST takes the response for truncated.  The access log and the
 * scoreboard count the request as usual.
 */
static void
host_abort_response(struct fpmd_request *r)
{
	if (r->broken)
		return;
	(void)worker_flush_stdout(r);
	last.sent = 1;		/* over, even with nothing sent */
	r->broken = true;
	r->c->close = true;
	if (r->c->why == NULL)
		r->c->why = "the handler ended the response as broken";
}

static const char *
host_pool_name(struct fpmd_pool *p)
{
	return p->conf->name;
}

static void *
host_pool_data(struct fpmd_pool *p)
{
	return p->data;
}

const struct fpmd_host handler_host = {
	.struct_size = sizeof(struct fpmd_host),
	.param = host_param,
	.param_at = host_param_at,
	.role = host_role,
	.read_stdin = host_read_stdin,
	.read_data = host_read_data,
	.read_stdin_nowait = host_read_stdin_nowait,
	.conn_fd = host_conn_fd,
	.write_stdout = host_write_stdout,
	.write_stderr = host_write_stderr,
	.flush = host_flush,
	.aborted = host_aborted,
	.log = host_log,
	.option = host_option,
	.pool_name = host_pool_name,
	.pool_data = host_pool_data,
	.option_at = host_option_at,
	.read_timeout_ms = host_read_timeout_ms,
	.abort_response = host_abort_response,
	.program_group = worker_program_group,
};
