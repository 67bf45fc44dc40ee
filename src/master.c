/*
 * master.c -- the master process: one thread, one epoll loop over a
 * signalfd and a timerfd.  It binds every pool's socket, forks workers,
 * reaps them and stops.  It never serves a request and never blocks but in
 * epoll_wait.
 *
 * Callbacks only record facts (a signal came, a child died); after each
 * batch of events master_tick() asks pm.c what each pool needs and forks
 * or signals.  Stopping is a small state machine: QUIT to every worker,
 * then TERM after process_control_timeout, then KILL.
 */
#include "config.h"

#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "fpmd.h"

/* The grace between TERM and KILL on a fast stop or after a timeout. */
#define MASTER_KILL_GRACE_MS	1000
#define MASTER_TICK_MS		1000

enum master_state {
	MASTER_RUNNING,
	MASTER_FINISHING,	/* QUIT sent: in-flight requests finish */
	MASTER_TERMINATING,	/* TERM sent */
	MASTER_KILLING		/* KILL sent */
};

static struct {
	struct fpmd_conf	*conf;
	const struct options	*opts;
	struct pool_list	 pools;
	int			 ep;
	int			 sfd;
	int			 tfd;
	enum master_state	 state;
	int64_t			 deadline;	/* of the current stop phase */
	bool			 ready;
	bool			 pid_written;
	int			 ready_fd;	/* -D: tell the launcher */
} m = { .ep = -1, .sfd = -1, .tfd = -1, .ready_fd = -1 };

static const int master_signals[] = {
	SIGTERM, SIGQUIT, SIGINT, SIGUSR1, SIGUSR2, SIGHUP, SIGCHLD
};

static int
master_write_pid(void)
{
	char	 tmp[4096], buf[32];
	int	 fd, n;

	if (m.conf->pid_file == NULL)
		return 0;
	/* Written whole under a temporary name, then renamed into place. */
	snprintf(tmp, sizeof(tmp), "%s.tmp", m.conf->pid_file);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd == -1)
		return -1;
	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (write(fd, buf, (size_t)n) != n || close(fd) == -1 ||
	    rename(tmp, m.conf->pid_file) == -1) {
		unlink(tmp);
		return -1;
	}
	m.pid_written = true;
	return 0;
}

static void
master_stop(enum master_state to, int sig, int64_t timeout_ms)
{
	struct pool	*p;

	if (to <= m.state)
		return;
	m.state = to;
	m.deadline = timeout_ms > 0 ? now_ms() + timeout_ms : 0;
	TAILQ_FOREACH(p, &m.pools, entry)
		pool_signal_all(p, sig);
	if (to == MASTER_FINISHING)
		sd_notify(0, "STOPPING=1");
}

static void
master_reap(void)
{
	struct child	*c;
	pid_t		 pid;
	int		 status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if ((c = pool_child_by_pid(&m.pools, pid)) == NULL) {
			log_notice("reaped unknown child %ld", (long)pid);
			continue;
		}
		child_reaped(c, status);
	}
}

static void
master_on_signal(void)
{
	struct signalfd_siginfo	 si;

	while (read(m.sfd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGQUIT:
			log_notice("received SIG%s: finishing in-flight "
			    "requests, then stopping",
			    signal_name((int)si.ssi_signo));
			master_stop(MASTER_FINISHING, SIGQUIT,
			    m.conf->process_control_timeout_ms);
			break;
		case SIGINT:
			log_notice("received SIGINT: stopping now");
			master_stop(MASTER_TERMINATING, SIGTERM,
			    MASTER_KILL_GRACE_MS);
			break;
		case SIGUSR1:
			if (log_reopen() == -1)
				log_warn("cannot reopen the error log");
			else
				log_notice("error log reopened");
			break;
		case SIGUSR2:
		case SIGHUP:
			log_warnx("received SIG%s: reload is not supported "
			    "yet; ignored", signal_name((int)si.ssi_signo));
			break;
		case SIGCHLD:
			master_reap();
			break;
		}
	}
}

