/*
 * fpmd.h -- internal structures and prototypes, laid out per file.
 *
 * A function that is not declared here is static to its file.  Only the
 * plugin ABI (fpmd/handler.h) carries the fpmd_ prefix.
 */
#ifndef FPMD_H
#define FPMD_H

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/queue.h>
#include <netinet/in.h>

#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <syslog.h>
#include <time.h>

#include "fcgi.h"

#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)			\
	for ((var) = TAILQ_FIRST(head);					\
	    (var) != NULL && ((tvar) = TAILQ_NEXT(var, field), 1);	\
	    (var) = (tvar))
#endif
#include "fpmd/handler.h"

#define FPMD_NAME	"fpmd"

/* util.c */
/* Milliseconds on CLOCK_MONOTONIC. */
int64_t	 now_ms(void);
/* Realtime seconds with microseconds, for logs and the status page. */
double	 now_real(void);
/* Strict decimal parse of a whole string into [min, max]; 0 or -1. */
int	 parse_long(const char *, long min, long max, long *out);
/* "10", "10s", "5m", "2h", "1d" into milliseconds; 0 or -1. */
int	 parse_duration_ms(const char *, int64_t *out);
/* "512", "64K", "1M", "1G" into bytes; 0 or -1. */
int	 parse_size(const char *, uint64_t *out);
/* A signal's name without "SIG" ("KILL"), or "?" when unknown. */
const char *signal_name(int);
/* strlcpy as in OpenBSD: always NUL-terminates, returns strlen(src). */
size_t	 strlcpy_(char *dst, const char *src, size_t size);
/* rlimit_files and rlimit_core: not set, "unlimited", or a value. */
#define RLIMIT_UNSET		(-2L)
#define RLIMIT_UNLIMITED	(-1L)
/* Sets RESOURCE's soft and hard limits unless VALUE is RLIMIT_UNSET. */
int	 rlimit_apply(int resource, long value);
/* A growable byte buffer; on allocation failure it stays short and
 * sets failed, so that callers check once at the end. */
struct buf {
	char	*data;
	size_t	 len;
	size_t	 cap;
	bool	 failed;
};
void	 buf_add(struct buf *, const void *, size_t);
void	 buf_printf(struct buf *, const char *, ...)
	    __attribute__((format(printf, 2, 3)));
void	 buf_free(struct buf *);
/* Makes FD close-on-exec and, with NONBLOCK, non-blocking; 0 or -1. */
int	 fd_set_flags(int fd, bool nonblock);

/* log.c */
/*
 * The error log: stderr, a file, syslog or the journal, and, per pool, an
 * optional log of the pool's own.  Only the master writes: a worker's log
 * lines travel to it over the worker's log channel (wlog.c), so that
 * reopening the files in the master covers every line of every worker.
 * File lines look like PHP-FPM's:
 *   [26-Nov-2026 12:34:56] WARNING: [pool www] child 42 exited ...
 * A master message that starts with "[pool NAME]" goes to that pool's log
 * when it has one.  Lines longer than log_limit are split, each piece
 * carrying the prefix, never truncated.
 */
#define LOG_LIMIT_MIN	512
#define LOG_LIMIT_MAX	(1024 * 1024)
/* "stderr", "syslog", "journal" or a path; 0 or -1 with errno. */
int	 log_open(const char *target);
/* Opens every log file again (the global one and the pools'); 0 or -1. */
int	 log_reopen(void);
void	 log_set_limit(size_t);		/* in [LOG_LIMIT_MIN, LOG_LIMIT_MAX] */
/* For error_log = syslog and journal; 0, or -1 for an unknown facility. */
int	 log_set_syslog(const char *facility, const char *ident);
int	 log_facility_parse(const char *, int *out);
/*
 * A pool's own error log.  Calls pair up: a reload may open the log of a
 * pool by the same name before the old pool is gone.  0 or -1 with errno.
 */
int	 log_pool_open(const char *pool, const char *target);
void	 log_pool_close(const char *pool);
void	 log_set_level(int level);	/* a syslog.h LOG_* priority */
int	 log_get_level(void);
int	 log_level_parse(const char *, int *out);
const char *log_level_name(int);
/* The fd lines are written to (-1 for syslog and the journal); in a
 * worker, its log channel, which it must keep open. */
int	 log_fd(void);
/* In a worker: send every line to the master over CHANNEL. */
void	 log_set_channel(int channel);
/* One record, in as many lines as log_limit makes of it. */
struct log_rec {
	int		 level;
	const char	*pool;		/* routes it; NULL: the global log */
	size_t		 poollen;
	pid_t		 pid;		/* the child it is about, or 0 */
	const char	*prefix;	/* before each piece, after the level */
	const char	*suffix;	/* after each piece */
	const char	*text;
	size_t		 len;
	bool		 bare;		/* no time, level, prefix nor suffix */
};
void	 log_emit(const struct log_rec *);
void	 log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 log_notice(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 log_error(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 log_errorx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 log_vlog(int level, const char *, va_list)
	    __attribute__((format(printf, 2, 0)));
/* Start-up and broken invariants only: log at alert and exit 1. */
void	 fatal(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));
void	 fatalx(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));

