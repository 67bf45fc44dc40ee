/*
 * check_util.c -- util.c's pure helpers: the strict number, duration and
 * size parsers as tables of (text) -> (value, or refused), their limits
 * at the exact edge of overflow; strlcpy_()'s truncation and return
 * value; a buffer grown by many appends, byte for byte; signal names.
 */
#include "config.h"

#include <check.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "fpmd.h"
#include "unit.h"

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))

#define REFUSED	false
#define OK	true

static const struct {
	const char	*s;
	long		 min, max;
	bool		 ok;
	long		 v;
} long_cases[] = {
	{ "0", 0, 10, OK, 0 },
	{ "10", 0, 10, OK, 10 },
	{ "11", 0, 10, REFUSED, 0 },
	{ "-1", 0, 10, REFUSED, 0 },
	{ "-5", -10, 10, OK, -5 },
	{ "-11", -10, 10, REFUSED, 0 },
	{ "007", 0, 10, OK, 7 },
	{ "9223372036854775807", 0, LONG_MAX, OK, LONG_MAX },
	{ "-9223372036854775808", LONG_MIN, 0, OK, LONG_MIN },
	{ "9223372036854775808", 0, LONG_MAX, REFUSED, 0 },
	{ "-9223372036854775809", LONG_MIN, 0, REFUSED, 0 },
	{ "99999999999999999999999", 0, LONG_MAX, REFUSED, 0 },
	/* Whole strings only, decimal only. */
	{ "", 0, 10, REFUSED, 0 },
	{ " 5", 0, 10, REFUSED, 0 },
	{ "\t5", 0, 10, REFUSED, 0 },
	{ "5 ", 0, 10, REFUSED, 0 },
	{ "5\n", 0, 10, REFUSED, 0 },
	{ "5x", 0, 10, REFUSED, 0 },
	{ "x5", 0, 10, REFUSED, 0 },
	{ "0x5", 0, 10, REFUSED, 0 },
	{ "1.5", 0, 10, REFUSED, 0 },
	{ "1e3", 0, 10000, REFUSED, 0 },
	{ "-", -10, 10, REFUSED, 0 },
	{ "--5", -10, 10, REFUSED, 0 },
};

START_TEST(test_parse_long)
{
	long	 v = 12345;
	int	 rc;

	rc = parse_long(long_cases[_i].s, long_cases[_i].min,
	    long_cases[_i].max, &v);
	if (!long_cases[_i].ok) {
		ck_assert_msg(rc == -1, "\"%s\" accepted as %ld",
		    long_cases[_i].s, v);
		/* A refusal leaves the output alone. */
		ck_assert_int_eq(v, 12345);
		return;
	}
	ck_assert_msg(rc == 0, "\"%s\" refused", long_cases[_i].s);
	ck_assert_int_eq(v, long_cases[_i].v);
}
END_TEST

START_TEST(test_parse_long_null)
{
	long	 v = 1;

	ck_assert_int_eq(parse_long(NULL, 0, 10, &v), -1);
	ck_assert_int_eq(v, 1);
}
END_TEST

#define SEC	INT64_C(1000)
#define MINUTE	(60 * SEC)
#define HOUR	(60 * MINUTE)
#define DAY	(24 * HOUR)

