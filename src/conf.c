/*
 * conf.c -- the libconfuse schema, turned into plain structs.
 *
 * One table (conf_directives) names every directive, where its value goes
 * and how it is checked; the libconfuse schema, the checks, the conversion
 * and -T's printout are all derived from it.  Values reach libconfuse as
 * strings so that every message is ours and carries FILE:LINE: each check
 * runs from a libconfuse validate callback, while the parser still knows
 * the file and line.
 *
 * Taboos: cfg_t never leaves this file; nothing here binds (sock_probe
 * only tries a port and lets go), forks or logs (errors go to the FILE
 * the caller gives).
 */
#include "config.h"

#include <sys/mman.h>
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <glob.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <confuse.h>

#include "fpmd.h"

/* Exported by libconfuse, but missing from its header. */
extern int cfg_lexer_include(cfg_t *, const char *);

enum dtype {
	D_STR,		/* char * */
	D_PATH,		/* char *, relative to the prefix */
	D_INT,		/* int in [min, max] */
	D_LONG,		/* long in [min, max] */
	D_BOOL,		/* bool */
	D_DURATION,	/* int64_t milliseconds */
	D_SIZE,		/* uint64_t bytes, in [min, max] */
	D_MODE,		/* unsigned int, octal */
	D_LOGLEVEL,	/* int, a syslog priority */
	D_PM,		/* enum pm_style */
	D_RLIMIT,	/* long: RLIMIT_UNSET, RLIMIT_UNLIMITED or a value */
	D_LIST,		/* char **, its size_t count at count_offset */
	D_KV		/* a free-form { key = value } section */
};

enum dscope {
	GLOBAL,
	POOL
};

/* A directive refused with "not supported yet" until its issue lands. */
#define UNSUPPORTED	1

struct directive {
	const char	*name;
	enum dscope	 scope;
	enum dtype	 type;
	size_t		 offset;	/* into fpmd_conf or pool_conf */
	size_t		 count_offset;	/* D_KV, D_LIST: the size_t count */
	const char	*def;		/* default, as it would be written */
	long		 min;
	long		 max;
	int		 flags;
};

#define G(f)	offsetof(struct fpmd_conf, f)
#define P(f)	offsetof(struct pool_conf, f)
#define NOOFF	((size_t)-1)

static const struct directive conf_directives[] = {
	/* Global. */
	{ "pid", GLOBAL, D_PATH, G(pid_file), 0, "", 0, 0, 0 },
	{ "error_log", GLOBAL, D_PATH, G(error_log), 0, "stderr", 0, 0, 0 },
	{ "log_level", GLOBAL, D_LOGLEVEL, G(log_level), 0, "notice", 0, 0, 0 },
	{ "log_limit", GLOBAL, D_INT, G(log_limit), 0, "8192", LOG_LIMIT_MIN,
	    LOG_LIMIT_MAX, 0 },
	{ "syslog.facility", GLOBAL, D_STR, G(syslog_facility), 0, "daemon", 0,
	    0, 0 },
	{ "syslog.ident", GLOBAL, D_STR, G(syslog_ident), 0, "fpmd", 0, 0, 0 },
	{ "emergency_restart_threshold", GLOBAL, D_LONG,
	    G(emergency_restart_threshold), 0, "0", 0, 1000000, 0 },
	{ "emergency_restart_interval", GLOBAL, D_DURATION,
	    G(emergency_restart_interval_ms), 0, "0", 0, 0, 0 },
	{ "process_control_timeout", GLOBAL, D_DURATION,
	    G(process_control_timeout_ms), 0, "10s", 0, 0, 0 },
	{ "process.max", GLOBAL, D_LONG, G(process_max), 0, "0", 0, 1000000,
	    0 },
	{ "daemonize", GLOBAL, D_BOOL, G(daemonize), 0, "no", 0, 0, 0 },
	{ "rlimit_files", GLOBAL, D_RLIMIT, G(rlimit_files), 0, "", 1,
	    INT_MAX, 0 },
	{ "rlimit_core", GLOBAL, D_RLIMIT, G(rlimit_core), 0, "", 0,
	    LONG_MAX, 0 },
	{ "systemd_interval", GLOBAL, D_DURATION, G(systemd_interval_ms), 0,
	    "10s", 0, 0, 0 },
	{ "control.listen", GLOBAL, D_PATH, G(control_listen), 0, "", 0, 0, 0 },
	{ "process.priority", GLOBAL, D_INT, G(priority), 0, "", -19, 20, 0 },

	/* Pool. */
	{ "prefix", POOL, D_STR, P(prefix), 0, NULL, 0, 0, 0 },
	{ "listen", POOL, D_STR, P(listen), 0, NULL, 0, 0, 0 },
	{ "listen.backlog", POOL, D_INT, P(backlog), 0, "511", 1, 65535, 0 },
	{ "listen.owner", POOL, D_STR, P(listen_owner), 0, "", 0, 0, 0 },
	{ "listen.group", POOL, D_STR, P(listen_group), 0, "", 0, 0, 0 },
	{ "listen.mode", POOL, D_MODE, P(listen_mode), 0, "0660", 0, 0, 0 },
	{ "listen.allowed_clients", POOL, D_LIST, P(allowed_clients),
	    P(nallowed_clients), NULL, 0, 0, 0 },
	{ "listen.acl_users", POOL, D_LIST, P(acl_users), P(nacl_users), NULL,
	    0, 0, 0 },
	{ "listen.acl_groups", POOL, D_LIST, P(acl_groups), P(nacl_groups),
	    NULL, 0, 0, 0 },
	{ "user", POOL, D_STR, P(user), 0, "", 0, 0, 0 },
	{ "group", POOL, D_STR, P(group), 0, "", 0, 0, 0 },
	{ "chroot", POOL, D_STR, P(chroot), 0, "", 0, 0, 0 },
	{ "chdir", POOL, D_STR, P(chdir), 0, "/", 0, 0, 0 },
	{ "pm", POOL, D_PM, P(pm), 0, "static", 0, 0, 0 },
	{ "pm.max_children", POOL, D_INT, P(max_children), 0, "5", 1, 65535,
	    0 },
	{ "pm.start_servers", POOL, D_INT, P(start_servers), 0, "0", 0,
	    65535, 0 },
	{ "pm.min_spare_servers", POOL, D_INT, P(min_spare_servers), 0, "0",
	    0, 65535, 0 },
	{ "pm.max_spare_servers", POOL, D_INT, P(max_spare_servers), 0, "0",
	    0, 65535, 0 },
	{ "pm.max_spawn_rate", POOL, D_INT, P(max_spawn_rate), 0, "32", 1,
	    65535, 0 },
	{ "pm.process_idle_timeout", POOL, D_DURATION,
	    P(process_idle_timeout_ms), 0, "10s", 0, 0, 0 },
	{ "pm.max_requests", POOL, D_LONG, P(max_requests), 0, "0", 0,
	    LONG_MAX / 2, 0 },
	{ "pm.max_requests_jitter", POOL, D_LONG, P(max_requests_jitter), 0,
	    "0", 0, LONG_MAX / 2, 0 },
	{ "pm.status_path", POOL, D_STR, P(status_path), 0, "", 0, 0, 0 },
	{ "pm.status_listen", POOL, D_STR, P(status_listen), 0, "", 0, 0, 0 },
	{ "ping.path", POOL, D_STR, P(ping_path), 0, "", 0, 0, 0 },
	{ "ping.response", POOL, D_STR, P(ping_response), 0, "pong", 0, 0,
	    0 },
	{ "error_log", POOL, D_PATH, P(error_log), 0, "", 0, 0, 0 },
	{ "access.log", POOL, D_PATH, P(access_log), 0, "", 0, 0, 0 },
	{ "access.format", POOL, D_STR, P(access_format), 0,
	    "%R - %u %t \"%m %r\" %s", 0, 0, 0 },
	{ "access.suppress_path", POOL, D_LIST, P(access_suppress_path),
	    P(naccess_suppress_path), NULL, 0, 0, 0 },
	{ "slowlog", POOL, D_PATH, P(slowlog), 0, "", 0, 0, 0 },
	{ "request_slowlog_timeout", POOL, D_DURATION,
	    P(request_slowlog_timeout_ms), 0, "0", 0, 0, 0 },
	{ "request_slowlog_trace_depth", POOL, D_INT,
	    P(request_slowlog_trace_depth), 0, "20", 1, SLOWLOG_DEPTH_MAX, 0 },
	{ "request_terminate_timeout", POOL, D_DURATION,
	    P(request_terminate_timeout_ms), 0, "0", 0, 0, 0 },
	{ "request_terminate_timeout_track_finished", POOL, D_BOOL,
	    P(request_terminate_timeout_track_finished), 0, "no", 0, 0, 0 },
	{ "rlimit_files", POOL, D_RLIMIT, P(rlimit_files), 0, "", 1,
	    INT_MAX, 0 },
	{ "rlimit_core", POOL, D_RLIMIT, P(rlimit_core), 0, "", 0,
	    LONG_MAX, 0 },
	{ "process.priority", POOL, D_INT, P(priority), 0, "", -19, 20, 0 },
	{ "process.dumpable", POOL, D_BOOL, P(dumpable), 0, "no", 0, 0, 0 },
	{ "process.no_new_privs", POOL, D_BOOL, P(no_new_privs), 0, "yes", 0,
	    0, 0 },
	{ "catch_workers_output", POOL, D_BOOL, P(catch_workers_output), 0,
	    "no", 0, 0, 0 },
	{ "decorate_workers_output", POOL, D_BOOL, P(decorate_workers_output),
	    0, "yes", 0, 0, 0 },
	{ "clear_env", POOL, D_BOOL, P(clear_env), 0, "yes", 0, 0, 0 },
	{ "env", POOL, D_KV, P(env), P(nenv), NULL, 0, 0, 0 },
	{ "fastcgi.max_params_size", POOL, D_SIZE, P(max_params_size), 0,
	    "1M", 1024, 1L << 30, 0 },
	{ "fastcgi.read_timeout", POOL, D_DURATION, P(read_timeout_ms), 0,
	    "30s", 0, 0, 0 },
	{ "fastcgi.keepalive_timeout", POOL, D_DURATION,
	    P(keepalive_timeout_ms), 0, "60s", 0, 0, 0 },
	{ "fastcgi.linger_timeout", POOL, D_DURATION, P(linger_timeout_ms), 0,
	    "5s", 0, 0, 0 },
	{ "handler", POOL, D_STR, P(handler), 0, "echo", 0, 0, 0 },
	{ "handler.options", POOL, D_KV, P(handler_options),
	    P(nhandler_options), NULL, 0, 0, 0 },
};
#define NDIRECTIVES	(sizeof(conf_directives) / sizeof(conf_directives[0]))