/* sock.c */
struct sock_addr {
	int			family;	/* AF_INET, AF_INET6, AF_UNIX */
	struct sockaddr_storage	ss;
	socklen_t		len;
	char			text[128];	/* canonical, for logs */
};
/* Parses "127.0.0.1:9000", "[::1]:9000", "9000" or "/path". */
int	 sock_addr_parse(const char *spec, struct sock_addr *,
	    char *err, size_t errlen);
bool	 sock_addr_equal(const struct sock_addr *, const struct sock_addr *);
/*
 * Whether two listen addresses cannot both be bound: equal, or one port
 * of one family where either address is the wildcard.
 */
bool	 sock_addr_overlap(const struct sock_addr *, const struct sock_addr *);
/*
 * Tries to bind the TCP address A as a pool would, and lets go.  Returns
 * 0 when it could, or when the port is held by this process, by process
 * HOLDER (the running master named by the pid file; 0: none) or by
 * systemd (socket activation), all of which hand it over.  Returns -1,
 * with the reason in ERR, when another program has it.  Other failures
 * (an address not on this host, a privileged port) are left to the start.
 */
int	 sock_probe(const struct sock_addr *a, pid_t holder, char *err,
	    size_t errlen);
/* One entry of listen.allowed_clients: an address or a network. */
struct sock_net {
	int		 family;	/* AF_INET or AF_INET6 */
	uint8_t		 addr[16];	/* network order, zero past bits */
	unsigned int	 bits;		/* the prefix length */
};
/*
 * Parses "192.0.2.7", "10.0.0.0/8", "::1" or "2001:db8::/32"; an
 * IPv4-mapped IPv6 entry is taken as IPv4.  Returns 0, or -1 with the
 * reason in ERR.  Pure.
 */
int	 sock_net_parse(const char *, struct sock_net *, char *err,
	    size_t errlen);
/*
 * Whether the peer SA lies in one of the N networks; an IPv4-mapped IPv6
 * peer is matched as IPv4.  False for any other family and for N = 0:
 * a caller with no valid entry refuses everyone.  Pure.
 */
bool	 sock_net_match(const struct sock_net *, size_t n,
	    const struct sockaddr *sa, socklen_t len);
struct pool_conf;
/*
 * Whether PEER, accepted on a listener of FAMILY, may talk to the pool
 * (listen.allowed_clients); a refusal is logged.  Unix peers always may.
 */
bool	 sock_peer_allowed(const struct pool_conf *, int family,
	    const struct sockaddr_storage *peer, socklen_t len);
struct pool_conf;
/*
 * Applies listen.owner, listen.group and listen.mode to a Unix socket,
 * and its access ACL: listen.acl_users and listen.acl_groups, or none.
 * With ACL entries, as PHP-FPM, the socket stays the master's and
 * listen.owner and listen.group are ignored (with a warning).
 */
int	 sock_set_perms(const struct pool_conf *, const struct sock_addr *);
/*
 * Binds and listens on A for a pool (its backlog, and for a Unix socket
 * its owner and mode); the fd is O_CLOEXEC and O_NONBLOCK.
 */
int	 sock_listen(const struct pool_conf *, const struct sock_addr *a,
	    char *err, size_t errlen);
/* Closes a pool's socket and removes a Unix socket's path. */
void	 sock_close(int fd, const struct sock_addr *);
/*
 * The connections waiting in a listening socket's accept queue, and its
 * backlog: TCP_INFO for TCP, sock_diag(7) for Unix sockets.  0 or -1.
 */
int	 sock_listen_queue(int fd, int family, int *queue, int *backlog);

/* conf.c */
enum pm_style {
	PM_STATIC,
	PM_DYNAMIC,
	PM_ONDEMAND
};

struct kv {
	char	*key;
	char	*value;
};

struct pool_conf {
	char		*name;
	char		*file;		/* where "pool NAME {" stands */
	int		 line;

	char		*prefix;	/* its relative paths' base, as written */
	char		*listen;
	struct sock_addr addr;
	int		 backlog;
	char		*listen_owner;
	char		*listen_group;
	uid_t		 listen_uid;	/* (uid_t)-1: leave as created */
	gid_t		 listen_gid;
	unsigned int	 listen_mode;
	char		**allowed_clients;	/* as written */
	size_t		 nallowed_clients;
	struct sock_net	*allowed;	/* parsed, as many */
	char		**acl_users;
	size_t		 nacl_users;
	uid_t		*acl_uids;	/* resolved, as many */
	char		**acl_groups;
	size_t		 nacl_groups;
	gid_t		*acl_gids;

	char		*user;
	char		*group;
	uid_t		 uid;		/* resolved; valid when user != NULL */
	gid_t		 gid;
	char		*chroot;
	char		*chdir;

	enum pm_style	 pm;
	int		 max_children;
	int		 start_servers;
	int		 min_spare_servers;
	int		 max_spare_servers;
	int		 max_spawn_rate;
	int64_t		 process_idle_timeout_ms;
	long		 max_requests;
	long		 max_requests_jitter;
	int64_t		 request_terminate_timeout_ms;
	bool		 request_terminate_timeout_track_finished;

