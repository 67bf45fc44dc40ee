/*
 * sock.c -- listening sockets: address parsing, bind and listen for TCP
 * (IPv4, IPv6) and Unix sockets, owner, mode and ACL of a socket path,
 * the port probe of the configuration check, and the pure matcher of
 * listen.allowed_clients.
 *
 * Every fd made here is O_CLOEXEC, and a listening socket O_NONBLOCK: the
 * master watches ondemand listeners with epoll, and workers accept
 * without blocking.
 */
#include "config.h"

#include <sys/acl.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <acl/libacl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netdb.h>
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

bool
sock_addr_overlap(const struct sock_addr *a, const struct sock_addr *b)
{
	const struct sockaddr_in	*a4, *b4;
	const struct sockaddr_in6	*a6, *b6;

	if (a->family != b->family)
		return false;
	a4 = (const struct sockaddr_in *)&a->ss;
	b4 = (const struct sockaddr_in *)&b->ss;
	a6 = (const struct sockaddr_in6 *)&a->ss;
	b6 = (const struct sockaddr_in6 *)&b->ss;
	switch (a->family) {
	case AF_INET:
		return a4->sin_port == b4->sin_port &&
		    (a4->sin_addr.s_addr == b4->sin_addr.s_addr ||
		    a4->sin_addr.s_addr == htonl(INADDR_ANY) ||
		    b4->sin_addr.s_addr == htonl(INADDR_ANY));
	case AF_INET6:
		/* IPv6 sockets are IPV6_V6ONLY: IPv4 ones never clash. */
		return a6->sin6_port == b6->sin6_port &&
		    (IN6_ARE_ADDR_EQUAL(&a6->sin6_addr, &b6->sin6_addr) ||
		    IN6_IS_ADDR_UNSPECIFIED(&a6->sin6_addr) ||
		    IN6_IS_ADDR_UNSPECIFIED(&b6->sin6_addr));
	default:
		return sock_addr_equal(a, b);
	}
}

/* The inodes of the TCP sockets listening on PORT, from /proc/net. */
static size_t
sock_listeners(unsigned int port, unsigned long *ino, size_t max)
{
	static const char *const files[] = { "/proc/net/tcp",
	    "/proc/net/tcp6" };
	char		 line[512];
	unsigned int	 lport, state;
	unsigned long	 inode;
	size_t		 i, n = 0;
	FILE		*fp;

	for (i = 0; i < 2; i++) {
		if ((fp = fopen(files[i], "re")) == NULL)
			continue;
		/* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
		while (n < max && fgets(line, sizeof(line), fp) != NULL)
			if (sscanf(line, " %*u: %*[0-9A-Fa-f]:%x "
			    "%*[0-9A-Fa-f]:%*x %x %*x:%*x %*x:%*x %*x %*u %*u "
			    "%lu", &lport, &state, &inode) == 3 &&
			    lport == port && state == 0x0A)	/* LISTEN */
				ino[n++] = inode;
		fclose(fp);
	}
	return n;
}

/* Whether process PID (0: this one) holds one of the N sockets INO. */
static bool
sock_held_by(pid_t pid, const unsigned long *ino, size_t n)
{
	char		 dir[64], path[64 + 256], link[64];
	DIR		*d;
	struct dirent	*de;
	unsigned long	 inode;
	ssize_t		 len;
	size_t		 i;
	bool		 held = false;

	if (pid == 0)
		snprintf(dir, sizeof(dir), "/proc/self/fd");
	else
		snprintf(dir, sizeof(dir), "/proc/%ld/fd", (long)pid);
	if ((d = opendir(dir)) == NULL)
		return false;
	while (!held && (de = readdir(d)) != NULL) {
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if ((len = readlink(path, link, sizeof(link) - 1)) <= 0)
			continue;
		link[len] = '\0';
		if (sscanf(link, "socket:[%lu]", &inode) != 1)
			continue;
		for (i = 0; i < n; i++)
			if (ino[i] == inode)
				held = true;
	}
	closedir(d);
	return held;
}

/* Whether pid 1 is systemd, which holds the sockets of fpmd.socket. */
static bool
sock_init_is_systemd(void)
{
	char	 comm[32] = "";
	FILE	*fp;

	if ((fp = fopen("/proc/1/comm", "re")) == NULL)
		return false;
	if (fgets(comm, sizeof(comm), fp) == NULL)
		comm[0] = '\0';
	fclose(fp);
	return strcmp(comm, "systemd\n") == 0;
}

