/*
 * check_scoreboard.c -- the shared slots: a new board's layout and its
 * sharing across fork; the sequence count around an update; reads racing
 * a writer in another process, never torn; a writer stopped mid-update,
 * which the read waits out in bounded time and which then finishes; the
 * count's parity once a writer has died mid-update; the idle and busy
 * hints with the master's wake; max active processes; the state names.
 * The read of a slot its own process left mid-update is in check_pm.c.
 */
#include "config.h"

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <check.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fpmd.h"
#include "unit.h"

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))

static uint32_t
seq_of(const struct sb_slot *s)
{
	return __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
}

/* Reaps PID, which must exit with 0. */
static void
reap_ok(pid_t pid)
{
	int	 status;

	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	    "child status %#x", status);
}

START_TEST(test_new)
{
	struct scoreboard	*sb = sb_new(4);
	const unsigned char	*p;
	size_t			 i;

	ck_assert_ptr_nonnull(sb);
	ck_assert_uint_eq(sb->nslots, 4);
	ck_assert_uint_eq(sb->maplen, sizeof(struct sb_pool) +
	    4 * sizeof(struct sb_slot));
	/* The slots follow the pool's counters in the one mapping. */
	ck_assert_ptr_eq(sb->slots, (void *)(sb->pool + 1));
	ck_assert_int_eq(sb->pool->wake_fd, -1);
	ck_assert_uint_eq(sb->pool->accepted_conn, 0);
	ck_assert_int_eq(sb->pool->idle_hint, 0);
	ck_assert_int_eq(sb->pool->active_hint, 0);
	ck_assert_uint_eq(sb->pool->max_active, 0);
	ck_assert_uint_eq(sb->pool->wake_pending, 0);
	/* Every slot free, its count even. */
	p = (const unsigned char *)sb->slots;
	for (i = 0; i < 4 * sizeof(struct sb_slot); i++)
		ck_assert_msg(p[i] == 0, "byte %zu of the slots is %#x", i, p[i]);
	sb_free(sb);
	sb_free(NULL);
}
END_TEST

/* A worker's writes reach the master: the mapping outlives fork. */
START_TEST(test_shared_across_fork)
{
	struct scoreboard	*sb = sb_new(3);
	struct sb_slot		 s;
	pid_t			 pid;

	ck_assert_ptr_nonnull(sb);
	if ((pid = fork()) == 0) {
		sb_slot_begin(&sb->slots[2]);
		sb->slots[2].pid = getpid();
		sb->slots[2].state = SB_RUNNING;
		strlcpy_(sb->slots[2].uri, "/from/the/child",
		    sizeof(sb->slots[2].uri));
		sb_slot_end(&sb->slots[2]);
		__atomic_add_fetch(&sb->pool->accepted_conn, 1,
		    __ATOMIC_RELAXED);
		_exit(0);
	}
	ck_assert_int_gt(pid, 0);
	reap_ok(pid);
	sb_slot_read(&sb->slots[2], &s);
	ck_assert_int_eq(s.pid, pid);
	ck_assert_int_eq(s.state, SB_RUNNING);
	ck_assert_str_eq(s.uri, "/from/the/child");
	ck_assert_uint_eq(s.seq, 2);
	ck_assert_uint_eq(sb->pool->accepted_conn, 1);
	/* The neighbours are untouched. */
	sb_slot_read(&sb->slots[1], &s);
	ck_assert_int_eq(s.pid, 0);
	ck_assert_uint_eq(s.seq, 0);
	sb_free(sb);
}
END_TEST

/* Odd while the writer is in the slot, even outside; reads see it all. */
START_TEST(test_begin_end)
{
	struct scoreboard	*sb = sb_new(1);
	struct sb_slot		*w, s;
	uint32_t		 i;

	ck_assert_ptr_nonnull(sb);
	w = &sb->slots[0];
	for (i = 0; i < 5; i++) {
		ck_assert_uint_eq(seq_of(w), 2 * i);
		sb_slot_begin(w);
		ck_assert_uint_eq(seq_of(w), 2 * i + 1);
		w->pid = (pid_t)(100 + i);
		w->requests = i;
		snprintf(w->script, sizeof(w->script), "/srv/%u.php", i);
		sb_slot_end(w);
		ck_assert_uint_eq(seq_of(w), 2 * i + 2);
		sb_slot_read(w, &s);
		ck_assert_int_eq(s.pid, (pid_t)(100 + i));
		ck_assert_uint_eq(s.requests, i);
		ck_assert_uint_eq(s.seq, 2 * i + 2);
	}
	ck_assert_str_eq(s.script, "/srv/4.php");
	sb_free(sb);
}
END_TEST