/* Where each option was set, so that later checks can name FILE:LINE. */
struct loc {
	const cfg_opt_t	*opt;
	char		*file;
	int		 line;
};

/* A file as libconfuse reads it (see conf_open) and its real name. */
struct src {
	int	 fd;
	char	 alias[32];
	char	*real;
};

/* The state of one conf_load(); libconfuse callbacks take no user data. */
static struct {
	FILE		*errs;
	int		 nerrors;
	struct loc	*locs;
	size_t		 nlocs;
	const char	*file;		/* the main file, for errors after parse */
	struct src	*srcs;
	size_t		 nsrcs;
	pid_t		 holder;	/* the running master (pid file) */
} cp;

/*
 * The addresses the running master holds (a reload): they are in use, by
 * us, and need no probe (which, on a busy host, costs a scan of
 * /proc/net/tcp).  Set by conf_set_held() for one conf_load().
 */
static const struct sock_addr	*held;
static size_t			 nheld;

void
conf_set_held(const struct sock_addr *addrs, size_t n)
{
	held = addrs;
	nheld = n;
}

static bool
conf_held(const struct sock_addr *a)
{
	size_t	 i;

	for (i = 0; i < nheld; i++)
		if (sock_addr_equal(&held[i], a))
			return true;
	return false;
}

/* The real name of a file libconfuse knows by its alias. */
static const char *
conf_real(const char *name)
{
	size_t	 i;

	if (name == NULL)
		return cp.file;
	for (i = 0; i < cp.nsrcs; i++)
		if (strcmp(cp.srcs[i].alias, name) == 0)
			return cp.srcs[i].real;
	return name;
}

/*
 * libconfuse 3.3 counts lines wrongly after a comment, so that every
 * FILE:LINE after one would point at the wrong line.  Each file is handed
 * to it with its comments blanked out (newlines kept, quoted strings
 * untouched), through a memfd known by an alias that conf_real() maps
 * back to the file's name.
 */
static void
conf_strip_comments(char *t, size_t len)
{
	enum { CODE, DQ, SQ, LINE, BLOCK }	 st = CODE;
	size_t					 i;

	for (i = 0; i < len; i++) {
		char	 ch = t[i], next = i + 1 < len ? t[i + 1] : '\0';

		switch (st) {
		case CODE:
			if (ch == '"')
				st = DQ;
			else if (ch == '\'')
				st = SQ;
			else if (ch == '#' || (ch == '/' && next == '/'))
				st = LINE;
			else if (ch == '/' && next == '*') {
				st = BLOCK;
				t[i++] = ' ';
				t[i] = ' ';
			}
			break;
		case DQ:
		case SQ:
			if (ch == '\\' && next != '\0')
				i++;
			else if (ch == (st == DQ ? '"' : '\''))
				st = CODE;
			break;
		case LINE:
			break;
		case BLOCK:
			if (ch == '*' && next == '/') {
				t[i++] = ' ';
				t[i] = ' ';
				st = CODE;
				continue;
			}
			break;
		}
		if (st == LINE || st == BLOCK) {
			if (ch == '\n') {
				if (st == LINE)
					st = CODE;
			} else
				t[i] = ' ';
		}
	}
}

/* Returns the alias libconfuse must open for PATH, or NULL (errno set). */
static const char *
conf_open(const char *path)
{
	struct src	*s;
	FILE		*fp;
	char		*text = NULL;
	size_t		 cap = 0, len = 0;
	ssize_t		 n;
	int		 fd;

	if ((fp = fopen(path, "re")) == NULL)
		return NULL;
	for (;;) {
		if (len + 4096 > cap) {
			char	*nt = realloc(text, cap = len + 65536);

			if (nt == NULL)
				break;
			text = nt;
		}
		if ((n = (ssize_t)fread(text + len, 1, cap - len, fp)) <= 0)
			break;
		len += (size_t)n;
	}
	fclose(fp);
	if (text == NULL)
		return NULL;
	conf_strip_comments(text, len);
	fd = memfd_create("fpmd.conf", MFD_CLOEXEC);
	s = reallocarray(cp.srcs, cp.nsrcs + 1, sizeof(*s));
	if (fd == -1 || s == NULL || write(fd, text, len) != (ssize_t)len) {
		if (s != NULL)
			cp.srcs = s;
		if (fd != -1)
			close(fd);
		free(text);
		return NULL;
	}
	free(text);
	cp.srcs = s;
	s = &cp.srcs[cp.nsrcs++];
	s->fd = fd;
	snprintf(s->alias, sizeof(s->alias), "/proc/self/fd/%d", fd);
	s->real = strdup(path);
	return s->alias;
}

