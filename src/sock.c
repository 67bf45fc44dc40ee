/*
 * sock.c -- listening sockets: address parsing, bind and listen for TCP
 * (IPv4, IPv6) and Unix sockets, owner and mode of a socket path.
 *
 * Every fd made here is O_CLOEXEC and O_NONBLOCK: the master watches
 * ondemand listeners with epoll, and workers accept without blocking.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/un.h>

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fpmd.h"

static int
sock_port_parse(const char *s, in_port_t *port)
{
	long	 l;

	if (parse_long(s, 1, 65535, &l) == -1)
		return -1;
	*port = htons((in_port_t)l);
	return 0;
}

int
sock_addr_parse(const char *spec, struct sock_addr *a, char *err,
    size_t errlen)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)&a->ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&a->ss;
	struct sockaddr_un	*sun = (struct sockaddr_un *)&a->ss;
	char			 host[INET6_ADDRSTRLEN + 2];
	const char		*colon, *port;
	size_t			 hlen;

	memset(a, 0, sizeof(*a));
	if (spec[0] == '/') {
		if (strlen(spec) >= sizeof(sun->sun_path)) {
			snprintf(err, errlen, "socket path \"%s\" is longer "
			    "than %zu bytes", spec, sizeof(sun->sun_path) - 1);
			return -1;
		}
		a->family = sun->sun_family = AF_UNIX;
		strlcpy_(sun->sun_path, spec, sizeof(sun->sun_path));
		a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
		    strlen(spec) + 1);
		strlcpy_(a->text, spec, sizeof(a->text));
		return 0;
	}
	if (strspn(spec, "0123456789") == strlen(spec)) {
		/* A bare port: every IPv4 address, as PHP-FPM does. */
		a->family = sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_ANY);
		if (sock_port_parse(spec, &sin->sin_port) == -1)
			goto badport;
		a->len = sizeof(*sin);
		snprintf(a->text, sizeof(a->text), "0.0.0.0:%s", spec);
		return 0;
	}
	if (spec[0] == '[') {
		const char	*close = strchr(spec, ']');

		if (close == NULL || close[1] != ':')
			goto bad;
		hlen = (size_t)(close - spec - 1);
		port = close + 2;
		if (hlen >= sizeof(host))
			goto bad;
		memcpy(host, spec + 1, hlen);
		host[hlen] = '\0';
		a->family = sin6->sin6_family = AF_INET6;
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			goto bad;
		if (sock_port_parse(port, &sin6->sin6_port) == -1)
			goto badport;
		a->len = sizeof(*sin6);
		snprintf(a->text, sizeof(a->text), "[%s]:%s", host, port);
		return 0;
	}
	if ((colon = strrchr(spec, ':')) != NULL) {
		hlen = (size_t)(colon - spec);
		if (hlen >= sizeof(host))
			goto bad;
		memcpy(host, spec, hlen);
		host[hlen] = '\0';
		a->family = sin->sin_family = AF_INET;
		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			goto bad;
		if (sock_port_parse(colon + 1, &sin->sin_port) == -1)
			goto badport;
		a->len = sizeof(*sin);
		snprintf(a->text, sizeof(a->text), "%s:%s", host, colon + 1);
		return 0;
	}
bad:
	snprintf(err, errlen, "\"%s\" is not an address: expected "
	    "IPv4:PORT, [IPv6]:PORT, PORT or an absolute socket path", spec);
	return -1;
badport:
	snprintf(err, errlen, "\"%s\": the port must be from 1 to 65535",
	    spec);
	return -1;
}

bool
sock_addr_equal(const struct sock_addr *a, const struct sock_addr *b)
{
	return a->family == b->family && a->len == b->len &&
	    memcmp(&a->ss, &b->ss, a->len) == 0;
}

/*
 * A socket file left behind by a dead daemon is removed; one that still
 * accepts belongs to a live server and is an error.
 */
static int
sock_unix_stale(const struct sock_addr *a, char *err, size_t errlen)
{
	const char	*path = a->text;
	struct stat	 st;
	int		 fd, rc;

	if (lstat(path, &st) == -1)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "%s exists and is not a socket", path);
		return -1;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	rc = connect(fd, (const struct sockaddr *)&a->ss, a->len);
	close(fd);
	if (rc == 0) {
		snprintf(err, errlen, "%s is in use by a running server", path);
		return -1;
	}
	if (unlink(path) == -1) {
		snprintf(err, errlen, "cannot remove stale socket %s: %s", path,
		    strerror(errno));
		return -1;
	}
	return 0;
}