	char		*status_path;
	char		*status_listen;
	struct sock_addr status_addr;
	char		*ping_path;
	char		*ping_response;

	char		*handler;
	struct kv	*handler_options;
	size_t		 nhandler_options;
	/* A plugin's file as conf_load() found it: a reload loads a plugin
	 * rebuilt since as a changed pool. */
	dev_t		 handler_dev;
	ino_t		 handler_ino;
	struct timespec	 handler_mtime;

	bool		 clear_env;
	struct kv	*env;
	size_t		 nenv;

	uint64_t	 max_params_size;
	int64_t		 read_timeout_ms;
	int64_t		 keepalive_timeout_ms;
	int64_t		 linger_timeout_ms;

	long		 rlimit_files;
	long		 rlimit_core;
	int		 priority;	/* INT_MIN: unchanged */
	bool		 dumpable;
	bool		 no_new_privs;	/* PR_SET_NO_NEW_PRIVS in workers */

	char		*error_log;	/* the pool's own; NULL: the global */
	char		*access_log;	/* a path, "stdout" or "stderr" */
	char		*access_format;
	char		**access_suppress_path;	/* exact paths not logged */
	size_t		 naccess_suppress_path;
	char		*slowlog;	/* a path, "stdout" or "stderr" */
	int64_t		 request_slowlog_timeout_ms;
	int		 request_slowlog_trace_depth;	/* frames shown */
	bool		 catch_workers_output;
	bool		 decorate_workers_output;
};

struct fpmd_conf {
	int		 refs;		/* the master and each pool using it */
	char		*file;
	char		*prefix;
	char		*pid_file;
	char		*error_log;
	char		*control_listen;
	int		 log_level;
	int		 log_limit;
	char		*syslog_facility;
	char		*syslog_ident;
	int64_t		 process_control_timeout_ms;
	bool		 daemonize;
	long		 process_max;
	int64_t		 systemd_interval_ms;
	long		 emergency_restart_threshold;
	int64_t		 emergency_restart_interval_ms;
	long		 rlimit_files;
	long		 rlimit_core;
	int		 priority;	/* the master's nice; INT_MIN: unchanged */
	struct pool_conf *pools;
	size_t		 npools;
};

/*
 * Reads FILE (relative paths against PREFIX, or FILE's directory when
 * PREFIX is NULL) and checks every directive.  Each problem is written to
 * ERRS as "FILE:LINE: message"; returns NULL when there was any.  With
 * ALLOW_ROOT false a pool whose user is root is an error.
 */
struct fpmd_conf *conf_load(const char *file, const char *prefix,
	    bool allow_root, FILE *errs);
void	 conf_free(struct fpmd_conf *);
/* Addresses the running master holds, for the next conf_load() only. */
void	 conf_set_held(const struct sock_addr *, size_t n);
/* Whether two pool configurations would run the same workers. */
bool	 conf_pool_equal(const struct pool_conf *, const struct pool_conf *);
/* The effective configuration, in the config file's own syntax. */
void	 conf_print(const struct fpmd_conf *, FILE *);
const char *pm_style_name(enum pm_style);

/* handler.c */
/* The built-in handler NAME, or NULL: then NAME names a plugin. */
const struct fpmd_handler *handler_builtin(const char *name);
/*
 * The file of plugin NAME: libdir/fpmd/handlers/NAME.so, or NAME itself
 * when absolute.  -1 with the reason in ERR for any other shape.
 */
int	 handler_path(const char *name, char *path, size_t len, char *err,
	    size_t errlen);
/*
 * Loads the plugin at PATH and checks it against the ABI; the result has
 * every hook this fpmd knows (NULL where the plugin predates it).  Never
 * in the master: only once a process has a pool's identity (child.c).
 * Returns NULL with the reason in ERR.
 */
const struct fpmd_handler *handler_open(const char *path, char *err,
	    size_t errlen);
/* A built-in, or handler_path() then handler_open(). */
const struct fpmd_handler *handler_find(const char *name, char *err,
	    size_t errlen);
/* The opaque struct fpmd_pool handed to handlers. */
struct fpmd_pool {
	const struct pool_conf	*conf;
	void			*data;
};
extern const struct fpmd_handler h_echo;
extern const struct fpmd_handler h_cgi;

/* scoreboard.c */
enum sb_state {
	SB_FREE,		/* no worker owns the slot */
	SB_STARTING,		/* forked, not yet at its accept loop */
	SB_IDLE,		/* at the top of the accept loop */
	SB_READING,		/* reading the request's headers */
	SB_RUNNING,		/* the handler is running */
	SB_FINISHING,		/* writing the end of the response */
	SB_ENDING,		/* leaving: recycled or stopping */
	SB_KEEPALIVE		/* idle on a kept connection */
};
#define SB_NSTATES	(SB_KEEPALIVE + 1)

/* One worker's slot.  Written by that worker only (by the master only
 * while no worker owns it), read by anyone through sb_slot_read(). */