static void conf_err(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
conf_err(const char *file, int line, const char *fmt, ...)
{
	va_list	 ap;

	fprintf(cp.errs, "%s:%d: ", conf_real(file), line);
	va_start(ap, fmt);
	vfprintf(cp.errs, fmt, ap);
	va_end(ap);
	fputc('\n', cp.errs);
	cp.nerrors++;
}

static void
conf_cfg_error(cfg_t *cfg, const char *fmt, va_list ap)
{
	char	 msg[1024];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	/*
	 * libconfuse 3.3 reports the keys of a free-form (CFGF_KEYSTRVAL)
	 * section as unknown although it accepts them.
	 */
	if ((cfg->flags & CFGF_KEYSTRVAL) &&
	    strncmp(msg, "no such option", 14) == 0)
		return;
	conf_err(cfg->filename, cfg->line, "%s", msg);
}

static const struct directive *
conf_directive(const char *name, enum dscope scope)
{
	size_t	 i;

	for (i = 0; i < NDIRECTIVES; i++)
		if (conf_directives[i].scope == scope &&
		    strcmp(conf_directives[i].name, name) == 0)
			return &conf_directives[i];
	return NULL;
}

static const struct loc *
conf_loc(const cfg_opt_t *opt)
{
	size_t	 i;

	for (i = cp.nlocs; i-- > 0;)
		if (cp.locs[i].opt == opt)
			return &cp.locs[i];
	return NULL;
}

static void
conf_loc_add(const cfg_opt_t *opt, const char *file, int line)
{
	struct loc	*l;

	l = reallocarray(cp.locs, cp.nlocs + 1, sizeof(*l));
	if (l == NULL)
		return;
	cp.locs = l;
	l[cp.nlocs].opt = opt;
	l[cp.nlocs].file = strdup(conf_real(file));
	l[cp.nlocs].line = line;
	cp.nlocs++;
}

static int
conf_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };
	size_t	 i;

	for (i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

static int
conf_parse_pm(const char *s, enum pm_style *out)
{
	if (strcmp(s, "static") == 0)
		*out = PM_STATIC;
	else if (strcmp(s, "dynamic") == 0)
		*out = PM_DYNAMIC;
	else if (strcmp(s, "ondemand") == 0)
		*out = PM_ONDEMAND;
	else
		return -1;
	return 0;
}

const char *
pm_style_name(enum pm_style pm)
{
	switch (pm) {
	case PM_STATIC:
		return "static";
	case PM_DYNAMIC:
		return "dynamic";
	case PM_ONDEMAND:
		return "ondemand";
	}
	return "?";
}

/*
 * Checks the string S against directive D and, when DST is not NULL,
 * stores the value there.  Returns NULL or a message saying what is wrong.
 */
static const char *
conf_value(const struct directive *d, const char *s, void *dst, char *buf,
    size_t buflen)
{
	long		 l;
	int64_t		 ms;
	uint64_t	 sz;
	bool		 b;
	int		 lvl;
	enum pm_style	 pm;
	char		*end;
	unsigned long	 mode;

	switch (d->type) {
	case D_STR:
	case D_PATH:
		if (dst != NULL)
			*(char **)dst = *s == '\0' ? NULL : strdup(s);
		return NULL;
	case D_INT:
	case D_LONG:
		if (*s == '\0' && d->def != NULL && *d->def == '\0') {
			if (dst != NULL && d->type == D_INT)
				*(int *)dst = INT_MIN;
			return NULL;
		}
		if (parse_long(s, d->min, d->max, &l) == -1) {
			snprintf(buf, buflen, "expected an integer from %ld to "
			    "%ld, got \"%s\"", d->min, d->max, s);
			return buf;
		}
		if (dst != NULL && d->type == D_INT)
			*(int *)dst = (int)l;
		else if (dst != NULL)
			*(long *)dst = l;
		return NULL;
	case D_BOOL:
		if (conf_parse_bool(s, &b) == -1) {
			snprintf(buf, buflen, "expected yes or no, got \"%s\"",
			    s);
			return buf;
		}
		if (dst != NULL)
			*(bool *)dst = b;
		return NULL;
	case D_DURATION:
		if (parse_duration_ms(s, &ms) == -1) {
			snprintf(buf, buflen, "expected a duration (a number "
			    "of seconds, or with a suffix s, m, h, d), got "
			    "\"%s\"", s);
			return buf;
		}
		if (dst != NULL)
			*(int64_t *)dst = ms;
		return NULL;
	case D_SIZE:
		if (parse_size(s, &sz) == -1 ||
		    (d->max > 0 && (sz < (uint64_t)d->min ||
		    sz > (uint64_t)d->max))) {
			snprintf(buf, buflen, "expected a size (bytes, or with "
			    "a suffix K, M, G)%s, got \"%s\"",
			    d->max > 0 ? " from 1K to 1G" : "", s);
			return buf;
		}
		if (dst != NULL)
			*(uint64_t *)dst = sz;
		return NULL;
	case D_MODE:
		errno = 0;
		mode = strtoul(s, &end, 8);
		if (*s == '\0' || *end != '\0' || errno != 0 || mode > 0777) {
			snprintf(buf, buflen, "expected an octal mode such as "
			    "0660, got \"%s\"", s);
			return buf;
		}
		if (dst != NULL)
			*(unsigned int *)dst = (unsigned int)mode;
		return NULL;
	case D_LOGLEVEL:
		if (log_level_parse(s, &lvl) == -1) {
			snprintf(buf, buflen, "expected debug, notice, warning, "
			    "error or alert, got \"%s\"", s);
			return buf;
		}
		if (dst != NULL)
			*(int *)dst = lvl;
		return NULL;
	case D_PM:
		if (conf_parse_pm(s, &pm) == -1) {
			snprintf(buf, buflen, "expected static, dynamic or "
			    "ondemand, got \"%s\"", s);
			return buf;
		}
		if (dst != NULL)
			*(enum pm_style *)dst = pm;
		return NULL;
	case D_RLIMIT:
		if (*s == '\0')
			l = RLIMIT_UNSET;
		else if (strcmp(s, "unlimited") == 0)
			l = RLIMIT_UNLIMITED;
		else if (parse_long(s, d->min, d->max, &l) == -1) {
			snprintf(buf, buflen, "expected \"unlimited\" or an "
			    "integer from %ld, got \"%s\"", d->min, s);
			return buf;
		}
		if (dst != NULL)
			*(long *)dst = l;
		return NULL;
	case D_LIST:
	case D_KV:
		return NULL;
	}
	return "internal error: unknown directive type";
}

/* The libconfuse validate callback of every directive. */
static int
conf_validate(cfg_t *cfg, cfg_opt_t *opt)
{
	const struct directive	*d;
	const char		*msg;
	char			 buf[512];

	d = conf_directive(opt->name, strcmp(cfg->name, "pool") == 0 ?
	    POOL : GLOBAL);
	if (d == NULL)
		return 0;
	/* A list calls this once per item: check it once. */
	if (d->type == D_LIST && conf_loc(opt) != NULL)
		return 0;
	conf_loc_add(opt, cfg->filename, cfg->line);
	if (d->flags & UNSUPPORTED) {
		conf_err(cfg->filename, cfg->line, "%s: not supported yet",
		    d->name);
		return 0;
	}
	if (d->type == D_LIST || d->type == D_KV)
		return 0;
	msg = conf_value(d, cfg_opt_getnstr(opt, 0), NULL, buf, sizeof(buf));
	if (msg != NULL)
		conf_err(cfg->filename, cfg->line, "%s: %s", d->name, msg);
	/* Keep parsing: report every error, not only the first. */
	return 0;
}

/* include("glob"): every match, in order, relative to the including file. */
static int
conf_include(cfg_t *cfg, cfg_opt_t *opt, int argc, const char **argv)
{
	char		 pattern[PATH_MAX];
	const char	*slash, *from = conf_real(cfg->filename), *alias;
	glob_t		 g;
	size_t		 i;
	int		 rc;

	if (argc != 1) {
		cfg_error(cfg, "include: expected one file name or pattern");
		return 1;
	}
	if (argv[0][0] == '/' || (slash = strrchr(from, '/')) == NULL)
		snprintf(pattern, sizeof(pattern), "%s", argv[0]);
	else
		snprintf(pattern, sizeof(pattern), "%.*s/%s",
		    (int)(slash - from), from, argv[0]);
	rc = glob(pattern, GLOB_ERR, NULL, &g);
	if (rc == GLOB_NOMATCH) {
		/* An empty pool.d/ is fine; a missing single file is not. */
		if (strpbrk(argv[0], "*?[") == NULL) {
			cfg_error(cfg, "include: %s: no such file", pattern);
			return 1;
		}
		return 0;
	}
	if (rc != 0) {
		cfg_error(cfg, "include: %s: cannot read", pattern);
		return 1;
	}
	/* libconfuse stacks includes: push the last match first. */
	for (i = g.gl_pathc; i-- > 0;) {
		if ((alias = conf_open(g.gl_pathv[i])) == NULL) {
			cfg_error(cfg, "include: %s: %s", g.gl_pathv[i],
			    strerror(errno));
			globfree(&g);
			return 1;
		}
		if (cfg_lexer_include(cfg, alias) != 0) {
			globfree(&g);
			return 1;
		}
	}
	globfree(&g);
	return 0;
}

/* Builds the libconfuse option array for SCOPE (allocated). */
static cfg_opt_t *
conf_schema(enum dscope scope, cfg_opt_t *pool_opts)
{
	static cfg_opt_t	 kv_opts[] = { CFG_END() };
	cfg_opt_t		*opts, *o;
	size_t			 i, n = 0;

	opts = calloc(NDIRECTIVES + 3, sizeof(*opts));
	if (opts == NULL)
		return NULL;
	for (i = 0; i < NDIRECTIVES; i++) {
		const struct directive	*d = &conf_directives[i];

		if (d->scope != scope)
			continue;
		o = &opts[n++];
		if (d->type == D_KV) {
			cfg_opt_t sec = CFG_SEC(d->name, kv_opts,
			    CFGF_KEYSTRVAL);
			*o = sec;
		} else if (d->type == D_LIST) {
			cfg_opt_t lst = CFG_STR_LIST(d->name, NULL,
			    CFGF_NODEFAULT);
			*o = lst;
		} else {
			cfg_opt_t str = CFG_STR(d->name, NULL,
			    CFGF_NODEFAULT);
			*o = str;
		}
		o->validcb = conf_validate;
	}
	if (scope == GLOBAL) {
		cfg_opt_t inc = CFG_FUNC("include", conf_include);
		cfg_opt_t pool = CFG_SEC("pool", pool_opts,
		    CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES);

		opts[n++] = inc;
		opts[n++] = pool;
	}
	{
		cfg_opt_t end = CFG_END();

		opts[n] = end;
	}
	return opts;
}

/* The log targets that are not file names (a file so named: "./syslog"). */
static bool
conf_log_keyword(const char *s)
{
	return strcmp(s, "stderr") == 0 || strcmp(s, "stdout") == 0 ||
	    strcmp(s, "syslog") == 0 || strcmp(s, "journal") == 0;
}

/* Joins a relative PATH to PREFIX; returns an allocated string. */
static char *
conf_path(const char *prefix, const char *path)
{
	char	*out;

	if (path == NULL)
		return NULL;
	if (path[0] == '/' || prefix == NULL || conf_log_keyword(path)) {
		out = strdup(path);
	} else if (asprintf(&out, "%s/%s", prefix, path) == -1)
		out = NULL;
	return out;
}

/* Fills BASE (a fpmd_conf or pool_conf) from section SEC for SCOPE. */
static void
conf_fill(cfg_t *sec, enum dscope scope, void *base, const char *prefix)
{
	size_t	 i, j, n;
	char	 buf[512];

	for (i = 0; i < NDIRECTIVES; i++) {
		const struct directive	*d = &conf_directives[i];
		cfg_opt_t		*opt;
		const char		*s;
		void			*dst;

		if (d->scope != scope || d->offset == NOOFF)
			continue;
		dst = (char *)base + d->offset;
		opt = cfg_getopt(sec, d->name);
		if (d->type == D_KV) {
			cfg_t		*kv = cfg_getsec(sec, d->name);
			struct kv	*arr = NULL;

			n = 0;
			for (j = 0; kv != NULL && kv->opts[j].name != NULL; j++)
				n++;
			if (n > 0)
				arr = calloc(n, sizeof(*arr));
			for (j = 0; arr != NULL && j < n; j++) {
				arr[j].key = strdup(kv->opts[j].name);
				arr[j].value = strdup(cfg_opt_getnstr(
				    &kv->opts[j], 0));
			}
			*(struct kv **)dst = arr;
			*(size_t *)((char *)base + d->count_offset) =
			    arr != NULL ? n : 0;
			continue;
		}
		if (d->type == D_LIST) {
			char	**arr = NULL;

			n = opt != NULL ? cfg_opt_size(opt) : 0;
			if (n > 0)
				arr = calloc(n, sizeof(*arr));
			for (j = 0; arr != NULL && j < n; j++)
				arr[j] = strdup(cfg_opt_getnstr(opt, j));
			*(char ***)dst = arr;
			*(size_t *)((char *)base + d->count_offset) =
			    arr != NULL ? n : 0;
			continue;
		}
		s = opt != NULL && opt->nvalues > 0 ?
		    cfg_opt_getnstr(opt, 0) : d->def;
		if (s == NULL) {
			*(char **)dst = NULL;
			continue;
		}
		(void)conf_value(d, s, dst, buf, sizeof(buf));
		if (d->type == D_PATH && *(char **)dst != NULL) {
			char	*p = conf_path(prefix, *(char **)dst);

			free(*(char **)dst);
			*(char **)dst = p;
		}
	}
}

/* FILE:LINE of option NAME in SEC, or of the section itself. */
static void
conf_where(cfg_t *sec, const char *name, const char **file, int *line)
{
	const struct loc	*l = NULL;

	if (name != NULL)
		l = conf_loc(cfg_getopt(sec, name));
	if (l != NULL) {
		*file = l->file;
		*line = l->line;
	} else {
		*file = conf_real(sec->filename);
		*line = sec->line;
	}
}

#define POOL_ERR(sec, opt, ...) do {					\
	const char	*f_;						\
	int		 l_;						\
									\
	conf_where((sec), (opt), &f_, &l_);				\
	conf_err(f_, l_, __VA_ARGS__);					\
} while (0)