static const struct {
	const char	*s;
	bool		 ok;
	int64_t		 ms;
} duration_cases[] = {
	/* A bare number is seconds. */
	{ "0", OK, 0 },
	{ "10", OK, 10 * SEC },
	{ "10s", OK, 10 * SEC },
	{ "5m", OK, 5 * MINUTE },
	{ "2h", OK, 2 * HOUR },
	{ "1d", OK, DAY },
	{ "0d", OK, 0 },
	{ "90m", OK, 90 * MINUTE },
	{ "365d", OK, 365 * DAY },
	/* The largest that fit in int64 milliseconds, and one more. */
	{ "9223372036854775", OK, INT64_MAX / SEC * SEC },
	{ "9223372036854776", REFUSED, 0 },
	{ "9223372036854775s", OK, INT64_MAX / SEC * SEC },
	{ "9223372036854776s", REFUSED, 0 },
	{ "153722867280912m", OK, INT64_MAX / MINUTE * MINUTE },
	{ "153722867280913m", REFUSED, 0 },
	{ "2562047788015h", OK, INT64_MAX / HOUR * HOUR },
	{ "2562047788016h", REFUSED, 0 },
	{ "106751991167d", OK, INT64_MAX / DAY * DAY },
	{ "106751991168d", REFUSED, 0 },
	{ "9223372036854775808", REFUSED, 0 },
	{ "99999999999999999999999999999s", REFUSED, 0 },
	/* Junk. */
	{ "", REFUSED, 0 },
	{ "s", REFUSED, 0 },
	{ "m", REFUSED, 0 },
	{ "10ms", REFUSED, 0 },
	{ "10ss", REFUSED, 0 },
	{ "10S", REFUSED, 0 },
	{ "10M", REFUSED, 0 },
	{ "10w", REFUSED, 0 },
	{ "10y", REFUSED, 0 },
	{ "1.5h", REFUSED, 0 },
	{ " 10s", REFUSED, 0 },
	{ "10 s", REFUSED, 0 },
	{ "10s ", REFUSED, 0 },
	{ "s10", REFUSED, 0 },
	{ "0x10", REFUSED, 0 },
	/* Negative. */
	{ "-1", REFUSED, 0 },
	{ "-1s", REFUSED, 0 },
	{ "-5m", REFUSED, 0 },
	{ "-9223372036854775808", REFUSED, 0 },
};

START_TEST(test_parse_duration)
{
	int64_t	 ms = -42;
	int	 rc;

	rc = parse_duration_ms(duration_cases[_i].s, &ms);
	if (!duration_cases[_i].ok) {
		ck_assert_msg(rc == -1, "\"%s\" accepted as %lld ms",
		    duration_cases[_i].s, (long long)ms);
		ck_assert_int_eq(ms, -42);
		return;
	}
	ck_assert_msg(rc == 0, "\"%s\" refused", duration_cases[_i].s);
	ck_assert_msg(ms == duration_cases[_i].ms, "\"%s\": %lld ms, want %lld",
	    duration_cases[_i].s, (long long)ms,
	    (long long)duration_cases[_i].ms);
}
END_TEST

#define KIB	UINT64_C(1024)
#define MIB	(1024 * KIB)
#define GIB	(1024 * MIB)

static const struct {
	const char	*s;
	bool		 ok;
	uint64_t	 bytes;
} size_cases[] = {
	{ "0", OK, 0 },
	{ "512", OK, 512 },
	{ "64K", OK, 64 * KIB },
	{ "64k", OK, 64 * KIB },
	{ "1M", OK, MIB },
	{ "1m", OK, MIB },
	{ "3G", OK, 3 * GIB },
	{ "3g", OK, 3 * GIB },
	{ "0G", OK, 0 },
	/* As large as int64 holds, and one more. */
	{ "9223372036854775807", OK, (uint64_t)INT64_MAX },
	{ "9223372036854775808", REFUSED, 0 },
	{ "9007199254740991K", OK, (uint64_t)INT64_MAX / KIB * KIB },
	{ "9007199254740992K", REFUSED, 0 },
	{ "8796093022207M", OK, (uint64_t)INT64_MAX / MIB * MIB },
	{ "8796093022208M", REFUSED, 0 },
	{ "8589934591G", OK, (uint64_t)INT64_MAX / GIB * GIB },
	{ "8589934592G", REFUSED, 0 },
	/* Junk, negative. */
	{ "", REFUSED, 0 },
	{ "K", REFUSED, 0 },
	{ "1T", REFUSED, 0 },
	{ "1KB", REFUSED, 0 },
	{ "1B", REFUSED, 0 },
	{ "1.5M", REFUSED, 0 },
	{ " 1M", REFUSED, 0 },
	{ "1 M", REFUSED, 0 },
	{ "-1", REFUSED, 0 },
	{ "-1K", REFUSED, 0 },
};

