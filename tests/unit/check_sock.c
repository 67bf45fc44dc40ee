/*
 * check_sock.c -- the pure parts of sock.c: listen.allowed_clients as a
 * table of (entries, peer address) -> allowed, its parser's refusals, and
 * which listen addresses overlap; then the port probe against a port
 * another process holds.
 */
#include "config.h"

#include <sys/wait.h>

#include <arpa/inet.h>
#include <check.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fpmd.h"
#include "unit.h"

#define MAXNETS	4

static const struct {
	const char	*nets[MAXNETS];	/* NULL-terminated */
	const char	*peer;
	bool		 allowed;
} match_cases[] = {
	/* Exact addresses, as PHP-FPM. */
	{ { "127.0.0.1" }, "127.0.0.1", true },
	{ { "127.0.0.1" }, "127.0.0.2", false },
	{ { "::1" }, "::1", true },
	{ { "::1" }, "::2", false },
	{ { "127.0.0.1", "::1" }, "::1", true },
	/* An IPv4 entry matches an IPv4-mapped IPv6 peer, and back. */
	{ { "127.0.0.1" }, "::ffff:127.0.0.1", true },
	{ { "::ffff:10.0.0.0/104" }, "10.9.8.7", true },
	{ { "::ffff:10.0.0.0/104" }, "11.0.0.1", false },
	/* Families do not mix otherwise. */
	{ { "0.0.0.0/0" }, "::1", false },
	{ { "::/0" }, "127.0.0.1", false },
	{ { "0.0.0.0/0" }, "203.0.113.9", true },
	{ { "::/0" }, "2001:db8::1", true },
	/* CIDR, on and off byte boundaries. */
	{ { "10.0.0.0/8" }, "10.255.255.255", true },
	{ { "10.0.0.0/8" }, "11.0.0.0", false },
	{ { "192.168.4.0/22" }, "192.168.7.254", true },
	{ { "192.168.4.0/22" }, "192.168.8.1", false },
	{ { "192.168.4.0/22" }, "192.168.3.255", false },
	{ { "172.16.0.0/12" }, "172.31.0.1", true },
	{ { "172.16.0.0/12" }, "172.32.0.1", false },
	{ { "203.0.113.7/32" }, "203.0.113.7", true },
	{ { "203.0.113.7/32" }, "203.0.113.6", false },
	{ { "2001:db8::/32" }, "2001:db8:ffff::1", true },
	{ { "2001:db8::/32" }, "2001:db9::1", false },
	{ { "fe80::/10" }, "febf::1", true },
	{ { "fe80::/10" }, "fec0::1", false },
	/* Several entries: any one will do. */
	{ { "10.0.0.0/8", "192.0.2.1", "::1" }, "192.0.2.1", true },
	{ { "10.0.0.0/8", "192.0.2.1", "::1" }, "192.0.2.2", false },
	/* No entry: nobody (the caller's fail-closed default). */
	{ { NULL }, "127.0.0.1", false },
};

/* PEER as a sockaddr, in the family its text says. */
static socklen_t
peer_addr(const char *peer, struct sockaddr_storage *ss)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, peer, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(40000);
		return sizeof(*sin);
	}
	ck_assert_int_eq(inet_pton(AF_INET6, peer, &sin6->sin6_addr), 1);
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(40000);
	return sizeof(*sin6);
}

START_TEST(test_match)
{
	struct sock_net		 nets[MAXNETS];
	struct sockaddr_storage	 ss;
	socklen_t		 len;
	char			 err[256];
	size_t			 n;

	for (n = 0; n < MAXNETS && match_cases[_i].nets[n] != NULL; n++)
		ck_assert_msg(sock_net_parse(match_cases[_i].nets[n], &nets[n],
		    err, sizeof(err)) == 0, "case %d: %s", _i, err);
	len = peer_addr(match_cases[_i].peer, &ss);
	ck_assert_msg(sock_net_match(nets, n, (struct sockaddr *)&ss, len) ==
	    match_cases[_i].allowed, "case %d: %s %s", _i,
	    match_cases[_i].peer, match_cases[_i].allowed ? "refused" :
	    "allowed");
}
END_TEST