/* The combinations PHP-FPM refuses, with its defaults. */
static void
conf_check_pm(cfg_t *sec, struct pool_conf *pc)
{
	if (pc->pm == PM_DYNAMIC) {
		if (pc->min_spare_servers < 1)
			POOL_ERR(sec, "pm.min_spare_servers", "pool %s: "
			    "pm = dynamic needs pm.min_spare_servers >= 1",
			    pc->name);
		if (pc->max_spare_servers < 1)
			POOL_ERR(sec, "pm.max_spare_servers", "pool %s: "
			    "pm = dynamic needs pm.max_spare_servers >= 1",
			    pc->name);
		if (pc->min_spare_servers > pc->max_spare_servers)
			POOL_ERR(sec, "pm.min_spare_servers",
			    "pm.min_spare_servers (%d) must not exceed "
			    "pm.max_spare_servers (%d)", pc->min_spare_servers,
			    pc->max_spare_servers);
		if (pc->max_spare_servers > pc->max_children)
			POOL_ERR(sec, "pm.max_spare_servers",
			    "pm.max_spare_servers (%d) must not exceed "
			    "pm.max_children (%d)", pc->max_spare_servers,
			    pc->max_children);
		if (pc->start_servers != 0 &&
		    (pc->start_servers < pc->min_spare_servers ||
		    pc->start_servers > pc->max_spare_servers))
			POOL_ERR(sec, "pm.start_servers",
			    "pm.start_servers (%d) must lie between "
			    "pm.min_spare_servers (%d) and pm.max_spare_servers "
			    "(%d)", pc->start_servers, pc->min_spare_servers,
			    pc->max_spare_servers);
	} else {
		if (pc->start_servers != 0)
			POOL_ERR(sec, "pm.start_servers", "pm.start_servers "
			    "applies to pm = dynamic only");
		if (pc->min_spare_servers != 0 || pc->max_spare_servers != 0)
			POOL_ERR(sec, pc->min_spare_servers != 0 ?
			    "pm.min_spare_servers" : "pm.max_spare_servers",
			    "pm.min_spare_servers and pm.max_spare_servers "
			    "apply to pm = dynamic only");
	}
	if (pc->pm == PM_ONDEMAND && pc->process_idle_timeout_ms < 1000)
		POOL_ERR(sec, "pm.process_idle_timeout",
		    "pm.process_idle_timeout must be at least 1s");
}

