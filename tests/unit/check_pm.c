/*
 * check_pm.c -- the process managers' decisions as a table of
 * (configuration, counts, state, time) -> (plan, state), without forking;
 * then the start-failure backoff and the recycling jitter.
 */
#include "config.h"

#include <check.h>
#include <stdlib.h>

#include "fpmd.h"
#include "unit.h"

struct pm_case {
	const char	*name;
	/* configuration */
	enum pm_style	 pm;
	int		 max_children, min_spare, max_spare, start;
	int		 max_spawn_rate;
	long		 process_max;
	/* facts */
	struct pm_counts n;
	struct pm_state	 st;
	int64_t		 now;
	/* expected */
	int		 spawn, retire;
	bool		 expired_only, reached_max;
	int		 rate_after;
	bool		 fast;		/* look again soon */
};

#define C(total, leaving, starting, idle, expired, queue, others) \
	{ total, leaving, starting, idle, expired, queue, others }
/* The state; the pool last grew at GROWN (0 in S: long ago). */
#define SG(rate, at_max, last_retire, started, grown) \
	{ rate, at_max, last_retire, started, grown }
#define S(rate, at_max, last_retire, started) \
	SG(rate, at_max, last_retire, started, 0)

static const struct pm_case cases[] = {
	/* static */
	{ "static start", PM_STATIC, 4, 0, 0, 0, 32, 0,
	    C(0, 0, 0, 0, 0, 0, 0), S(1, false, 0, false), 0,
	    4, 0, false, false, 1, true },
	{ "static full", PM_STATIC, 4, 0, 0, 0, 32, 0,
	    C(4, 0, 0, 4, 0, 0, 0), S(1, false, 0, true), 0,
	    0, 0, false, false, 1, false },
	{ "static replaces a dead one", PM_STATIC, 4, 0, 0, 0, 32, 0,
	    C(3, 0, 0, 3, 0, 0, 0), S(1, false, 0, true), 0,
	    1, 0, false, false, 1, false },
	{ "static replaces a leaving one at once", PM_STATIC, 4, 0, 0, 0, 32,
	    0, C(4, 1, 0, 3, 0, 0, 0), S(1, false, 0, true), 0,
	    1, 0, false, false, 1, false },
	{ "static: busy workers are not a reason", PM_STATIC, 4, 0, 0, 0, 32,
	    0, C(4, 0, 0, 0, 0, 50, 0), S(1, false, 0, true), 0,
	    0, 0, false, false, 1, false },
	{ "static capped by process.max", PM_STATIC, 4, 0, 0, 0, 32, 5,
	    C(0, 0, 0, 0, 0, 0, 3), S(1, false, 0, false), 0,
	    2, 0, false, false, 1, true },

	/* dynamic: max 10, spare 2..4, start 3 by default */
	{ "dynamic start (default start_servers)", PM_DYNAMIC, 10, 2, 4, 0,
	    32, 0, C(0, 0, 0, 0, 0, 0, 0), S(1, false, 0, false), 0,
	    3, 0, false, false, 1, true },
	{ "dynamic start (start_servers)", PM_DYNAMIC, 10, 2, 4, 4, 32, 0,
	    C(0, 0, 0, 0, 0, 0, 0), S(1, false, 0, false), 0,
	    4, 0, false, false, 1, true },
	{ "dynamic within spares", PM_DYNAMIC, 10, 2, 4, 0, 32, 0,
	    C(3, 0, 0, 3, 0, 0, 0), S(4, false, 0, true), 0,
	    0, 0, false, false, 1, false },
	{ "dynamic short of spares", PM_DYNAMIC, 10, 2, 4, 0, 32, 0,
	    C(3, 0, 0, 1, 0, 0, 0), S(1, false, 0, true), 0,
	    1, 0, false, false, 2, true },
	{ "dynamic rate doubles", PM_DYNAMIC, 10, 2, 4, 0, 32, 0,
	    C(4, 0, 0, 0, 0, 0, 0), S(2, false, 0, true), 0,
	    2, 0, false, false, 4, true },
	{ "dynamic grows with the queue", PM_DYNAMIC, 10, 2, 4, 0, 32, 0,
	    C(3, 0, 0, 0, 0, 30, 0), S(8, false, 0, true), 0,
	    7, 0, false, false, 16, true },
	{ "dynamic rate capped by max_spawn_rate", PM_DYNAMIC, 40, 2, 4, 0,
	    5, 0, C(3, 0, 0, 0, 0, 30, 0), S(4, false, 0, true), 0,
	    4, 0, false, false, 5, true },
	{ "dynamic starting workers count as spares", PM_DYNAMIC, 10, 2, 4,
	    0, 32, 0, C(5, 0, 2, 0, 0, 0, 0), S(2, false, 0, true), 0,
	    0, 0, false, false, 1, false },
	{ "dynamic reaches max_children", PM_DYNAMIC, 10, 2, 4, 0, 32, 0,
	    C(10, 0, 0, 0, 0, 5, 0), S(8, false, 0, true), 0,
	    0, 0, false, true, 1, false },
	{ "dynamic max_children logged once", PM_DYNAMIC, 10, 2, 4, 0, 32, 0,
	    C(10, 0, 0, 0, 0, 5, 0), S(1, true, 0, true), 0,
	    0, 0, false, false, 1, false },
	{ "dynamic leaving workers free room", PM_DYNAMIC, 10, 2, 4, 0, 32,
	    0, C(10, 2, 0, 0, 0, 0, 0), S(1, true, 0, true), 0,
	    1, 0, false, false, 2, true },
	{ "dynamic retires one above max_spare", PM_DYNAMIC, 10, 2, 4, 0, 32,
	    0, C(7, 0, 0, 6, 0, 0, 0), S(1, false, 0, true), 5000,
	    0, 1, false, false, 1, false },
	/* Regression: a burst's starting workers made the pool "too idle". */
	{ "dynamic: starting workers are not spare", PM_DYNAMIC, 10, 2, 4, 0,
	    32, 0, C(8, 0, 4, 3, 0, 0, 0), S(4, false, 0, true), 5000,
	    0, 0, false, false, 1, false },
	{ "dynamic: nobody retires while connections wait", PM_DYNAMIC, 10,
	    2, 4, 0, 32, 0, C(8, 0, 0, 6, 0, 3, 0), S(1, false, 0, true), 5000,
	    0, 0, false, false, 1, false },
	{ "dynamic retires at most one a second", PM_DYNAMIC, 10, 2, 4, 0,
	    32, 0, C(7, 0, 0, 6, 0, 0, 0), S(1, false, 4500, true), 5000,
	    0, 0, false, false, 1, false },
	/*
	 * Regression: a burst's last connections came after its workers
	 * were up; one was retired 1 ms later and forked again.
	 */
	{ "dynamic: no retiring within a second of growing", PM_DYNAMIC, 10,
	    2, 4, 0, 32, 0, C(10, 0, 0, 5, 0, 0, 0),
	    SG(1, false, 0, true, 4500), 5000,
	    0, 0, false, false, 1, false },
	{ "dynamic retires a second after growing", PM_DYNAMIC, 10, 2, 4, 0,
	    32, 0, C(10, 0, 0, 5, 0, 0, 0), SG(1, false, 0, true, 4000),
	    5000, 0, 1, false, false, 1, false },
	{ "dynamic capped by process.max", PM_DYNAMIC, 10, 2, 4, 0, 32, 6,
	    C(3, 0, 0, 0, 0, 9, 2), S(8, false, 0, true), 0,
	    1, 0, false, false, 16, true },

	/* ondemand: max 5 */
	{ "ondemand starts none", PM_ONDEMAND, 5, 0, 0, 0, 32, 0,
	    C(0, 0, 0, 0, 0, 0, 0), S(1, false, 0, false), 0,
	    0, 0, false, false, 1, false },
	{ "ondemand: a connection waits", PM_ONDEMAND, 5, 0, 0, 0, 32, 0,
	    C(0, 0, 0, 0, 0, 1, 0), S(1, false, 0, true), 0,
	    1, 0, false, false, 2, true },
	{ "ondemand: an idle worker will take it", PM_ONDEMAND, 5, 0, 0, 0,
	    32, 0, C(1, 0, 0, 1, 0, 1, 0), S(1, false, 0, true), 0,
	    0, 0, false, false, 1, false },
	{ "ondemand: a burst", PM_ONDEMAND, 5, 0, 0, 0, 32, 0,
	    C(1, 0, 1, 0, 0, 4, 0), S(2, false, 0, true), 0,
	    2, 0, false, false, 4, true },
	{ "ondemand retires every expired idle", PM_ONDEMAND, 5, 0, 0, 0, 32,
	    0, C(4, 0, 0, 3, 2, 0, 0), S(1, false, 0, true), 0,
	    0, 2, true, false, 1, false },
	{ "ondemand reaches max_children", PM_ONDEMAND, 5, 0, 0, 0, 32, 0,
	    C(5, 0, 0, 0, 0, 2, 0), S(4, false, 0, true), 0,
	    0, 0, false, true, 1, false },
};

