/*
 * statusd.c -- the master answers pm.status_listen itself: a small,
 * non-blocking FastCGI responder that serves only the status page and
 * the ping, from the scoreboard.  Health checks then answer while every
 * worker is busy, which is when they matter.
 *
 * Taboos: it runs inside the master's event loop, so it never blocks:
 * every socket is non-blocking, output that does not fit the socket
 * waits for EPOLLOUT, and a connection idle for STATUSD_TIMEOUT_MS is
 * closed.  Requests are small: params over STATUSD_MAX_PARAMS close the
 * connection.
 */
#include "config.h"

#include <sys/epoll.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fpmd.h"

#define STATUSD_MAX_PARAMS	(64 * 1024)
#define STATUSD_MAX_CONNS	64

struct status_conn {
	TAILQ_ENTRY(status_conn) entry;
	struct ev_source	 ev;
	struct pool		*pool;
	int			 fd;
	int			 ep;		/* the master's epoll */
	int64_t			 deadline;
	struct fcgi_parser	 parser;
	uint16_t		 id;
	bool			 active;
	bool			 keep;
	bool			 params_done;
	bool			 skip;		/* content of this record is not ours */
	uint8_t			 rec[8];	/* BEGIN_REQUEST body */
	size_t			 reclen;
	struct buf		 params;
	struct buf		 out;
	size_t			 out_off;
	bool			 close_after;
};

