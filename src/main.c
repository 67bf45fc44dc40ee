/*
 * main.c -- fpmd's command line: options, configuration test, detaching,
 * then master_main().
 */
#include "config.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fpmd.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR	"/etc"
#endif

static void
usage(FILE *fp)
{
	fprintf(fp, "usage: fpmd [-c FILE] [-p PREFIX] [-F | -D] [-t | -T] "
	    "[-R] [-v] [-h]\n"
	    "  -c, --config FILE      configuration (default %s/fpmd/"
	    "fpmd.conf)\n"
	    "  -p, --prefix DIR       resolve relative paths against DIR\n"
	    "  -F, --nodaemonize      stay in the foreground (default)\n"
	    "  -D, --daemonize        detach once every pool is ready\n"
	    "  -t, --test             check the configuration and exit\n"
	    "  -T, --test-print       check, then print the effective "
	    "configuration\n"
	    "  -R, --allow-to-run-as-root  allow pools whose user is root\n"
	    "  -v, --version          print the version\n"
	    "  -h, --help             this help\n", SYSCONFDIR);
}

/*
 * Detaches: the parent waits for the child's "ready" byte and exits 0, or
 * 1 when the pipe closes without it (the reason is in the error log).
 */
static int
daemonize(void)
{
	int	 fds[2], devnull;
	char	 b = 1;
	ssize_t	 n;

	if (pipe2(fds, O_CLOEXEC) == -1)
		fatal("pipe2");
	switch (fork()) {
	case -1:
		fatal("fork");
	case 0:
		break;
	default:
		close(fds[1]);
		do
			n = read(fds[0], &b, 1);
		while (n == -1 && errno == EINTR);
		_exit(n == 1 && b == 0 ? 0 : 1);
	}
	close(fds[0]);
	if (setsid() == -1)
		fatal("setsid");
	if (log_fd() == STDERR_FILENO)
		log_warnx("error_log = stderr and -D: the launcher's stderr is "
		    "released once ready, and later messages are lost; set "
		    "error_log to a file");
	if ((devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) != -1) {
		dup2(devnull, STDIN_FILENO);
		dup2(devnull, STDOUT_FILENO);
		if (devnull > STDERR_FILENO)
			close(devnull);
	}
	return fds[1];
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "prefix", required_argument, NULL, 'p' },
		{ "nodaemonize", no_argument, NULL, 'F' },
		{ "daemonize", no_argument, NULL, 'D' },
		{ "test", no_argument, NULL, 't' },
		{ "test-print", no_argument, NULL, 'T' },
		{ "allow-to-run-as-root", no_argument, NULL, 'R' },
		{ "version", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct options		 opts;
	struct fpmd_conf	*conf;
	int			 ch, test = 0, ready_fd = -1;

	memset(&opts, 0, sizeof(opts));
	opts.config = SYSCONFDIR "/fpmd/fpmd.conf";
	while ((ch = getopt_long(argc, argv, "c:p:FDtTRvh", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'c':
			opts.config = optarg;
			break;
		case 'p':
			opts.prefix = optarg;
			break;
		case 'F':
			opts.daemonize = false;
			opts.daemonize_set = true;
			break;
		case 'D':
			opts.daemonize = true;
			opts.daemonize_set = true;
			break;
		case 't':
			test = test > 1 ? test : 1;
			break;
		case 'T':
			test = 2;
			break;
		case 'R':
			opts.allow_root = true;
			break;
		case 'v':
			printf("fpmd %s\n", PACKAGE_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "fpmd: unexpected argument \"%s\"\n",
		    argv[optind]);
		usage(stderr);
		return 2;
	}

	conf = conf_load(opts.config, opts.prefix, opts.allow_root, stderr);
	if (conf == NULL) {
		fprintf(stderr, "fpmd: configuration %s is not valid\n",
		    opts.config);
		return 2;
	}
	if (test) {
		if (test == 2)
			conf_print(conf, stdout);
		printf("fpmd: %s: configuration OK\n", opts.config);
		conf_free(conf);
		return 0;
	}
	if (!opts.daemonize_set)
		opts.daemonize = conf->daemonize;

	log_set_level(conf->log_level);
	log_set_limit((size_t)conf->log_limit);
	(void)log_set_syslog(conf->syslog_facility, conf->syslog_ident);
	if (log_open(conf->error_log) == -1) {
		fprintf(stderr, "fpmd: cannot open the error log %s: %s\n",
		    conf->error_log, strerror(errno));
		conf_free(conf);
		return 1;
	}
	if (opts.daemonize)
		ready_fd = daemonize();
	/* The master owns the configuration from here (a reload swaps it). */
	return master_main(conf, &opts, ready_fd);
}