START_TEST(test_match_other_families)
{
	struct sock_net		 net;
	struct sockaddr_storage	 ss;
	char			 err[256];

	ck_assert_int_eq(sock_net_parse("0.0.0.0/0", &net, err, sizeof(err)),
	    0);
	memset(&ss, 0, sizeof(ss));
	ss.ss_family = AF_UNIX;
	ck_assert(!sock_net_match(&net, 1, (struct sockaddr *)&ss,
	    sizeof(ss)));
	/* A truncated address is no address. */
	ss.ss_family = AF_INET;
	ck_assert(!sock_net_match(&net, 1, (struct sockaddr *)&ss, 4));
}
END_TEST

static const struct {
	const char	*entry;
	const char	*error;
} parse_bad[] = {
	{ "", "is not an IPv4 or IPv6 address" },
	{ "localhost", "is not an IPv4 or IPv6 address" },
	{ "10.0.0", "is not an IPv4 or IPv6 address" },
	{ "10.0.0.256", "is not an IPv4 or IPv6 address" },
	{ "/8", "is not an IPv4 or IPv6 address" },
	{ "[::1]", "is not an IPv4 or IPv6 address" },
	{ "10.0.0.0/33", "the prefix length must be from 0 to 32" },
	{ "10.0.0.0/", "the prefix length must be from 0 to 32" },
	{ "10.0.0.0/-1", "the prefix length must be from 0 to 32" },
	{ "10.0.0.0/8x", "the prefix length must be from 0 to 32" },
	{ "::/129", "the prefix length must be from 0 to 128" },
	{ "10.1.2.3/8", "\"10.1.2.3/8\" has bits set past its /8 prefix" },
	{ "2001:db8::1/32", "has bits set past its /32 prefix" },
};

START_TEST(test_parse_bad)
{
	struct sock_net	 net;
	char		 err[256] = "";

	ck_assert_msg(sock_net_parse(parse_bad[_i].entry, &net, err,
	    sizeof(err)) == -1, "\"%s\" parsed", parse_bad[_i].entry);
	ck_assert_msg(strstr(err, parse_bad[_i].error) != NULL,
	    "\"%s\": want \"%s\", got \"%s\"", parse_bad[_i].entry,
	    parse_bad[_i].error, err);
}
END_TEST

START_TEST(test_parse_good)
{
	struct sock_net	 net;
	char		 err[256];

	ck_assert_int_eq(sock_net_parse("10.0.0.0/8", &net, err, sizeof(err)),
	    0);
	ck_assert_int_eq(net.family, AF_INET);
	ck_assert_uint_eq(net.bits, 8);
	ck_assert_int_eq(sock_net_parse("::1", &net, err, sizeof(err)), 0);
	ck_assert_int_eq(net.family, AF_INET6);
	ck_assert_uint_eq(net.bits, 128);
	ck_assert_int_eq(sock_net_parse("::ffff:192.0.2.1", &net, err,
	    sizeof(err)), 0);
	ck_assert_int_eq(net.family, AF_INET);
	ck_assert_uint_eq(net.bits, 32);
	ck_assert_int_eq(net.addr[0], 192);
	ck_assert_int_eq(net.addr[3], 1);
}
END_TEST