START_TEST(test_parse_size)
{
	uint64_t	 v = 42;
	int		 rc;

	rc = parse_size(size_cases[_i].s, &v);
	if (!size_cases[_i].ok) {
		ck_assert_msg(rc == -1, "\"%s\" accepted as %llu",
		    size_cases[_i].s, (unsigned long long)v);
		ck_assert_int_eq(v, 42);
		return;
	}
	ck_assert_msg(rc == 0, "\"%s\" refused", size_cases[_i].s);
	ck_assert_msg(v == size_cases[_i].bytes, "\"%s\": %llu, want %llu",
	    size_cases[_i].s, (unsigned long long)v,
	    (unsigned long long)size_cases[_i].bytes);
}
END_TEST

START_TEST(test_parse_null)
{
	int64_t		 ms = 1;
	uint64_t	 bytes = 1;

	ck_assert_int_eq(parse_duration_ms(NULL, &ms), -1);
	ck_assert_int_eq(parse_size(NULL, &bytes), -1);
	ck_assert_int_eq(ms, 1);
	ck_assert_int_eq(bytes, 1);
}
END_TEST

/* (source, destination size) -> what the destination holds. */
static const struct {
	const char	*src;
	size_t		 size;
	const char	*want;
} strlcpy_cases[] = {
	{ "hello", 16, "hello" },
	{ "hello", 6, "hello" },
	{ "hello", 5, "hell" },
	{ "hello", 2, "h" },
	{ "hello", 1, "" },
	{ "", 1, "" },
	{ "", 8, "" },
};

START_TEST(test_strlcpy)
{
	char	 dst[32];

	memset(dst, 'X', sizeof(dst));
	ck_assert_uint_eq(strlcpy_(dst, strlcpy_cases[_i].src,
	    strlcpy_cases[_i].size), strlen(strlcpy_cases[_i].src));
	ck_assert_str_eq(dst, strlcpy_cases[_i].want);
	/* Nothing written past SIZE. */
	ck_assert_int_eq(dst[strlcpy_cases[_i].size], 'X');
}
END_TEST

START_TEST(test_strlcpy_size_zero)
{
	char	 dst[4] = "abc";

	ck_assert_uint_eq(strlcpy_(dst, "longer", 0), 6);
	ck_assert_str_eq(dst, "abc");
	/* The usual truncation test: the return value against the size. */
	ck_assert_uint_ge(strlcpy_(dst, "longer", sizeof(dst)), sizeof(dst));
	ck_assert_str_eq(dst, "lon");
}
END_TEST

/* Many appends of every size across the 4096-byte first allocation. */
START_TEST(test_buf_growth)
{
	struct buf	 b = { 0 };
	char		 want[70000], piece[300];
	size_t		 wlen = 0, n, i;

	for (i = 0; wlen + sizeof(piece) < sizeof(want); i++) {
		n = i % sizeof(piece);
		memset(piece, 'a' + (int)(i % 26), n);
		buf_add(&b, piece, n);
		memcpy(want + wlen, piece, n);
		wlen += n;
		ck_assert_uint_eq(b.len, wlen);
		if (wlen > 0) {
			ck_assert_uint_gt(b.cap, b.len);
			ck_assert_int_eq(b.data[b.len], '\0');
		}
	}
	ck_assert(!b.failed);
	ck_assert(memcmp(b.data, want, wlen) == 0);
	buf_free(&b);
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_uint_eq(b.cap, 0);
}
END_TEST

