/*
 * child.c -- a worker's birth and death, seen from both sides of fork.
 *
 * A built-in handler's worker is forked by the master: child_main() sheds
 * every fd but its pool's socket and the log, resets signals, confines and
 * drops privileges, then runs the request loop.
 *
 * A plugin is never loaded by the master, so that no plugin code runs as
 * root.  Each pool using one has a template process: it takes the pool's
 * identity and confinement, loads the plugin (between the uid change and
 * the chroot, see child_drop()), runs its pool_init once, then forks the
 * pool's workers when the master asks, over a SOCK_SEQPACKET socket, each
 * with the pipes and log channel the master made for it (SCM_RIGHTS).  It
 * forks them with clone(CLONE_PARENT): they are the master's children,
 * which reaps and signals them exactly as it does a built-in's, and they
 * share what pool_init built copy-on-write.  The same confinement, in a
 * process that only loads the plugin and runs its check_options, is how
 * a configuration test tries a plugin (child_check_handler()).
 *
 * child_reaped() is the master's bookkeeping when a worker is gone.
 */
#include "config.h"

#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <linux/capability.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fpmd.h"

/* A worker that cannot start exits with this; the master backs off. */
#define CHILD_EXIT_INIT	2
/* A worker that lived less than this died young: count it as a failure. */
#define CHILD_YOUNG_MS	1000
/* How long the slot of a worker a dead template was asked for is kept. */
#define CHILD_ORPHAN_MS	1000
/* A template's name in ps(1): comm, 15 bytes at most. */
#define CHILD_TMPL_COMM	"fpmd-template"
/* How long a plugin may take to load and check its options. */
#define CHILD_CHECK_MS	10000

/* master -> template: fork a worker for this slot (its fds: SCM_RIGHTS). */
struct tmpl_spawn {
	uint32_t	 slot;
	uint8_t		 mask;		/* bit i: fds[i] of wlog_child_ends() */
};

/* template -> master: the worker's pid, or -errno; or, with TMPL_READY as
 * the slot, that pool_init is done. */
#define TMPL_READY	UINT32_MAX
struct tmpl_reply {
	uint32_t	 slot;
	int32_t		 pid;
};

extern char **environ;

static int	 child_ep = -1;
static bool	(*child_claimable)(pid_t);
static char	 child_comm[16];	/* a template's workers' name */

void
child_init(int ep, bool (*claimable)(pid_t))
{
	child_ep = ep;
	child_claimable = claimable;
}

/* Closes every fd but 0-2 and the N in KEEP. */
static int
child_close_except(const int *keep, size_t n)
{
	DIR		*d;
	struct dirent	*de;
	long		 fd;
	size_t		 i;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (parse_long(de->d_name, 3, INT_MAX, &fd) == -1 ||
		    fd == dirfd(d))
			continue;
		for (i = 0; i < n; i++)
			if (keep[i] == fd)
				break;
		if (i == n)
			close((int)fd);
	}
	closedir(d);
	return 0;
}

/*
 * Closes every fd but 0-2, the pool's socket, the log channel, the eventfd
 * that wakes the master, the pool's access and slow logs, and EXTRA.
 */
static void
child_close_fds(const struct pool *p, int extra)
{
	const int	 keep[] = { p->listen_fd, log_fd(), p->wake_fd,
			    p->access_fd, p->slow_fd, extra };

	if (child_close_except(keep, sizeof(keep) / sizeof(keep[0])) == -1) {
		log_warn("opendir /proc/self/fd");
		_exit(CHILD_EXIT_INIT);
	}
}

static void
child_signals(void)
{
	struct sigaction	 sa;
	sigset_t		 mask;
	int			 sig;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	for (sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP && sig != SIGPIPE)
			(void)sigaction(sig, &sa, NULL);
	/*
	 * SIGQUIT stays blocked until the worker's handler is in place
	 * (worker_run()): one sent to a worker still starting must make it
	 * leave cleanly, not kill it with a core.
	 */
	sigemptyset(&mask);
	sigaddset(&mask, SIGQUIT);
	sigprocmask(SIG_SETMASK, &mask, NULL);
}

/* No orphans: die with the master, even if it died already. */
static void
child_tie(pid_t master)
{
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) == -1 || getppid() != master)
		_exit(CHILD_EXIT_INIT);
}

static int
child_env(const struct pool_conf *pc)
{
	size_t	 i;

	if (pc->clear_env && clearenv() != 0)
		return -1;
	for (i = 0; i < pc->nenv; i++)
		if (setenv(pc->env[i].key, pc->env[i].value, 1) == -1)
			return -1;
	return 0;
}

