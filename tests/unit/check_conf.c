/*
 * check_conf.c -- the configuration loader: every bad directive is refused
 * with FILE:LINE and a message that names it; good files load with the
 * documented defaults; include() globs relative to the including file.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <check.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fpmd.h"
#include "unit.h"

static char	 dir[] = "/tmp/check_conf.XXXXXX";

static void
write_file(const char *name, const char *text)
{
	char	 path[512];
	FILE	*fp;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fp = fopen(path, "w");
	ck_assert_ptr_nonnull(fp);
	fputs(text, fp);
	fclose(fp);
}

/* Loads NAME from the test directory; *ERRS gets what was reported. */
static struct fpmd_conf *
load(const char *name, char **errs)
{
	char			 path[512];
	size_t			 len;
	FILE			*fp;
	struct fpmd_conf	*c;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fp = open_memstream(errs, &len);
	c = conf_load(path, NULL, false, fp);
	fclose(fp);
	return c;
}

#define POOL_HEAD	"pool www {\n  user = nobody\n"

static const struct {
	const char	*text;
	const char	*error;		/* expected in the errors, with line */
} bad_cases[] = {
	{ POOL_HEAD "  bogus = 1\n  listen = 9000\n}\n",
	    "f.conf:3: no such option 'bogus'" },
	{ POOL_HEAD "  listen = 9000\n  pm.max_children = 0\n}\n",
	    "f.conf:4: pm.max_children: expected an integer from 1 to 65535" },
	{ POOL_HEAD "  listen = 9000\n  pm.max_children = lots\n}\n",
	    "f.conf:4: pm.max_children: expected an integer" },
	{ POOL_HEAD "}\n", "pool www: listen is required" },
	{ POOL_HEAD "  listen = \"1.2.3:80\"\n}\n",
	    "f.conf:3: listen: \"1.2.3:80\" is not an address" },
	{ POOL_HEAD "  listen = \"127.0.0.1:99999\"\n}\n",
	    "f.conf:3: listen: \"127.0.0.1:99999\": the port must be" },
	{ POOL_HEAD "  listen = 9000\n  pm = sometimes\n}\n",
	    "f.conf:4: pm: expected static, dynamic or ondemand" },
	{ POOL_HEAD "  listen = 9000\n  pm = dynamic\n}\n",
	    "pm = dynamic needs pm.min_spare_servers >= 1" },
	{ POOL_HEAD "  listen = 9000\n  pm = dynamic\n"
	    "  pm.min_spare_servers = 4\n  pm.max_spare_servers = 2\n}\n",
	    "f.conf:5: pm.min_spare_servers (4) must not exceed "
	    "pm.max_spare_servers (2)" },
	{ POOL_HEAD "  listen = 9000\n  pm = dynamic\n  pm.max_children = 3\n"
	    "  pm.min_spare_servers = 1\n  pm.max_spare_servers = 5\n}\n",
	    "f.conf:7: pm.max_spare_servers (5) must not exceed "
	    "pm.max_children (3)" },
	{ POOL_HEAD "  listen = 9000\n  pm = dynamic\n"
	    "  pm.min_spare_servers = 1\n  pm.max_spare_servers = 3\n"
	    "  pm.start_servers = 4\n}\n",
	    "f.conf:7: pm.start_servers (4) must lie between" },
	{ POOL_HEAD "  listen = 9000\n  pm.min_spare_servers = 1\n}\n",
	    "f.conf:4: pm.min_spare_servers and pm.max_spare_servers apply to "
	    "pm = dynamic only" },
	{ POOL_HEAD "  listen = 9000\n  pm = ondemand\n"
	    "  pm.process_idle_timeout = 0\n}\n",
	    "f.conf:5: pm.process_idle_timeout must be at least 1s" },
	{ POOL_HEAD "  listen = 9000\n  pm.status_path = status\n}\n",
	    "f.conf:4: pm.status_path: \"status\" must start with /" },
	{ POOL_HEAD "  listen = 9000\n  ping.path = \"/p ing\"\n}\n",
	    "f.conf:4: ping.path: \"/p ing\" must start with /" },
	{ POOL_HEAD "  listen = 9000\n  pm.status_listen = 9000\n}\n",
	    "f.conf:4: pm.status_listen must differ from listen" },
	{ POOL_HEAD "  listen = 9000\n}\npool two {\n  user = nobody\n"
	    "  listen = 9001\n  pm.status_listen = 9000\n}\n",
	    "f.conf:8: pm.status_listen: pool www and pool two both listen on "
	    "0.0.0.0:9000" },
	{ "log_limit = 100\n" POOL_HEAD "  listen = 9000\n}\n",
	    "f.conf:1: log_limit: expected an integer from 512 to 1048576" },
	{ "syslog.facility = kitchen\n" POOL_HEAD "  listen = 9000\n}\n",
	    "f.conf:1: syslog.facility: expected a facility" },
	{ "error_log = stdout\n" POOL_HEAD "  listen = 9000\n}\n",
	    "f.conf:1: error_log: stdout is not a target for it" },
	{ POOL_HEAD "  listen = 9000\n  access.log = syslog\n}\n",
	    "f.conf:4: access.log: syslog is not a target for it" },
	{ POOL_HEAD "  listen = 9000\n  access.format = \"%m %x\"\n}\n",
	    "f.conf:4: access.format: unknown code %x" },
	{ POOL_HEAD "  listen = 9000\n  request_slowlog_timeout = 5s\n}\n",
	    "f.conf:4: request_slowlog_timeout needs slowlog" },
	{ POOL_HEAD "  listen = 9000\n  fastcgi.read_timeout = 10x\n}\n",
	    "f.conf:4: fastcgi.read_timeout: expected a duration" },
	{ POOL_HEAD "  listen = 9000\n  fastcgi.max_params_size = 2G\n}\n",
	    "f.conf:4: fastcgi.max_params_size: expected a size" },
	{ POOL_HEAD "  listen = /tmp/x.sock\n  listen.mode = 0999\n}\n",
	    "f.conf:4: listen.mode: expected an octal mode" },
	{ POOL_HEAD "  listen = 9000\n  clear_env = maybe\n}\n",
	    "f.conf:4: clear_env: expected yes or no" },
	{ "log_level = loud\n" POOL_HEAD "  listen = 9000\n}\n",
	    "f.conf:1: log_level: expected debug, notice" },
	{ "pool www {\n  user = no-such-user-here\n  listen = 9000\n}\n",
	    "f.conf:2: user: no such user \"no-such-user-here\"" },
	{ POOL_HEAD "  group = no-such-group-here\n  listen = 9000\n}\n",
	    "f.conf:3: group: no such group" },
	{ POOL_HEAD "  listen = 9000\n  handler = nope\n}\n",
	    "f.conf:4: handler: cannot load" },
	{ POOL_HEAD "  listen = 9000\n  handler = \"../x\"\n}\n",
	    "f.conf:4: handler: \"../x\": expected a built-in handler" },
	{ POOL_HEAD "  listen = 9000\n  handler.options { root = \"/\" }\n}\n",
	    "f.conf:4: handler.options: root: the echo handler takes no" },
	{ POOL_HEAD "  listen = 9000\n  pm.max_requests_jitter = 5\n}\n",
	    "f.conf:4: pm.max_requests_jitter needs pm.max_requests" },
	{ POOL_HEAD "  listen = 9000\n}\npool two {\n  user = nobody\n"
	    "  listen = \"0.0.0.0:9000\"\n}\n",
	    "f.conf:7: listen: pool www and pool two both listen on" },
	{ POOL_HEAD "  listen = 9000\n}\npool www {\n  user = nobody\n"
	    "  listen = 9001\n}\n", "f.conf:" },
	{ POOL_HEAD "  listen = 9000\n}\n}\n",
	    "f.conf:5: unexpected closing brace" },
	{ POOL_HEAD "  listen 9000\n}\n", "f.conf:3: " },
	{ "", "f.conf:1: no pool is defined" },
	/* libconfuse 3.3 miscounts lines after comments: conf.c strips them. */
	{ "# one\n// two\n/* three\n four */\n" POOL_HEAD
	    "  listen = \"a#b.sock\" # trailing\n  pm.max_children = 0\n}\n",
	    "f.conf:8: pm.max_children" },
	{ "include(\"missing.conf\")\n" POOL_HEAD "  listen = 9000\n}\n",
	    "missing.conf: no such file" },
	/* What the start needs: a chroot, a socket's directory. */
	{ POOL_HEAD "  listen = 9000\n  chroot = \"/nonexistent-fpmd\"\n}\n",
	    "f.conf:4: chroot: /nonexistent-fpmd: no such directory" },
	{ POOL_HEAD "  listen = 9000\n  chroot = \"/etc/passwd\"\n}\n",
	    "f.conf:4: chroot: /etc/passwd is not a directory" },
	{ POOL_HEAD "  listen = 9000\n  chroot = jail\n}\n",
	    "f.conf:4: chroot: \"jail\" must be an absolute path" },
	{ POOL_HEAD "  listen = \"/nonexistent-fpmd/www.sock\"\n}\n",
	    "f.conf:3: listen: the socket's directory /nonexistent-fpmd: no "
	    "such directory" },
	{ POOL_HEAD "  listen = \"/etc/passwd/www.sock\"\n}\n",
	    "f.conf:3: listen: the socket's directory /etc/passwd is not a "
	    "directory" },
	{ POOL_HEAD "  listen = \"/tmp/x.sock\"\n"
	    "  listen.owner = nobody-x\n}\n",
	    "f.conf:4: listen.owner: no such user \"nobody-x\"" },
	{ POOL_HEAD "  listen = \"/tmp/x.sock\"\n"
	    "  listen.group = nogroup-x\n}\n",
	    "f.conf:4: listen.group: no such group \"nogroup-x\"" },
	{ POOL_HEAD "  listen = 9000\n}\npool two {\n  user = nobody\n"
	    "  listen = \"127.0.0.1:9000\"\n}\n",
	    "f.conf:7: listen: pool www on 0.0.0.0:9000 and pool two on "
	    "127.0.0.1:9000 share a port" },
	/* listen.allowed_clients: fail closed, loudly. */
	{ POOL_HEAD "  listen = 9000\n"
	    "  listen.allowed_clients = {127.0.0.1, bogus}\n}\n",
	    "f.conf:4: listen.allowed_clients: \"bogus\" is not an IPv4 or "
	    "IPv6 address" },
	{ POOL_HEAD "  listen = 9000\n"
	    "  listen.allowed_clients = {bogus, \"10.1.2.3/8\"}\n}\n",
	    "f.conf:4: listen.allowed_clients: \"10.1.2.3/8\" has bits set "
	    "past its /8 prefix" },
	{ POOL_HEAD "  listen = 9000\n"
	    "  listen.allowed_clients = \"::1/129\"\n}\n",
	    "f.conf:4: listen.allowed_clients: \"::1/129\": the prefix length "
	    "must be from 0 to 128" },
	{ POOL_HEAD "  listen = 9000\n  listen.allowed_clients = {}\n}\n",
	    "listen.allowed_clients is empty: it would refuse every client" },
	{ POOL_HEAD "  listen = \"/tmp/x.sock\"\n"
	    "  listen.allowed_clients = {127.0.0.1}\n}\n",
	    "f.conf:4: listen.allowed_clients applies to TCP only" },
	/* listen.acl_users and listen.acl_groups. */
	{ POOL_HEAD "  listen = 9000\n  listen.acl_users = {nobody}\n}\n",
	    "f.conf:4: listen.acl_users and listen.acl_groups apply to Unix "
	    "sockets only" },
	{ POOL_HEAD "  listen = \"/tmp/x.sock\"\n"
	    "  listen.acl_users = {nobody, nobody-x}\n}\n",
	    "f.conf:4: listen.acl_users: no such user \"nobody-x\"" },
	{ POOL_HEAD "  listen = \"/tmp/x.sock\"\n"
	    "  listen.acl_users = {nobody, nobody}\n}\n",
	    "f.conf:4: listen.acl_users: \"nobody\" is listed twice" },
	{ POOL_HEAD "  listen = \"/tmp/x.sock\"\n"
	    "  listen.acl_groups = {nogroup-x}\n}\n",
	    "f.conf:4: listen.acl_groups: no such group \"nogroup-x\"" },
	{ POOL_HEAD "  listen = 9000\n  process.no_new_privs = maybe\n}\n",
	    "f.conf:4: process.no_new_privs: expected yes or no" },
};