/* A URI path PHP-FPM would accept: "/" then [A-Za-z0-9/_.~-]. */
static bool
conf_uri_ok(const char *s)
{
	return s[0] == '/' && s[1] != '\0' && strspn(s, "ABCDEFGHIJKLMNOPQRSTUV"
	    "WXYZabcdefghijklmnopqrstuvwxyz0123456789/_.~-") == strlen(s);
}

static void
conf_check_status(cfg_t *sec, struct pool_conf *pc, const char *prefix)
{
	char	 err[256], *spec;

	if (pc->status_path != NULL && !conf_uri_ok(pc->status_path))
		POOL_ERR(sec, "pm.status_path", "pm.status_path: \"%s\" must "
		    "start with / and use only A-Z a-z 0-9 / _ . ~ -",
		    pc->status_path);
	if (pc->ping_path != NULL && !conf_uri_ok(pc->ping_path))
		POOL_ERR(sec, "ping.path", "ping.path: \"%s\" must start "
		    "with / and use only A-Z a-z 0-9 / _ . ~ -", pc->ping_path);
	if (pc->ping_response == NULL)
		POOL_ERR(sec, "ping.response", "ping.response must not be "
		    "empty");
	if (pc->status_listen == NULL)
		return;
	spec = pc->status_listen;
	if (strchr(spec, ':') == NULL && spec[0] != '/' &&
	    strspn(spec, "0123456789") != strlen(spec))
		spec = conf_path(prefix, pc->status_listen);
	if (sock_addr_parse(spec, &pc->status_addr, err, sizeof(err)) == -1)
		POOL_ERR(sec, "pm.status_listen", "pm.status_listen: %s", err);
	else if (pc->addr.len > 0 &&
	    sock_addr_overlap(&pc->addr, &pc->status_addr))
		POOL_ERR(sec, "pm.status_listen", "pm.status_listen must differ "
		    "from listen");
	else if (!conf_held(&pc->status_addr) && sock_probe(&pc->status_addr,
	    cp.holder, err, sizeof(err)) == -1)
		POOL_ERR(sec, "pm.status_listen", "pm.status_listen: %s", err);
	if (spec != pc->status_listen) {
		free(pc->status_listen);
		pc->status_listen = spec;
	}
}

