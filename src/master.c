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
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fpmd.h"

/* The grace between TERM and KILL on a fast stop or after a timeout. */
#define MASTER_KILL_GRACE_MS	1000

enum master_state {
	MASTER_RUNNING,
	MASTER_FINISHING,	/* QUIT sent: in-flight requests finish */
	MASTER_TERMINATING,	/* TERM sent */
	MASTER_KILLING		/* KILL sent */
};

/* Deaths of pids no template has named yet, kept at most. */
#define MASTER_STASH_MAX	64

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
	bool			 start_failed;
	bool			 reloading;	/* READY=1 owed to systemd */
	int64_t			*crashes;	/* emergency_restart_threshold ring */
	size_t			 ncrashes;
	size_t			 ncrashes_size;
	struct ev_source	 ev_signal;
	struct ev_source	 ev_timer;
	struct {
		pid_t		 pid;
		int		 status;
	}			 stash[MASTER_STASH_MAX];	/* master_stash() */
	size_t			 nstash;
} m = {
	.ep = -1, .sfd = -1, .tfd = -1, .ready_fd = -1,
	.ev_signal = { .kind = EV_SIGNAL },
	.ev_timer = { .kind = EV_TIMER },
};

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
	m.deadline = now_ms() + timeout_ms;
	TAILQ_FOREACH(p, &m.pools, entry) {
		/* A template runs pool_fini and leaves once its socket closes. */
		child_tmpl_stop(p);
		pool_signal_all(p, sig);
	}
	if (to == MASTER_FINISHING || to == MASTER_TERMINATING)
		sdn_send("STOPPING=1");
}

/*
 * emergency_restart_threshold workers dying of SIGSEGV or SIGBUS within
 * emergency_restart_interval: something shared went bad (a library, a
 * mapped file).  PHP-FPM restarts the master; fpmd replaces every worker
 * of every pool, gracefully, and keeps its sockets.
 */
static void
master_crash(int sig, int64_t now)
{
	long	 threshold = m.conf->emergency_restart_threshold;
	size_t	 i, recent = 0;
	struct pool *p;

	if (threshold <= 0 || m.conf->emergency_restart_interval_ms <= 0 ||
	    (sig != SIGSEGV && sig != SIGBUS))
		return;
	/* A reload may have changed the threshold: size the ring to it. */
	if (m.crashes == NULL || m.ncrashes_size != (size_t)threshold) {
		free(m.crashes);
		m.ncrashes = 0;
		m.ncrashes_size = (size_t)threshold;
		if ((m.crashes = calloc(m.ncrashes_size,
		    sizeof(*m.crashes))) == NULL) {
			m.ncrashes_size = 0;
			return;
		}
	}
	m.crashes[m.ncrashes++ % (size_t)threshold] = now;
	for (i = 0; i < (size_t)threshold && i < m.ncrashes; i++)
		if (now - m.crashes[i] <= m.conf->emergency_restart_interval_ms)
			recent++;
	if (recent < (size_t)threshold)
		return;
	log_warnx("%ld workers crashed (SIGSEGV or SIGBUS) within %lld ms: "
	    "emergency restart of every worker", threshold,
	    (long long)m.conf->emergency_restart_interval_ms);
	memset(m.crashes, 0, (size_t)threshold * sizeof(*m.crashes));
	m.ncrashes = 0;
	TAILQ_FOREACH(p, &m.pools, entry)
		pool_signal_all(p, SIGQUIT);
}

/* A child is gone: bookkeeping, start failures, crash accounting. */
static void
master_child_exited(struct child *c, int status)
{
	bool	 young;
	int	 sig;

	young = c->pool->sb->slots[c->slot].state == SB_STARTING;
	sig = child_reaped(c, status);
	if (!m.ready && young && !(WIFEXITED(status) &&
	    WEXITSTATUS(status) == 0))
		m.start_failed = true;
	master_crash(sig, now_ms());
}

/*
 * A pid nobody knows yet: a worker a template forked that died before the
 * template's answer was read.  Kept until the answer names it.
 */