START_TEST(test_bad)
{
	struct fpmd_conf	*c;
	char			*errs = NULL;

	write_file("f.conf", bad_cases[_i].text);
	c = load("f.conf", &errs);
	ck_assert_msg(c == NULL, "case %d loaded", _i);
	ck_assert_msg(strstr(errs, bad_cases[_i].error) != NULL,
	    "case %d: want \"%s\" in:\n%s", _i, bad_cases[_i].error, errs);
	/* Every error line starts with the file's path. */
	ck_assert_msg(strncmp(errs, dir, strlen(dir)) == 0, "%s", errs);
	free(errs);
}
END_TEST

START_TEST(test_every_error_reported)
{
	struct fpmd_conf	*c;
	char			*errs = NULL;

	write_file("f.conf", POOL_HEAD "  listen = 9000\n"
	    "  pm.max_children = 0\n  listen.backlog = -1\n  nope = 1\n}\n");
	c = load("f.conf", &errs);
	ck_assert_ptr_null(c);
	ck_assert_ptr_nonnull(strstr(errs, "f.conf:4: pm.max_children"));
	ck_assert_ptr_nonnull(strstr(errs, "f.conf:5: listen.backlog"));
	ck_assert_ptr_nonnull(strstr(errs, "f.conf:6: no such option 'nope'"));
	free(errs);
}
END_TEST