struct sb_slot {
	uint32_t	 seq;		/* odd while the writer is in it */
	pid_t		 pid;
	pid_t		 program_pgid;	/* a program's process group the
					 * handler runs now, or 0 */
	uint32_t	 term_timeout;	/* the master's: the SIGTERM it sends
					 * is request_terminate_timeout's */
	uint32_t	 state;
	uint32_t	 generation;
	uint64_t	 requests;
	double		 started;	/* realtime, when the worker started */
	double		 req_started;	/* realtime, when the request began */
	int64_t		 idle_since_ms;	/* monotonic, when it last became idle */
	uint64_t	 req_duration_us;	/* the last (or current) request */
	uint64_t	 content_length;
	double		 last_cpu;	/* % of one CPU over the last request */
	uint64_t	 last_memory;	/* peak RSS in bytes after it */
	char		 method[16];
	char		 uri[256];
	char		 query[256];
	char		 script[256];
	char		 user[64];
};

/* Pool-wide counters: the first ones written by workers with atomics,
 * the rest by the master alone. */
struct sb_pool {
	uint64_t	 accepted_conn;	/* requests, as PHP-FPM counts them */
	uint64_t	 connections;	/* accepted sockets */
	int32_t		 idle_hint;	/* workers idle, as they say: a hint */
	int32_t		 active_hint;	/* workers busy, as they say */
	uint64_t	 max_active;	/* atomic max: workers and master */
	int32_t		 wake_threshold;	/* below this many idle, wake */
	uint32_t	 wake_pending;	/* a wake byte is in the eventfd */
	int32_t		 wake_fd;	/* the master's eventfd */
	/* Master only. */
	double		 start_time;	/* realtime */
	uint64_t	 max_children_reached;
	uint64_t	 slow_requests;
	uint32_t	 listen_queue;
	uint32_t	 max_listen_queue;
	uint32_t	 listen_queue_len;
	uint64_t	 respawns;	/* workers replaced after dying */
	uint64_t	 kills_timeout;	/* request_terminate_timeout */
	uint64_t	 retired;	/* idle or recycled by pm */
	uint32_t	 generation;	/* bumped when a reload replaces it */
	double		 reload_time;	/* realtime of that reload, or 0 */
	uint32_t	 log_gen;	/* bumped when the logs are reopened */
};

struct scoreboard {
	struct sb_pool	*pool;
	struct sb_slot	*slots;
	size_t		 nslots;
	size_t		 maplen;
};

/* Maps NSLOTS slots of shared memory; call before forking workers. */
struct scoreboard *sb_new(size_t nslots);
void	 sb_free(struct scoreboard *);
/* Single writer: bracket every update of a slot with these. */
void	 sb_slot_begin(struct sb_slot *);
void	 sb_slot_end(struct sb_slot *);
/* Lock-free reader: copies a consistent snapshot of SLOT into OUT. */
void	 sb_slot_read(const struct sb_slot *, struct sb_slot *out);
const char *sb_state_name(enum sb_state);
/*
 * A worker leaves (BUSY true) or rejoins the idle workers.  Leaving wakes
 * the master once when fewer than wake_threshold stay idle.
 */
void	 sb_idle_change(struct scoreboard *, bool busy);
/* Wakes the master (once until it has read the wake). */
void	 sb_wake(struct scoreboard *);
/* A new worker reached its accept loop: one more idle. */
void	 sb_worker_ready(struct scoreboard *);
/* Raises max active processes to ACTIVE if it is higher. */
void	 sb_max_active(struct sb_pool *, int32_t active);

/* status.c */
enum status_format {
	STATUS_TEXT,
	STATUS_JSON,
	STATUS_XML,
	STATUS_HTML,
	STATUS_OPENMETRICS
};

enum status_page {
	STATUS_PAGE_NONE,
	STATUS_PAGE_STATUS,
	STATUS_PAGE_PING
};

/* A consistent-enough snapshot of one pool, for one page. */
struct status {
	const struct pool_conf	*pc;
	double			 now;
	double			 start_time;
	uint64_t		 accepted_conn;
	uint64_t		 connections;
	uint64_t		 max_children_reached;
	uint64_t		 slow_requests;
	uint64_t		 max_active;
	uint64_t		 respawns;
	uint64_t		 kills_timeout;
	uint64_t		 retired;
	uint32_t		 generation;
	double			 reload_time;
	uint32_t		 listen_queue;
	uint32_t		 max_listen_queue;
	uint32_t		 listen_queue_len;
	int			 idle;
	int			 active;
	int			 by_state[SB_NSTATES];
	struct sb_slot		*procs;		/* the live workers */
	size_t			 nprocs;
};

/* Reads the scoreboard (and the live queue of LISTEN_FD, if not -1). */
void	 status_collect(const struct scoreboard *, const struct pool_conf *,
	    int listen_fd, struct status *);
void	 status_free(struct status *);
/* PHP-FPM's query switches: html, xml, json, openmetrics; full. */
void	 status_parse_query(const char *qs, enum status_format *,
	    bool *full);
/* The page alone, appended to BODY.  Pure. */
void	 status_body(const struct status *, enum status_format, bool full,
	    struct buf *body);