static void
master_stash(pid_t pid, int status)
{
	if (m.nstash == MASTER_STASH_MAX) {
		log_notice("reaped unknown child %ld", (long)m.stash[0].pid);
		memmove(&m.stash[0], &m.stash[1],
		    (MASTER_STASH_MAX - 1) * sizeof(m.stash[0]));
		m.nstash--;
	}
	m.stash[m.nstash].pid = pid;
	m.stash[m.nstash].status = status;
	m.nstash++;
}

/* After a template's answers: the stashed deaths they explain. */
static void
master_unstash(void)
{
	struct child	*c;
	size_t		 i = 0;

	while (i < m.nstash) {
		if ((c = pool_child_by_pid(&m.pools, m.stash[i].pid)) ==
		    NULL) {
			i++;
			continue;
		}
		master_child_exited(c, m.stash[i].status);
		memmove(&m.stash[i], &m.stash[i + 1],
		    (m.nstash - i - 1) * sizeof(m.stash[0]));
		m.nstash--;
	}
}

/* See child_init(): a child of ours, and nobody's yet. */
static bool
master_claimable(pid_t pid)
{
	struct pool	*p;
	siginfo_t	 si;
	size_t		 i;

	if (pid <= 0 || pool_child_by_pid(&m.pools, pid) != NULL)
		return false;
	TAILQ_FOREACH(p, &m.pools, entry)
		if (p->tmpl_pid == pid)
			return false;
	/* Reaped already, before anybody named it. */
	for (i = 0; i < m.nstash; i++)
		if (m.stash[i].pid == pid)
			return true;
	/* The kernel's word: ECHILD for anyone else's process. */
	memset(&si, 0, sizeof(si));
	return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0;
}

static void
master_reap(void)
{
	struct child	*c;
	struct pool	*p;
	pid_t		 pid;
	int		 status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if ((c = pool_child_by_pid(&m.pools, pid)) != NULL) {
			master_child_exited(c, status);
			continue;
		}
		TAILQ_FOREACH(p, &m.pools, entry)
			if (p->tmpl_pid == pid)
				break;
		if (p == NULL)
			master_stash(pid, status);
		else if (child_tmpl_reaped(p, status) && !m.ready &&
		    !p->draining)
			m.start_failed = true;
	}
}

static int
master_somaxconn(void)
{
	FILE	*fp;
	int	 v = 4096;

	if ((fp = fopen("/proc/sys/net/core/somaxconn", "re")) != NULL) {
		if (fscanf(fp, "%d", &v) != 1)
			v = 4096;
		fclose(fp);
	}
	return v;
}

/*
 * Everything a pool needs that can fail, so that a reload can give up
 * before it changes anything: the pool, its sockets (unless PREV's are
 * taken over), its status listener, its eventfd in the loop.
 */
static struct pool *
master_pool_prepare(struct fpmd_conf *owner, struct pool_conf *pc,
    const struct pool *prev, char *err, size_t errlen)
{
	struct epoll_event	 ev = { .events = EPOLLIN };
	struct pool		*p;

	if ((p = pool_new(owner, pc, prev, err, errlen)) == NULL)
		return NULL;
	if (pc->status_listen != NULL && (prev == NULL ||
	    prev->conf->status_listen == NULL ||
	    !sock_addr_equal(&prev->conf->status_addr, &pc->status_addr)) &&
	    statusd_open(p, m.ep, err, errlen) == -1)
		goto fail;
	ev.data.ptr = &p->ev_wake;
	if (epoll_ctl(m.ep, EPOLL_CTL_ADD, p->wake_fd, &ev) == -1) {
		snprintf(err, errlen, "epoll_ctl: %s", strerror(errno));
		goto fail;
	}
	return p;
fail:
	pool_free(p, m.ep);
	return NULL;
}

