/*
 * pool.c -- a pool's runtime: its listening socket, its scoreboard, its
 * handler, the list of its children, and carrying out what pm.c decides.
 *
 * The configuration (struct pool_conf) is owned by the fpmd_conf it came
 * from; a pool only points at it.
 */
#include "config.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fpmd.h"

struct pool *
pool_new(struct fpmd_conf *owner, struct pool_conf *pc,
    const struct pool *prev, char *err, size_t errlen)
{
	struct pool	*p;
	size_t		 nslots;

	if ((p = calloc(1, sizeof(*p))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->conf = pc;
	p->owner = owner;
	owner->refs++;
	p->listen_fd = p->wake_fd = p->status_fd = p->status_ep = -1;
	p->tmpl_fd = -1;
	p->access_fd = p->slow_fd = -1;
	TAILQ_INIT(&p->children);
	TAILQ_INIT(&p->status_conns);
	p->hpool.conf = pc;
	p->ev_wake.kind = EV_WAKE;
	p->ev_wake.pool = p;
	p->ev_listen.kind = EV_LISTEN;
	p->ev_listen.pool = p;
	/* A plugin was tried by conf_load(); its template loads it. */
	p->handler = handler_builtin(pc->handler);
	/* Room for a full pool plus as many leaving workers. */
	nslots = (size_t)pc->max_children * 2;
	if ((p->sb = sb_new(nslots)) == NULL ||
	    (p->slot_used = calloc(nslots, sizeof(bool))) == NULL) {
		snprintf(err, errlen, "cannot map the scoreboard");
		goto fail;
	}
	if ((p->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		goto fail;
	}
	p->sb->pool->wake_fd = p->wake_fd;
	/* Workers wake the master when the idle ones run short. */
	p->sb->pool->wake_threshold = pc->pm == PM_DYNAMIC ?
	    pc->min_spare_servers : pc->pm == PM_ONDEMAND ? 1 : 0;
	p->sb->pool->start_time = now_real();
	p->sb->pool->listen_queue_len = (uint32_t)pc->backlog;
	if (plog_open(p, err, errlen) == -1)
		goto fail;
	/* The same address as the generation before: pool_adopt() it. */
	if (prev != NULL && sock_addr_equal(&prev->conf->addr, &pc->addr))
		return p;
	if ((p->listen_fd = sdn_inherited_fd(pc->name, &pc->addr)) != -1) {
		p->listen_inherited = true;
		log_notice("[pool %s] using the socket systemd passed for %s",
		    pc->name, pc->addr.text);
	} else if ((p->listen_fd = sock_listen(pc, &pc->addr, err,
	    errlen)) == -1)
		goto fail;
	return p;
fail:
	pool_free(p, -1);
	return NULL;
}

void
pool_adopt(struct pool *p, struct pool *prev, int ep)
{
	struct sb_pool		*to = p->sb->pool, *from = prev->sb->pool;
	struct epoll_event	 ev = { .events = EPOLLIN };

	if (prev->listen_watched) {
		(void)epoll_ctl(ep, EPOLL_CTL_DEL, prev->listen_fd, NULL);
		prev->listen_watched = false;
	}
	if (p->listen_fd == -1) {
		p->listen_fd = prev->listen_fd;
		p->listen_inherited = prev->listen_inherited;
		prev->listen_fd = -1;
		/* Owner and mode may be what changed. */
		sock_set_perms(p->conf, &p->conf->addr);
	}
	if (p->status_fd == -1 && prev->status_fd != -1 &&
	    p->conf->status_listen != NULL &&
	    sock_addr_equal(&prev->conf->status_addr, &p->conf->status_addr)) {
		p->status_fd = prev->status_fd;
		p->status_ep = ep;
		prev->status_fd = -1;
		p->ev_status.kind = EV_STATUS_LISTEN;
		p->ev_status.pool = p;
		ev.data.ptr = &p->ev_status;
		(void)epoll_ctl(ep, EPOLL_CTL_MOD, p->status_fd, &ev);
	}
	/* Monitoring sees one pool whose counters go on. */
	to->accepted_conn = __atomic_load_n(&from->accepted_conn,
	    __ATOMIC_RELAXED);
	to->connections = __atomic_load_n(&from->connections,
	    __ATOMIC_RELAXED);
	to->start_time = from->start_time;
	to->max_active = from->max_active;
	to->max_children_reached = from->max_children_reached;
	to->slow_requests = from->slow_requests;
	to->max_listen_queue = from->max_listen_queue;
	to->respawns = from->respawns;
	to->kills_timeout = from->kills_timeout;
	to->retired = from->retired;
	to->generation = from->generation + 1;
	to->reload_time = now_real();
}

void
pool_free(struct pool *p, int ep)
{
	struct child	*c;

	if (p == NULL)
		return;
	if (ep != -1 && p->wake_fd != -1)
		(void)epoll_ctl(ep, EPOLL_CTL_DEL, p->wake_fd, NULL);
	if (ep != -1 && p->listen_watched)
		(void)epoll_ctl(ep, EPOLL_CTL_DEL, p->listen_fd, NULL);
	while ((c = TAILQ_FIRST(&p->children)) != NULL) {
		TAILQ_REMOVE(&p->children, c, entry);
		wlog_free(c->wlog);
		free(c);
	}
	child_tmpl_stop(p);
	wlog_free(p->tmpl_wlog);
	plog_close(p);
	statusd_close(p);
	/* A socket systemd passed is systemd's: close it, never unlink it. */
	if (p->listen_inherited && p->listen_fd != -1)
		close(p->listen_fd);
	else
		sock_close(p->listen_fd, &p->conf->addr);
	if (p->wake_fd != -1)
		close(p->wake_fd);
	sb_free(p->sb);
	free(p->slot_used);
	if (p->owner != NULL && --p->owner->refs == 0)
		conf_free(p->owner);
	free(p);
}

struct child *
pool_child_by_pid(struct pool_list *pools, pid_t pid)
{
	struct pool	*p;
	struct child	*c;

	TAILQ_FOREACH(p, pools, entry)
		TAILQ_FOREACH(c, &p->children, entry)
			if (c->pid == pid)
				return c;
	return NULL;
}

void
pool_counts(struct pool *p, int64_t now, struct pm_counts *n)
{
	const struct child	*c;
	struct sb_slot		 s;
	struct sb_pool		*sp = p->sb->pool;
	int			 queue, backlog, active = 0;

	memset(n, 0, sizeof(*n));
	TAILQ_FOREACH(c, &p->children, entry) {
		n->total++;
		if (c->flags & CHILD_QUIT_SENT) {
			n->leaving++;
			continue;
		}
		sb_slot_read(&p->sb->slots[c->slot], &s);
		switch (s.state) {
		case SB_STARTING:
			n->starting++;
			break;
		case SB_IDLE:
			n->idle++;
			if (p->conf->pm == PM_ONDEMAND &&
			    now - s.idle_since_ms >=
			    p->conf->process_idle_timeout_ms)
				n->idle_expired++;
			break;
		case SB_ENDING:
			n->leaving++;
			break;
		default:
			active++;
			break;
		}
	}
	sb_max_active(sp, active);
	/* A worker got to work: whatever killed the earlier ones, passed. */
	if (n->idle + active > 0)
		p->death_streak = 0;
	if (sock_listen_queue(p->listen_fd, p->conf->addr.family, &queue,
	    &backlog) == 0) {
		n->queue = queue;
		sp->listen_queue = (uint32_t)queue;
		if ((uint32_t)queue > sp->max_listen_queue)
			sp->max_listen_queue = (uint32_t)queue;
		sp->listen_queue_len = (uint32_t)backlog;
	}
	/* The watch fired: a connection was there, whatever we measure. */
	if (p->conn_waiting && n->queue == 0 && n->idle == 0)
		n->queue = 1;
	p->conn_waiting = false;
}

void
pool_signal_all(struct pool *p, int sig)
{
	struct child	*c;
	unsigned int	 flag;

	flag = sig == SIGQUIT ? CHILD_QUIT_SENT : sig == SIGTERM ?
	    CHILD_TERM_SENT : CHILD_KILL_SENT;
	TAILQ_FOREACH(c, &p->children, entry)
		if (!(c->flags & flag))
			child_signal(c, sig);
	/* A template leaves when its socket closes; these are for one that
	 * hangs in pool_fini. */
	if (p->tmpl_pid != 0 && sig != SIGQUIT && kill(p->tmpl_pid, sig) == -1)
		log_warn("[pool %s] kill(%ld, SIG%s)", p->conf->name,
		    (long)p->tmpl_pid, signal_name(sig));
}

/*
 * Asks the COUNT workers idle the longest to leave (SIGQUIT: they exit at
 * the top of their accept loop, never with a connection unserved).  With
 * EXPIRED_ONLY, only those idle for process_idle_timeout or longer.
 */
static void
pool_retire(struct pool *p, int count, bool expired_only, int64_t now,
    const char *why)
{
	struct child	*c, *oldest;
	struct sb_slot	 s;
	int64_t		 oldest_since;

	while (count-- > 0) {
		oldest = NULL;
		oldest_since = INT64_MAX;
		TAILQ_FOREACH(c, &p->children, entry) {
			if (c->flags & CHILD_QUIT_SENT)
				continue;
			sb_slot_read(&p->sb->slots[c->slot], &s);
			if (s.state != SB_IDLE || s.idle_since_ms >= oldest_since)
				continue;
			if (expired_only && now - s.idle_since_ms <
			    p->conf->process_idle_timeout_ms)
				continue;
			oldest = c;
			oldest_since = s.idle_since_ms;
		}
		if (oldest == NULL)
			return;
		log_debug("[pool %s] retiring child %ld, idle for %lld ms: %s",
		    p->conf->name, (long)oldest->pid,
		    (long long)(now - oldest_since), why);
		child_signal(oldest, SIGQUIT);
		oldest->flags |= CHILD_RETIRED;
		p->sb->pool->retired++;
	}
}

int64_t
pool_maintain(struct pool *p, long process_max, int others, int64_t now)
{
	struct pm_counts	 n;
	struct pm_plan		 plan;
	int			 i, spawn;

	/* A plugin's template starts with the pool, so that pool_init is
	 * done before the first request (an ondemand pool's too). */
	if (p->handler == NULL && p->tmpl_pid == 0 && now >= p->spawn_after_ms)
		(void)child_tmpl_start(p);
	pool_counts(p, now, &n);
	n.others = others;
	pm_decide(p->conf, process_max, &n, &p->pm, now, &plan);
	if (plan.spawn > 0 || plan.retire > 0 || plan.reached_max)
		log_debug("[pool %s] total %d, leaving %d, starting %d, "
		    "idle %d, expired %d, queue %d, rate %d: spawn %d, retire "
		    "%d (%s)", p->conf->name, n.total, n.leaving, n.starting,
		    n.idle, n.idle_expired, n.queue, p->pm.spawn_rate,
		    plan.spawn, plan.retire, plan.reason);
	if (plan.reached_max) {
		p->sb->pool->max_children_reached++;
		if (plan.by_process_max)
			log_warnx("[pool %s] the maximum number of processes "
			    "has been reached (process.max = %ld), consider "
			    "raising process.max", p->conf->name, process_max);
		else
			log_warnx("[pool %s] server reached pm.max_children "
			    "setting (%d), consider raising it", p->conf->name,
			    p->conf->max_children);
	}
	if (plan.retire > 0)
		pool_retire(p, plan.retire, plan.retire_expired_only, now,
		    plan.reason);

	spawn = plan.spawn;
	if (spawn > 0 && now < p->spawn_after_ms)
		return p->spawn_after_ms - now;
	/* While workers die young, one at a time. */
	if (spawn > 0 && p->death_streak > 0)
		spawn = 1;
	for (i = 0; i < spawn; i++)
		if (child_spawn(p) == NULL)
			break;
	return plan.next_ms;
}