/* The CGI response (headers, and the body unless HEAD).  Pure. */
void	 status_render(const struct status *, enum status_format, bool full,
	    bool head, struct buf *);
void	 status_ping(const struct pool_conf *, bool head, struct buf *);
/* Whether SCRIPT_NAME asks for the pool's status page or ping. */
enum status_page status_match(const struct pool_conf *,
	    const char *script_name);
/* As status_match(), with STATUS_PATH for pm.status_path. */
enum status_page status_match_path(const struct pool_conf *,
	    const char *status_path, const char *script_name);
/* status_collect + status_render, or the ping, into OUT. */
void	 status_respond(const struct scoreboard *, const struct pool_conf *,
	    int listen_fd, enum status_page, const char *method,
	    const char *query, struct buf *out);

/* statusd.c */
/*
 * The master's own FastCGI responder on pm.status_listen: status and ping
 * from the scoreboard, non-blocking, so that they answer while every
 * worker is busy.  Connections idle for STATUSD_TIMEOUT_MS are closed.
 */
#define STATUSD_TIMEOUT_MS	10000
struct pool;
struct status_conn;
int	 statusd_open(struct pool *, int ep, char *err, size_t errlen);
void	 statusd_accept(struct pool *, int ep);
void	 statusd_on_event(struct status_conn *, int ep, uint32_t events);
void	 statusd_expire(struct pool *, int64_t now);
void	 statusd_close(struct pool *);

/* sdnotify.c */
struct pool_list;
/* Reads NOTIFY_SOCKET and WATCHDOG_USEC; INTERVAL_MS: systemd_interval. */
void	 sdn_init(int64_t interval_ms);
void	 sdn_send(const char *state);	/* "RELOADING=1", "STOPPING=1" */
void	 sdn_ready(void);
/* Sends STATUS= (and WATCHDOG=1) when due; returns ms to the next. */
int64_t	 sdn_tick(struct pool_list *, int64_t now);
/* Takes the sockets systemd passed (LISTEN_FDS), once, at start. */
void	 sdn_inherit_init(void);
/* A passed socket for POOL: by FileDescriptorName, else by address. */
int	 sdn_inherited_fd(const char *pool, const struct sock_addr *);
/* Closes, with a warning, the passed sockets no pool took. */
void	 sdn_inherit_done(void);

/* pm.c */
struct pm_counts {
	int	total;		/* live children, including those leaving */
	int	leaving;	/* asked to exit, not yet reaped */
	int	starting;	/* forked, not yet accepting */
	int	idle;		/* accepting, not leaving */
	int	idle_expired;	/* idle for process_idle_timeout or longer */
	int	queue;		/* connections waiting in the listen queue */
	int	others;		/* children of all other pools (process.max) */
};

/* What pm.c remembers of a pool between two decisions. */
struct pm_state {
	int	spawn_rate;	/* doubles while short of workers */
	bool	at_max;		/* in a "max_children reached" episode */
	int64_t	last_retire_ms;
	bool	started;	/* the start workers were forked */
	int64_t	last_grow_ms;	/* workers were last forked to grow */
};

struct pm_plan {
	int		 spawn;
	int		 retire;	/* idle workers to retire, longest idle first */
	bool		 retire_expired_only;
	bool		 reached_max;	/* a new max_children episode began */
	bool		 by_process_max;	/* ... and process.max is why */
	int64_t		 next_ms;	/* look again in at most this long */
	const char	*reason;
};

/* How often the master looks while a pool is short of workers. */
#define PM_FAST_TICK_MS	20
#define PM_TICK_MS	1000

/*
 * What a pool needs now, from its configuration, its counts, the global
 * process.max and the time.  Pure: no syscalls, no globals; ST carries
 * the spawn rate and the episode flags from one call to the next.
 */
void	 pm_decide(const struct pool_conf *, long process_max,
	    const struct pm_counts *, struct pm_state *, int64_t now,
	    struct pm_plan *);
/* The number of start workers: pm.start_servers, or PHP-FPM's default. */
int	 pm_start_servers(const struct pool_conf *);
/*
 * The respawn delay after a worker died young: 0 for the first death,
 * then doubling from 100 ms up to 30 s.  STREAK counts deaths in a row.
 */
int64_t	 pm_backoff_ms(int streak);
/* How many requests before the worker recycles; 0 = never.  Pure. */
long	 pm_max_requests(const struct pool_conf *, uint32_t random);

/* pool.c */
enum child_flags {
	CHILD_QUIT_SENT = 1 << 0,	/* asked to finish and leave */
	CHILD_TERM_SENT = 1 << 1,
	CHILD_KILL_SENT = 1 << 2,
	CHILD_RETIRED = 1 << 3,		/* pm asked it to leave: no respawn */
	CHILD_TIMED_OUT = 1 << 4,	/* killed by request_terminate_timeout */
	CHILD_PENDING = 1 << 5,		/* asked of the template: no pid yet */
	CHILD_ORPHAN = 1 << 6		/* ... and the template died since */
};

struct pool;