#define CHILD_ERR(...) do {						\
	int	 e_ = errno;						\
									\
	snprintf(err, errlen, __VA_ARGS__);				\
	if (e_ != 0 && strlen(err) + 3 < errlen)			\
		snprintf(err + strlen(err), errlen - strlen(err),	\
		    ": %s", strerror(e_));				\
} while (0)

/* After the privilege drop, or instead of it: what any worker gets. */
static int
child_settle(const struct pool_conf *pc, char *err, size_t errlen)
{
	errno = 0;
	if (pc->chdir != NULL && chdir(pc->chdir) == -1) {
		CHILD_ERR("chdir(%s)", pc->chdir);
		return -1;
	}
	/*
	 * The kernel clears "dumpable" when the uid changes, unless the
	 * fs.suid_dumpable sysctl says otherwise, and never when it does
	 * not change: set it either way, so that process.dumpable = no
	 * keeps every worker out of ptrace and core files.
	 */
	if (prctl(PR_SET_DUMPABLE, pc->dumpable ? 1 : 0) == -1) {
		CHILD_ERR("prctl(PR_SET_DUMPABLE)");
		return -1;
	}
	/*
	 * No program the worker runs (a CGI script, a shell a handler
	 * starts) gains privileges from a setuid bit or file capabilities.
	 * process.no_new_privs = no is for CGI programs that need setuid.
	 */
	if (pc->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1) {
		CHILD_ERR("prctl(PR_SET_NO_NEW_PRIVS)");
		return -1;
	}
	return 0;
}

/* Sets the effective and permitted capabilities to KEEP, a bit mask. */
static int
child_caps(uint64_t keep)
{
	struct __user_cap_header_struct	 hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct	 data[2];

	memset(data, 0, sizeof(data));
	data[0].effective = data[0].permitted = (uint32_t)keep;
	data[1].effective = data[1].permitted = (uint32_t)(keep >> 32);
	return (int)syscall(SYS_capset, &hdr, data);
}

/* Loads the plugin at PATH (when not NULL) into *H. */
static int
child_load(const char *path, const struct fpmd_handler **h, char *err,
    size_t errlen)
{
	if (path == NULL)
		return 0;
	return (*h = handler_open(path, err, errlen)) == NULL ? -1 : 0;
}

/*
 * Confinement and the privilege drop, in the only safe order, and with
 * PLUGIN, loading it as the pool's user.  With a chroot too, the plugin
 * is loaded from outside it (as the configuration names it) but after the
 * uid change: the process keeps CAP_SYS_CHROOT alone across the change,
 * loads the plugin, enters the chroot, then drops that last capability.
 */
static int
child_drop(const struct pool_conf *pc, const char *plugin,
    const struct fpmd_handler **h, char *err, size_t errlen)
{
	bool	 root = geteuid() == 0;
	bool	 late_chroot = plugin != NULL && pc->chroot != NULL &&
		    pc->user != NULL;

	errno = 0;
	if (rlimit_apply(RLIMIT_NOFILE, pc->rlimit_files) == -1) {
		CHILD_ERR("setrlimit(rlimit_files = %ld)", pc->rlimit_files);
		return -1;
	}
	if (rlimit_apply(RLIMIT_CORE, pc->rlimit_core) == -1) {
		CHILD_ERR("setrlimit(rlimit_core = %ld)", pc->rlimit_core);
		return -1;
	}
	/* As PHP-FPM: identity, chroot and priority need root. */
	if (!root) {
		if (child_load(plugin, h, err, errlen) == -1)
			return -1;
		return child_settle(pc, err, errlen);
	}
	if (pc->priority != INT_MIN && setpriority(PRIO_PROCESS, 0,
	    pc->priority) == -1) {
		CHILD_ERR("setpriority(%d)", pc->priority);
		return -1;
	}
	if (pc->chroot != NULL && !late_chroot && (chroot(pc->chroot) == -1 ||
	    chdir("/") == -1)) {
		CHILD_ERR("chroot(%s)", pc->chroot);
		return -1;
	}
	if (pc->user != NULL) {
		if (late_chroot && prctl(PR_SET_KEEPCAPS, 1) == -1) {
			CHILD_ERR("prctl(PR_SET_KEEPCAPS)");
			return -1;
		}
		if (initgroups(pc->user, pc->gid) == -1 ||
		    setresgid(pc->gid, pc->gid, pc->gid) == -1 ||
		    setresuid(pc->uid, pc->uid, pc->uid) == -1) {
			CHILD_ERR("cannot become %s:%lu", pc->user,
			    (unsigned long)pc->gid);
			return -1;
		}
		if (late_chroot && child_caps(1ULL << CAP_SYS_CHROOT) == -1) {
			CHILD_ERR("capset(CAP_SYS_CHROOT)");
			return -1;
		}
	}
	if (child_load(plugin, h, err, errlen) == -1)
		return -1;
	errno = 0;
	if (late_chroot) {
		if (chroot(pc->chroot) == -1 || chdir("/") == -1) {
			CHILD_ERR("chroot(%s)", pc->chroot);
			return -1;
		}
		if (child_caps(0) == -1 || prctl(PR_SET_KEEPCAPS, 0) == -1) {
			CHILD_ERR("cannot drop CAP_SYS_CHROOT");
			return -1;
		}
	}
	if (pc->user != NULL && pc->uid != 0 && setuid(0) == 0) {
		snprintf(err, errlen, "could regain root after the privilege "
		    "drop: refusing to run");
		return -1;
	}
	return child_settle(pc, err, errlen);
}