/* 0 when PATH is a directory, else -1 with the reason in ERR. */
static int
conf_dir(const char *path, char *err, size_t errlen)
{
	struct stat	 st;

	if (stat(path, &st) == -1) {
		snprintf(err, errlen, "%s: %s", path, errno == ENOENT ?
		    "no such directory" : strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s is not a directory", path);
		return -1;
	}
	return 0;
}

/*
 * What the start needs from the file system and the network, so that -t
 * finds it first: the chroot, the directory of a Unix socket, a free TCP
 * port.  (chdir is not checked: it is looked up inside the chroot, as the
 * pool's user, only when a worker starts.)
 */
static void
conf_check_paths(cfg_t *sec, struct pool_conf *pc)
{
	char	 err[PATH_MAX + 64], dir[PATH_MAX], *slash;

	if (pc->chroot != NULL && pc->chroot[0] != '/')
		POOL_ERR(sec, "chroot", "chroot: \"%s\" must be an absolute "
		    "path", pc->chroot);
	else if (pc->chroot != NULL &&
	    conf_dir(pc->chroot, err, sizeof(err)) == -1)
		POOL_ERR(sec, "chroot", "chroot: %s", err);
	if (pc->addr.family == AF_UNIX) {
		strlcpy_(dir, pc->addr.text, sizeof(dir));
		if ((slash = strrchr(dir, '/')) != NULL)
			slash[slash == dir ? 1 : 0] = '\0';
		if (conf_dir(dir, err, sizeof(err)) == -1)
			POOL_ERR(sec, "listen", "listen: the socket's "
			    "directory %s", err);
	} else if (pc->addr.len > 0 && !conf_held(&pc->addr) &&
	    sock_probe(&pc->addr, cp.holder, err, sizeof(err)) == -1)
		POOL_ERR(sec, "listen", "listen: %s", err);
}

/*
 * listen.allowed_clients: every entry must parse.  PHP-FPM logs a bad
 * entry and, when none is left, refuses every client; here either is a
 * configuration error, so that a typo never silently closes (or opens) a
 * pool.
 */
static void
conf_check_clients(cfg_t *sec, struct pool_conf *pc)
{
	const char	*name = "listen.allowed_clients";
	cfg_opt_t	*opt = cfg_getopt(sec, name);
	char		 err[256];
	size_t		 i;

	if (pc->nallowed_clients == 0) {
		/* "= {}": written, yet libconfuse validates no item. */
		if (opt != NULL && (opt->flags & CFGF_MODIFIED))
			POOL_ERR(sec, name, "%s is empty: it would refuse "
			    "every client (remove it to allow any)", name);
		return;
	}
	if (pc->addr.family == AF_UNIX)
		POOL_ERR(sec, name, "%s applies to TCP only: use listen.mode "
		    "or listen.acl_users and listen.acl_groups on a Unix "
		    "socket", name);
	if ((pc->allowed = calloc(pc->nallowed_clients,
	    sizeof(*pc->allowed))) == NULL) {
		POOL_ERR(sec, name, "%s: %s", name, strerror(errno));
		return;
	}
	for (i = 0; i < pc->nallowed_clients; i++)
		if (sock_net_parse(pc->allowed_clients[i], &pc->allowed[i], err,
		    sizeof(err)) == -1)
			POOL_ERR(sec, name, "%s: %s", name, err);
}

/*
 * listen.acl_users and listen.acl_groups: names that exist, each once (a
 * duplicate makes the whole ACL invalid), on a Unix socket.
 */
static void
conf_check_acl(cfg_t *sec, struct pool_conf *pc)
{
	struct passwd	*pw;
	struct group	*gr;
	size_t		 i, j;

	if (pc->nacl_users == 0 && pc->nacl_groups == 0)
		return;
	if (pc->addr.len > 0 && pc->addr.family != AF_UNIX)
		POOL_ERR(sec, pc->nacl_users > 0 ? "listen.acl_users" :
		    "listen.acl_groups", "listen.acl_users and "
		    "listen.acl_groups apply to Unix sockets only");
	pc->acl_uids = calloc(pc->nacl_users + 1, sizeof(*pc->acl_uids));
	pc->acl_gids = calloc(pc->nacl_groups + 1, sizeof(*pc->acl_gids));
	if (pc->acl_uids == NULL || pc->acl_gids == NULL) {
		POOL_ERR(sec, "listen.acl_users", "listen.acl_users: %s",
		    strerror(errno));
		return;
	}
	for (i = 0; i < pc->nacl_users; i++) {
		pc->acl_uids[i] = (uid_t)-1;
		if ((pw = getpwnam(pc->acl_users[i])) == NULL) {
			POOL_ERR(sec, "listen.acl_users", "listen.acl_users: "
			    "no such user \"%s\"", pc->acl_users[i]);
			continue;
		}
		pc->acl_uids[i] = pw->pw_uid;
		for (j = 0; j < i; j++)
			if (pc->acl_uids[j] == pw->pw_uid)
				POOL_ERR(sec, "listen.acl_users",
				    "listen.acl_users: \"%s\" is listed twice",
				    pc->acl_users[i]);
	}
	for (i = 0; i < pc->nacl_groups; i++) {
		pc->acl_gids[i] = (gid_t)-1;
		if ((gr = getgrnam(pc->acl_groups[i])) == NULL) {
			POOL_ERR(sec, "listen.acl_groups", "listen.acl_groups: "
			    "no such group \"%s\"", pc->acl_groups[i]);
			continue;
		}
		pc->acl_gids[i] = gr->gr_gid;
		for (j = 0; j < i; j++)
			if (pc->acl_gids[j] == gr->gr_gid)
				POOL_ERR(sec, "listen.acl_groups",
				    "listen.acl_groups: \"%s\" is listed "
				    "twice", pc->acl_groups[i]);
	}
}

/* Whether WORD is one of the comma-separated words of LIST. */
static bool
conf_word_in(const char *word, const char *list)
{
	size_t	 n = strlen(word);

	while ((list = strstr(list, word)) != NULL) {
		if (list[n] == '\0' || list[n] == ',')
			return true;
		list += n;
	}
	return false;
}

/*
 * error_log, access.log, slowlog: a path, or one of the keywords in
 * ALLOWED ("stderr, syslog, journal").  The keywords each directive does
 * not take are refused rather than taken for file names.
 */
static void
conf_check_target(cfg_t *sec, const char *name, const char *value,
    const char *allowed)
{
	if (value != NULL && conf_log_keyword(value) &&
	    !conf_word_in(value, allowed))
		POOL_ERR(sec, name, "%s: %s is not a target for it (%s or a "
		    "path)", name, value, allowed);
}

static void
conf_check_logs(cfg_t *sec, struct pool_conf *pc)
{
	char	 err[256];
	size_t	 i;

	conf_check_target(sec, "error_log", pc->error_log,
	    "stderr, syslog, journal");
	conf_check_target(sec, "access.log", pc->access_log, "stdout, stderr");
	conf_check_target(sec, "slowlog", pc->slowlog, "stdout, stderr");
	if (pc->access_format == NULL)
		POOL_ERR(sec, "access.format", "access.format must not be "
		    "empty");
	else if (access_format_check(pc->access_format, err,
	    sizeof(err)) != NULL)
		POOL_ERR(sec, "access.format", "access.format: %s", err);
	for (i = 0; i < pc->naccess_suppress_path; i++)
		if (pc->access_suppress_path[i][0] != '/')
			POOL_ERR(sec, "access.suppress_path",
			    "access.suppress_path: \"%s\" must begin with '/'",
			    pc->access_suppress_path[i]);
	/* As PHP-FPM: a timeout with nowhere to write is a mistake. */
	if (pc->request_slowlog_timeout_ms > 0 && pc->slowlog == NULL)
		POOL_ERR(sec, "request_slowlog_timeout",
		    "request_slowlog_timeout needs slowlog");
}

/*
 * A built-in checks its options here; a plugin is loaded and checks them
 * in a process that has taken the pool's identity (child.c), never here.
 */
static void
conf_check_handler(cfg_t *sec, struct pool_conf *pc)
{
	const struct fpmd_handler	*h;
	struct fpmd_pool		 hp = { .conf = pc };
	struct stat			 st;
	char				 err[1024], path[4096];

	if ((h = handler_builtin(pc->handler)) != NULL) {
		if (h->check_options != NULL && h->check_options(&handler_host,
		    &hp, err, sizeof(err)) == -1)
			POOL_ERR(sec, "handler.options", "handler.options: %s",
			    err);
		return;
	}
	if (handler_path(pc->handler, path, sizeof(path), err,
	    sizeof(err)) == -1) {
		POOL_ERR(sec, "handler", "handler: %s", err);
		return;
	}
	if (stat(path, &st) == 0) {
		pc->handler_dev = st.st_dev;
		pc->handler_ino = st.st_ino;
		pc->handler_mtime = st.st_mtim;
	}
	switch (child_check_handler(pc, path, err, sizeof(err))) {
	case CHILD_CHECK_LOAD:
		POOL_ERR(sec, "handler", "handler: %s", err);
		break;
	case CHILD_CHECK_OPTIONS:
		POOL_ERR(sec, "handler.options", "handler.options: %s", err);
		break;
	default:
		break;
	}
}

static void
conf_check_pool(cfg_t *sec, struct pool_conf *pc, const char *prefix,
    bool allow_root)
{
	struct passwd	*pw;
	struct group	*gr;
	char		 err[256];
	bool		 root = geteuid() == 0;
	int		 errors = cp.nerrors;

	if (pc->listen == NULL) {
		POOL_ERR(sec, "listen", "pool %s: listen is required", pc->name);
	} else {
		char	*spec = pc->listen;

		/* A relative socket path is relative to the prefix. */
		if (strchr(spec, ':') == NULL && spec[0] != '/' &&
		    strspn(spec, "0123456789") != strlen(spec))
			spec = conf_path(prefix, pc->listen);
		if (sock_addr_parse(spec, &pc->addr, err, sizeof(err)) == -1)
			POOL_ERR(sec, "listen", "listen: %s", err);
		if (spec != pc->listen) {
			free(pc->listen);
			pc->listen = spec;
		}
	}

	pc->uid = (uid_t)-1;
	pc->gid = (gid_t)-1;
	if (pc->user != NULL) {
		if ((pw = getpwnam(pc->user)) == NULL) {
			POOL_ERR(sec, "user", "user: no such user \"%s\"",
			    pc->user);
		} else {
			pc->uid = pw->pw_uid;
			pc->gid = pw->pw_gid;
		}
	}
	if (pc->group != NULL) {
		if ((gr = getgrnam(pc->group)) == NULL)
			POOL_ERR(sec, "group", "group: no such group \"%s\"",
			    pc->group);
		else
			pc->gid = gr->gr_gid;
	}
	if (root && pc->user == NULL)
		POOL_ERR(sec, NULL, "pool %s: user is required when fpmd runs "
		    "as root", pc->name);
	if (root && pc->uid == 0 && !allow_root)
		POOL_ERR(sec, "user", "pool %s: running workers as root is "
		    "refused; start fpmd with -R to allow it", pc->name);

	pc->listen_uid = pc->uid;
	pc->listen_gid = pc->gid;
	if (pc->listen_owner != NULL) {
		if ((pw = getpwnam(pc->listen_owner)) == NULL)
			POOL_ERR(sec, "listen.owner", "listen.owner: no such "
			    "user \"%s\"", pc->listen_owner);
		else
			pc->listen_uid = pw->pw_uid;
	}
	if (pc->listen_group != NULL) {
		if ((gr = getgrnam(pc->listen_group)) == NULL)
			POOL_ERR(sec, "listen.group", "listen.group: no such "
			    "group \"%s\"", pc->listen_group);
		else
			pc->listen_gid = gr->gr_gid;
	}

	if (pc->max_requests_jitter > 0 && pc->max_requests == 0)
		POOL_ERR(sec, "pm.max_requests_jitter",
		    "pm.max_requests_jitter needs pm.max_requests");
	conf_check_paths(sec, pc);
	conf_check_clients(sec, pc);
	conf_check_acl(sec, pc);
	conf_check_pm(sec, pc);
	conf_check_status(sec, pc, prefix);
	conf_check_logs(sec, pc);
	/* A plugin is tried as the pool's user: not with a wrong user. */
	if (cp.nerrors == errors)
		conf_check_handler(sec, pc);
}

/*
 * Two pools, or a pool and a status listener, on one address, or on one
 * port where either address is the wildcard: only one could bind.
 */
static void
conf_check_clash(cfg_t *sec, const struct pool_conf *a,
    const struct pool_conf *b)
{
	const struct sock_addr	*aa[2], *ba[2];
	const char		*what;
	size_t			 i, j;

	aa[0] = a->listen != NULL ? &a->addr : NULL;
	aa[1] = a->status_listen != NULL ? &a->status_addr : NULL;
	ba[0] = b->listen != NULL ? &b->addr : NULL;
	ba[1] = b->status_listen != NULL ? &b->status_addr : NULL;
	for (i = 0; i < 2; i++)
		for (j = 0; j < 2; j++) {
			if (aa[i] == NULL || ba[j] == NULL ||
			    aa[i]->len == 0 || ba[j]->len == 0 ||
			    !sock_addr_overlap(aa[i], ba[j]))
				continue;
			what = j == 0 ? "listen" : "pm.status_listen";
			if (sock_addr_equal(aa[i], ba[j]))
				POOL_ERR(sec, what, "%s: pool %s and pool %s "
				    "both listen on %s", what, a->name,
				    b->name, ba[j]->text);
			else
				POOL_ERR(sec, what, "%s: pool %s on %s and "
				    "pool %s on %s share a port", what,
				    a->name, aa[i]->text, b->name,
				    ba[j]->text);
		}
}

/*
 * The pid in PATH, the pid file of a master that may be running with this
 * configuration, whose sockets -t must not take for a conflict; or 0.
 */
static pid_t
conf_running_master(const char *path)
{
	FILE	*fp;
	long	 pid = 0;

	if (path == NULL || (fp = fopen(path, "re")) == NULL)
		return 0;
	if (fscanf(fp, "%ld", &pid) != 1 || pid <= 1 || pid > INT_MAX)
		pid = 0;
	fclose(fp);
	return (pid_t)pid;
}

/*
 * A pool's prefix, as PHP-FPM's: the pool's relative paths (its logs, a
 * Unix socket) resolve against it instead of the global prefix, against
 * which a relative one resolves.  NULL when unset, or when it is no
 * directory (an error: the global prefix serves meanwhile).
 */
static char *
conf_pool_prefix(cfg_t *sec, const char *prefix)
{
	const char	*v = cfg_getstr(sec, "prefix");
	struct stat	 st;
	char		*p;

	if (v == NULL || *v == '\0' || (p = conf_path(prefix, v)) == NULL)
		return NULL;
	if (stat(p, &st) == -1 || !S_ISDIR(st.st_mode)) {
		POOL_ERR(sec, "prefix", "prefix: %s is not a directory", p);
		free(p);
		return NULL;
	}
	return p;
}

static struct fpmd_conf *
conf_build(cfg_t *cfg, const char *file, const char *prefix, bool allow_root)
{
	struct fpmd_conf	*c;
	size_t			 i, j;
	int			 facility;
	char			*ppfx;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->file = strdup(file);
	c->prefix = strdup(prefix);
	conf_fill(cfg, GLOBAL, c, prefix);
	cp.holder = conf_running_master(c->pid_file);
	if (c->error_log == NULL)
		c->error_log = strdup("stderr");
	conf_check_target(cfg, "error_log", c->error_log,
	    "stderr, syslog, journal");
	if (c->syslog_facility == NULL ||
	    log_facility_parse(c->syslog_facility, &facility) == -1)
		POOL_ERR(cfg, "syslog.facility", "syslog.facility: expected "
		    "a facility such as daemon, user or local0 to local7, got "
		    "\"%s\"", c->syslog_facility ? c->syslog_facility : "");

	c->npools = cfg_size(cfg, "pool");
	if (c->npools == 0)
		conf_err(file, 1, "no pool is defined");
	c->pools = calloc(c->npools ? c->npools : 1, sizeof(*c->pools));
	if (c->pools == NULL) {
		conf_free(c);
		return NULL;
	}
	for (i = 0; i < c->npools; i++) {
		cfg_t			*sec = cfg_getnsec(cfg, "pool", i);
		struct pool_conf	*pc = &c->pools[i];

		pc->name = strdup(cfg_title(sec));
		pc->file = strdup(conf_real(sec->filename));
		pc->line = sec->line;
		ppfx = conf_pool_prefix(sec, prefix);
		conf_fill(sec, POOL, pc, ppfx != NULL ? ppfx : prefix);
		conf_check_pool(sec, pc, ppfx != NULL ? ppfx : prefix,
		    allow_root);
		free(ppfx);
		for (j = 0; j < i; j++)
			conf_check_clash(sec, &c->pools[j], pc);
	}
	return c;
}

struct fpmd_conf *
conf_load(const char *file, const char *prefix, bool allow_root, FILE *errs)
{
	cfg_opt_t		*pool_opts = NULL, *opts = NULL;
	cfg_t			*cfg = NULL;
	struct fpmd_conf	*c = NULL;
	char			*dir = NULL, *slash;
	const char		*alias;
	size_t			 i;

	memset(&cp, 0, sizeof(cp));
	cp.errs = errs;
	cp.file = file;

	if (access(file, R_OK) == -1) {
		conf_err(file, 0, "cannot read the configuration: %s",
		    strerror(errno));
		goto done;
	}
	if (prefix == NULL) {
		if ((dir = realpath(file, NULL)) == NULL)
			goto done;
		slash = strrchr(dir, '/');
		if (slash == dir)
			slash[1] = '\0';
		else
			*slash = '\0';
		prefix = dir;
	}
	if ((pool_opts = conf_schema(POOL, NULL)) == NULL ||
	    (opts = conf_schema(GLOBAL, pool_opts)) == NULL)
		goto done;
	cfg = cfg_init(opts, CFGF_NONE);
	cfg_set_error_function(cfg, conf_cfg_error);
	if ((alias = conf_open(file)) == NULL) {
		conf_err(file, 0, "cannot read the configuration: %s",
		    strerror(errno));
		goto done;
	}
	if (cfg_parse(cfg, alias) != CFG_SUCCESS && cp.nerrors == 0)
		conf_err(file, 0, "cannot parse the configuration");
	if (cp.nerrors > 0)
		goto done;
	c = conf_build(cfg, file, prefix, allow_root);
	if (c != NULL && cp.nerrors > 0) {
		conf_free(c);
		c = NULL;
	}
done:
	if (cfg != NULL)
		cfg_free(cfg);
	free(opts);
	free(pool_opts);
	for (i = 0; i < cp.nlocs; i++)
		free(cp.locs[i].file);
	free(cp.locs);
	for (i = 0; i < cp.nsrcs; i++) {
		close(cp.srcs[i].fd);
		free(cp.srcs[i].real);
	}
	free(cp.srcs);
	free(dir);
	memset(&cp, 0, sizeof(cp));
	return c;
}

static void
conf_free_kv(struct kv *kv, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++) {
		free(kv[i].key);
		free(kv[i].value);
	}
	free(kv);
}