static void
master_pool_announce(const struct pool *p)
{
	if (p->conf->pm == PM_DYNAMIC && p->conf->start_servers == 0)
		log_notice("[pool %s] pm.start_servers is not set: starting "
		    "%d workers", p->conf->name, pm_start_servers(p->conf));
	log_notice("[pool %s] listening on %s, pm = %s, max_children = %d, "
	    "handler = %s", p->conf->name, p->conf->addr.text,
	    pm_style_name(p->conf->pm), p->conf->max_children,
	    p->conf->handler);
	if (p->conf->backlog > master_somaxconn())
		log_warnx("[pool %s] listen.backlog (%d) exceeds "
		    "net.core.somaxconn (%d): the kernel uses the smaller",
		    p->conf->name, p->conf->backlog, master_somaxconn());
	if (geteuid() != 0 && (p->conf->user != NULL ||
	    p->conf->chroot != NULL || p->conf->priority != INT_MIN))
		log_notice("[pool %s] not running as root: user, group, chroot "
		    "and process.priority are ignored", p->conf->name);
}

static bool
conf_str_same(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

int
master_reopen(void)
{
	struct pool	*p;
	int		 rc = 0;

	if (log_reopen() == -1) {
		log_warn("cannot reopen the error log");
		rc = -1;
	}
	TAILQ_FOREACH(p, &m.pools, entry)
		if (plog_reopen(p) == -1)
			rc = -1;
	if (rc == 0)
		log_notice("logs reopened");
	return rc;
}

void
master_ctl_stop(bool graceful)
{
	if (graceful) {
		log_notice("stop requested (graceful): finishing in-flight "
		    "requests, then stopping");
		master_stop(MASTER_FINISHING, SIGQUIT,
		    m.conf->process_control_timeout_ms);
	} else {
		log_notice("stop requested: stopping now");
		master_stop(MASTER_TERMINATING, SIGTERM, MASTER_KILL_GRACE_MS);
	}
}

int
master_ctl_status(const char *name, bool json, struct buf *out)
{
	struct pool	*p;
	struct status	 st;
	int		 n = 0;

	if (json)
		buf_add(out, "[", 1);
	TAILQ_FOREACH(p, &m.pools, entry) {
		if (p->draining || (name != NULL &&
		    strcmp(p->conf->name, name) != 0))
			continue;
		status_collect(p->sb, p->conf, p->listen_fd, &st);
		if (n++ > 0)
			buf_add(out, json ? "," : "\n", 1);
		status_body(&st, json ? STATUS_JSON : STATUS_TEXT, true, out);
		status_free(&st);
	}
	if (json)
		buf_add(out, "]\n", 2);
	return n > 0 || name == NULL ? 0 : -1;
}

static struct pool *
master_pool_by_name(const char *name)
{
	struct pool	*p;

	TAILQ_FOREACH(p, &m.pools, entry)
		if (!p->draining && strcmp(p->conf->name, name) == 0)
			return p;
	return NULL;
}

/* An old generation leaves: at once, or once its successor is ready. */
static void
master_drain(struct pool *old, struct pool *successor)
{
	old->draining = true;
	old->successor = successor;
	old->drain_since_ms = now_ms();
}

/*
 * Reads the configuration again and applies it pool by pool (ONLY: just
 * that pool, with a new generation even if unchanged).  Everything that
 * can fail (parsing, users, binding new addresses) happens before
 * anything changes: a refused reload leaves every pool as it was.  The
 * reason goes to the log and, as one line, to REPLY.
 */
int
master_reload(const char *only, struct buf *reply)
{
	struct pool_list	 fresh;
	struct fpmd_conf	*nc, *oc = m.conf;
	struct pool		*p, *old, *next;
	char			*errtext = NULL, err[512], *line, *save;
	size_t			 errlen = 0, i;
	FILE			*errs;
	static struct sock_addr held[256];
	size_t			 nheld;
	int			 nnew = 0, nsame = 0, ngone = 0;

	if (m.state != MASTER_RUNNING) {
		buf_printf(reply, "error: stopping");
		return -1;
	}
	sdn_send("RELOADING=1");
	log_notice("reloading %s%s", only != NULL ? "pool " : "the "
	    "configuration", only != NULL ? only : "");
	if ((errs = open_memstream(&errtext, &errlen)) == NULL)
		fatal("open_memstream");
	nheld = 0;
	TAILQ_FOREACH(p, &m.pools, entry) {
		if (nheld + 2 > sizeof(held) / sizeof(held[0]))
			break;
		if (p->listen_fd != -1)
			held[nheld++] = p->conf->addr;
		if (p->status_fd != -1)
			held[nheld++] = p->conf->status_addr;
	}
	conf_set_held(held, nheld);
	nc = conf_load(m.opts->config, m.opts->prefix, m.opts->allow_root,
	    errs);
	conf_set_held(NULL, 0);
	fclose(errs);
	if (nc == NULL) {
		for (line = strtok_r(errtext, "\n", &save); line != NULL;
		    line = strtok_r(NULL, "\n", &save)) {
			log_errorx("reload refused: %s", line);
			if (reply->len == 0)
				buf_printf(reply, "error: %s", line);
		}
		free(errtext);
		sdn_send("READY=1");
		return -1;
	}
	free(errtext);
	nc->refs++;
	if (only != NULL) {
		for (i = 0; i < nc->npools; i++)
			if (strcmp(nc->pools[i].name, only) == 0)
				break;
		if (i == nc->npools || master_pool_by_name(only) == NULL) {
			buf_printf(reply, "error: no pool %s in both the running "
			    "and the new configuration", only);
			log_errorx("reload refused: no pool %s", only);
			goto refuse;
		}
	}

	/* Prepare: every new generation and added pool, or nothing. */
	TAILQ_INIT(&fresh);
	for (i = 0; i < nc->npools; i++) {
		struct pool_conf	*pc = &nc->pools[i];

		if (only != NULL && strcmp(pc->name, only) != 0)
			continue;
		old = master_pool_by_name(pc->name);
		if (only == NULL && old != NULL &&
		    conf_pool_equal(old->conf, pc))
			continue;
		if ((p = master_pool_prepare(nc, pc, old, err,
		    sizeof(err))) == NULL) {
			log_errorx("reload refused: [pool %s] %s", pc->name,
			    err);
			buf_printf(reply, "error: [pool %s] %s", pc->name, err);
			while ((p = TAILQ_FIRST(&fresh)) != NULL) {
				TAILQ_REMOVE(&fresh, p, entry);
				pool_free(p, m.ep);
			}
			goto refuse;
		}
		p->successor = old;	/* until commit: the one it replaces */
		TAILQ_INSERT_TAIL(&fresh, p, entry);
	}

	/* Commit. */
	if (only == NULL) {
		TAILQ_FOREACH(old, &m.pools, entry) {
			if (old->draining)
				continue;
			for (i = 0; i < nc->npools; i++)
				if (strcmp(nc->pools[i].name,
				    old->conf->name) == 0)
					break;
			if (i == nc->npools) {
				log_notice("[pool %s] removed: draining",
				    old->conf->name);
				master_drain(old, NULL);
				ngone++;
			} else if (conf_pool_equal(old->conf, &nc->pools[i])) {
				/* Unchanged: same workers, the new copy. */
				nc->refs++;
				old->conf = &nc->pools[i];
				old->hpool.conf = old->conf;
				if (--old->owner->refs == 0)
					conf_free(old->owner);
				old->owner = nc;
				nsame++;
			}
		}
	}
	while ((p = TAILQ_FIRST(&fresh)) != NULL) {
		TAILQ_REMOVE(&fresh, p, entry);
		old = p->successor;
		p->successor = NULL;
		if (old != NULL) {
			pool_adopt(p, old, m.ep);
			master_drain(old, p);
			log_notice("[pool %s] new generation %u", p->conf->name,
			    p->sb->pool->generation);
		} else
			log_notice("[pool %s] added", p->conf->name);
		TAILQ_INSERT_TAIL(&m.pools, p, entry);
		master_pool_announce(p);
		nnew++;
	}
	/* Pools whose old generation left: their sockets are free now. */
	TAILQ_FOREACH_SAFE(p, &m.pools, entry, next)
		if (p->draining && p->nchildren == 0) {
			TAILQ_REMOVE(&m.pools, p, entry);
			pool_free(p, m.ep);
		}
	if (only == NULL) {
		m.conf = nc;
		nc->refs++;
		log_set_level(nc->log_level);
		log_set_limit((size_t)nc->log_limit);
		(void)log_set_syslog(nc->syslog_facility, nc->syslog_ident);
		if (!conf_str_same(oc->error_log, nc->error_log) &&
		    log_open(nc->error_log) == -1)
			log_warn("cannot open the error log %s", nc->error_log);
		if (m.pid_written && !conf_str_same(oc->pid_file,
		    nc->pid_file)) {
			unlink(oc->pid_file);
			if (master_write_pid() == -1)
				log_warn("cannot write the pid file %s",
				    nc->pid_file);
		}
		if (--oc->refs == 0)
			conf_free(oc);
	}
	if (--nc->refs == 0)
		conf_free(nc);
	log_notice("reloaded: %d new or replaced, %d unchanged, %d removed",
	    nnew, nsame, ngone);
	buf_printf(reply, "ok: %d new or replaced, %d unchanged, %d removed",
	    nnew, nsame, ngone);
	/* READY=1 once the new generations' workers accept: the loop. */
	m.reloading = true;
	return 0;
refuse:
	if (--nc->refs == 0)
		conf_free(nc);
	sdn_send("READY=1");
	return -1;
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
			(void)master_reopen();
			break;
		case SIGUSR2:
		case SIGHUP:
			{
				struct buf	 reply = { 0 };

				(void)master_reload(NULL, &reply);
				buf_free(&reply);
			}
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

/*
 * request_terminate_timeout: a worker stuck in one request is ended.  A
 * worker idle on a kept connection is not in a request.  SIGTERM first,
 * the slot saying why, so that a worker that has sent nothing yet answers
 * 504 (worker_on_term()); SIGKILL TERM_GRACE_MS later if it still lives
 * (it blocked the signal, or is stopped).  Returns when to look again.
 */
#define TERM_GRACE_MS	1000

static int64_t
master_terminate_stuck(struct pool *p)
{
	const struct pool_conf	*pc = p->conf;
	struct child		*c;
	struct sb_slot		 s;
	double			 now = now_real(), ran;
	int64_t			 mono = now_ms(), next;

	if (pc->request_terminate_timeout_ms == 0)
		return PM_TICK_MS;
	/* As PHP-FPM: look every third of the timeout (not under 100 ms). */
	next = pc->request_terminate_timeout_ms / 3 < PM_TICK_MS ?
	    (pc->request_terminate_timeout_ms / 3 > 100 ?
	    pc->request_terminate_timeout_ms / 3 : 100) : PM_TICK_MS;
	TAILQ_FOREACH(c, &p->children, entry) {
		if ((c->flags & CHILD_TIMED_OUT) &&
		    !(c->flags & CHILD_KILL_SENT)) {
			if (mono < c->kill_at_ms) {
				if (c->kill_at_ms - mono < next)
					next = c->kill_at_ms - mono;
				continue;
			}
			log_warnx("[pool %s] child %ld still alive %d ms after "
			    "SIGTERM: sending SIGKILL", pc->name, (long)c->pid,
			    TERM_GRACE_MS);
			child_signal(c, SIGKILL);
		}
		if (c->flags & (CHILD_TERM_SENT | CHILD_KILL_SENT))
			continue;
		sb_slot_read(&p->sb->slots[c->slot], &s);
		if (s.state != SB_RUNNING && s.state != SB_READING &&
		    !(s.state == SB_FINISHING &&
		    pc->request_terminate_timeout_track_finished))
			continue;
		if (s.req_started == 0)
			continue;
		ran = now - s.req_started;
		if (ran * 1000 < (double)pc->request_terminate_timeout_ms)
			continue;
		/* The URI is REQUEST_URI: its query string is in it. */
		log_warnx("[pool %s] child %ld, script '%s' (request: \"%s %s\") "
		    "execution timed out (%.3f sec), terminating", pc->name,
		    (long)c->pid, s.script, s.method, s.uri, ran);
		__atomic_store_n(&p->sb->slots[c->slot].term_timeout, 1,
		    __ATOMIC_RELAXED);
		child_signal(c, SIGTERM);
		c->flags |= CHILD_TIMED_OUT;
		c->kill_at_ms = mono + TERM_GRACE_MS;
		if (TERM_GRACE_MS < next)
			next = TERM_GRACE_MS;
		p->sb->pool->kills_timeout++;
	}
	return next;
}

/* Arms (or re-arms) the one-shot watch of an ondemand pool's socket. */
static void
master_watch_listen(struct pool *p)
{
	struct epoll_event	 ev = {
		.events = EPOLLIN | EPOLLONESHOT,
		.data.ptr = &p->ev_listen,
	};

	if (epoll_ctl(m.ep, p->listen_watched ? EPOLL_CTL_MOD : EPOLL_CTL_ADD,
	    p->listen_fd, &ev) == -1)
		log_warn("[pool %s] epoll_ctl (listen watch)", p->conf->name);
	p->listen_watched = true;
}

/* Gives each pool what pm.c says it needs; returns ms to the next need. */
static bool
master_pool_ready(const struct pool *p)
{
	const struct child	*c;

	if (!p->pm.started)
		return false;
	/* A plugin's pool: its template has run pool_init. */
	if (p->handler == NULL && !p->tmpl_ready)
		return false;
	TAILQ_FOREACH(c, &p->children, entry)
		if (p->sb->slots[c->slot].state == SB_STARTING)
			return false;
	return true;
}

/* Whether a generation accepts: started, none starting, and (but for an
 * ondemand pool) at least one worker at work or idle. */
static bool
master_generation_serves(const struct pool *p)
{
	return master_pool_ready(p) &&
	    (p->conf->pm == PM_ONDEMAND || p->nchildren > 0);
}

/*
 * An old generation: once its successor's workers accept (or after
 * process_control_timeout), ask its workers to finish and leave; free it
 * when the last is gone, closing its socket unless the successor took it.
 */
static void
master_drain_step(struct pool *p, int64_t now)
{
	struct pool	*q;
	bool		 successor_alive = false;

	TAILQ_FOREACH(q, &m.pools, entry)
		if (q == p->successor)
			successor_alive = true;
	if (!successor_alive)
		p->successor = NULL;
	/*
	 * A successor whose workers die at start is not ready: the old
	 * generation goes on serving (and says so) rather than leave the
	 * pool with nobody.
	 */
	if (!p->drain_quit && p->successor != NULL &&
	    p->successor->death_streak > 0 &&
	    !master_generation_serves(p->successor)) {
		if (!p->drain_warned)
			log_errorx("[pool %s] the new generation's workers fail "
			    "at start: the old generation keeps serving; fix "
			    "the configuration and reload", p->conf->name);
		p->drain_warned = true;
		return;
	}
	if (!p->drain_quit && (p->successor == NULL ||
	    master_generation_serves(p->successor) ||
	    now - p->drain_since_ms >= m.conf->process_control_timeout_ms)) {
		child_tmpl_stop(p);
		pool_signal_all(p, SIGQUIT);
		p->drain_quit = true;
		p->drain_since_ms = now;
	}
	/* Bounded, as a stop: QUIT, then TERM, then KILL. */
	if (p->drain_quit && p->nchildren > 0 && now - p->drain_since_ms >=
	    m.conf->process_control_timeout_ms) {
		log_warnx("[pool %s] old generation still busy after "
		    "process_control_timeout: terminating it", p->conf->name);
		pool_signal_all(p, SIGTERM);
		if (now - p->drain_since_ms >= m.conf->process_control_timeout_ms +
		    MASTER_KILL_GRACE_MS)
			pool_signal_all(p, SIGKILL);
	}
	if (p->nchildren == 0 && p->tmpl_pid == 0) {
		log_notice("[pool %s] old generation gone", p->conf->name);
		TAILQ_REMOVE(&m.pools, p, entry);
		pool_free(p, m.ep);
	}
}

static int64_t
master_scale(int64_t now)
{
	struct pool	*p, *next_p;
	struct child	*c;
	struct sb_slot	 s;
	int64_t		 next = PM_TICK_MS, n;
	int		 total = 0, idle;

	TAILQ_FOREACH(p, &m.pools, entry)
		total += p->nchildren;
	ctl_expire(now);
	TAILQ_FOREACH_SAFE(p, &m.pools, entry, next_p) {
		statusd_expire(p, now);
		if (p->draining) {
			master_drain_step(p, now);
			continue;
		}
		n = pool_maintain(p, m.conf->process_max,
		    total - p->nchildren, now);
		if (n < next)
			next = n;
		n = master_terminate_stuck(p);
		if (n < next)
			next = n;
		n = slowlog_check(p);
		if (n < next)
			next = n;
		if (p->conf->pm != PM_ONDEMAND)
			continue;
		/* No worker can take a connection: watch for one. */
		idle = 0;
		TAILQ_FOREACH(c, &p->children, entry) {
			sb_slot_read(&p->sb->slots[c->slot], &s);
			if (!(c->flags & CHILD_QUIT_SENT) &&
			    (s.state == SB_IDLE || s.state == SB_STARTING))
				idle++;
		}
		/* Only when a fork can follow, or the watch just spins. */
		if (idle == 0 && now >= p->spawn_after_ms &&
		    p->nchildren < p->conf->max_children &&
		    (m.conf->process_max == 0 || total < m.conf->process_max))
			master_watch_listen(p);
	}
	return next;
}

static bool
master_pools_ready(void)
{
	struct pool	*p;

	TAILQ_FOREACH(p, &m.pools, entry)
		if (!p->draining && !master_pool_ready(p))
			return false;
	return true;
}

static void
master_ready(void)
{
	char	 ok = 0;
	int	 fd;

	m.ready = true;
	if (master_write_pid() == -1)
		log_warn("cannot write the pid file %s", m.conf->pid_file);
	log_notice("ready to handle connections");
	sdn_ready();
	if (m.ready_fd != -1) {
		(void)write(m.ready_fd, &ok, 1);
		close(m.ready_fd);
		m.ready_fd = -1;
		/* Detached: let go of the launcher's stderr too. */
		if ((fd = open("/dev/null", O_WRONLY | O_CLOEXEC)) != -1) {
			dup3(fd, STDERR_FILENO, 0);
			close(fd);
		}
	}
}

static bool
master_children_left(void)
{
	struct pool	*p;

	TAILQ_FOREACH(p, &m.pools, entry)
		if (p->nchildren > 0 || p->tmpl_pid != 0)
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
	wlog_init(m.ep);
	child_init(m.ep, master_claimable);
	ev.data.ptr = &m.ev_signal;
	if (epoll_ctl(m.ep, EPOLL_CTL_ADD, m.sfd, &ev) == -1) {
		log_error("epoll_ctl");
		return -1;
	}
	ev.data.ptr = &m.ev_timer;
	if (epoll_ctl(m.ep, EPOLL_CTL_ADD, m.tfd, &ev) == -1) {
		log_error("epoll_ctl");
		return -1;
	}

	if (rlimit_apply(RLIMIT_NOFILE, m.conf->rlimit_files) == -1)
		log_warn("setrlimit(rlimit_files = %ld)", m.conf->rlimit_files);
	if (rlimit_apply(RLIMIT_CORE, m.conf->rlimit_core) == -1)
		log_warn("setrlimit(rlimit_core = %ld)", m.conf->rlimit_core);
	/* As PHP-FPM: the master's nice, which workers inherit unless their
	 * pool's process.priority says otherwise. */
	if (m.conf->priority != INT_MIN &&
	    setpriority(PRIO_PROCESS, 0, m.conf->priority) == -1)
		log_warn("setpriority(process.priority = %d)", m.conf->priority);

	sdn_init(m.conf->systemd_interval_ms);
	sdn_inherit_init();
	TAILQ_INIT(&m.pools);
	m.conf->refs++;
	for (i = 0; i < m.conf->npools; i++) {
		if ((p = master_pool_prepare(m.conf, &m.conf->pools[i], NULL,
		    err, sizeof(err))) == NULL) {
			log_errorx("[pool %s] %s", m.conf->pools[i].name, err);
			return -1;
		}
		TAILQ_INSERT_TAIL(&m.pools, p, entry);
		master_pool_announce(p);
	}
	if (ctl_open(m.conf->control_listen, m.ep, err, sizeof(err)) == -1)
		log_warnx("control socket: %s (fpmctl will not reach this "
		    "master)", err);
	sdn_inherit_done();
	return 0;
}

static void
master_teardown(void)
{
	struct pool	*p;

	while ((p = TAILQ_FIRST(&m.pools)) != NULL) {
		TAILQ_REMOVE(&m.pools, p, entry);
		pool_free(p, m.ep);
	}
	ctl_close();
	if (m.pid_written)
		unlink(m.conf->pid_file);
	if (m.conf != NULL && --m.conf->refs == 0)
		conf_free(m.conf);
	m.conf = NULL;
	if (m.ep != -1)
		close(m.ep);
	if (m.sfd != -1)
		close(m.sfd);
	if (m.tfd != -1)
		close(m.tfd);
}

/* Records what an event says; the loop acts after the batch. */
static void
master_on_event(struct ev_source *src, uint32_t events)
{
	uint64_t	 v;

	switch (src->kind) {
	case EV_SIGNAL:
		master_on_signal();
		break;
	case EV_TIMER:
		while (read(m.tfd, &v, sizeof(v)) > 0)
			;
		break;
	case EV_WAKE:
		while (read(src->pool->wake_fd, &v, sizeof(v)) > 0)
			;
		__atomic_store_n(&src->pool->sb->pool->wake_pending, 0,
		    __ATOMIC_RELEASE);
		break;
	case EV_LISTEN:
		/* One-shot: re-armed by master_scale() while needed. */
		src->pool->conn_waiting = true;
		break;
	case EV_STATUS_LISTEN:
		statusd_accept(src->pool, m.ep);
		break;
	case EV_STATUS_CONN:
		statusd_on_event(src->ptr, m.ep, events);
		break;
	case EV_CTL_LISTEN:
		ctl_accept(m.ep);
		break;
	case EV_CTL_CONN:
		ctl_on_event(src->ptr, m.ep, events);
		break;
	case EV_WORKER_OUTPUT:
	case EV_WORKER_LOG:
		wlog_on_event(src, events);
		break;
	case EV_TEMPLATE:
		child_tmpl_event(src->pool);
		master_unstash();
		break;
	}
}

int
master_main(struct fpmd_conf *conf, const struct options *opts, int ready_fd)
{
	struct epoll_event	 evs[16];
	struct pool		*p;
	int64_t			 now, next, beat;
	int			 n, i, rc = 0;

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
		TAILQ_FOREACH(p, &m.pools, entry)
			child_tmpl_orphans(p, now);
		next = PM_TICK_MS;
		if (m.start_failed && !m.ready && m.state == MASTER_RUNNING) {
			log_errorx("workers fail at start: giving up (see "
			    "above why)");
			rc = 1;
			master_stop(MASTER_TERMINATING, SIGTERM,
			    MASTER_KILL_GRACE_MS);
		}
		if (m.state == MASTER_RUNNING) {
			next = master_scale(now);
			if (m.ready && (beat = sdn_tick(&m.pools, now)) < next)
				next = beat;
			if (!m.ready && master_pools_ready())
				master_ready();
			else if (m.reloading && master_pools_ready()) {
				m.reloading = false;
				sdn_send("READY=1");
			}
			else if (!m.ready && next > PM_FAST_TICK_MS)
				next = PM_FAST_TICK_MS;
		} else if (!master_children_left())
			break;
		if (m.deadline != 0 && m.deadline - now < next)
			next = m.deadline - now;
		master_arm(next);

		n = epoll_wait(m.ep, evs, sizeof(evs) / sizeof(evs[0]), -1);
		if (n == -1 && errno != EINTR)
			fatal("epoll_wait");
		for (i = 0; i < n; i++)
			master_on_event(evs[i].data.ptr, evs[i].events);
	}
	log_notice("exiting, bye-bye");
	master_teardown();
	free(m.crashes);
	return rc;
}