static const struct {
	const char	*a, *b;
	bool		 overlap;
} overlap_cases[] = {
	{ "127.0.0.1:9000", "127.0.0.1:9000", true },
	{ "9000", "127.0.0.1:9000", true },
	{ "127.0.0.1:9000", "0.0.0.0:9000", true },
	{ "127.0.0.1:9000", "127.0.0.2:9000", false },
	{ "127.0.0.1:9000", "127.0.0.1:9001", false },
	{ "[::]:9000", "[::1]:9000", true },
	{ "[::1]:9000", "[::2]:9000", false },
	/* IPv6 sockets are IPV6_V6ONLY: no clash with IPv4. */
	{ "[::]:9000", "0.0.0.0:9000", false },
	{ "/run/a.sock", "/run/a.sock", true },
	{ "/run/a.sock", "/run/b.sock", false },
};

START_TEST(test_overlap)
{
	struct sock_addr	 a, b;
	char			 err[256];

	ck_assert_int_eq(sock_addr_parse(overlap_cases[_i].a, &a, err,
	    sizeof(err)), 0);
	ck_assert_int_eq(sock_addr_parse(overlap_cases[_i].b, &b, err,
	    sizeof(err)), 0);
	ck_assert_msg(sock_addr_overlap(&a, &b) == overlap_cases[_i].overlap,
	    "%s vs %s", overlap_cases[_i].a, overlap_cases[_i].b);
	ck_assert(sock_addr_overlap(&b, &a) == overlap_cases[_i].overlap);
}
END_TEST

/* A port another process holds, as a struct sock_addr in A. */
static pid_t
hold_addr(struct sock_addr *a)
{
	char		 spec[64], err[256];
	in_port_t	 port;
	pid_t		 pid = hold_port(&port);

	snprintf(spec, sizeof(spec), "127.0.0.1:%u", port);
	ck_assert_int_eq(sock_addr_parse(spec, a, err, sizeof(err)), 0);
	return pid;
}

START_TEST(test_probe)
{
	struct sock_addr	 a;
	char			 err[256] = "";
	pid_t			 pid = hold_addr(&a);

	/* Another program's port: refused, and it says which. */
	ck_assert_int_eq(sock_probe(&a, 0, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, a.text) != NULL &&
	    strstr(err, "already in use") != NULL, "%s", err);
	/* The running master's (the pid file names it): handed over. */
	ck_assert_int_eq(sock_probe(&a, pid, err, sizeof(err)), 0);
	release_port(pid);
	/* Free again. */
	ck_assert_int_eq(sock_probe(&a, 0, err, sizeof(err)), 0);
}
END_TEST

START_TEST(test_probe_own_socket)
{
	struct sockaddr_in	 sin;
	socklen_t		 len = sizeof(sin);
	struct sock_addr	 a;
	char			 spec[64], err[256];
	int			 fd;

	/* A reload checks ports this very process listens on: not taken. */
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ne(fd, -1);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(fd, 1), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	snprintf(spec, sizeof(spec), "127.0.0.1:%u", ntohs(sin.sin_port));
	ck_assert_int_eq(sock_addr_parse(spec, &a, err, sizeof(err)), 0);
	ck_assert_int_eq(sock_probe(&a, 0, err, sizeof(err)), 0);
	close(fd);
}
END_TEST

static Suite *
sock_suite(void)
{
	Suite	*s = suite_create("sock");
	TCase	*tc = tcase_create("allowed_clients");
	TCase	*tp = tcase_create("addresses");

	tcase_add_loop_test(tc, test_match, 0,
	    sizeof(match_cases) / sizeof(match_cases[0]));
	tcase_add_test(tc, test_match_other_families);
	tcase_add_loop_test(tc, test_parse_bad, 0,
	    sizeof(parse_bad) / sizeof(parse_bad[0]));
	tcase_add_test(tc, test_parse_good);
	suite_add_tcase(s, tc);
	tcase_add_loop_test(tp, test_overlap, 0,
	    sizeof(overlap_cases) / sizeof(overlap_cases[0]));
	tcase_add_test(tp, test_probe);
	tcase_add_test(tp, test_probe_own_socket);
	suite_add_tcase(s, tp);
	return s;
}

int
main(void)
{
	return unit_run(sock_suite(), CK_FORK);
}
