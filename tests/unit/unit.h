/*
 * unit.h -- what the Check suites share: running one suite, and a port
 * held by another process.
 */
#ifndef UNIT_H
#define UNIT_H

#include <sys/socket.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

/* Runs suite S (each case in a child of its own, or not: FORK); the
 * process's exit status. */
static inline int
unit_run(Suite *s, enum fork_status fork)
{
	SRunner	*sr = srunner_create(s);
	int	 failed;

	srunner_set_fork_status(sr, fork);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/*
 * Forks a child that listens on 127.0.0.1 (any port) and waits; returns
 * its pid and the port, in host order, in *PORT.  release_port() ends it.
 */
static inline pid_t
hold_port(in_port_t *port)
{
	struct sockaddr_in	 sin;
	socklen_t		 len = sizeof(sin);
	int			 fd, p[2];
	pid_t			 pid;

	ck_assert_int_eq(pipe(p), 0);
	if ((pid = fork()) == 0) {
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd == -1 || bind(fd, (struct sockaddr *)&sin,
		    sizeof(sin)) == -1 || listen(fd, 1) == -1 ||
		    getsockname(fd, (struct sockaddr *)&sin, &len) == -1)
			_exit(1);
		if (write(p[1], &sin.sin_port, sizeof(sin.sin_port)) !=
		    sizeof(sin.sin_port))
			_exit(1);
		pause();
		_exit(0);
	}
	ck_assert_int_gt(pid, 0);
	close(p[1]);
	ck_assert_int_eq(read(p[0], port, sizeof(*port)), sizeof(*port));
	close(p[0]);
	*port = ntohs(*port);
	return pid;
}

static inline void
release_port(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

#endif /* UNIT_H */