START_TEST(test_good)
{
	struct fpmd_conf	*c;
	struct pool_conf	*pc;
	char			*errs = NULL;

	write_file("f.conf", "pid = \"run/fpmd.pid\"\n"
	    "process_control_timeout = 2m\n"
	    POOL_HEAD "  listen = \"www.sock\"\n  pm.max_children = 7\n"
	    "  env { PATH = \"/bin\" FOO = bar }\n"
	    "  fastcgi.max_params_size = 64K\n"
	    "  fastcgi.keepalive_timeout = 90\n}\n");
	c = load("f.conf", &errs);
	ck_assert_msg(c != NULL, "%s", errs);
	ck_assert_int_eq(c->npools, 1);
	ck_assert_int_eq(c->process_control_timeout_ms, 120000);
	ck_assert_ptr_nonnull(strstr(c->pid_file, "/run/fpmd.pid"));
	ck_assert_int_eq(strncmp(c->pid_file, dir, strlen(dir)), 0);
	ck_assert_str_eq(c->error_log, "stderr");
	ck_assert_int_eq(c->log_level, LOG_NOTICE);
	pc = &c->pools[0];
	ck_assert_str_eq(pc->name, "www");
	ck_assert_int_eq(pc->addr.family, AF_UNIX);
	ck_assert_int_eq(strncmp(pc->listen, dir, strlen(dir)), 0);
	ck_assert_int_eq(pc->max_children, 7);
	ck_assert_int_eq(pc->backlog, 511);
	ck_assert_int_eq(pc->listen_mode, 0660);
	ck_assert_int_eq(pc->pm, PM_STATIC);
	ck_assert(pc->clear_env);
	ck_assert_int_eq(pc->nenv, 2);
	ck_assert_str_eq(pc->env[0].key, "PATH");
	ck_assert_str_eq(pc->env[1].value, "bar");
	ck_assert_int_eq(pc->max_params_size, 65536);
	ck_assert_int_eq(pc->read_timeout_ms, 30000);
	ck_assert_int_eq(pc->keepalive_timeout_ms, 90000);
	ck_assert_str_eq(pc->handler, "echo");
	conf_free(c);
	free(errs);
}
END_TEST

