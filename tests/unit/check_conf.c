/*
 * check_conf.c -- the configuration loader: every bad directive is refused
 * with FILE:LINE and a message that names it; good files load with the
 * documented defaults; include() globs relative to the including file.
 */
#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fpmd.h"

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
	{ "log_limit = 4096\n" POOL_HEAD "  listen = 9000\n}\n",
	    "f.conf:1: log_limit: not supported yet" },
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
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner	*sr;
	int	 failed;

	if (mkdtemp(dir) == NULL)
		return EXIT_FAILURE;
	sr = srunner_create(conf_suite());
	/* One process: the cases share the temporary directory. */
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	{
		char	 cmd[600];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			failed++;
	}
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