struct child {
	TAILQ_ENTRY(child)	 entry;
	struct pool		*pool;
	pid_t			 pid;
	size_t			 slot;
	int64_t			 started_ms;
	unsigned int		 flags;
	struct wlog		*wlog;		/* its output and log channel */
	double			 slow_logged;	/* req_started of the request
						 * already in the slowlog */
	int64_t			 kill_at_ms;	/* timed out: SIGKILL then */
};
TAILQ_HEAD(child_list, child);

/* What an epoll event of the master belongs to. */
enum ev_kind {
	EV_SIGNAL,
	EV_TIMER,
	EV_WAKE,		/* a pool's eventfd: a worker says it is short */
	EV_LISTEN,		/* an ondemand pool's socket: a connection waits */
	EV_STATUS_LISTEN,	/* pm.status_listen: accept */
	EV_STATUS_CONN,		/* a connection to pm.status_listen */
	EV_CTL_LISTEN,		/* control.listen: accept */
	EV_CTL_CONN,		/* a connection to control.listen (fpmctl) */
	EV_WORKER_OUTPUT,	/* a worker's stdout or stderr (wlog.c) */
	EV_WORKER_LOG,		/* a worker's log channel (wlog.c) */
	EV_TEMPLATE		/* a pool template's answers (child.c) */
};

struct ev_source {
	enum ev_kind	 kind;
	struct pool	*pool;
	void		*ptr;		/* EV_STATUS_CONN: the connection */
};

struct pool {
	TAILQ_ENTRY(pool)	 entry;
	struct fpmd_conf	*owner;		/* holds conf; refcounted */
	struct pool_conf	*conf;
	bool			 draining;	/* an old generation, leaving */
	bool			 drain_quit;	/* its workers were told */
	bool			 drain_warned;	/* its successor fails at start */
	struct pool		*successor;	/* the generation replacing it */
	int64_t			 drain_since_ms;
	/* The built-in handler; NULL for a plugin, which only the pool's
	 * template process loads (child.c). */
	const struct fpmd_handler *handler;
	struct fpmd_pool	 hpool;
	pid_t			 tmpl_pid;	/* the template, or 0 */
	bool			 tmpl_ready;	/* it has run pool_init */
	int			 tmpl_fd;	/* our end of its socket, or -1 */
	struct wlog		*tmpl_wlog;
	struct ev_source	 ev_tmpl;
	int			 listen_fd;
	int			 wake_fd;	/* eventfd the workers write */
	struct ev_source	 ev_wake;
	struct ev_source	 ev_listen;
	bool			 listen_watched;
	bool			 listen_inherited;	/* from systemd */
	int			 status_fd;	/* pm.status_listen, or -1 */
	int			 status_ep;	/* the epoll it is in, or -1 */
	struct ev_source	 ev_status;
	TAILQ_HEAD(, status_conn) status_conns;
	bool			 conn_waiting;	/* the listen watch fired */
	struct scoreboard	*sb;
	struct child_list	 children;
	int			 nchildren;
	bool			*slot_used;
	struct pm_state		 pm;
	int			 death_streak;	/* young deaths in a row */
	int64_t			 spawn_after_ms;	/* backoff */
	int			 access_fd;	/* access.log, or -1 (plog.c) */
	int			 slow_fd;	/* slowlog, or -1 */
	uint32_t		 log_gen;	/* of the files above */
	bool			 logs_open;	/* plog_open() done */
};
TAILQ_HEAD(pool_list, pool);

/*
 * Creates the runtime of one configured pool of OWNER (which it holds a
 * reference to): scoreboard, eventfd, socket.  With PREV, the pool's
 * previous generation, a socket on the same address is not bound again
 * but taken over by pool_adopt().
 */
struct pool *pool_new(struct fpmd_conf *owner, struct pool_conf *,
	    const struct pool *prev, char *err, size_t errlen);
/* Takes PREV's sockets (same addresses) and counters: a new generation. */
void	 pool_adopt(struct pool *, struct pool *prev, int ep);
/* Frees a pool without children; drops its fds from EP (-1: none). */
void	 pool_free(struct pool *, int ep);
struct child *pool_child_by_pid(struct pool_list *, pid_t);
/* Counts the pool's children from the scoreboard, at NOW. */
void	 pool_counts(struct pool *, int64_t now, struct pm_counts *);
/* Sends SIG to every child of the pool not yet sent it. */
void	 pool_signal_all(struct pool *, int sig);
/*
 * Asks pm.c what the pool needs and does it: forks, retires idle workers,
 * logs.  OTHERS counts the children of the other pools (process.max).
 * Returns how soon (ms) the pool wants to be looked at again.
 */
int64_t	 pool_maintain(struct pool *, long process_max, int others,
	    int64_t now);

/* child.c */
/*
 * The master's epoll fd, for the sockets of pool templates, and how to
 * tell a pid a template names from a stray: CLAIMABLE(pid) is true only
 * for a child of the master that no child struct or template has.
 */
void	 child_init(int ep, bool (*claimable)(pid_t));
/*
 * Starts a worker for POOL.  A built-in's: forked here; in the child,
 * never returns: it keeps only its pool's socket and the log, drops
 * privileges and runs the request loop.  A plugin's: asked of the pool's
 * template process (started first if need be), which forks it as the
 * master's child; the child is CHILD_PENDING, without a pid, until
 * child_tmpl_event() hears it.  Returns NULL when nothing was started.
 */