static const struct {
	const char	*listen;
	int		 family;
	const char	*text;
} listen_cases[] = {
	{ "9000", AF_INET, "0.0.0.0:9000" },
	{ "127.0.0.1:9001", AF_INET, "127.0.0.1:9001" },
	{ "[::1]:9002", AF_INET6, "[::1]:9002" },
	{ "/tmp/fpmd-x.sock", AF_UNIX, "/tmp/fpmd-x.sock" },
};

/* A TCP port nothing listens on right now. */
static unsigned int
free_port(void)
{
	struct sockaddr_in	 sin;
	socklen_t		 len = sizeof(sin);
	int			 fd;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ne(fd, -1);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	close(fd);
	return ntohs(sin.sin_port);
}

START_TEST(test_isolation_good)
{
	struct fpmd_conf	*c;
	struct pool_conf	*pc;
	char			*errs = NULL, text[1024];

	snprintf(text, sizeof(text), POOL_HEAD "  listen = \"www.sock\"\n"
	    "  chroot = \"/\"\n  listen.acl_users = {nobody}\n"
	    "  listen.acl_groups = {nogroup, \"root\"}\n}\n"
	    "pool tcp {\n  user = nobody\n  listen = \"127.0.0.1:%u\"\n"
	    "  listen.allowed_clients = {127.0.0.1, \"10.0.0.0/8\", \"::1\"}\n"
	    "  process.no_new_privs = no\n}\n", free_port());
	write_file("f.conf", text);
	c = load("f.conf", &errs);
	ck_assert_msg(c != NULL, "%s", errs);
	pc = &c->pools[0];
	ck_assert(pc->no_new_privs);
	ck_assert(!pc->dumpable);
	ck_assert_int_eq(pc->nallowed_clients, 0);
	ck_assert_int_eq(pc->nacl_users, 1);
	ck_assert_str_eq(pc->acl_users[0], "nobody");
	ck_assert_int_eq(pc->acl_uids[0], 65534);
	ck_assert_int_eq(pc->nacl_groups, 2);
	ck_assert_int_eq(pc->acl_gids[1], 0);
	pc = &c->pools[1];
	ck_assert(!pc->no_new_privs);
	ck_assert_int_eq(pc->nallowed_clients, 3);
	ck_assert_str_eq(pc->allowed_clients[1], "10.0.0.0/8");
	ck_assert_int_eq(pc->allowed[1].family, AF_INET);
	ck_assert_uint_eq(pc->allowed[1].bits, 8);
	ck_assert_int_eq(pc->allowed[2].family, AF_INET6);
	conf_free(c);
	free(errs);
}
END_TEST