/* A worker, confined, with its handler: the request loop until it ends. */
static void __attribute__((noreturn))
child_serve(struct pool *p, struct sb_slot *slot)
{
	struct worker_ctx	 w;
	uint32_t		 rnd;

	memset(&w, 0, sizeof(w));
	w.pool = p;
	w.slot = slot;
	w.handler = p->handler;
	rnd = (uint32_t)getpid() * 2654435761u ^ (uint32_t)now_ms();
	w.max_requests = pm_max_requests(p->conf, rnd);
	worker_crash_guard();
	if (w.handler->worker_init != NULL &&
	    w.handler->worker_init(&handler_host, &p->hpool,
	    &w.handler_data) == -1) {
		log_warnx("handler %s: worker_init failed", w.handler->name);
		_exit(CHILD_EXIT_INIT);
	}
	if (worker_run(&w) == -1)
		_exit(CHILD_EXIT_INIT);
	if (w.handler->worker_fini != NULL)
		w.handler->worker_fini(&handler_host, w.handler_data);
	_exit(0);
}

static void
child_claim(struct sb_slot *slot)
{
	sb_slot_begin(slot);
	slot->pid = getpid();
	sb_slot_end(slot);
}

/* A built-in's worker, forked by the master. */
static void __attribute__((noreturn))
child_main(struct pool *p, struct sb_slot *slot, pid_t master)
{
	char	 err[512];

	child_signals();
	child_tie(master);
	child_close_fds(p, -1);
	slowlog_worker_init(p, slot);
	child_claim(slot);
	if (child_drop(p->conf, NULL, NULL, err, sizeof(err)) == -1) {
		log_warnx("%s", err);
		_exit(CHILD_EXIT_INIT);
	}
	if (child_env(p->conf) == -1)
		_exit(CHILD_EXIT_INIT);
	/*
	 * The kernel clears the parent-death signal when the uid changes:
	 * ask again as the pool's user, and look again for the master.
	 */
	child_tie(master);
	child_serve(p, slot);
}

/* A plugin's worker, forked by the template with the master's fds. */
static void __attribute__((noreturn))
child_tmpl_worker(struct pool *p, int sock, const int fds[3], size_t slot,
    pid_t master)
{
	int	 tmpl_chan = log_fd();

	close(sock);
	wlog_child_fds(fds[0], fds[1], fds[2]);
	close(tmpl_chan);
	(void)prctl(PR_SET_NAME, child_comm);
	child_tie(master);
	slowlog_worker_init(p, &p->sb->slots[slot]);
	child_claim(&p->sb->slots[slot]);
	child_serve(p, &p->sb->slots[slot]);
}

/* Takes one request of the master; 0 at the end, -1 on error. */
static int
child_tmpl_recv(int sock, struct tmpl_spawn *req, int fds[3])
{
	union {
		struct cmsghdr	 hdr;
		char		 buf[CMSG_SPACE(3 * sizeof(int))];
	}			 cm;
	struct iovec		 iov = { req, sizeof(*req) };
	struct msghdr		 msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = cm.buf, .msg_controllen = sizeof(cm.buf),
	};
	struct cmsghdr		*c;
	const int		*in = NULL;
	ssize_t			 n;
	size_t			 i, k = 0, nin = 0;

	fds[0] = fds[1] = fds[2] = -1;
	while ((n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC)) == -1 &&
	    errno == EINTR)
		;
	if (n <= 0)
		return (int)n;
	if ((c = CMSG_FIRSTHDR(&msg)) != NULL && c->cmsg_level == SOL_SOCKET &&
	    c->cmsg_type == SCM_RIGHTS) {
		in = (const int *)CMSG_DATA(c);
		nin = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
	}
	for (i = 0; i < 3; i++)
		if ((req->mask & (1u << i)) && k < nin)
			fds[i] = in[k++];
	if ((size_t)n != sizeof(*req) || fds[0] == -1) {
		for (i = 0; i < 3; i++)
			if (fds[i] != -1)
				close(fds[i]);
		errno = EPROTO;
		return -1;
	}
	return 1;
}