struct child *child_spawn(struct pool *);
/* Starts POOL's template process if it uses a plugin and has none. */
int	 child_tmpl_start(struct pool *);
/* Reads the template's answers: pids of the workers asked for. */
void	 child_tmpl_event(struct pool *);
/*
 * The template is gone (STATUS as waitpid() says).  Returns true when it
 * failed to start: the plugin did not load or pool_init failed.
 */
bool	 child_tmpl_reaped(struct pool *, int status);
/* Settles the workers a dead template was asked for: known or never born. */
void	 child_tmpl_orphans(struct pool *, int64_t now);
/* Asks the template to run pool_fini and leave: the pool spawns no more. */
void	 child_tmpl_stop(struct pool *);
/* Sends SIG to one child, or notes it for a pending one. */
void	 child_signal(struct child *, int sig);
/*
 * Loads the plugin at PATH and has it check POOL's handler.options, in a
 * process that has taken the pool's identity and confinement.  Returns
 * CHILD_CHECK_OK, or another value with the reason in ERR.
 */
enum child_check {
	CHILD_CHECK_OK,
	CHILD_CHECK_LOAD,	/* the plugin did not load, or cannot be run */
	CHILD_CHECK_OPTIONS	/* check_options refused */
};
enum child_check child_check_handler(const struct pool_conf *,
	    const char *path, char *err, size_t errlen);
/*
 * Accounts for a reaped child: logs, frees, updates the pool.  Returns
 * the signal that killed it when nobody asked it to die, else 0.
 */
int	 child_reaped(struct child *, int status);

/* worker.c */
struct worker_ctx {
	struct pool		*pool;
	struct sb_slot		*slot;
	const struct fpmd_handler *handler;
	void			*handler_data;
	long			 max_requests;
	int64_t			 read_tmo;	/* ms; -1: no limit */
};
/* The request loop of a worker; returns when the worker must exit. */
int	 worker_run(struct worker_ctx *);
void	 worker_crash_guard(void);
/* The request API handed to handlers (see fpmd/handler.h). */
extern const struct fpmd_host handler_host;
/* Set from the worker's SIGQUIT handler. */
extern volatile sig_atomic_t worker_quit;
/*
 * host->program_group() (see fpmd/handler.h): the process group of the
 * program that request R runs now (0: none any more), kept in the worker's
 * slot so that the master can end the group when the worker dies
 * (child_reaped(), with the pool user's rights only), and the worker
 * itself when it is terminated.  Record the group before the program can
 * fork, clear it before the group's leader is reaped (while the slot names
 * it, its pid cannot name another group).  Safe between vfork and exec: it
 * only writes the shared slot.
 */
/* The address of R's client, as accept4() gave it (access.log's %R). */
const struct sockaddr_storage *worker_peer(const struct fpmd_request *r);
void	 worker_program_group(struct fpmd_request *r, pid_t pgid);

/* access.c */
/*
 * access.format: PHP-FPM's % codes, checked when the configuration is
 * read and rendered into one line per request.  Pure: no I/O.
 */
/* The head of the response a handler wrote, for %s and %{Header}o. */
#define ACCESS_HEAD_MAX	8192
struct access_head {
	char	 buf[ACCESS_HEAD_MAX];
	size_t	 len;
	bool	 done;		/* the blank line came, or the buffer filled */
};
void	 access_head_reset(struct access_head *);
void	 access_head_feed(struct access_head *, const void *, size_t);
/* Header NAME's value (NAME is case-insensitive) and its length, or NULL. */
const char *access_head_get(const struct access_head *, const char *name,
	    size_t *len);
/* The status: from Status:, 302 for a bare Location:, else 200. */
int	 access_head_status(const struct access_head *);
/* What one access line can show. */
struct access_req {
	const char	*pool;
	pid_t		 pid;
	pid_t		 master_pid;
	/* The request's FastCGI param NAME, or NULL. */
	const char	*(*param)(void *ctx, const char *name);
	void		*ctx;
	const struct access_head *head;
	const char	*peer;		/* %R: the web server's address, or "-" */
	double		 start;		/* realtime: the request began */
	double		 end;		/* realtime: it ended */
	double		 cpu_user;	/* CPU seconds the request used */
	double		 cpu_system;
	uint64_t	 memory;	/* peak RSS, bytes */
};
/* NULL when FMT is a valid access.format, else what is wrong (in ERR). */
const char *access_format_check(const char *fmt, char *err, size_t errlen);
/* Appends REQ's line, newline included, to OUT.  FMT passed the check. */
void	 access_format(const char *fmt, const struct access_req *,
	    struct buf *out);
/*
 * What the worker must collect for a line of FMT beyond the request's
 * params and times, each at a cost: a mask of these.  FMT passed the
 * check; a worker asks once, since its format never changes.
 */
