/*
 * spawner.c -- a test handler plugin that starts a program as
 * fpmd-handler(3) tells a plugin to with fork(2), and records its process
 * group with program_group(), behind FPMD_HOST_HAS.  Built against
 * <fpmd/handler.h> alone and loaded by absolute path.
 *
 * Per request: the program is /bin/sh -c with a background sleep, which
 * writes "LEADER CHILD" (its own pid and the sleep's) into the file the
 * PIDS_FILE parameter names (through a rename, so that a reader never
 * sees half of it), then execs a foreground sleep: both run 300 s.  The
 * worker sets the group and records it while the child waits on a pipe,
 * then releases it; it waits for the leader's end without reaping it,
 * clears the group, reaps, and answers 200 "program exited with code N"
 * or "program exited on signal N".
 *
 * The query string changes one step each: group=0 records no group (the
 * control: a dying worker leaves the background sleep behind); clear=0
 * does not clear the group before reaping (fpmd forgets it when the
 * handler returns); lie=PGID records PGID instead of the program's group
 * (a worker gone rogue).
 */
#define _GNU_SOURCE		/* pipe2 */

#include <sys/prctl.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <fpmd/handler.h>

#include "query.h"

#define SPAWNER_SH	"sleep 300 & echo \"$$ $!\" > \"$1.tmp\" && " \
			"mv \"$1.tmp\" \"$1\" && exec sleep 300"

/*
 * The child: waits until the worker has put it in its own group and
 * recorded the group (one byte on GO; end of file means the worker gave
 * up or died), then the parent-death signal, default signal actions and
 * an empty mask, and exec.  Only then may the program fork.
 */
static void __attribute__((noreturn))
spawner_child(int go[2], const char *pids, pid_t parent)
{
	static char		 path[] = "PATH=/usr/bin:/bin";
	char			*env[] = { path, NULL };
	struct sigaction	 sa;
	sigset_t		 none;
	ssize_t			 n;
	char			 c;
	int			 sig;

	(void)close(go[1]);
	while ((n = read(go[0], &c, 1)) == -1 && errno == EINTR)
		;
	if (n != 1)
		_exit(127);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 || getppid() != parent)
		_exit(127);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	for (sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			(void)sigaction(sig, &sa, NULL);
	sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);
	execle("/bin/sh", "sh", "-c", SPAWNER_SH, "sh", pids, (char *)NULL,
	    env);
	_exit(127);
}

static int
spawner_handle(const struct fpmd_host *host, struct fpmd_request *req,
    void *data)
{
	const char	*qs = host->param(req, "QUERY_STRING");
	const char	*pids = host->param(req, "PIDS_FILE");
	char		 body[256];
	siginfo_t	 si;
	pid_t		 pid, parent = getpid();
	int		 go[2], status = 0, record, clear, n;

	(void)data;
	if (qs == NULL)
		qs = "";
	record = query_long(qs, "group", 1) != 0;
	clear = query_long(qs, "clear", 1) != 0;
	if (pids == NULL) {
		host->log(FPMD_LOG_ERROR, "spawner: no PIDS_FILE");
		return -1;
	}
	if (record && !FPMD_HOST_HAS(host, program_group)) {
		host->log(FPMD_LOG_ERROR, "spawner: no program_group");
		return -1;
	}
	if (pipe2(go, O_CLOEXEC) == -1) {
		host->log(FPMD_LOG_ERROR, "spawner: pipe: %s", strerror(errno));
		return -1;
	}
	if ((pid = fork()) == -1) {
		host->log(FPMD_LOG_ERROR, "spawner: fork: %s", strerror(errno));
		(void)close(go[0]);
		(void)close(go[1]);
		return -1;
	}
	if (pid == 0)
		spawner_child(go, pids, parent);
	(void)close(go[0]);
	/* The child waits: nothing of it can fork before the release. */
	if (setpgid(pid, pid) == 0) {
		if (record)
			host->program_group(req, (pid_t)query_long(qs, "lie",
			    pid));
		(void)write(go[1], "", 1);
	} else
		host->log(FPMD_LOG_ERROR, "spawner: setpgid: %s",
		    strerror(errno));
	/* Without the byte the child exits. */
	(void)close(go[1]);

	/* Its end, without reaping it: the group stays recorded till then. */
	memset(&si, 0, sizeof(si));
	while (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT) == -1 &&
	    errno == EINTR)
		;
	if (record && clear)
		host->program_group(req, 0);
	while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
		;
	if (WIFSIGNALED(status))
		n = snprintf(body, sizeof(body), "Status: 200 OK\r\n"
		    "Content-Type: text/plain\r\n\r\n"
		    "program exited on signal %d\n", WTERMSIG(status));
	else
		n = snprintf(body, sizeof(body), "Status: 200 OK\r\n"
		    "Content-Type: text/plain\r\n\r\n"
		    "program exited with code %d\n", WEXITSTATUS(status));
	return host->write_stdout(req, body, (size_t)n);
}

const struct fpmd_handler fpmd_handler = {
	.abi_version = FPMD_HANDLER_ABI,
	.struct_size = sizeof(struct fpmd_handler),
	.name = "spawner",
	.handle = spawner_handle,
};