/*
 * The template: the pool's identity, its plugin, pool_init; then a fork
 * for each worker the master asks for, until the master closes the socket.
 */
static void __attribute__((noreturn))
child_tmpl_main(struct pool *p, int sock, pid_t master)
{
	const struct pool_conf	*pc = p->conf;
	struct tmpl_spawn	 req;
	struct tmpl_reply	 rep;
	char			 path[4096], err[1024];
	int			 fds[3], i, rc;
	int64_t			 t0;
	pid_t			 pid;

	child_signals();
	child_tie(master);
	child_close_fds(p, sock);
	/* For ps(1) and top(1); its workers take back fpmd's name. */
	(void)prctl(PR_GET_NAME, child_comm);
	(void)prctl(PR_SET_NAME, CHILD_TMPL_COMM);
	if (handler_path(pc->handler, path, sizeof(path), err,
	    sizeof(err)) == -1 || child_drop(pc, path, &p->handler, err,
	    sizeof(err)) == -1) {
		log_warnx("handler %s: %s", pc->handler, err);
		_exit(CHILD_EXIT_INIT);
	}
	if (child_env(pc) == -1)
		_exit(CHILD_EXIT_INIT);
	child_tie(master);
	if (p->handler->pool_init != NULL) {
		t0 = now_ms();
		if (p->handler->pool_init(&handler_host, &p->hpool,
		    &p->hpool.data) == -1) {
			log_warnx("handler %s: pool_init failed",
			    p->handler->name);
			_exit(CHILD_EXIT_INIT);
		}
		log_notice("handler %s: pool_init done in %lld ms",
		    p->handler->name, (long long)(now_ms() - t0));
	}
	rep.slot = TMPL_READY;
	rep.pid = getpid();
	if (send(sock, &rep, sizeof(rep), MSG_NOSIGNAL) == -1)
		_exit(0);
	while ((rc = child_tmpl_recv(sock, &req, fds)) != 0) {
		if (rc == -1) {
			if (errno == EPROTO)
				continue;
			break;
		}
		/*
		 * fork(2), but the new process is the master's child, not
		 * ours: the master reaps it, and its parent-death signal
		 * follows the master.  This process has one thread, so the
		 * raw system call leaves no lock held.
		 */
		pid = (pid_t)syscall(SYS_clone, CLONE_PARENT | SIGCHLD, NULL,
		    NULL, NULL, NULL);
		if (pid == 0)
			child_tmpl_worker(p, sock, fds, req.slot, master);
		rep.slot = req.slot;
		rep.pid = pid == -1 ? -errno : pid;
		for (i = 0; i < 3; i++)
			if (fds[i] != -1)
				close(fds[i]);
		/* The master's end is non-blocking, ours is not: it waits. */
		if (send(sock, &rep, sizeof(rep), MSG_NOSIGNAL) == -1)
			break;
	}
	if (p->handler->pool_fini != NULL)
		p->handler->pool_fini(&handler_host, &p->hpool, p->hpool.data);
	_exit(0);
}

int
child_tmpl_start(struct pool *p)
{
	struct epoll_event	 ev = { .events = EPOLLIN };
	struct wlog		*w;
	int			 sv[2];
	pid_t			 pid, master = getpid();

	if (p->handler != NULL || p->tmpl_pid != 0)
		return 0;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1) {
		log_warn("[pool %s] socketpair", p->conf->name);
		return -1;
	}
	if ((w = wlog_new(p)) == NULL) {
		log_warn("[pool %s] cannot start the template", p->conf->name);
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	switch (pid = fork()) {
	case -1:
		log_warn("[pool %s] fork", p->conf->name);
		wlog_free(w);
		close(sv[0]);
		close(sv[1]);
		return -1;
	case 0:
		wlog_child(w);
		child_tmpl_main(p, sv[1], master);
	default:
		break;
	}
	close(sv[1]);
	wlog_parent(w, pid);
	p->tmpl_pid = pid;
	p->tmpl_fd = sv[0];
	p->tmpl_wlog = w;
	p->ev_tmpl.kind = EV_TEMPLATE;
	p->ev_tmpl.pool = p;
	ev.data.ptr = &p->ev_tmpl;
	if (fd_set_flags(sv[0], true) == -1 ||
	    epoll_ctl(child_ep, EPOLL_CTL_ADD, sv[0], &ev) == -1)
		log_warn("[pool %s] template socket", p->conf->name);
	log_notice("[pool %s] template process %ld started: it loads %s",
	    p->conf->name, (long)pid, p->conf->handler);
	return 0;
}

