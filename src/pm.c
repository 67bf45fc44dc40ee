/*
 * pm.c -- the process managers' decisions, as pure functions of the pool's
 * configuration and its counts.
 *
 * Taboos: no syscalls, no clocks, no globals: the master gathers the facts,
 * asks here what to do, then forks or signals.  That keeps every decision
 * a row in a table test.
 */
#include "config.h"

#include "fpmd.h"

void
pm_decide(const struct pool_conf *pc, const struct pm_counts *n,
    struct pm_plan *plan)
{
	/* Leaving workers no longer serve: replace them now. */
	int	 serving = n->total - n->leaving;

	plan->spawn = 0;
	plan->reason = "enough workers";
	switch (pc->pm) {
	case PM_STATIC:
	case PM_DYNAMIC:
	case PM_ONDEMAND:
		if (serving < pc->max_children) {
			plan->spawn = pc->max_children - serving;
			plan->reason = "below pm.max_children (static)";
		}
		break;
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
