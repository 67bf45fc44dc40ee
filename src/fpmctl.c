/*
 * fpmctl.c -- talks to a running fpmd through its control socket.
 *
 *   fpmctl [-s SOCKET] status [POOL] [--json] | reload [POOL] | reopen |
 *          stop [--graceful]
 *
 * Exit status: 0 done, 1 the master refused or failed (its reason on
 * stderr), 2 usage, 3 no master answering.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FPMCTL_DEFAULT_SOCKET	"/run/fpmd/fpmd.ctl"
/* A reload re-reads every file and may bind sockets: give it time. */
#define FPMCTL_TIMEOUT_MS	30000

static void
usage(FILE *fp)
{
	fprintf(fp, "usage: fpmctl [-s SOCKET] status [POOL] [--json]\n"
	    "       fpmctl [-s SOCKET] reload [POOL]\n"
	    "       fpmctl [-s SOCKET] reopen\n"
	    "       fpmctl [-s SOCKET] stop [--graceful]\n"
	    "SOCKET defaults to %s (control.listen in fpmd.conf)\n",
	    FPMCTL_DEFAULT_SOCKET);
}

/* Builds the one-line command from the arguments; NULL on bad usage. */
static char *
command_line(int argc, char **argv)
{
	static char	 line[1024];
	const char	*verb = argv[0], *pool = NULL;
	bool		 json = false, graceful = false;
	int		 i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0 &&
		    strcmp(verb, "status") == 0)
			json = true;
		else if (strcmp(argv[i], "--graceful") == 0 &&
		    strcmp(verb, "stop") == 0)
			graceful = true;
		else if (argv[i][0] != '-' && pool == NULL &&
		    (strcmp(verb, "status") == 0 ||
		    strcmp(verb, "reload") == 0) &&
		    strpbrk(argv[i], " \t\r\n") == NULL)
			pool = argv[i];
		else
			return NULL;
	}
	if (strcmp(verb, "status") != 0 && strcmp(verb, "reload") != 0 &&
	    strcmp(verb, "reopen") != 0 && strcmp(verb, "stop") != 0)
		return NULL;
	snprintf(line, sizeof(line), "%s%s%s%s%s\n", verb, pool ? " " : "",
	    pool ? pool : "", json ? " --json" : "", graceful ? " graceful" : "");
	return line;
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct sockaddr_un	 sun = { .sun_family = AF_UNIX };
	const char		*path = FPMCTL_DEFAULT_SOCKET;
	char			*line, buf[65536];
	struct pollfd		 pfd;
	size_t			 total = 0;
	ssize_t			 n;
	int			 ch, fd, first = 1, refused = 0;

	while ((ch = getopt_long(argc, argv, "+s:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 's':
			path = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1 || (line = command_line(argc, argv)) == NULL) {
		usage(stderr);
		return 2;
	}
	if (strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "fpmctl: %s: path too long\n", path);
		return 2;
	}
	strcpy(sun.sun_path, path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		fprintf(stderr, "fpmctl: no fpmd master answers on %s: %s\n",
		    path, strerror(errno));
		return 3;
	}
	if (write(fd, line, strlen(line)) != (ssize_t)strlen(line)) {
		fprintf(stderr, "fpmctl: %s: %s\n", path, strerror(errno));
		return 3;
	}
	pfd.fd = fd;
	pfd.events = POLLIN;
	for (;;) {
		if (poll(&pfd, 1, FPMCTL_TIMEOUT_MS) <= 0) {
			fprintf(stderr, "fpmctl: the master did not answer\n");
			return 3;
		}
		if ((n = read(fd, buf, sizeof(buf))) <= 0)
			break;
		if (first) {
			first = 0;
			refused = strncmp(buf, "error", 5) == 0;
			/* "ok" alone is for scripts: a status page follows. */
			if (!refused && n >= 3 && memcmp(buf, "ok\n", 3) == 0) {
				fwrite(buf + 3, 1, (size_t)n - 3, stdout);
				total += (size_t)n;
				continue;
			}
		}
		fwrite(buf, 1, (size_t)n, refused ? stderr : stdout);
		total += (size_t)n;
	}
	close(fd);
	if (total == 0) {
		fprintf(stderr, "fpmctl: the master closed without an answer\n");
		return 3;
	}
	return refused ? 1 : 0;
}