/* Asks the template for a worker in C's slot; -1 when it cannot be. */
static int
child_tmpl_ask(struct pool *p, struct child *c)
{
	struct tmpl_spawn	 req = { .slot = (uint32_t)c->slot };
	union {
		struct cmsghdr	 hdr;
		char		 buf[CMSG_SPACE(3 * sizeof(int))];
	}			 cm;
	struct iovec		 iov = { &req, sizeof(req) };
	struct msghdr		 msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = cm.buf,
	};
	struct cmsghdr		*cmsg;
	int			 fds[3], out[3], i, n = 0;

	if (p->tmpl_pid == 0 && child_tmpl_start(p) == -1)
		return -1;
	if (p->tmpl_fd == -1)
		return -1;
	wlog_child_ends(c->wlog, fds);
	for (i = 0; i < 3; i++)
		if (fds[i] != -1) {
			req.mask |= 1u << i;
			out[n++] = fds[i];
		}
	memset(&cm, 0, sizeof(cm));
	msg.msg_controllen = CMSG_SPACE((size_t)n * sizeof(int));
	cmsg = CMSG_FIRSTHDR(&msg);
	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN((size_t)n * sizeof(int));
	memcpy(CMSG_DATA(cmsg), out, (size_t)n * sizeof(int));
	if (sendmsg(p->tmpl_fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) == -1) {
		log_warn("[pool %s] cannot reach the template", p->conf->name);
		return -1;
	}
	return 0;
}

void
child_signal(struct child *c, int sig)
{
	unsigned int	 flag;

	flag = sig == SIGQUIT ? CHILD_QUIT_SENT : sig == SIGTERM ?
	    CHILD_TERM_SENT : sig == SIGKILL ? CHILD_KILL_SENT : 0;
	c->flags |= flag;
	/* Not born yet: child_tmpl_event() passes it on. */
	if (c->flags & CHILD_PENDING)
		return;
	if (kill(c->pid, sig) == -1)
		log_warn("[pool %s] kill(%ld, SIG%s)", c->pool->conf->name,
		    (long)c->pid, signal_name(sig));
}

/* Frees C and its slot: a spawn that came to nothing, or a child reaped. */
static void
child_forget(struct child *c)
{
	struct pool	*p = c->pool;

	wlog_free(c->wlog);
	sb_slot_begin(&p->sb->slots[c->slot]);
	p->sb->slots[c->slot].state = SB_FREE;
	sb_slot_end(&p->sb->slots[c->slot]);
	p->slot_used[c->slot] = false;
	TAILQ_REMOVE(&p->children, c, entry);
	p->nchildren--;
	free(c);
}

/*
 * C has pid PID at last: start watching it, and pass on a signal.  The
 * pid is the word of the template or of the worker's slot, both the pool
 * user's to write: the master, root, takes it only for a child of its own
 * that it does not know yet (child_claimable), or a stray pid would be
 * signalled as a worker.  False, C unchanged, for any other.
 */
static bool
child_born(struct child *c, pid_t pid)
{
	if (!child_claimable(pid)) {
		log_warnx("[pool %s] pid %ld, named for a new worker, is no "
		    "new child of the master: ignored", c->pool->conf->name,
		    (long)pid);
		return false;
	}
	c->pid = pid;
	c->flags &= ~CHILD_PENDING;
	wlog_parent(c->wlog, pid);
	log_debug("[pool %s] child %ld started", c->pool->conf->name,
	    (long)pid);
	if (c->flags & CHILD_KILL_SENT)
		child_signal(c, SIGKILL);
	else if (c->flags & CHILD_TERM_SENT)
		child_signal(c, SIGTERM);
	else if (c->flags & CHILD_QUIT_SENT)
		child_signal(c, SIGQUIT);
	return true;
}

static void
child_tmpl_unwatch(struct pool *p)
{
	if (p->tmpl_fd == -1)
		return;
	(void)epoll_ctl(child_ep, EPOLL_CTL_DEL, p->tmpl_fd, NULL);
	close(p->tmpl_fd);
	p->tmpl_fd = -1;
}

