/*
 * sdnotify.c -- what systemd hears from the master (Type=notify) and the
 * sockets it hands over (socket activation).
 *
 * READY=1 once every pool is ready; every systemd_interval (or half the
 * watchdog period, if shorter) a STATUS= line in PHP-FPM's wording, with
 * WATCHDOG=1 when the unit asks for it; RELOADING=1 and STOPPING=1 around
 * those.  All of it is a no-op without NOTIFY_SOCKET.
 *
 * Sockets passed with LISTEN_FDS are matched to pools by name
 * (FileDescriptorName=POOL) or by address, and are never unlinked.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "fpmd.h"

static struct {
	bool		 enabled;
	bool		 watchdog;
	int64_t		 interval_ms;
	int64_t		 next_ms;
	uint64_t	 last_requests;
	int64_t		 last_ms;
} sdn;

struct inherited {
	int		 fd;
	char		*name;
	struct sock_addr addr;
	bool		 used;
};

static struct inherited	*inh;
static size_t		 ninh;

void
sdn_init(int64_t interval_ms)
{
	uint64_t	 usec;

	sdn.enabled = getenv("NOTIFY_SOCKET") != NULL;
	sdn.interval_ms = interval_ms;
	if (sd_watchdog_enabled(0, &usec) > 0) {
		sdn.watchdog = true;
		if (sdn.interval_ms == 0 ||
		    (int64_t)(usec / 2000) < sdn.interval_ms)
			sdn.interval_ms = (int64_t)(usec / 2000);
		if (sdn.interval_ms < 1)
			sdn.interval_ms = 1;
	}
	sdn.last_ms = now_ms();
	sdn.next_ms = sdn.last_ms + sdn.interval_ms;
}

void
sdn_send(const char *state)
{
	if (sdn.enabled)
		(void)sd_notify(0, state);
}

void
sdn_ready(void)
{
	if (sdn.enabled)
		(void)sd_notifyf(0, "READY=1\nSTATUS=Ready to handle "
		    "connections\nMAINPID=%ld", (long)getpid());
}

int64_t
sdn_tick(struct pool_list *pools, int64_t now)
{
	struct pool	*p;
	struct status	 st;
	uint64_t	 requests = 0, slow = 0;
	double		 traffic;
	int		 active = 0, idle = 0;

	if (!sdn.enabled || sdn.interval_ms == 0)
		return INT64_MAX;
	if (now < sdn.next_ms)
		return sdn.next_ms - now;
	TAILQ_FOREACH(p, pools, entry) {
		/* A draining generation's counters went on in its successor. */
		if (p->draining)
			continue;
		status_collect(p->sb, p->conf, -1, &st);
		requests += st.accepted_conn;
		slow += st.slow_requests;
		active += st.active;
		idle += st.idle;
		status_free(&st);
	}
	traffic = now > sdn.last_ms && requests >= sdn.last_requests ?
	    (double)(requests - sdn.last_requests) * 1000.0 /
	    (double)(now - sdn.last_ms) : 0;
	/* PHP-FPM's words and its %.3g. */
	/* No READY=1 here: during a reload it would end RELOADING early. */
	(void)sd_notifyf(0, "%sSTATUS=Processes active: %d, idle: %d, "
	    "Requests: %llu, slow: %llu, Traffic: %.3greq/sec",
	    sdn.watchdog ? "WATCHDOG=1\n" : "", active, idle,
	    (unsigned long long)requests, (unsigned long long)slow, traffic);
	sdn.last_requests = requests;
	sdn.last_ms = now;
	sdn.next_ms = now + sdn.interval_ms;
	return sdn.interval_ms;
}

void
sdn_inherit_init(void)
{
	char		**names = NULL;
	int		   n, i;
	struct sockaddr_un *sun;

	n = sd_listen_fds_with_names(1, &names);
	if (n <= 0)
		return;
	if ((inh = calloc((size_t)n, sizeof(*inh))) == NULL)
		fatal("socket activation");
	for (i = 0; i < n; i++) {
		struct inherited	*s = &inh[ninh++];

		s->fd = SD_LISTEN_FDS_START + i;
		s->name = names != NULL ? names[i] : NULL;
		s->addr.len = sizeof(s->addr.ss);
		if (getsockname(s->fd, (struct sockaddr *)&s->addr.ss,
		    &s->addr.len) == -1) {
			log_warn("socket activation: fd %d", s->fd);
			s->used = true;
			continue;
		}
		s->addr.family = s->addr.ss.ss_family;
		if (s->addr.family == AF_UNIX) {
			sun = (struct sockaddr_un *)&s->addr.ss;
			/* Compare paths as sock_addr_parse() builds them. */
			s->addr.len = (socklen_t)(offsetof(struct sockaddr_un,
			    sun_path) + strlen(sun->sun_path) + 1);
		}
		(void)fd_set_flags(s->fd, true);
	}
	free(names);
}

int
sdn_inherited_fd(const char *pool, const struct sock_addr *a)
{
	size_t	 i;

	for (i = 0; i < ninh; i++)
		if (!inh[i].used && inh[i].name != NULL &&
		    strcmp(inh[i].name, pool) == 0) {
			inh[i].used = true;
			return inh[i].fd;
		}
	for (i = 0; i < ninh; i++)
		if (!inh[i].used && sock_addr_equal(&inh[i].addr, a)) {
			inh[i].used = true;
			return inh[i].fd;
		}
	return -1;
}

void
sdn_inherit_done(void)
{
	size_t	 i;

	for (i = 0; i < ninh; i++) {
		if (!inh[i].used) {
			log_warnx("socket activation: fd %d (%s) matches no "
			    "pool: closed", inh[i].fd, inh[i].name != NULL ?
			    inh[i].name : "unnamed");
			close(inh[i].fd);
		}
		free(inh[i].name);
	}
	free(inh);
	inh = NULL;
	ninh = 0;
}