START_TEST(test_port_in_use)
{
	struct fpmd_conf	*c;
	char			*errs = NULL, text[512], want[256];
	in_port_t		 port;
	pid_t			 pid = hold_port(&port);

	/* Another program listens there: an error at the listen line. */
	snprintf(text, sizeof(text), "pid = \"f.pid\"\n" POOL_HEAD
	    "  listen = \"127.0.0.1:%u\"\n}\n", port);
	write_file("f.conf", text);
	write_file("f.pid", "");
	c = load("f.conf", &errs);
	snprintf(want, sizeof(want), "f.conf:4: listen: 127.0.0.1:%u is "
	    "already in use by another program", port);
	ck_assert_msg(c == NULL && strstr(errs, want) != NULL, "%s", errs);
	free(errs);
	/* Unless it is the running master the pid file names (-t). */
	snprintf(text, sizeof(text), "%ld\n", (long)pid);
	write_file("f.pid", text);
	c = load("f.conf", &errs);
	ck_assert_msg(c != NULL, "%s", errs);
	conf_free(c);
	free(errs);
	release_port(pid);
}
END_TEST

START_TEST(test_listen_forms)
{
	struct fpmd_conf	*c;
	char			*errs = NULL, text[512];

	snprintf(text, sizeof(text), POOL_HEAD "  listen = \"%s\"\n}\n",
	    listen_cases[_i].listen);
	write_file("f.conf", text);
	c = load("f.conf", &errs);
	ck_assert_msg(c != NULL, "%s", errs);
	ck_assert_int_eq(c->pools[0].addr.family, listen_cases[_i].family);
	ck_assert_str_eq(c->pools[0].addr.text, listen_cases[_i].text);
	conf_free(c);
	free(errs);
}
END_TEST

START_TEST(test_include)
{
	struct fpmd_conf	*c;
	char			*errs = NULL, path[512];

	snprintf(path, sizeof(path), "%s/pool.d", dir);
	mkdir(path, 0755);
	write_file("pool.d/a.conf", "pool a {\n  user = nobody\n"
	    "  listen = 9101\n}\n");
	write_file("pool.d/b.conf", "pool b {\n  user = nobody\n"
	    "  listen = 9102\n  pm.max_children = x\n}\n");
	write_file("f.conf", "include(\"pool.d/*.conf\")\n");
	c = load("f.conf", &errs);
	ck_assert_ptr_null(c);
	ck_assert_msg(strstr(errs, "pool.d/b.conf:4: pm.max_children") !=
	    NULL, "%s", errs);
	free(errs);

	write_file("pool.d/b.conf", "pool b {\n  user = nobody\n"
	    "  listen = 9102\n}\n");
	c = load("f.conf", &errs);
	ck_assert_msg(c != NULL, "%s", errs);
	ck_assert_int_eq(c->npools, 2);
	ck_assert_str_eq(c->pools[0].name, "a");
	ck_assert_str_eq(c->pools[1].name, "b");
	conf_free(c);
	free(errs);
	unlink("pool.d/a.conf");
}
END_TEST

static Suite *
conf_suite(void)
{
	Suite	*s = suite_create("conf");
	TCase	*tc = tcase_create("load");

	tcase_add_loop_test(tc, test_bad, 0,
	    sizeof(bad_cases) / sizeof(bad_cases[0]));
	tcase_add_test(tc, test_every_error_reported);
	tcase_add_test(tc, test_good);
	tcase_add_loop_test(tc, test_listen_forms, 0,
	    sizeof(listen_cases) / sizeof(listen_cases[0]));
	tcase_add_test(tc, test_include);
	tcase_add_test(tc, test_isolation_good);
	tcase_add_test(tc, test_port_in_use);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	char	 cmd[600];
	int	 rc;

	if (mkdtemp(dir) == NULL)
		return EXIT_FAILURE;
	/* One process: the cases share the temporary directory. */
	rc = unit_run(conf_suite(), CK_NOFORK);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) != 0 ? EXIT_FAILURE : rc;
}