void
child_tmpl_event(struct pool *p)
{
	struct tmpl_reply	 rep;
	struct child		*c;
	ssize_t			 n;

	while ((n = recv(p->tmpl_fd, &rep, sizeof(rep), MSG_DONTWAIT)) ==
	    (ssize_t)sizeof(rep)) {
		if (rep.slot == TMPL_READY) {
			p->tmpl_ready = true;
			continue;
		}
		TAILQ_FOREACH(c, &p->children, entry)
			if ((c->flags & CHILD_PENDING) && c->slot == rep.slot)
				break;
		if (c == NULL)
			continue;
		/* A pid that is not one stays pending: the true answer may
		 * follow, and only this pool suffers if it does not. */
		if (rep.pid > 0) {
			(void)child_born(c, rep.pid);
			continue;
		}
		log_warnx("[pool %s] the template cannot fork: %s",
		    p->conf->name, strerror(rep.pid < 0 && rep.pid > -4096 ?
		    -rep.pid : EPROTO));
		child_forget(c);
	}
	/* The template is gone; its death is reaped elsewhere. */
	if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR))
		child_tmpl_unwatch(p);
}

void
child_tmpl_orphans(struct pool *p, int64_t now)
{
	struct child	*c, *next;
	struct sb_slot	 s;

	TAILQ_FOREACH_SAFE(c, &p->children, entry, next) {
		if (!(c->flags & CHILD_ORPHAN))
			continue;
		sb_slot_read(&p->sb->slots[c->slot], &s);
		if (s.pid > 0 && child_born(c, s.pid))
			c->flags &= ~CHILD_ORPHAN;
		else if (s.pid > 0)
			child_forget(c);
		else if (now - c->started_ms >= CHILD_ORPHAN_MS)
			child_forget(c);
	}
}

void
child_tmpl_stop(struct pool *p)
{
	child_tmpl_unwatch(p);
}

bool
child_tmpl_reaped(struct pool *p, int status)
{
	struct child	*c, *next;
	bool		 failed, clean;
	int64_t		 now = now_ms();

	clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
	failed = WIFEXITED(status) && WEXITSTATUS(status) == CHILD_EXIT_INIT;
	/* What it said last (why it failed) comes before this. */
	wlog_free(p->tmpl_wlog);
	p->tmpl_wlog = NULL;
	child_tmpl_unwatch(p);
	if (clean)
		log_notice("[pool %s] template process %ld exited",
		    p->conf->name, (long)p->tmpl_pid);
	else if (WIFSIGNALED(status))
		log_warnx("[pool %s] template process %ld exited on signal "
		    "%d (SIG%s)", p->conf->name, (long)p->tmpl_pid,
		    WTERMSIG(status), signal_name(WTERMSIG(status)));
	else
		log_warnx("[pool %s] template process %ld exited with code "
		    "%d%s", p->conf->name, (long)p->tmpl_pid,
		    WEXITSTATUS(status), failed ? ": the handler did not "
		    "start" : "");
	p->tmpl_pid = 0;
	p->tmpl_ready = false;
	/*
	 * Workers asked for and not answered: one that was forked claims
	 * its slot first thing, so its pid is known anyway.  The others keep
	 * their slots a while (child_tmpl_orphans()), in case one was forked
	 * but has not claimed it yet.
	 */
	TAILQ_FOREACH_SAFE(c, &p->children, entry, next) {
		if (!(c->flags & CHILD_PENDING))
			continue;
		c->started_ms = now;
		c->flags |= CHILD_ORPHAN;
	}
	child_tmpl_orphans(p, now);
	if (!clean) {
		p->death_streak++;
		p->spawn_after_ms = now + pm_backoff_ms(p->death_streak);
	}
	return failed;
}

struct child *
child_spawn(struct pool *p)
{
	struct child	*c;
	size_t		 slot;
	pid_t		 pid, master = getpid();

	for (slot = 0; slot < p->sb->nslots; slot++)
		if (!p->slot_used[slot])
			break;
	if (slot == p->sb->nslots) {
		log_warnx("[pool %s] no free scoreboard slot", p->conf->name);
		return NULL;
	}
	/* No worker owns the slot yet: the master may write it. */
	sb_slot_begin(&p->sb->slots[slot]);
	memset((char *)&p->sb->slots[slot] + sizeof(uint32_t), 0,
	    sizeof(struct sb_slot) - sizeof(uint32_t));
	p->sb->slots[slot].state = SB_STARTING;
	p->sb->slots[slot].started = now_real();
	sb_slot_end(&p->sb->slots[slot]);
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->wlog = wlog_new(p)) == NULL) {
		log_warn("[pool %s] cannot spawn a child", p->conf->name);
		free(c);
		return NULL;
	}
	c->pool = p;
	c->slot = slot;
	c->started_ms = now_ms();
	if (p->handler == NULL) {
		if (child_tmpl_ask(p, c) == -1) {
			wlog_free(c->wlog);
			free(c);
			return NULL;
		}
		c->flags |= CHILD_PENDING;
	} else {
		switch (pid = fork()) {
		case -1:
			log_warn("[pool %s] fork", p->conf->name);
			wlog_free(c->wlog);
			free(c);
			return NULL;
		case 0:
			wlog_child(c->wlog);
			child_main(p, &p->sb->slots[slot], master);
		default:
			break;
		}
		wlog_parent(c->wlog, pid);
		c->pid = pid;
		log_debug("[pool %s] child %ld started", p->conf->name,
		    (long)pid);
	}
	p->slot_used[slot] = true;
	TAILQ_INSERT_TAIL(&p->children, c, entry);
	p->nchildren++;
	return c;
}