static void
conf_free_list(char **list, size_t n)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

void
conf_free(struct fpmd_conf *c)
{
	size_t	 i, j;

	if (c == NULL)
		return;
	for (i = 0; i < c->npools; i++) {
		struct pool_conf	*pc = &c->pools[i];

		free(pc->name);
		free(pc->file);
		for (j = 0; j < NDIRECTIVES; j++) {
			const struct directive	*d = &conf_directives[j];

			if (d->scope != POOL || d->offset == NOOFF)
				continue;
			if (d->type == D_STR || d->type == D_PATH)
				free(*(char **)((char *)pc + d->offset));
			if (d->type == D_LIST)
				conf_free_list(*(char ***)((char *)pc +
				    d->offset), *(size_t *)((char *)pc +
				    d->count_offset));
		}
		conf_free_kv(pc->env, pc->nenv);
		conf_free_kv(pc->handler_options, pc->nhandler_options);
		free(pc->allowed);
		free(pc->acl_uids);
		free(pc->acl_gids);
	}
	for (j = 0; j < NDIRECTIVES; j++) {
		const struct directive	*d = &conf_directives[j];

		if (d->scope == GLOBAL && d->offset != NOOFF &&
		    (d->type == D_STR || d->type == D_PATH))
			free(*(char **)((char *)c + d->offset));
	}
	free(c->pools);
	free(c->file);
	free(c->prefix);
	free(c);
}

