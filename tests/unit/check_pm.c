/*
 * check_pm.c -- the process managers' decisions as a table of
 * (configuration, counts) -> plan, and the backoff and recycling helpers.
 */
#include "config.h"

#include <check.h>
#include <stdlib.h>

#include "fpmd.h"

static const struct {
	enum pm_style	 pm;
	int		 max_children;
	struct pm_counts n;
	int		 spawn;
} decide_cases[] = {
	/* pm, max, {total, leaving, idle}, spawn */
	{ PM_STATIC, 4, { 0, 0, 0 }, 4 },	/* start: fill the pool */
	{ PM_STATIC, 4, { 4, 0, 4 }, 0 },	/* full */
	{ PM_STATIC, 4, { 3, 0, 3 }, 1 },	/* one died: replace it */
	{ PM_STATIC, 4, { 4, 1, 3 }, 1 },	/* one leaving: replace now */
	{ PM_STATIC, 4, { 8, 4, 4 }, 0 },	/* replacements already up */
	{ PM_STATIC, 1, { 0, 0, 0 }, 1 },
	{ PM_STATIC, 4, { 5, 0, 5 }, 0 },	/* never negative */
};

START_TEST(test_decide)
{
	struct pool_conf	 pc = { 0 };
	struct pm_plan		 plan;

	pc.pm = decide_cases[_i].pm;
	pc.max_children = decide_cases[_i].max_children;
	pm_decide(&pc, &decide_cases[_i].n, &plan);
	ck_assert_int_eq(plan.spawn, decide_cases[_i].spawn);
	ck_assert_ptr_nonnull(plan.reason);
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

static Suite *
pm_suite(void)
{
	Suite	*s = suite_create("pm");
	TCase	*tc = tcase_create("decide");

	tcase_add_loop_test(tc, test_decide, 0,
	    sizeof(decide_cases) / sizeof(decide_cases[0]));
	tcase_add_loop_test(tc, test_backoff, 0,
	    sizeof(backoff_cases) / sizeof(backoff_cases[0]));
	tcase_add_test(tc, test_max_requests);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner	*sr = srunner_create(pm_suite());
	int	 failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