START_TEST(test_buf_printf)
{
	struct buf	 b = { 0 };
	char		 big[2000], want[4096];
	int		 i, wlen = 0;

	/* Short lines, then lines longer than buf_printf's stack buffer. */
	memset(big, 'z', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	for (i = 0; i < 200; i++) {
		buf_printf(&b, "line %d;", i);
		wlen += snprintf(NULL, 0, "line %d;", i);
	}
	ck_assert_uint_eq(b.len, (size_t)wlen);
	ck_assert(strncmp(b.data, "line 0;line 1;line 2;", 21) == 0);
	ck_assert_str_eq(b.data + b.len - 9, "line 199;");
	buf_free(&b);

	for (i = 0; i < 50; i++)
		buf_printf(&b, "<%s|%d>", big, i);
	snprintf(want, sizeof(want), "<%s|%d>", big, 49);
	ck_assert_uint_eq(b.len, 50 * (sizeof(big) - 1 + 3) + 10 * 1 +
	    40 * 2);
	ck_assert_str_eq(b.data + b.len - strlen(want), want);
	ck_assert(strncmp(b.data, "<zzz", 4) == 0);
	ck_assert(!b.failed);
	buf_free(&b);

	/* An empty result adds nothing. */
	buf_printf(&b, "%s", "");
	ck_assert_uint_eq(b.len, 0);
	buf_add(&b, "x", 0);
	ck_assert_uint_eq(b.len, 0);
	buf_free(&b);
}
END_TEST

/* A failed buffer stays as it is: callers check once, at the end. */
START_TEST(test_buf_failed_is_sticky)
{
	struct buf	 b = { 0 };

	buf_add(&b, "abc", 3);
	b.failed = true;
	buf_add(&b, "def", 3);
	buf_printf(&b, "%d", 42);
	ck_assert_uint_eq(b.len, 3);
	ck_assert_str_eq(b.data, "abc");
	ck_assert(b.failed);
	buf_free(&b);
	ck_assert(!b.failed);
}
END_TEST

static const struct {
	int		 sig;
	const char	*name;
} signal_cases[] = {
	{ SIGHUP, "HUP" },
	{ SIGINT, "INT" },
	{ SIGQUIT, "QUIT" },
	{ SIGABRT, "ABRT" },
	{ SIGKILL, "KILL" },
	{ SIGSEGV, "SEGV" },
	{ SIGPIPE, "PIPE" },
	{ SIGTERM, "TERM" },
	{ SIGUSR1, "USR1" },
	{ SIGUSR2, "USR2" },
	{ SIGCHLD, "CHLD" },
	{ SIGPROF, "PROF" },
	{ 0, "?" },
	{ -1, "?" },
	{ 1000, "?" },
};

START_TEST(test_signal_name)
{
	ck_assert_str_eq(signal_name(signal_cases[_i].sig),
	    signal_cases[_i].name);
}
END_TEST

static Suite *
util_suite(void)
{
	Suite	*s = suite_create("util");
	TCase	*tc;

	tc = tcase_create("parse");
	tcase_add_loop_test(tc, test_parse_long, 0, NELEM(long_cases));
	tcase_add_test(tc, test_parse_long_null);
	tcase_add_loop_test(tc, test_parse_duration, 0, NELEM(duration_cases));
	tcase_add_loop_test(tc, test_parse_size, 0, NELEM(size_cases));
	tcase_add_test(tc, test_parse_null);
	suite_add_tcase(s, tc);

	tc = tcase_create("strings");
	tcase_add_loop_test(tc, test_strlcpy, 0, NELEM(strlcpy_cases));
	tcase_add_test(tc, test_strlcpy_size_zero);
	tcase_add_test(tc, test_buf_growth);
	tcase_add_test(tc, test_buf_printf);
	tcase_add_test(tc, test_buf_failed_is_sticky);
	tcase_add_loop_test(tc, test_signal_name, 0, NELEM(signal_cases));
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return unit_run(util_suite(), CK_FORK);
}
