/*
 * scoreboard.c -- per-pool shared memory: one slot per worker, written by
 * that worker alone, read by the master (and later the status page)
 * without locks.
 *
 * Each slot carries a sequence count: the writer makes it odd before an
 * update and even after; a reader copies the slot and retries while the
 * count was odd or moved, so it never sees a torn slot.  The memory is
 * mapped before fork and shared by every worker of the pool.
 */
#include "config.h"

#include <sys/mman.h>

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fpmd.h"

/* A reader spins this often on an update in progress, then yields... */
#define SB_READ_SPINS	1000
/* ... until this many tries: an update takes nanoseconds, not this. */
#define SB_READ_TRIES	(SB_READ_SPINS + 20000)

struct scoreboard *
sb_new(size_t nslots)
{
	struct scoreboard	*sb;
	size_t			 len;
	void			*mem;

	len = sizeof(struct sb_pool) + nslots * sizeof(struct sb_slot);
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
	    -1, 0);
	if (mem == MAP_FAILED)
		return NULL;
	if ((sb = calloc(1, sizeof(*sb))) == NULL) {
		munmap(mem, len);
		return NULL;
	}
	sb->pool = mem;
	sb->pool->wake_fd = -1;
	sb->slots = (struct sb_slot *)((char *)mem + sizeof(struct sb_pool));
	sb->nslots = nslots;
	sb->maplen = len;
	return sb;
}

void
sb_free(struct scoreboard *sb)
{
	if (sb == NULL)
		return;
	munmap(sb->pool, sb->maplen);
	free(sb);
}

/*
 * Odd while a writer is in the slot, even otherwise -- also after a writer
 * died in the middle of an update, which left the count odd: the next
 * begin keeps it odd (and moves it), the next end makes it even.  A plain
 * increment would flip the meaning for good after such a death.
 */
void
sb_slot_begin(struct sb_slot *s)
{
	__atomic_store_n(&s->seq, (s->seq + 1) | 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

void
sb_slot_end(struct sb_slot *s)
{
	__atomic_store_n(&s->seq, (s->seq + 1) & ~1u, __ATOMIC_RELEASE);
}

void
sb_slot_read(const struct sb_slot *s, struct sb_slot *out)
{
	uint32_t	 before, after;
	int		 tries;

	for (tries = 0; tries < SB_READ_TRIES; tries++) {
		before = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
		if (!(before & 1)) {
			memcpy(out, (const void *)s, sizeof(*out));
			__atomic_thread_fence(__ATOMIC_ACQUIRE);
			after = __atomic_load_n(&s->seq, __ATOMIC_RELAXED);
			if (before == after)
				return;
		}
		if (tries >= SB_READ_SPINS)
			sched_yield();
	}
	/*
	 * A writer killed (or stopped) in the middle of an update leaves
	 * the count odd for good: rather than wait forever, take the slot
	 * as it is.  Its owner is gone or frozen; a torn copy costs one
	 * status line at worst.
	 */
	memcpy(out, (const void *)s, sizeof(*out));
}

void
sb_idle_change(struct scoreboard *sb, bool busy)
{
	struct sb_pool	*p = sb->pool;
	int32_t		 idle, active;

	if (!busy) {
		__atomic_add_fetch(&p->idle_hint, 1, __ATOMIC_RELAXED);
		__atomic_sub_fetch(&p->active_hint, 1, __ATOMIC_RELAXED);
		return;
	}
	idle = __atomic_sub_fetch(&p->idle_hint, 1, __ATOMIC_RELAXED);
	active = __atomic_add_fetch(&p->active_hint, 1, __ATOMIC_RELAXED);
	sb_max_active(p, active);
	if (idle < p->wake_threshold)
		sb_wake(sb);
}

void
sb_worker_ready(struct scoreboard *sb)
{
	__atomic_add_fetch(&sb->pool->idle_hint, 1, __ATOMIC_RELAXED);
	sb_wake(sb);
}

void
sb_max_active(struct sb_pool *p, int32_t active)
{
	uint64_t	 seen = __atomic_load_n(&p->max_active, __ATOMIC_RELAXED);

	/* Raised the moment it happens, by whoever sees it: no tick misses it. */
	while (active > 0 && (uint64_t)active > seen &&
	    !__atomic_compare_exchange_n(&p->max_active, &seen,
	    (uint64_t)active, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

void
sb_wake(struct scoreboard *sb)
{
	struct sb_pool	*p = sb->pool;
	uint64_t	 one = 1;

	/* One write wakes the master; it clears wake_pending as it reads. */
	if (p->wake_fd != -1 &&
	    !__atomic_exchange_n(&p->wake_pending, 1, __ATOMIC_ACQ_REL))
		(void)write(p->wake_fd, &one, sizeof(one));
}

const char *
sb_state_name(enum sb_state st)
{
	switch (st) {
	case SB_FREE:
		return "Free";
	case SB_STARTING:
		return "Starting";
	case SB_IDLE:
		return "Idle";
	case SB_READING:
		return "Reading headers";
	case SB_RUNNING:
		return "Running";
	case SB_FINISHING:
		return "Finishing";
	case SB_ENDING:
		return "Ending";
	case SB_KEEPALIVE:
		return "Idle (kept connection)";
	}
	return "Unknown";
}