/* Escalates a stop whose phase ran out of time. */
static void
master_deadline(int64_t now)
{
	if (m.deadline == 0 || now < m.deadline)
		return;
	switch (m.state) {
	case MASTER_RUNNING:
		break;
	case MASTER_FINISHING:
		log_warnx("process_control_timeout passed: sending SIGTERM to "
		    "the workers left");
		master_stop(MASTER_TERMINATING, SIGTERM, MASTER_KILL_GRACE_MS);
		break;
	case MASTER_TERMINATING:
		log_warnx("workers still alive after SIGTERM: sending SIGKILL");
		master_stop(MASTER_KILLING, SIGKILL, MASTER_KILL_GRACE_MS);
		break;
	case MASTER_KILLING:
		m.deadline = 0;
		break;
	}
}

/* Gives each pool what pm.c says it needs; returns ms to the next need. */
static int64_t
master_scale(int64_t now)
{
	struct pool	*p;
	struct pm_counts n;
	struct pm_plan	 plan;
	int64_t		 next = MASTER_TICK_MS;
	int		 i;

	TAILQ_FOREACH(p, &m.pools, entry) {
		pool_counts(p, &n);
		pm_decide(p->conf, &n, &plan);
		if (plan.spawn == 0)
			continue;
		if (now < p->spawn_after_ms) {
			if (p->spawn_after_ms - now < next)
				next = p->spawn_after_ms - now;
			continue;
		}
		log_debug("[pool %s] total %d, leaving %d, idle %d: spawning "
		    "%d (%s)", p->conf->name, n.total, n.leaving, n.idle,
		    plan.spawn, plan.reason);
		/* While workers die young, try one at a time. */
		if (p->death_streak > 0)
			plan.spawn = 1;
		for (i = 0; i < plan.spawn; i++)
			if (child_spawn(p) == NULL)
				break;
	}
	return next;
}

static void
master_ready(void)
{
	char	 ok = 0;

	m.ready = true;
	if (master_write_pid() == -1)
		log_warn("cannot write the pid file %s", m.conf->pid_file);
	log_notice("ready to handle connections");
	sd_notify(0, "READY=1");
	if (m.ready_fd != -1) {
		(void)write(m.ready_fd, &ok, 1);
		close(m.ready_fd);
		m.ready_fd = -1;
	}
}

static bool
master_children_left(void)
{
	struct pool	*p;

	TAILQ_FOREACH(p, &m.pools, entry)
		if (p->nchildren > 0)
			return true;
	return false;
}

static void
master_arm(int64_t ms)
{
	struct itimerspec	 its;

	if (ms < 1)
		ms = 1;
	memset(&its, 0, sizeof(its));
	its.it_value.tv_sec = ms / 1000;
	its.it_value.tv_nsec = (ms % 1000) * 1000000;
	if (timerfd_settime(m.tfd, 0, &its, NULL) == -1)
		fatal("timerfd_settime");
}