START_TEST(test_decide)
{
	const struct pm_case	*tc = &cases[_i];
	struct pool_conf	 pc = { 0 };
	struct pm_state		 st = tc->st;
	struct pm_plan		 plan;

	pc.pm = tc->pm;
	pc.max_children = tc->max_children;
	pc.min_spare_servers = tc->min_spare;
	pc.max_spare_servers = tc->max_spare;
	pc.start_servers = tc->start;
	pc.max_spawn_rate = tc->max_spawn_rate;
	pc.process_idle_timeout_ms = 10000;
	pm_decide(&pc, tc->process_max, &tc->n, &st, tc->now, &plan);
	ck_assert_msg(plan.spawn == tc->spawn, "%s: spawn %d, want %d",
	    tc->name, plan.spawn, tc->spawn);
	ck_assert_msg(plan.retire == tc->retire, "%s: retire %d, want %d",
	    tc->name, plan.retire, tc->retire);
	ck_assert_msg(plan.retire_expired_only == tc->expired_only, "%s",
	    tc->name);
	ck_assert_msg(plan.reached_max == tc->reached_max,
	    "%s: reached_max %d", tc->name, plan.reached_max);
	ck_assert_msg(st.spawn_rate == tc->rate_after, "%s: rate %d, want %d",
	    tc->name, st.spawn_rate, tc->rate_after);
	ck_assert_msg((plan.next_ms == PM_FAST_TICK_MS) == tc->fast,
	    "%s: next_ms %lld", tc->name, (long long)plan.next_ms);
	ck_assert(st.started);
	ck_assert_ptr_nonnull(plan.reason);
	/* Growing, not starting or replacing, holds retirement off. */
	if (tc->pm != PM_STATIC && tc->st.started && plan.spawn > 0)
		ck_assert_int_eq(st.last_grow_ms, tc->now);
	else
		ck_assert_int_eq(st.last_grow_ms, tc->st.last_grow_ms);
}
END_TEST