/*
 * The writer keeps requests, content_length, every byte of uri (its
 * low byte) and user (the number in decimal) equal; they lie at both
 * ends of the slot.  Update I leaves the count at 2 * I + 2.
 */
struct race {
	uint32_t	 stop;
	uint64_t	 writes;
};

static void
race_write(struct sb_slot *w, uint64_t i)
{
	sb_slot_begin(w);
	w->requests = i;
	memset(w->uri, (int)(i & 0x7f) | 1, sizeof(w->uri) - 1);
	w->content_length = i;
	snprintf(w->user, sizeof(w->user), "%llu", (unsigned long long)i);
	sb_slot_end(w);
}

/* Whether the copy S is update (count - 2) / 2, whole. */
static bool
race_whole(const struct sb_slot *s)
{
	char	 user[sizeof(s->user)];
	size_t	 i;

	if (s->seq < 2 || s->requests != (s->seq - 2) / 2 ||
	    s->content_length != s->requests)
		return false;
	snprintf(user, sizeof(user), "%llu", (unsigned long long)s->requests);
	if (strcmp(user, s->user) != 0)
		return false;
	for (i = 0; i < sizeof(s->uri) - 1; i++)
		if (s->uri[i] != (char)((s->requests & 0x7f) | 1))
			return false;
	return true;
}

#define RACE_MS		300	/* at least this long */
#define RACE_MAX_MS	3000	/* ... until this many new values, or this */
#define RACE_MOVES	1000

/*
 * A writer in another process updates one slot without stopping, with
 * one syscall between two updates, as a worker has at the least.  The
 * reader copies the slot as fast as it can, for RACE_MS and until it has
 * seen RACE_MOVES new values (a loaded machine runs the two by turns,
 * which races less), within RACE_MAX_MS.  A copy with an even count went
 * through the sequence check and must be whole.  An odd one is the read
 * giving up (the writer was preempted mid-update for longer than a read
 * waits, see sb_slot_read()): counted, not judged.
 */
