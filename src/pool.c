/*
 * pool.c -- a pool's runtime: its listening socket, its scoreboard, its
 * handler and the list of its children.
 *
 * The configuration (struct pool_conf) is owned by the fpmd_conf it came
 * from; a pool only points at it.
 */
#include "config.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "fpmd.h"

struct pool *
pool_new(struct pool_conf *pc, char *err, size_t errlen)
{
	struct pool	*p;
	size_t		 nslots;

	if ((p = calloc(1, sizeof(*p))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->conf = pc;
	p->listen_fd = -1;
	TAILQ_INIT(&p->children);
	p->hpool.conf = pc;
	if ((p->handler = handler_find(pc->handler, err, errlen)) == NULL)
		goto fail;
	/* Room for a full pool plus as many leaving workers. */
	nslots = (size_t)pc->max_children * 2;
	if ((p->sb = sb_new(nslots)) == NULL ||
	    (p->slot_used = calloc(nslots, sizeof(bool))) == NULL) {
		snprintf(err, errlen, "cannot map the scoreboard");
		goto fail;
	}
	if ((p->listen_fd = sock_listen(pc, err, errlen)) == -1)
		goto fail;
	return p;
fail:
	pool_free(p);
	return NULL;
}

void
pool_free(struct pool *p)
{
	struct child	*c;

	if (p == NULL)
		return;
	while ((c = TAILQ_FIRST(&p->children)) != NULL) {
		TAILQ_REMOVE(&p->children, c, entry);
		free(c);
	}
	sock_close(p->listen_fd, &p->conf->addr);
	sb_free(p->sb);
	free(p->slot_used);
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
pool_counts(const struct pool *p, struct pm_counts *n)
{
	const struct child	*c;
	struct sb_slot		 s;

	memset(n, 0, sizeof(*n));
	TAILQ_FOREACH(c, &p->children, entry) {
		n->total++;
		if (c->flags & CHILD_QUIT_SENT) {
			n->leaving++;
			continue;
		}
		sb_slot_read(&p->sb->slots[c->slot], &s);
		if (s.state == SB_IDLE)
			n->idle++;
	}
}

void
pool_signal_all(struct pool *p, int sig)
{
	struct child	*c;
	unsigned int	 flag;

	flag = sig == SIGQUIT ? CHILD_QUIT_SENT : sig == SIGTERM ?
	    CHILD_TERM_SENT : CHILD_KILL_SENT;
	TAILQ_FOREACH(c, &p->children, entry) {
		if (c->flags & flag)
			continue;
		if (kill(c->pid, sig) == -1)
			log_warn("[pool %s] kill(%ld, SIG%s)", p->conf->name,
			    (long)c->pid, signal_name(sig));
		c->flags |= flag;
	}
}
