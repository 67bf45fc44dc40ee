/*
 * pm.c -- the process managers' decisions, as pure functions of a pool's
 * configuration, its counts and the time.
 *
 * Taboos: no syscalls, no clocks, no globals.  The master gathers the
 * facts (counts from the scoreboard, the listen queue), asks here what to
 * do, then forks or signals.  That keeps every decision a row in a table
 * test (tests/unit/check_pm.c).
 *
 * The algorithms are PHP-FPM's, with two changes: decisions are taken as
 * soon as an event says a pool is short (not on a one-second tick), with
 * the spawn rate doubling on every fast tick; and a dynamic pool also
 * grows while connections wait in its listen queue.
 */
#include "config.h"

#include "fpmd.h"

static int
min3(int a, int b, int c)
{
	int	 m = a < b ? a : b;

	return m < c ? m : c;
}

int
pm_start_servers(const struct pool_conf *pc)
{
	switch (pc->pm) {
	case PM_STATIC:
		return pc->max_children;
	case PM_DYNAMIC:
		if (pc->start_servers > 0)
			return pc->start_servers;
		return pc->min_spare_servers +
		    (pc->max_spare_servers - pc->min_spare_servers) / 2;
	case PM_ONDEMAND:
		return 0;
	}
	return 0;
}

/* Room left under pm.max_children and the global process.max. */
static int
pm_room(const struct pool_conf *pc, long process_max,
    const struct pm_counts *n)
{
	int	 room = pc->max_children - (n->total - n->leaving);

	if (process_max > 0 && process_max - n->total - n->others < room)
		room = (int)(process_max - n->total - n->others);
	return room > 0 ? room : 0;
}

/*
 * Spawns up to WANT workers at the current rate, then doubles the rate.
 * As in PHP-FPM, a max_children episode ends only when workers are forked.
 */
static void
pm_grow(const struct pool_conf *pc, int want, int room, struct pm_state *st,
    int64_t now, struct pm_plan *plan, const char *reason)
{
	if (room == 0) {
		if (!st->at_max) {
			st->at_max = true;
			plan->reached_max = true;
		}
		st->spawn_rate = 1;
		plan->reason = "pm.max_children reached";
		return;
	}
	plan->spawn = min3(want, st->spawn_rate, room);
	plan->reason = reason;
	st->last_grow_ms = now;
	plan->next_ms = PM_FAST_TICK_MS;
	st->at_max = false;
	if (st->spawn_rate < pc->max_spawn_rate)
		st->spawn_rate *= 2;
	if (st->spawn_rate > pc->max_spawn_rate)
		st->spawn_rate = pc->max_spawn_rate;
}

void
pm_decide(const struct pool_conf *pc, long process_max,
    const struct pm_counts *n, struct pm_state *st, int64_t now,
    struct pm_plan *plan)
{
	int	 room = pm_room(pc, process_max, n);
	int	 ready = n->idle + n->starting;
	int	 want;

	plan->spawn = 0;
	plan->retire = 0;
	plan->retire_expired_only = false;
	plan->reached_max = false;
	plan->by_process_max = process_max > 0 &&
	    process_max - n->total - n->others <
	    pc->max_children - (n->total - n->leaving);
	plan->next_ms = PM_TICK_MS;
	plan->reason = "nothing to do";
	if (st->spawn_rate < 1)
		st->spawn_rate = 1;

	if (!st->started) {
		/* The start workers, all at once. */
		st->started = true;
		plan->spawn = pm_start_servers(pc) < room ?
		    pm_start_servers(pc) : room;
		plan->reason = "start workers";
		if (plan->spawn > 0)
			plan->next_ms = PM_FAST_TICK_MS;
		return;
	}

	switch (pc->pm) {
	case PM_STATIC:
		/* Replace the dead and the leaving, at once. */
		if (room > 0) {
			plan->spawn = room;
			plan->reason = "below pm.max_children (static)";
		}
		return;

	case PM_DYNAMIC:
		/*
		 * Only idle workers are spare: starting ones are about to
		 * take queued connections, and while any wait, nobody retires.
		 */
		if (n->idle > pc->max_spare_servers && n->queue == 0) {
			st->spawn_rate = 1;
			/*
			 * One a second, as PHP-FPM, and not within a second
			 * of growing: a burst's workers may come up before
			 * the burst's last connections do.  No flapping.
			 */
			if (now - st->last_retire_ms >= PM_TICK_MS &&
			    now - st->last_grow_ms >= PM_TICK_MS) {
				st->last_retire_ms = now;
				plan->retire = 1;
				plan->reason = "more idle than "
				    "pm.max_spare_servers";
			}
			return;
		}
		want = pc->min_spare_servers - ready;
		if (n->queue > 0 && n->idle == 0 && want < n->queue)
			want = n->queue;
		if (want > 0) {
			pm_grow(pc, want, room, st, now, plan,
			    ready < pc->min_spare_servers ?
			    "fewer idle than pm.min_spare_servers" :
			    "connections wait and no worker is idle");
			return;
		}
		st->spawn_rate = 1;
		return;

	case PM_ONDEMAND:
		if (n->idle_expired > 0) {
			plan->retire = n->idle_expired;
			plan->retire_expired_only = true;
			plan->reason = "idle longer than "
			    "pm.process_idle_timeout";
		}
		if (n->queue > ready) {
			pm_grow(pc, n->queue - ready, room, st, now, plan,
			    "connections wait and no worker is idle");
			return;
		}
		st->spawn_rate = 1;
		return;
	}
}

int64_t
pm_backoff_ms(int streak)
{
	int64_t	 ms = 100;

	if (streak <= 0)
		return 0;
	while (--streak > 0 && ms < 30000)
		ms *= 2;
	return ms < 30000 ? ms : 30000;
}

long
pm_max_requests(const struct pool_conf *pc, uint32_t random)
{
	if (pc->max_requests == 0)
		return 0;
	if (pc->max_requests_jitter == 0)
		return pc->max_requests;
	return pc->max_requests +
	    (long)(random % ((uint32_t)pc->max_requests_jitter + 1));
}