/*
 * The check of a plugin, in its own process: the pool's identity, the
 * plugin, check_options.  Writes "" or the reason to FD, NUL-terminated,
 * the first byte saying which.
 */
static void __attribute__((noreturn))
child_check_main(const struct pool_conf *pc, const char *path, int fd)
{
	const struct fpmd_handler	*h = NULL;
	struct fpmd_pool		 hp = { .conf = pc };
	char				 msg[1024];
	const int			 keep[] = { fd };

	child_signals();
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
	(void)child_close_except(keep, 1);
	msg[0] = CHILD_CHECK_OK;
	msg[1] = '\0';
	if (child_drop(pc, path, &h, msg + 1, sizeof(msg) - 1) == -1)
		msg[0] = CHILD_CHECK_LOAD;
	else if (h->check_options != NULL && h->check_options(&handler_host,
	    &hp, msg + 1, sizeof(msg) - 1) == -1)
		msg[0] = CHILD_CHECK_OPTIONS;
	(void)write(fd, msg, strlen(msg + 1) + 2);
	_exit(0);
}

enum child_check
child_check_handler(const struct pool_conf *pc, const char *path,
    char *err, size_t errlen)
{
	struct pollfd	 pfd;
	char		 msg[1024];
	size_t		 len = 0;
	ssize_t		 n;
	int		 fds[2], status;
	int64_t		 deadline = now_ms() + CHILD_CHECK_MS, left;
	pid_t		 pid;

	if (pipe2(fds, O_CLOEXEC) == -1) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		return CHILD_CHECK_LOAD;
	}
	if ((pid = fork()) == -1) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return CHILD_CHECK_LOAD;
	}
	if (pid == 0)
		child_check_main(pc, path, fds[1]);
	close(fds[1]);
	pfd.fd = fds[0];
	pfd.events = POLLIN;
	while (len < sizeof(msg) && (left = deadline - now_ms()) > 0) {
		if ((n = poll(&pfd, 1, (int)left)) == -1 && errno != EINTR)
			break;
		if (n <= 0)
			continue;
		if ((n = read(fds[0], msg + len, sizeof(msg) - len)) == 0)
			break;
		if (n > 0)
			len += (size_t)n;
	}
	close(fds[0]);
	if (len == 0)
		(void)kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
		;
	if (len >= 2 && msg[len - 1] == '\0') {
		snprintf(err, errlen, "%s", msg + 1);
		return (enum child_check)msg[0];
	}
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && len == 0)
		snprintf(err, errlen, "%s: loading it and checking its "
		    "options took more than %d s", path, CHILD_CHECK_MS / 1000);
	else if (WIFSIGNALED(status))
		snprintf(err, errlen, "%s crashed while loading or checking "
		    "its options (signal %d, SIG%s)", path, WTERMSIG(status),
		    signal_name(WTERMSIG(status)));
	else
		snprintf(err, errlen, "%s ended its check with exit code %d",
		    path, WEXITSTATUS(status));
	return CHILD_CHECK_LOAD;
}

/*
 * A worker that died while its handler ran a program (the cgi handler)
 * leaves the program's children behind: the program itself dies of its
 * parent-death signal, its children and a pipeline's members do not.
 * S, the dead worker's slot, names the program's process group; kill it.
 *
 * The group is still the program's, not a stranger's: its leader was the
 * worker's child, and the worker clears the slot before it reaps the
 * leader, so while the slot names the group its pid was not free.  Now
 * the worker is gone, init may have reaped the leader; but the kernel
 * hands out no pid that a live process still uses as its group, so as
 * long as any member lives, -pgid names exactly that group.  With none
 * left, the kill could only hit a new group if the pid counter had
 * wrapped around pid_max since the worker died, a few ms ago.
 */
/*
 * kill(2) with the rights of UID alone: the master, as root, kills only
 * what the pool's user could kill itself.  Its real and effective uid
 * become UID for the call (the saved one stays 0, to come back).
 */