int
sock_probe(const struct sock_addr *a, pid_t holder, char *err, size_t errlen)
{
	const struct sockaddr_in	*sin;
	unsigned long			 ino[64];
	size_t				 n;
	int				 fd, one = 1, rc, saved;

	if (a->family != AF_INET && a->family != AF_INET6)
		return 0;
	if ((fd = socket(a->family, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return 0;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (a->family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one,
		    sizeof(one));
	rc = bind(fd, (const struct sockaddr *)&a->ss, a->len);
	saved = errno;
	close(fd);
	if (rc == 0 || saved != EADDRINUSE)
		return 0;
	/* sin_port and sin6_port lie at the same offset. */
	sin = (const struct sockaddr_in *)&a->ss;
	n = sock_listeners(ntohs(sin->sin_port), ino, 64);
	if (sock_held_by(0, ino, n) ||
	    (holder > 0 && sock_held_by(holder, ino, n)) ||
	    (sock_init_is_systemd() && sock_held_by(1, ino, n)))
		return 0;
	snprintf(err, errlen, "%s is already in use by another program",
	    a->text);
	return -1;
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

/*
 * Sets PATH's access ACL: the owner, group and other entries from
 * listen.mode, read and write for each user of listen.acl_users and each
 * group of listen.acl_groups, and the mask they need.  Built from scratch,
 * so that an entry inherited from the directory's default ACL or left by
 * an earlier generation is dropped.  With no named entry, a file that has
 * no extended ACL is left alone (chmod did it all).
 */
static int
sock_set_acl(const struct pool_conf *pc, const char *path)
{
	acl_t		 acl;
	acl_entry_t	 e;
	acl_permset_t	 ps;
	const void	*who;
	size_t		 i, n = pc->nacl_users + pc->nacl_groups;
	int		 rc = -1, saved;

	if (n == 0 && acl_extended_file(path) <= 0)
		return 0;
	if ((acl = acl_from_mode(pc->listen_mode)) == NULL)
		return -1;
	for (i = 0; i < n; i++) {
		who = i < pc->nacl_users ? (const void *)&pc->acl_uids[i] :
		    (const void *)&pc->acl_gids[i - pc->nacl_users];
		if (acl_create_entry(&acl, &e) == -1 ||
		    acl_set_tag_type(e, i < pc->nacl_users ? ACL_USER :
		    ACL_GROUP) == -1 ||
		    acl_set_qualifier(e, who) == -1 ||
		    acl_get_permset(e, &ps) == -1 ||
		    acl_clear_perms(ps) == -1 ||
		    acl_add_perm(ps, ACL_READ) == -1 ||
		    acl_add_perm(ps, ACL_WRITE) == -1 ||
		    acl_set_permset(e, ps) == -1)
			goto fail;
	}
	if ((n > 0 && acl_calc_mask(&acl) == -1) ||
	    acl_set_file(path, ACL_TYPE_ACCESS, acl) == -1)
		goto fail;
	rc = 0;
fail:
	saved = errno;
	acl_free(acl);
	errno = saved;
	return rc;
}

int
sock_set_perms(const struct pool_conf *pc, const struct sock_addr *a)
{
	bool	 acl = pc->nacl_users > 0 || pc->nacl_groups > 0;

	if (a->family != AF_UNIX)
		return 0;
	if (chmod(a->text, pc->listen_mode) == -1)
		return -1;
	if (acl && (pc->listen_owner != NULL || pc->listen_group != NULL))
		log_warnx("[pool %s] listen.acl_users or listen.acl_groups is "
		    "set: listen.owner and listen.group are ignored",
		    pc->name);
	/* As PHP-FPM: with ACL entries, the socket stays the master's. */
	if (geteuid() == 0 && chown(a->text, acl ? geteuid() : pc->listen_uid,
	    acl ? getegid() : pc->listen_gid) == -1)
		return -1;
	return sock_set_acl(pc, a->text);
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
			snprintf(err, errlen, "%s: cannot set its owner, mode "
			    "or ACL: %s", a->text, strerror(errno));
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

/*
 * An IPv4-mapped IPv6 address or network (::ffff:a.b.c.d, a prefix of 96
 * bits or more) as its IPv4 one.
 */
static void
sock_net_unmap(struct sock_net *n)
{
	static const uint8_t	 mapped[12] = { [10] = 0xff, [11] = 0xff };

	if (n->family != AF_INET6 || n->bits < 96 ||
	    memcmp(n->addr, mapped, 12) != 0)
		return;
	memmove(n->addr, n->addr + 12, 4);
	memset(n->addr + 4, 0, 12);
	n->family = AF_INET;
	n->bits -= 96;
}

int
sock_net_parse(const char *s, struct sock_net *n, char *err, size_t errlen)
{
	char		 host[INET6_ADDRSTRLEN];
	const char	*slash = strchr(s, '/');
	size_t		 hlen = slash != NULL ? (size_t)(slash - s) : strlen(s);
	unsigned int	 max, i;
	long		 bits;

	memset(n, 0, sizeof(*n));
	if (hlen == 0 || hlen >= sizeof(host))
		goto bad;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	if (inet_pton(AF_INET, host, n->addr) == 1) {
		n->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, host, n->addr) == 1) {
		n->family = AF_INET6;
		max = 128;
	} else
		goto bad;
	n->bits = max;
	if (slash != NULL) {
		if (parse_long(slash + 1, 0, max, &bits) == -1) {
			snprintf(err, errlen, "\"%s\": the prefix length must "
			    "be from 0 to %u", s, max);
			return -1;
		}
		n->bits = (unsigned int)bits;
	}
	/* 10.1.2.3/8 is most likely a typo for 10.0.0.0/8: say so. */
	for (i = n->bits; i < max; i++)
		if (n->addr[i / 8] & (0x80 >> (i % 8))) {
			snprintf(err, errlen, "\"%s\" has bits set past its "
			    "/%u prefix", s, n->bits);
			return -1;
		}
	sock_net_unmap(n);
	return 0;
bad:
	snprintf(err, errlen, "\"%s\" is not an IPv4 or IPv6 address, "
	    "with or without a /prefix", s);
	return -1;
}

bool
sock_net_match(const struct sock_net *nets, size_t n, const struct sockaddr *sa,
    socklen_t len)
{
	struct sock_net	 peer;
	size_t		 i;
	unsigned int	 whole, rest;

	memset(&peer, 0, sizeof(peer));
	if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		peer.family = AF_INET;
		memcpy(peer.addr, &((const struct sockaddr_in *)sa)->sin_addr,
		    4);
		peer.bits = 32;
	} else if (sa->sa_family == AF_INET6 &&
	    len >= sizeof(struct sockaddr_in6)) {
		peer.family = AF_INET6;
		memcpy(peer.addr,
		    &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
		peer.bits = 128;
		sock_net_unmap(&peer);
	} else
		return false;
	for (i = 0; i < n; i++) {
		if (nets[i].family != peer.family)
			continue;
		whole = nets[i].bits / 8;
		rest = nets[i].bits % 8;
		if (memcmp(nets[i].addr, peer.addr, whole) == 0 &&
		    (rest == 0 || ((nets[i].addr[whole] ^ peer.addr[whole]) &
		    (0xff00 >> rest)) == 0))
			return true;
	}
	return false;
}

/*
 * listen.allowed_clients, checked as PHP-FPM does: right after accept,
 * before a byte is read (by the worker, and by the master for
 * pm.status_listen).  A refused client is logged and
 * its connection closed; Unix-socket peers are not filtered.
 */
bool
sock_peer_allowed(const struct pool_conf *pc, int family,
    const struct sockaddr_storage *peer, socklen_t len)
{
	char	 host[NI_MAXHOST];

	if (pc->nallowed_clients == 0 || family == AF_UNIX ||
	    sock_net_match(pc->allowed, pc->nallowed_clients,
	    (const struct sockaddr *)peer, len))
		return true;
	if (getnameinfo((const struct sockaddr *)peer, len, host, sizeof(host),
	    NULL, 0, NI_NUMERICHOST) != 0)
		strlcpy_(host, "?", sizeof(host));
	log_warnx("connection from %s refused: not in "
	    "listen.allowed_clients", host);
	return false;
}
