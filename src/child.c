/*
 * child.c -- a worker's birth and death, seen from both sides of fork.
 *
 * child_spawn() forks; the child calls child_main(), which never returns:
 * it sheds every fd but its pool's socket and the log, resets signals,
 * confines and drops privileges, then runs the handler's request loop.
 * child_reaped() is the master's bookkeeping when one is gone.
 */
#include "config.h"

#include <sys/prctl.h>
#include <sys/resource.h>

#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fpmd.h"

/* A worker that cannot start exits with this; the master backs off. */
#define CHILD_EXIT_INIT	2
/* A worker that lived less than this died young: count it as a failure. */
#define CHILD_YOUNG_MS	1000

extern char **environ;

/*
 * Closes every fd but 0-2, the pool's socket, the log channel, the eventfd
 * that wakes the master, and the pool's access and slow logs.
 */
static void
child_close_fds(const struct pool *p)
{
	DIR		*d;
	struct dirent	*de;
	long		 fd;
	int		 keep1 = p->listen_fd, keep2 = log_fd();
	int		 keep3 = p->wake_fd, keep4 = p->access_fd;
	int		 keep5 = p->slow_fd;

	if ((d = opendir("/proc/self/fd")) == NULL) {
		log_warn("opendir /proc/self/fd");
		_exit(CHILD_EXIT_INIT);
	}
	while ((de = readdir(d)) != NULL) {
		if (parse_long(de->d_name, 3, INT_MAX, &fd) == -1)
			continue;
		if (fd == keep1 || fd == keep2 || fd == keep3 ||
		    fd == keep4 || fd == keep5 || fd == dirfd(d))
			continue;
		close((int)fd);
	}
	closedir(d);
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

/* After the privilege drop, or instead of it: what any worker gets. */
static int
child_settle(const struct pool_conf *pc)
{
	if (pc->chdir != NULL && chdir(pc->chdir) == -1) {
		log_warn("chdir(%s)", pc->chdir);
		return -1;
	}
	/*
	 * The kernel clears "dumpable" when the uid changes, unless the
	 * fs.suid_dumpable sysctl says otherwise, and never when it does
	 * not change: set it either way, so that process.dumpable = no
	 * keeps every worker out of ptrace and core files.
	 */
	if (prctl(PR_SET_DUMPABLE, pc->dumpable ? 1 : 0) == -1) {
		log_warn("prctl(PR_SET_DUMPABLE)");
		return -1;
	}
	/*
	 * No program the worker runs (a CGI script, a shell a handler
	 * starts) gains privileges from a setuid bit or file capabilities.
	 * process.no_new_privs = no is for CGI programs that need setuid.
	 */
	if (pc->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1) {
		log_warn("prctl(PR_SET_NO_NEW_PRIVS)");
		return -1;
	}
	return 0;
}

/* Confinement and the privilege drop, in the only safe order. */
static int
child_drop(const struct pool_conf *pc)
{
	bool	 root = geteuid() == 0;

	if (rlimit_apply(RLIMIT_NOFILE, pc->rlimit_files) == -1) {
		log_warn("setrlimit(rlimit_files = %ld)", pc->rlimit_files);
		return -1;
	}
	if (rlimit_apply(RLIMIT_CORE, pc->rlimit_core) == -1) {
		log_warn("setrlimit(rlimit_core = %ld)", pc->rlimit_core);
		return -1;
	}
	/* As PHP-FPM: identity, chroot and priority need root. */
	if (!root)
		return child_settle(pc);
	if (pc->priority != INT_MIN && setpriority(PRIO_PROCESS, 0,
	    pc->priority) == -1) {
		log_warn("setpriority(%d)", pc->priority);
		return -1;
	}
	if (pc->chroot != NULL && (chroot(pc->chroot) == -1 ||
	    chdir("/") == -1)) {
		log_warn("chroot(%s)", pc->chroot);
		return -1;
	}
	if (pc->user != NULL) {
		if (initgroups(pc->user, pc->gid) == -1 ||
		    setresgid(pc->gid, pc->gid, pc->gid) == -1 ||
		    setresuid(pc->uid, pc->uid, pc->uid) == -1) {
			log_warn("cannot become %s:%lu", pc->user,
			    (unsigned long)pc->gid);
			return -1;
		}
		if (setuid(0) == 0) {
			log_warnx("could regain root after the privilege "
			    "drop: refusing to run");
			return -1;
		}
	}
	return child_settle(pc);
}

static void __attribute__((noreturn))
child_main(struct pool *p, struct sb_slot *slot, pid_t master)
{
	const struct pool_conf	*pc = p->conf;
	struct worker_ctx	 w;
	uint32_t		 rnd;

	child_signals();
	/* No orphans: die with the master, even if it died already. */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) == -1 || getppid() != master)
		_exit(CHILD_EXIT_INIT);
	child_close_fds(p);
	slowlog_worker_init(p, slot);

	sb_slot_begin(slot);
	slot->pid = getpid();
	sb_slot_end(slot);

	if (child_drop(pc) == -1 || child_env(pc) == -1)
		_exit(CHILD_EXIT_INIT);
	/*
	 * The kernel clears the parent-death signal when the uid changes:
	 * ask again as the pool's user, and look again for the master.
	 */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) == -1 || getppid() != master)
		_exit(CHILD_EXIT_INIT);

	memset(&w, 0, sizeof(w));
	w.pool = p;
	w.slot = slot;
	w.handler = p->handler;
	rnd = (uint32_t)getpid() * 2654435761u ^ (uint32_t)now_ms();
	w.max_requests = pm_max_requests(pc, rnd);
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
	c->pool = p;
	c->pid = pid;
	c->slot = slot;
	c->started_ms = now_ms();
	p->slot_used[slot] = true;
	TAILQ_INSERT_TAIL(&p->children, c, entry);
	p->nchildren++;
	log_debug("[pool %s] child %ld started", p->conf->name, (long)pid);
	return c;
}

int
child_reaped(struct child *c, int status)
{
	struct pool	*p = c->pool;
	int64_t		 now = now_ms(), lived = now - c->started_ms;
	bool		 asked = (c->flags & (CHILD_QUIT_SENT |
			    CHILD_TERM_SENT | CHILD_KILL_SENT)) != 0;
	char		 how[64];
	struct sb_slot	 s;
	int		 sig = 0;

	/* What it wrote last comes before the news of its death. */
	wlog_free(c->wlog);
	c->wlog = NULL;
	/* It counted itself idle or busy: take it back, the hints stay right. */
	sb_slot_read(&p->sb->slots[c->slot], &s);
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
		snprintf(how, sizeof(how), "on signal %d (SIG%s)",
		    WTERMSIG(status), signal_name(WTERMSIG(status)));
	else
		snprintf(how, sizeof(how), "with code %d",
		    WEXITSTATUS(status));
	if (asked || (WIFEXITED(status) && WEXITSTATUS(status) == 0))
		log_notice("[pool %s] child %ld exited %s after %lld.%03llds",
		    p->conf->name, (long)c->pid, how, (long long)(lived / 1000),
		    (long long)(lived % 1000));
	else
		log_warnx("[pool %s] child %ld exited %s after %lld.%03llds",
		    p->conf->name, (long)c->pid, how, (long long)(lived / 1000),
		    (long long)(lived % 1000));

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
	sb_slot_begin(&p->sb->slots[c->slot]);
	p->sb->slots[c->slot].state = SB_FREE;
	sb_slot_end(&p->sb->slots[c->slot]);
	p->slot_used[c->slot] = false;
	TAILQ_REMOVE(&p->children, c, entry);
	p->nchildren--;
	free(c);
	return sig;
}