static int
child_kill_as(uid_t uid, pid_t target, int sig)
{
	int	 rc, saved, dumpable;

	if (geteuid() != 0 || uid == 0)
		return kill(target, sig);
	/* A change of effective uid clears it: put it back after. */
	dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
	if (setresuid(uid, uid, 0) == -1)
		return -1;
	rc = kill(target, sig);
	saved = errno;
	if (setresuid(0, 0, 0) == -1)
		fatal("cannot become root again after a kill as uid %lu",
		    (unsigned long)uid);
	if (dumpable > 0)
		(void)prctl(PR_SET_DUMPABLE, dumpable, 0, 0, 0);
	errno = saved;
	return rc;
}

static void
child_kill_program(const struct child *c, const struct sb_slot *s)
{
	const char	*pool = c->pool->conf->name;

	if (s->program_pgid <= 0)
		return;
	/*
	 * The slot is the pool's to write: code running as the pool's user
	 * (a plugin, or whatever took over the worker) could name any group
	 * there.  So the group is killed with that user's rights only.
	 */
	if (child_kill_as(c->pool->conf->uid, -s->program_pgid, SIGKILL) == 0)
		log_warnx("[pool %s] child %ld died running a program: killed "
		    "its process group %ld", pool, (long)c->pid,
		    (long)s->program_pgid);
	else if (errno == EPERM)
		log_warnx("[pool %s] child %ld died naming process group %ld, "
		    "which is not its user's: left alone", pool, (long)c->pid,
		    (long)s->program_pgid);
	else if (errno != ESRCH)
		log_warn("[pool %s] child %ld died running a program: kill "
		    "process group %ld", pool, (long)c->pid,
		    (long)s->program_pgid);
}

int
child_reaped(struct child *c, int status)
{
	struct pool	*p = c->pool;
	int64_t		 now = now_ms(), lived = now - c->started_ms;
	bool		 asked = (c->flags & (CHILD_QUIT_SENT |
			    CHILD_TERM_SENT | CHILD_KILL_SENT)) != 0;
	struct sb_slot	 s;
	char		 how[64], what[sizeof(s.method) + sizeof(s.uri) +
			    sizeof(s.script) + 32] = "";
	int		 sig = 0;

	/* What it wrote last comes before the news of its death. */
	wlog_free(c->wlog);
	c->wlog = NULL;
	/* It counted itself idle or busy: take it back, the hints stay right. */
	sb_slot_read(&p->sb->slots[c->slot], &s);
	child_kill_program(c, &s);
	if (s.state == SB_IDLE)
		__atomic_sub_fetch(&p->sb->pool->idle_hint, 1,
		    __ATOMIC_RELAXED);
	else if (s.state != SB_STARTING && s.state != SB_FREE)
		__atomic_sub_fetch(&p->sb->pool->active_hint, 1,
		    __ATOMIC_RELAXED);
	if (!asked && WIFSIGNALED(status))
		sig = WTERMSIG(status);
	if (!(c->flags & CHILD_RETIRED) && !(WIFEXITED(status) &&
	    WEXITSTATUS(status) == 0 && s.state == SB_ENDING))
		p->sb->pool->respawns++;

	if (WIFSIGNALED(status))
		snprintf(how, sizeof(how), "on signal %d (SIG%s%s)",
		    WTERMSIG(status), signal_name(WTERMSIG(status)),
		    WCOREDUMP(status) ? " - core dumped" : "");
	else
		snprintf(how, sizeof(how), "with code %d",
		    WEXITSTATUS(status));
	/* A crash in a request: which one (its client got a 500). */
	if (!asked && WIFSIGNALED(status) && s.state == SB_RUNNING)
		snprintf(what, sizeof(what), " serving \"%s %s\" (script "
		    "'%s')", s.method, s.uri, s.script);
	if (asked || (WIFEXITED(status) && WEXITSTATUS(status) == 0))
		log_notice("[pool %s] child %ld exited %s after %lld.%03llds",
		    p->conf->name, (long)c->pid, how, (long long)(lived / 1000),
		    (long long)(lived % 1000));
	else
		log_warnx("[pool %s] child %ld exited %s after %lld.%03llds%s",
		    p->conf->name, (long)c->pid, how, (long long)(lived / 1000),
		    (long long)(lived % 1000), what);

	/* Deaths nobody asked for, young, in a row: back off respawning. */
	if (!asked && lived < CHILD_YOUNG_MS &&
	    !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
		p->death_streak++;
		p->spawn_after_ms = now + pm_backoff_ms(p->death_streak);
		if (p->death_streak > 1)
			log_warnx("[pool %s] %d workers died at start in a row: "
			    "next spawn in %lld ms", p->conf->name,
			    p->death_streak,
			    (long long)pm_backoff_ms(p->death_streak));
	} else if (lived >= CHILD_YOUNG_MS)
		p->death_streak = 0;

	/* The owner is gone: the master may write the slot again. */
	child_forget(c);
	return sig;
}