enum access_need {
	ACCESS_NEED_CPU = 1 << 0,	/* %C: rusage at the start and end */
	ACCESS_NEED_MEMORY = 1 << 1,	/* %M: rusage at the end */
	ACCESS_NEED_PEER = 1 << 2,	/* %R: the connection's peer */
	ACCESS_NEED_HEAD = 1 << 3,	/* %s, %o: the response head, kept */
};
unsigned int access_needs(const char *fmt);
/*
 * True when A is a request access.suppress_path keeps out of the log: a
 * GET or HEAD with no query string and no body, answered 2xx, whose path
 * (REQUEST_URI before any '?', else SCRIPT_NAME) is one of PATHS exactly.
 */
bool	 access_suppressed(char *const *paths, size_t n,
	    const struct access_req *a);

/* wlog.c */
/*
 * What workers write, carried to the master: stdout and stderr through a
 * pipe each (catch_workers_output), and the worker's own log lines through
 * a SOCK_SEQPACKET socketpair, one line a message; the same channel
 * hands a worker its pool's log files after a reopen.  The master writes
 * whole lines, so lines of two workers never interleave.
 */
struct wlog;
/* The master's epoll fd, for the fds of the workers to come. */
void	 wlog_init(int ep);
/* Before fork: a worker's pipes and channel.  NULL on failure (errno). */
struct wlog *wlog_new(struct pool *);
/* In the child: stdin from /dev/null, stdout and stderr onto the pipes
 * (or /dev/null), and its log lines through the channel. */
void	 wlog_child(struct wlog *);
/* As wlog_child(), for ends received from elsewhere (a pool template):
 * the log channel, and stdout and stderr (-1: /dev/null). */
void	 wlog_child_fds(int chan, int out, int err);
/* The child's ends, before wlog_parent(): channel, stdout, stderr. */
void	 wlog_child_ends(const struct wlog *, int fds[3]);
/* In the master after fork: drops the child's ends and watches ours. */
void	 wlog_parent(struct wlog *, pid_t);
/* Once the child is gone: logs what it left unread and frees. */
void	 wlog_free(struct wlog *);
void	 wlog_on_event(struct ev_source *, uint32_t events);
/* In a worker: sends one log line to the master. */
void	 wlog_send(int channel, int level, const char *msg, size_t len);
/*
 * In a worker: asks the master for the pool's current access and slow
 * log and puts them on FDS[0] and FDS[1] (-1: the pool has none), the fd
 * numbers they were inherited on.  0, or -1 when the master did not
 * answer (the old files stay).
 */
int	 wlog_fetch(int channel, const int fds[2]);

/* plog.c */
/*
 * A pool's log files: access.log and slowlog, opened by the master before
 * any worker forks, and the pool's own error_log; reopened on SIGUSR1
 * without restarting workers.
 */
int	 plog_open(struct pool *, char *err, size_t errlen);
void	 plog_close(struct pool *);
/* Reopens the pool's files; its workers take them at their next request. */
int	 plog_reopen(struct pool *);
/* In a worker, around each request (one at a time). */
void	 plog_request_begin(struct pool *);
void	 plog_response(const void *, size_t);	/* what went to STDOUT */
void	 plog_request_end(struct pool *, struct fpmd_request *);

/* slowlog.c */
/* What the master sends a worker whose request is slow. */
#define SLOWLOG_SIGNAL	SIGPROF
/* The most frames request_slowlog_trace_depth may ask for. */
#define SLOWLOG_DEPTH_MAX	100
/*
 * In the master's tick: signals each worker whose request has run past
 * request_slowlog_timeout, once per request, and counts it.  Returns how
 * soon (ms) the next one may be due.
 */
int64_t	 slowlog_check(struct pool *);
/* In a worker before the privilege drop: arms the signal handler. */
void	 slowlog_worker_init(struct pool *, struct sb_slot *);
/* In a worker at each request: refreshes what the handler needs. */
void	 slowlog_request_begin(void);

/* master.c */
struct options {
	const char	*config;
	const char	*prefix;
	bool		 daemonize;
	bool		 daemonize_set;
	bool		 allow_root;
};
/*
 * Runs the master until it stops; returns the exit code.  READY_FD, when
 * not -1, gets one byte once every pool is ready (the -D launcher waits).
 */
int	 master_main(struct fpmd_conf *, const struct options *, int ready_fd);
/*
 * Reloads the configuration (ONLY: just that pool, as a new generation).
 * Returns 0 or -1; REPLY gets one line for fpmctl ("ok: ..." or
 * "error: FILE:LINE: ...").
 */
int	 master_reload(const char *only, struct buf *reply);
/* The text (or JSON) status of every pool, or of POOL, for fpmctl. */
int	 master_ctl_status(const char *pool, bool json, struct buf *out);
void	 master_ctl_stop(bool graceful);
int	 master_reopen(void);

/* ctl.c */
/*
 * The control socket (control.listen): root-only (0600), one command a
 * connection, a line in and an answer out: "ok..." or "error: ...".
 */
int	 ctl_open(const char *path, int ep, char *err, size_t errlen);
void	 ctl_accept(int ep);
struct ctl_conn;
void	 ctl_on_event(struct ctl_conn *, int ep, uint32_t events);
void	 ctl_expire(int64_t now);
void	 ctl_close(void);

#endif /* FPMD_H */