int
statusd_open(struct pool *p, int ep, char *err, size_t errlen)
{
	struct epoll_event	 ev = { .events = EPOLLIN };

	if (p->conf->status_listen == NULL)
		return 0;
	p->status_fd = sock_listen(p->conf, &p->conf->status_addr, err, errlen);
	if (p->status_fd == -1)
		return -1;
	p->ev_status.kind = EV_STATUS_LISTEN;
	p->ev_status.pool = p;
	ev.data.ptr = &p->ev_status;
	p->status_ep = ep;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, p->status_fd, &ev) == -1) {
		snprintf(err, errlen, "epoll_ctl: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Out of the loop before close(): a worker forked a moment ago still holds
 * a copy of every fd until it closes them, and epoll would go on reporting
 * the connection, with a pointer to freed memory, while any copy lives.
 */
static void
statusd_drop(struct status_conn *c)
{
	TAILQ_REMOVE(&c->pool->status_conns, c, entry);
	(void)epoll_ctl(c->ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	buf_free(&c->params);
	buf_free(&c->out);
	free(c);
}

void
statusd_accept(struct pool *p, int ep)
{
	struct epoll_event	 ev = { .events = EPOLLIN };
	struct status_conn	*c, *oldest;
	struct sockaddr_storage	 peer;
	socklen_t		 peerlen;
	int			 fd, n = 0;

	TAILQ_FOREACH(c, &p->status_conns, entry)
		n++;
	for (;;) {
		peerlen = sizeof(peer);
		fd = accept4(p->status_fd, (struct sockaddr *)&peer, &peerlen,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1)
			break;
		/* The pool's listen.allowed_clients apply here too. */
		if (!sock_peer_allowed(p->conf, p->conf->status_addr.family,
		    &peer, peerlen)) {
			close(fd);
			continue;
		}
		/* Bounded: the oldest connection makes room for the newest. */
		if (n >= STATUSD_MAX_CONNS &&
		    (oldest = TAILQ_FIRST(&p->status_conns)) != NULL) {
			statusd_drop(oldest);
			n--;
		}
		if ((c = calloc(1, sizeof(*c))) == NULL) {
			close(fd);
			continue;
		}
		c->pool = p;
		c->fd = fd;
		c->ep = ep;
		c->ev.kind = EV_STATUS_CONN;
		c->ev.pool = p;
		c->ev.ptr = c;
		c->deadline = now_ms() + STATUSD_TIMEOUT_MS;
		fcgi_parser_init(&c->parser);
		ev.data.ptr = &c->ev;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == -1) {
			close(fd);
			free(c);
			continue;
		}
		TAILQ_INSERT_TAIL(&p->status_conns, c, entry);
		n++;
	}
}

/* Appends CONTENT as records of TYPE, at most 65535 bytes each. */
static void
statusd_records(struct buf *out, enum fcgi_type type, uint16_t id,
    const char *content, size_t len)
{
	static const uint8_t	 zeros[8];
	uint8_t			 hdr[FCGI_HEADER_LEN];
	size_t			 n;

	do {
		n = len < FCGI_MAX_CONTENT ? len : FCGI_MAX_CONTENT;
		fcgi_header_encode(hdr, type, id, (uint16_t)n,
		    fcgi_padding_for(n));
		buf_add(out, hdr, sizeof(hdr));
		buf_add(out, content, n);
		buf_add(out, zeros, fcgi_padding_for(n));
		content += n;
		len -= n;
	} while (len > 0);
}

/* The request is complete: answer it. */
static void
statusd_respond(struct status_conn *c)
{
	const struct pool_conf	*pc = c->pool->conf;
	struct buf		 page = { 0 };
	char			*script = NULL, *method = NULL, *query = NULL;
	struct fcgi_nv		 nv;
	size_t			 pos = 0;
	enum status_page	 which;
	uint8_t			 end[8];

	while (fcgi_nv_decode((const uint8_t *)c->params.data, c->params.len,
	    &pos, &nv) == 1) {
		char	**dst = NULL;

		if (nv.name_len == 11 && memcmp(nv.name, "SCRIPT_NAME", 11) == 0)
			dst = &script;
		else if (nv.name_len == 14 &&
		    memcmp(nv.name, "REQUEST_METHOD", 14) == 0)
			dst = &method;
		else if (nv.name_len == 12 &&
		    memcmp(nv.name, "QUERY_STRING", 12) == 0)
			dst = &query;
		if (dst != NULL && *dst == NULL)
			*dst = strndup((const char *)nv.value, nv.value_len);
	}
	/* Without pm.status_path, the status listener answers on "/". */
	which = status_match_path(pc, pc->status_path != NULL ?
	    pc->status_path : "/", script);
	if (which == STATUS_PAGE_NONE)
		buf_printf(&page, "Status: 404 Not Found\r\nContent-Type: "
		    "text/plain\r\n\r\nThis listener serves only %s%s%s.\n",
		    pc->status_path != NULL ? pc->status_path : "/",
		    pc->ping_path ? " and " : "",
		    pc->ping_path ? pc->ping_path : "");
	else
		status_respond(c->pool->sb, pc, c->pool->listen_fd, which,
		    method, query, &page);
	if (page.failed) {
		buf_free(&page);
		buf_printf(&page, "Status: 500 Internal Server Error\r\n\r\n");
	}
	statusd_records(&c->out, FCGI_STDOUT, c->id, page.data, page.len);
	statusd_records(&c->out, FCGI_STDOUT, c->id, "", 0);
	fcgi_end_encode(end, 0, FCGI_REQUEST_COMPLETE);
	statusd_records(&c->out, FCGI_END_REQUEST, c->id, (char *)end, 8);
	free(script);
	free(method);
	free(query);
	buf_free(&page);
	c->close_after = !c->keep;
	c->active = c->params_done = false;
	c->params.len = 0;
}

/* Acts on a complete record; -1 closes the connection. */
static int
statusd_record_end(struct status_conn *c)
{
	const struct fcgi_header	*h = &c->parser.hdr;
	struct fcgi_begin		 b;
	uint8_t				 body[8];

	switch (h->type) {
	case FCGI_BEGIN_REQUEST:
		if (h->request_id == 0 || fcgi_begin_decode(c->rec, c->reclen,
		    &b) == -1)
			return -1;
		if (c->active) {
			fcgi_end_encode(body, 0, FCGI_CANT_MPX_CONN);
			statusd_records(&c->out, FCGI_END_REQUEST,
			    h->request_id, (char *)body, 8);
			return 0;
		}
		if (b.role != FPMD_ROLE_RESPONDER) {
			fcgi_end_encode(body, 0, FCGI_UNKNOWN_ROLE);
			statusd_records(&c->out, FCGI_END_REQUEST,
			    h->request_id, (char *)body, 8);
			c->close_after = !(b.flags & FCGI_KEEP_CONN);
			return 0;
		}
		c->active = true;
		c->id = h->request_id;
		c->keep = (b.flags & FCGI_KEEP_CONN) != 0;
		return 0;
	case FCGI_PARAMS:
		if (c->active && h->request_id == c->id && h->content_length == 0)
			c->params_done = true;
		return 0;
	case FCGI_STDIN:
		if (c->active && c->params_done && h->request_id == c->id &&
		    h->content_length == 0)
			statusd_respond(c);
		return 0;
	case FCGI_ABORT_REQUEST:
		if (c->active && h->request_id == c->id)
			return -1;
		return 0;
	default:
		if (h->request_id == 0 && h->type != FCGI_GET_VALUES) {
			fcgi_unknown_type_encode(body, h->type);
			statusd_records(&c->out, FCGI_UNKNOWN_TYPE, 0,
			    (char *)body, 8);
		}
		return 0;
	}
}

/* Feeds the bytes read to the codec; -1 closes the connection. */
static int
statusd_feed(struct status_conn *c, const uint8_t *buf, size_t len)
{
	const struct fcgi_header	*h = &c->parser.hdr;
	enum fcgi_event			 ev;
	size_t				 used;

	for (;;) {
		ev = fcgi_parse(&c->parser, buf, len, &used);
		buf += used;
		len -= used;
		switch (ev) {
		case FCGI_EV_NEED_MORE:
			return 0;
		case FCGI_EV_ERROR:
			return -1;
		case FCGI_EV_HEADER:
			c->reclen = 0;
			c->skip = !(h->type == FCGI_BEGIN_REQUEST ||
			    (h->type == FCGI_PARAMS && c->active &&
			    h->request_id == c->id && !c->params_done));
			if (h->type == FCGI_BEGIN_REQUEST &&
			    h->content_length != 8)
				return -1;
			break;
		case FCGI_EV_CONTENT:
			if (c->skip)
				break;
			if (h->type == FCGI_BEGIN_REQUEST) {
				memcpy(c->rec + c->reclen, c->parser.ev_data,
				    c->parser.ev_len);
				c->reclen += c->parser.ev_len;
			} else if (c->params.len + c->parser.ev_len >
			    STATUSD_MAX_PARAMS)
				return -1;
			else
				buf_add(&c->params, c->parser.ev_data,
				    c->parser.ev_len);
			break;
		case FCGI_EV_RECORD_END:
			if (statusd_record_end(c) == -1)
				return -1;
			break;
		}
	}
}

/* Sends what is pending; -1 on error. */
static int
statusd_flush(struct status_conn *c, int ep)
{
	struct epoll_event	 ev = { .data.ptr = &c->ev };
	ssize_t			 n;

	while (c->out_off < c->out.len) {
		n = send(c->fd, c->out.data + c->out_off,
		    c->out.len - c->out_off, MSG_NOSIGNAL);
		if (n > 0) {
			c->out_off += (size_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			ev.events = EPOLLOUT;
			return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
		}
		return -1;
	}
	c->out.len = c->out_off = 0;
	ev.events = EPOLLIN;
	return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

void
statusd_on_event(struct status_conn *c, int ep, uint32_t events)
{
	uint8_t	 buf[16384];
	ssize_t	 n;

	c->deadline = now_ms() + STATUSD_TIMEOUT_MS;
	if (events & (EPOLLERR | EPOLLHUP)) {
		statusd_drop(c);
		return;
	}
	if ((events & EPOLLIN) && c->out.len == 0) {
		n = recv(c->fd, buf, sizeof(buf), 0);
		if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
			statusd_drop(c);
			return;
		}
		if (n > 0 && statusd_feed(c, buf, (size_t)n) == -1) {
			statusd_drop(c);
			return;
		}
	}
	if (c->out.failed || (c->out.len > 0 && statusd_flush(c, ep) == -1)) {
		statusd_drop(c);
		return;
	}
	if (c->out.len == 0 && c->close_after)
		statusd_drop(c);
}

void
statusd_expire(struct pool *p, int64_t now)
{
	struct status_conn	*c, *next;

	for (c = TAILQ_FIRST(&p->status_conns); c != NULL; c = next) {
		next = TAILQ_NEXT(c, entry);
		if (now >= c->deadline)
			statusd_drop(c);
	}
}

void
statusd_close(struct pool *p)
{
	struct status_conn	*c;

	while ((c = TAILQ_FIRST(&p->status_conns)) != NULL)
		statusd_drop(c);
	if (p->status_fd != -1) {
		if (p->status_ep != -1)
			(void)epoll_ctl(p->status_ep, EPOLL_CTL_DEL,
			    p->status_fd, NULL);
		sock_close(p->status_fd, &p->conf->status_addr);
		p->status_fd = -1;
	}
}