static bool
conf_str_equal(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static bool
conf_kv_equal(const struct kv *a, size_t na, const struct kv *b, size_t nb)
{
	size_t	 i;

	if (na != nb)
		return false;
	for (i = 0; i < na; i++)
		if (strcmp(a[i].key, b[i].key) != 0 ||
		    strcmp(a[i].value, b[i].value) != 0)
			return false;
	return true;
}

static bool
conf_list_equal(char *const *a, size_t na, char *const *b, size_t nb)
{
	size_t	 i;

	if (na != nb)
		return false;
	for (i = 0; i < na; i++)
		if (strcmp(a[i], b[i]) != 0)
			return false;
	return true;
}

bool
conf_pool_equal(const struct pool_conf *a, const struct pool_conf *b)
{
	size_t	 i;

	if (strcmp(a->name, b->name) != 0)
		return false;
	for (i = 0; i < NDIRECTIVES; i++) {
		const struct directive	*d = &conf_directives[i];
		const char		*pa, *pb;

		if (d->scope != POOL || d->offset == NOOFF)
			continue;
		pa = (const char *)a + d->offset;
		pb = (const char *)b + d->offset;
		switch (d->type) {
		case D_STR:
		case D_PATH:
			if (!conf_str_equal(*(char *const *)pa,
			    *(char *const *)pb))
				return false;
			break;
		case D_KV:
			if (!conf_kv_equal(*(struct kv *const *)pa,
			    *(const size_t *)((const char *)a + d->count_offset),
			    *(struct kv *const *)pb,
			    *(const size_t *)((const char *)b + d->count_offset)))
				return false;
			break;
		case D_INT:
		case D_LOGLEVEL:
		case D_PM:
			if (*(const int *)pa != *(const int *)pb)
				return false;
			break;
		case D_LONG:
		case D_RLIMIT:
			if (*(const long *)pa != *(const long *)pb)
				return false;
			break;
		case D_BOOL:
			if (*(const bool *)pa != *(const bool *)pb)
				return false;
			break;
		case D_DURATION:
			if (*(const int64_t *)pa != *(const int64_t *)pb)
				return false;
			break;
		case D_SIZE:
			if (*(const uint64_t *)pa != *(const uint64_t *)pb)
				return false;
			break;
		case D_MODE:
			if (*(const unsigned int *)pa != *(const unsigned int *)pb)
				return false;
			break;
		case D_LIST:
			if (!conf_list_equal(*(char **const *)pa,
			    *(const size_t *)((const char *)a +
			    d->count_offset), *(char **const *)pb,
			    *(const size_t *)((const char *)b +
			    d->count_offset)))
				return false;
			break;
		}
	}
	/* Users and groups are names: a changed uid behind one counts. */
	if (a->uid != b->uid || a->gid != b->gid ||
	    a->listen_uid != b->listen_uid || a->listen_gid != b->listen_gid)
		return false;
	/* So does a plugin rebuilt or replaced under the same name. */
	return a->handler_dev == b->handler_dev &&
	    a->handler_ino == b->handler_ino &&
	    a->handler_mtime.tv_sec == b->handler_mtime.tv_sec &&
	    a->handler_mtime.tv_nsec == b->handler_mtime.tv_nsec;
}

static void
conf_print_ms(FILE *fp, int64_t ms)
{
	if (ms % 1000 == 0)
		fprintf(fp, "%llds", (long long)(ms / 1000));
	else
		fprintf(fp, "%lldms", (long long)ms);
}

/* A string the way libconfuse reads it back: quoted, \ and " escaped. */
static void
conf_print_str(FILE *fp, const char *s)
{
	fputc('"', fp);
	for (; s != NULL && *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', fp);
		fputc(*s, fp);
	}
	fputc('"', fp);
}

/* Prints the directives of SCOPE from BASE with INDENT. */
static void
conf_print_scope(FILE *fp, enum dscope scope, const void *base,
    const char *indent)
{
	size_t	 i, j;

	for (i = 0; i < NDIRECTIVES; i++) {
		const struct directive	*d = &conf_directives[i];
		const void		*src;

		if (d->scope != scope || d->offset == NOOFF)
			continue;
		src = (const char *)base + d->offset;
		if (d->type == D_KV) {
			const struct kv	*kv = *(struct kv *const *)src;
			size_t		 n = *(const size_t *)((const char *)
			    base + d->count_offset);

			fprintf(fp, "%s%s {", indent, d->name);
			for (j = 0; j < n; j++)
				fprintf(fp, " %s = \"%s\"", kv[j].key,
				    kv[j].value);
			fprintf(fp, "%s}\n", n > 0 ? " " : "");
			continue;
		}
		if (d->type == D_LIST) {
			char *const	*list = *(char **const *)src;
			size_t		 n = *(const size_t *)((const char *)
			    base + d->count_offset);

			if (n == 0) {
				fprintf(fp, "%s# %s: not set\n", indent,
				    d->name);
				continue;
			}
			fprintf(fp, "%s%s = {", indent, d->name);
			for (j = 0; j < n; j++)
				fprintf(fp, "%s\"%s\"", j == 0 ? "" : ", ",
				    list[j]);
			fprintf(fp, "}\n");
			continue;
		}
		fprintf(fp, "%s%s = ", indent, d->name);
		switch (d->type) {
		case D_STR:
		case D_PATH:
			conf_print_str(fp, *(char *const *)src);
			break;
		case D_INT:
			if (*(const int *)src == INT_MIN)
				fprintf(fp, "\"\"");
			else
				fprintf(fp, "%d", *(const int *)src);
			break;
		case D_LONG:
			fprintf(fp, "%ld", *(const long *)src);
			break;
		case D_BOOL:
			fprintf(fp, "%s", *(const bool *)src ? "yes" : "no");
			break;
		case D_DURATION:
			conf_print_ms(fp, *(const int64_t *)src);
			break;
		case D_SIZE:
			fprintf(fp, "%llu",
			    (unsigned long long)*(const uint64_t *)src);
			break;
		case D_MODE:
			fprintf(fp, "0%o", *(const unsigned int *)src);
			break;
		case D_LOGLEVEL:
			fprintf(fp, "%s", log_level_name(*(const int *)src));
			break;
		case D_PM:
			fprintf(fp, "%s", pm_style_name(
			    *(const enum pm_style *)src));
			break;
		case D_RLIMIT:
			if (*(const long *)src == RLIMIT_UNSET)
				fprintf(fp, "\"\"");
			else if (*(const long *)src == RLIMIT_UNLIMITED)
				fprintf(fp, "unlimited");
			else
				fprintf(fp, "%ld", *(const long *)src);
			break;
		case D_LIST:
		case D_KV:
			break;
		}
		fputc('\n', fp);
	}
}

void
conf_print(const struct fpmd_conf *c, FILE *fp)
{
	size_t	 i;

	fprintf(fp, "# %s (prefix %s)\n", c->file, c->prefix);
	conf_print_scope(fp, GLOBAL, c, "");
	for (i = 0; i < c->npools; i++) {
		fprintf(fp, "\npool %s {\n", c->pools[i].name);
		conf_print_scope(fp, POOL, &c->pools[i], "    ");
		fprintf(fp, "}\n");
	}
}