int
sock_set_perms(const struct pool_conf *pc, const struct sock_addr *a)
{
	if (a->family != AF_UNIX)
		return 0;
	if (chmod(a->text, pc->listen_mode) == -1)
		return -1;
	if (geteuid() == 0 && chown(a->text, pc->listen_uid,
	    pc->listen_gid) == -1)
		return -1;
	return 0;
}

int
sock_listen(const struct pool_conf *pc, const struct sock_addr *a, char *err,
    size_t errlen)
{
	int			 fd = -1, one = 1;

	err[0] = '\0';
	if (a->family == AF_UNIX && sock_unix_stale(a, err, errlen) == -1) {
		if (err[0] == '\0')
			snprintf(err, errlen, "%s: %s", a->text,
			    strerror(errno));
		return -1;
	}
	fd = socket(a->family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1)
		goto syserr;
	if (a->family != AF_UNIX &&
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1)
		goto syserr;
	if (a->family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == -1)
		goto syserr;
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) == -1)
		goto syserr;
	/*
	 * A FastCGI client always speaks first: accept() only once the
	 * request's first bytes are there, so a worker's first read never
	 * comes back empty.  The accept queue is still the saturation
	 * signal: deferred connections count once data arrives.
	 */
	if (a->family != AF_UNIX && setsockopt(fd, IPPROTO_TCP,
	    TCP_DEFER_ACCEPT, &one, sizeof(one)) == -1)
		goto syserr;
	if (a->family == AF_UNIX) {
		if (sock_set_perms(pc, a) == -1) {
			snprintf(err, errlen, "%s: cannot set owner and mode: "
			    "%s", a->text, strerror(errno));
			unlink(a->text);
			close(fd);
			return -1;
		}
	}
	if (listen(fd, pc->backlog) == -1)
		goto syserr;
	return fd;
syserr:
	snprintf(err, errlen, "cannot listen on %s: %s", a->text,
	    strerror(errno));
	if (fd != -1)
		close(fd);
	return -1;
}

void
sock_close(int fd, const struct sock_addr *a)
{
	if (fd == -1)
		return;
	close(fd);
	if (a->family == AF_UNIX)
		unlink(a->text);
}

/* The accept queue of a listening Unix socket, through sock_diag(7). */
static int
sock_unix_queue(int fd, int *queue, int *backlog)
{
	struct {
		struct nlmsghdr		nlh;
		struct unix_diag_req	req;
	} msg;
	union {
		struct nlmsghdr	 nlh;
		char		 buf[8192];
	} resp;
	struct stat		 st;
	struct nlmsghdr		*h;
	struct unix_diag_msg	*um;
	struct rtattr		*rta;
	struct unix_diag_rqlen	*rq;
	ssize_t			 n;
	int			 nl, rc = -1, len;

	if (fstat(fd, &st) == -1)
		return -1;
	nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (nl == -1)
		return -1;
	memset(&msg, 0, sizeof(msg));
	msg.nlh.nlmsg_len = sizeof(msg);
	msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	msg.nlh.nlmsg_flags = NLM_F_REQUEST;
	msg.req.sdiag_family = AF_UNIX;
	msg.req.udiag_states = 1 << TCP_LISTEN;
	msg.req.udiag_ino = (uint32_t)st.st_ino;
	msg.req.udiag_show = UDIAG_SHOW_RQLEN;
	msg.req.udiag_cookie[0] = msg.req.udiag_cookie[1] = ~0u;
	if (send(nl, &msg, sizeof(msg), 0) != (ssize_t)sizeof(msg))
		goto done;
	if ((n = recv(nl, &resp, sizeof(resp), 0)) <= 0)
		goto done;
	for (h = &resp.nlh; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
		if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY)
			break;
		um = NLMSG_DATA(h);
		len = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof(*um)));
		for (rta = (struct rtattr *)(um + 1); RTA_OK(rta, len);
		    rta = RTA_NEXT(rta, len)) {
			if (rta->rta_type != UNIX_DIAG_RQLEN)
				continue;
			rq = RTA_DATA(rta);
			*queue = (int)rq->udiag_rqueue;
			*backlog = (int)rq->udiag_wqueue;
			rc = 0;
		}
		break;
	}
done:
	close(nl);
	return rc;
}

int
sock_listen_queue(int fd, int family, int *queue, int *backlog)
{
	struct tcp_info	 ti;
	socklen_t	 len = sizeof(ti);

	if (family == AF_UNIX)
		return sock_unix_queue(fd, queue, backlog);
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == -1)
		return -1;
	/* On a listening socket: the accept queue and its limit. */
	*queue = (int)ti.tcpi_unacked;
	*backlog = (int)ti.tcpi_sacked;
	return 0;
}