START_TEST(test_read_races_a_writer)
{
	struct scoreboard	*sb = sb_new(2);
	struct race		*r;
	struct sb_slot		 s;
	uint64_t		 i, last = 0, reads = 0, torn = 0, moved = 0,
				 gave_up = 0;
	int64_t			 deadline, start;
	pid_t			 pid;

	ck_assert_ptr_nonnull(sb);
	r = mmap(NULL, sizeof(*r), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(r, MAP_FAILED);
	race_write(&sb->slots[1], 0);
	if ((pid = fork()) == 0) {
		/* Never outlive the test, whatever becomes of it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (i = 1; !__atomic_load_n(&r->stop, __ATOMIC_RELAXED); i++) {
			race_write(&sb->slots[1], i);
			__atomic_store_n(&r->writes, i, __ATOMIC_RELAXED);
			(void)getppid();
		}
		_exit(0);
	}
	ck_assert_int_gt(pid, 0);
	deadline = now_ms() + 5000;
	while (__atomic_load_n(&r->writes, __ATOMIC_RELAXED) == 0 &&
	    now_ms() < deadline)
		sched_yield();
	start = now_ms();
	while (now_ms() - start < RACE_MS || (moved < RACE_MOVES &&
	    now_ms() - start < RACE_MAX_MS)) {
		sb_slot_read(&sb->slots[1], &s);
		reads++;
		if (s.seq & 1)
			gave_up++;
		else if (!race_whole(&s))
			torn++;
		if (s.requests != last)
			moved++;
		last = s.requests;
	}
	__atomic_store_n(&r->stop, 1, __ATOMIC_RELAXED);
	reap_ok(pid);
	ck_assert_msg(torn == 0, "%llu torn copies in %llu reads (%llu given "
	    "up, %llu writes)", (unsigned long long)torn,
	    (unsigned long long)reads, (unsigned long long)gave_up,
	    (unsigned long long)r->writes);
	/* The reads did race the writes. */
	ck_assert_msg(moved >= 10, "%llu new values in %llu reads",
	    (unsigned long long)moved, (unsigned long long)reads);
	munmap(r, sizeof(*r));
	sb_free(sb);
}
END_TEST

/*
 * A writer stopped (SIGSTOP, a debugger) in the middle of an update: the
 * read gives up in bounded time with the slot as it is, and once the
 * writer goes on, reads are whole again.
 */
START_TEST(test_read_outwaits_a_stopped_writer)
{
	struct scoreboard	*sb = sb_new(1);
	struct sb_slot		 s;
	int64_t			 t0;
	int			 status;
	pid_t			 pid;

	ck_assert_ptr_nonnull(sb);
	if ((pid = fork()) == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		sb_slot_begin(&sb->slots[0]);
		sb->slots[0].requests = 7;
		raise(SIGSTOP);
		sb->slots[0].content_length = 7;
		sb_slot_end(&sb->slots[0]);
		_exit(0);
	}
	ck_assert_int_gt(pid, 0);
	ck_assert_int_eq(waitpid(pid, &status, WUNTRACED), pid);
	ck_assert(WIFSTOPPED(status));
	ck_assert_uint_eq(seq_of(&sb->slots[0]), 1);
	t0 = now_ms();
	sb_slot_read(&sb->slots[0], &s);
	ck_assert_int_lt(now_ms() - t0, 5000);
	ck_assert_uint_eq(s.requests, 7);
	ck_assert_uint_eq(s.content_length, 0);
	ck_assert_int_eq(kill(pid, SIGCONT), 0);
	reap_ok(pid);
	sb_slot_read(&sb->slots[0], &s);
	ck_assert_uint_eq(s.seq, 2);
	ck_assert_uint_eq(s.requests, 7);
	ck_assert_uint_eq(s.content_length, 7);
	sb_free(sb);
}
END_TEST

/*
 * A writer killed between begin and end (SIGKILL, or the SIGTERM that
 * worker_on_term() re-raises) leaves the count odd.  The slot's next
 * writers -- the master in child_forget() and child_spawn(), then the new
 * worker -- must not flip its meaning: were it even while they write,
 * readers could take torn copies; were it odd between updates, every
 * sb_slot_read() of the slot would spin until it gives up.
 */
START_TEST(test_parity_after_a_dead_writer)
{
	struct scoreboard	*sb = sb_new(1);
	struct sb_slot		*w;
	int			 status;
	pid_t			 pid;

	ck_assert_ptr_nonnull(sb);
	w = &sb->slots[0];
	if ((pid = fork()) == 0) {
		sb_slot_begin(w);
		w->pid = getpid();
		raise(SIGKILL);
		_exit(1);
	}
	ck_assert_int_gt(pid, 0);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	ck_assert_uint_eq(seq_of(w) & 1, 1);
	/* The master frees the slot, as child_forget() does. */
	sb_slot_begin(w);
	ck_assert_msg(seq_of(w) & 1, "count %u even while the master writes",
	    seq_of(w));
	w->state = SB_FREE;
	sb_slot_end(w);
	ck_assert_msg(!(seq_of(w) & 1), "count %u odd after the update",
	    seq_of(w));
	sb_free(sb);
}
END_TEST

/* What the eventfd holds, 0 when nothing (it is non-blocking). */
static uint64_t
wakes(int fd)
{
	uint64_t	 n;

	if (read(fd, &n, sizeof(n)) != sizeof(n)) {
		ck_assert_int_eq(errno, EAGAIN);
		return 0;
	}
	return n;
}

/* The master reads the wake and clears the flag, as master.c does. */
static uint64_t
master_wakes(struct scoreboard *sb, int fd)
{
	uint64_t	 n = wakes(fd);

	__atomic_store_n(&sb->pool->wake_pending, 0, __ATOMIC_RELEASE);
	return n;
}

START_TEST(test_idle_change)
{
	struct scoreboard	*sb = sb_new(4);
	struct sb_pool		*p;
	int			 fd;

	ck_assert_ptr_nonnull(sb);
	p = sb->pool;
	/* No eventfd yet: nobody to wake, nothing breaks. */
	sb_worker_ready(sb);
	sb_idle_change(sb, true);
	sb_idle_change(sb, false);
	ck_assert_int_eq(p->idle_hint, 1);
	ck_assert_int_eq(p->active_hint, 0);
	ck_assert_uint_eq(p->max_active, 1);

	fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	p->wake_fd = fd;
	p->wake_threshold = 2;
	/* Each new worker wakes the master, once until it reads. */
	sb_worker_ready(sb);
	sb_worker_ready(sb);
	ck_assert_int_eq(p->idle_hint, 3);
	ck_assert_uint_eq(wakes(fd), 1);
	ck_assert_uint_eq(master_wakes(sb, fd), 0);

	/* 3 idle -> 2: not below the threshold, no wake. */
	sb_idle_change(sb, true);
	ck_assert_int_eq(p->idle_hint, 2);
	ck_assert_int_eq(p->active_hint, 1);
	ck_assert_uint_eq(master_wakes(sb, fd), 0);
	/* 2 -> 1: below it, one wake; 1 -> 0: still unread, no second. */
	sb_idle_change(sb, true);
	ck_assert_uint_eq(p->max_active, 2);
	sb_idle_change(sb, true);
	ck_assert_int_eq(p->idle_hint, 0);
	ck_assert_int_eq(p->active_hint, 3);
	ck_assert_uint_eq(p->max_active, 3);
	ck_assert_uint_eq(master_wakes(sb, fd), 1);
	/* Read and cleared: the next one wakes again. */
	sb_idle_change(sb, true);
	ck_assert_int_eq(p->idle_hint, -1);
	ck_assert_uint_eq(master_wakes(sb, fd), 1);

	/* Rejoining never wakes, and max active stays. */
	sb_idle_change(sb, false);
	sb_idle_change(sb, false);
	sb_idle_change(sb, false);
	sb_idle_change(sb, false);
	ck_assert_int_eq(p->idle_hint, 3);
	ck_assert_int_eq(p->active_hint, 0);
	ck_assert_uint_eq(p->max_active, 4);
	ck_assert_uint_eq(master_wakes(sb, fd), 0);
	close(fd);
	sb_free(sb);
}
END_TEST

START_TEST(test_max_active)
{
	static const struct {
		int32_t		 active;
		uint64_t	 max;
	} steps[] = {
		{ 0, 0 }, { -3, 0 }, { 5, 5 }, { 3, 5 }, { 5, 5 }, { 0, 5 },
		{ 7, 7 }, { -1, 7 }, { INT32_MAX, INT32_MAX }, { 8, INT32_MAX },
	};
	struct scoreboard	*sb = sb_new(1);
	size_t			 i;

	ck_assert_ptr_nonnull(sb);
	for (i = 0; i < NELEM(steps); i++) {
		sb_max_active(sb->pool, steps[i].active);
		ck_assert_msg(sb->pool->max_active == steps[i].max,
		    "step %zu: %llu, want %llu", i,
		    (unsigned long long)sb->pool->max_active,
		    (unsigned long long)steps[i].max);
	}
	sb_free(sb);
}
END_TEST

/* Workers raise it at once from several processes: the highest stays. */
#define RAISERS	4
#define RAISES	20000

START_TEST(test_max_active_concurrent)
{
	struct scoreboard	*sb = sb_new(1);
	pid_t			 pids[RAISERS];
	int32_t			 k;
	int			 c;

	ck_assert_ptr_nonnull(sb);
	for (c = 0; c < RAISERS; c++) {
		if ((pids[c] = fork()) == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			for (k = 1; k <= RAISES; k++)
				sb_max_active(sb->pool, k * RAISERS - c);
			_exit(0);
		}
		ck_assert_int_gt(pids[c], 0);
	}
	for (c = 0; c < RAISERS; c++)
		reap_ok(pids[c]);
	ck_assert_uint_eq(sb->pool->max_active, RAISES * RAISERS);
	sb_free(sb);
}
END_TEST

static const struct {
	enum sb_state	 st;
	const char	*name;
} state_names[] = {
	{ SB_FREE, "Free" },
	{ SB_STARTING, "Starting" },
	{ SB_IDLE, "Idle" },
	{ SB_READING, "Reading headers" },
	{ SB_RUNNING, "Running" },
	{ SB_FINISHING, "Finishing" },
	{ SB_ENDING, "Ending" },
	{ SB_KEEPALIVE, "Idle (kept connection)" },
	{ SB_NSTATES, "Unknown" },
	{ (enum sb_state)99, "Unknown" },
};

START_TEST(test_state_name)
{
	ck_assert_str_eq(sb_state_name(state_names[_i].st),
	    state_names[_i].name);
}
END_TEST

static Suite *
scoreboard_suite(void)
{
	Suite	*s = suite_create("scoreboard");
	TCase	*tc;

	tc = tcase_create("slots");
	tcase_add_test(tc, test_new);
	tcase_add_test(tc, test_shared_across_fork);
	tcase_add_test(tc, test_begin_end);
	tcase_add_test(tc, test_read_races_a_writer);
	tcase_add_test(tc, test_read_outwaits_a_stopped_writer);
	tcase_add_test(tc, test_parity_after_a_dead_writer);
	suite_add_tcase(s, tc);


	tc = tcase_create("pool");
	tcase_add_test(tc, test_idle_change);
	tcase_add_test(tc, test_max_active);
	tcase_add_test(tc, test_max_active_concurrent);
	tcase_add_loop_test(tc, test_state_name, 0, NELEM(state_names));
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return unit_run(scoreboard_suite(), CK_FORK);
}