static int
master_setup(void)
{
	struct epoll_event	 ev = { .events = EPOLLIN };
	struct rlimit		 rl;
	sigset_t		 set;
	size_t			 i;
	struct pool		*p;
	char			 err[512];

	sigemptyset(&set);
	for (i = 0; i < sizeof(master_signals) / sizeof(master_signals[0]); i++)
		sigaddset(&set, master_signals[i]);
	if (sigprocmask(SIG_BLOCK, &set, NULL) == -1) {
		log_error("sigprocmask");
		return -1;
	}
	signal(SIGPIPE, SIG_IGN);
	if ((m.sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) == -1 ||
	    (m.tfd = timerfd_create(CLOCK_MONOTONIC,
	    TFD_NONBLOCK | TFD_CLOEXEC)) == -1 ||
	    (m.ep = epoll_create1(EPOLL_CLOEXEC)) == -1) {
		log_error("cannot set up the event loop");
		return -1;
	}
	ev.data.fd = m.sfd;
	if (epoll_ctl(m.ep, EPOLL_CTL_ADD, m.sfd, &ev) == -1) {
		log_error("epoll_ctl");
		return -1;
	}
	ev.data.fd = m.tfd;
	if (epoll_ctl(m.ep, EPOLL_CTL_ADD, m.tfd, &ev) == -1) {
		log_error("epoll_ctl");
		return -1;
	}

	if (m.conf->rlimit_files > 0) {
		rl.rlim_cur = rl.rlim_max = (rlim_t)m.conf->rlimit_files;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			log_warn("setrlimit(rlimit_files = %ld)",
			    m.conf->rlimit_files);
	}
	if (m.conf->rlimit_core != 0) {
		rl.rlim_cur = rl.rlim_max = m.conf->rlimit_core < 0 ?
		    RLIM_INFINITY : (rlim_t)m.conf->rlimit_core;
		if (setrlimit(RLIMIT_CORE, &rl) == -1)
			log_warn("setrlimit(rlimit_core = %ld)",
			    m.conf->rlimit_core);
	}

	TAILQ_INIT(&m.pools);
	for (i = 0; i < m.conf->npools; i++) {
		if ((p = pool_new(&m.conf->pools[i], err, sizeof(err))) ==
		    NULL) {
			log_errorx("[pool %s] %s", m.conf->pools[i].name, err);
			return -1;
		}
		TAILQ_INSERT_TAIL(&m.pools, p, entry);
		log_notice("[pool %s] listening on %s, pm = %s, "
		    "max_children = %d, handler = %s", p->conf->name,
		    p->conf->addr.text, pm_style_name(p->conf->pm),
		    p->conf->max_children, p->conf->handler);
		if (geteuid() != 0 && p->conf->user != NULL)
			log_notice("[pool %s] not running as root: user and "
			    "group are ignored", p->conf->name);
	}
	return 0;
}

static void
master_teardown(void)
{
	struct pool	*p;

	while ((p = TAILQ_FIRST(&m.pools)) != NULL) {
		TAILQ_REMOVE(&m.pools, p, entry);
		pool_free(p);
	}
	if (m.pid_written)
		unlink(m.conf->pid_file);
	if (m.ep != -1)
		close(m.ep);
	if (m.sfd != -1)
		close(m.sfd);
	if (m.tfd != -1)
		close(m.tfd);
}

int
master_main(struct fpmd_conf *conf, const struct options *opts, int ready_fd)
{
	struct epoll_event	 evs[16];
	uint64_t		 expirations;
	int64_t			 now, next;
	int			 n, i;

	m.conf = conf;
	m.opts = opts;
	m.ready_fd = ready_fd;
	TAILQ_INIT(&m.pools);
	if (master_setup() == -1) {
		master_teardown();
		return 1;
	}
	log_notice("fpmd %s started, pid %ld", PACKAGE_VERSION,
	    (long)getpid());

	for (;;) {
		now = now_ms();
		master_deadline(now);
		next = MASTER_TICK_MS;
		if (m.state == MASTER_RUNNING) {
			next = master_scale(now);
			if (!m.ready)
				master_ready();
		} else if (!master_children_left())
			break;
		if (m.deadline != 0 && m.deadline - now < next)
			next = m.deadline - now;
		master_arm(next);

		n = epoll_wait(m.ep, evs, sizeof(evs) / sizeof(evs[0]), -1);
		if (n == -1 && errno != EINTR)
			fatal("epoll_wait");
		for (i = 0; i < n; i++) {
			if (evs[i].data.fd == m.sfd)
				master_on_signal();
			else if (evs[i].data.fd == m.tfd)
				while (read(m.tfd, &expirations,
				    sizeof(expirations)) > 0)
					;
		}
	}
	log_notice("exiting, bye-bye");
	master_teardown();
	return 0;
}