/* A step from idle to 32 waiting: how many fast ticks to reach 32. */
START_TEST(test_dynamic_step_is_fast)
{
	struct pool_conf	 pc = { 0 };
	struct pm_state		 st = { .spawn_rate = 1, .started = true };
	struct pm_counts	 n = { 0 };
	struct pm_plan		 plan;
	int			 ticks = 0;

	pc.pm = PM_DYNAMIC;
	pc.max_children = 32;
	pc.min_spare_servers = 1;
	pc.max_spare_servers = 3;
	pc.max_spawn_rate = 32;
	n.total = 2;
	while (n.total < 32 && ticks < 100) {
		/* Every worker busy, the rest of 32 requests queued. */
		n.idle = 0;
		n.queue = 32 - n.total;
		pm_decide(&pc, 0, &n, &st, ticks * PM_FAST_TICK_MS, &plan);
		ck_assert_int_eq(plan.next_ms, PM_FAST_TICK_MS);
		n.total += plan.spawn;
		ticks++;
	}
	ck_assert_int_eq(n.total, 32);
	/* 1 + 2 + 4 + 8 + 16 > 30: five ticks, 100 ms at 20 ms a tick. */
	ck_assert_int_le(ticks, 5);
}
END_TEST

static const struct {
	int	 streak;
	int64_t	 ms;
} backoff_cases[] = {
	{ 0, 0 }, { 1, 100 }, { 2, 200 }, { 3, 400 }, { 4, 800 },
	{ 9, 25600 }, { 10, 30000 }, { 100, 30000 },
};

START_TEST(test_backoff)
{
	ck_assert_int_eq(pm_backoff_ms(backoff_cases[_i].streak),
	    backoff_cases[_i].ms);
}
END_TEST

START_TEST(test_max_requests)
{
	struct pool_conf	 pc = { 0 };
	uint32_t		 r;

	ck_assert_int_eq(pm_max_requests(&pc, 12345), 0);
	pc.max_requests = 500;
	ck_assert_int_eq(pm_max_requests(&pc, 12345), 500);
	pc.max_requests_jitter = 50;
	for (r = 0; r < 1000; r++) {
		long	 n = pm_max_requests(&pc, r * 2654435761u);

		ck_assert_int_ge(n, 500);
		ck_assert_int_le(n, 550);
	}
	ck_assert_int_eq(pm_max_requests(&pc, 50), 550);
	ck_assert_int_eq(pm_max_requests(&pc, 51), 500);
}
END_TEST

/* A writer that died mid-update must not hang the master's reads. */
START_TEST(test_slot_read_survives_a_dead_writer)
{
	struct scoreboard	*sb = sb_new(2);
	struct sb_slot		 s;

	ck_assert_ptr_nonnull(sb);
	sb_slot_begin(&sb->slots[1]);
	sb->slots[1].pid = 4242;
	sb->slots[1].state = SB_RUNNING;
	sb_slot_end(&sb->slots[1]);
	sb_slot_read(&sb->slots[1], &s);
	ck_assert_int_eq(s.pid, 4242);
	/* Begun, never ended: the count stays odd. */
	sb_slot_begin(&sb->slots[1]);
	sb->slots[1].pid = 4343;
	sb_slot_read(&sb->slots[1], &s);
	ck_assert_int_eq(s.pid, 4343);
	ck_assert_int_eq(s.state, SB_RUNNING);
	sb_free(sb);
}
END_TEST

static Suite *
pm_suite(void)
{
	Suite	*s = suite_create("pm");
	TCase	*tc = tcase_create("decide");

	tcase_add_loop_test(tc, test_decide, 0,
	    sizeof(cases) / sizeof(cases[0]));
	tcase_add_test(tc, test_dynamic_step_is_fast);
	tcase_add_loop_test(tc, test_backoff, 0,
	    sizeof(backoff_cases) / sizeof(backoff_cases[0]));
	tcase_add_test(tc, test_max_requests);
	tcase_add_test(tc, test_slot_read_survives_a_dead_writer);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return unit_run(pm_suite(), CK_FORK);
}
