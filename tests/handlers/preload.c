/*
 * preload.c -- a test handler plugin for shared start-up: pool_init
 * builds a table once, in the pool's template, and every worker reads it.
 * Built against <fpmd/handler.h> alone, like any out-of-tree plugin.
 *
 * handler.options, each optional:
 *   table_mb = N        build a table of N MiB (default 0: none)
 *   table_in = pool     build it in pool_init (default), shared by every
 *            | worker   worker; or in each worker's worker_init
 *   init_ms = N         sleep N ms in pool_init (a slow start-up)
 *   fail = pool_init    make pool_init fail
 *   fini_file = PATH    pool_fini appends "fini PID\n" to PATH
 *   allow_root = yes    the pool runs as root on purpose
 *   forge_pid = PID     pool_init, gone rogue, tells the master over every
 *                       seqpacket socket it has that the worker of slot 0
 *                       is PID: the master must not believe it
 * Any other option is refused by check_options, by name.
 *
 * Every hook, and the constructor, abort()s if it runs with uid or euid
 * 0 while the pool has another user: the test of "no plugin code runs as
 * root".  The body (text/plain) has "NAME: VALUE" lines: ctor_uid,
 * init_uid, init_pid (of pool_init; -1 without), worker_pid, table_sum.
 */
#include <sys/socket.h>
#include <sys/types.h>

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <fpmd/handler.h>

struct preload {
	unsigned char	*table;
	size_t		 len;
	long		 init_uid;
	long		 init_pid;
};

static long	 ctor_uid = -1;
static bool	 ctor_root;

/* Root only when asked for (user = root, with -R): abort() otherwise. */
static void
preload_not_root(const struct fpmd_host *host, struct fpmd_pool *pool)
{
	if ((ctor_root || getuid() == 0 || geteuid() == 0) &&
	    host->option(pool, "allow_root") == NULL)
		abort();
}

__attribute__((constructor)) static void
preload_ctor(void)
{
	ctor_uid = (long)geteuid();
	ctor_root = getuid() == 0 || geteuid() == 0;
}

static int
preload_table(const struct fpmd_host *host, struct fpmd_pool *pool,
    struct preload *pl)
{
	const char	*mb = host->option(pool, "table_mb");
	size_t		 i;

	if (mb == NULL || atol(mb) <= 0)
		return 0;
	pl->len = (size_t)atol(mb) << 20;
	if ((pl->table = malloc(pl->len)) == NULL) {
		host->log(FPMD_LOG_ERROR, "preload: out of memory");
		return -1;
	}
	/* Written, so that the pages are real and, once forked, shared. */
	for (i = 0; i < pl->len; i++)
		pl->table[i] = (unsigned char)(i * 31 + 7);
	return 0;
}

static const char *const preload_known[] = {
	"table_mb", "table_in", "init_ms", "fail", "fini_file", "allow_root",
	"forge_pid", NULL
};

/* What a template answers the master (child.c): slot, then pid. */
static void
preload_forge(pid_t pid)
{
	int32_t		 msg[2] = { 0, (int32_t)pid };
	int		 fd, type;
	socklen_t	 len;

	for (fd = 3; fd < 1024; fd++) {
		len = sizeof(type);
		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
		    type == SOCK_SEQPACKET)
			(void)send(fd, msg, sizeof(msg),
			    MSG_DONTWAIT | MSG_NOSIGNAL);
	}
}

static int
preload_check(const struct fpmd_host *host, struct fpmd_pool *pool,
    char *err, size_t errlen)
{
	const char	*name, *value;
	size_t		 n, i;

	preload_not_root(host, pool);
	if (!FPMD_HOST_HAS(host, option_at))
		return 0;
	for (n = 0; host->option_at(pool, n, &name, &value) == 0; n++) {
		for (i = 0; preload_known[i] != NULL; i++)
			if (strcmp(preload_known[i], name) == 0)
				break;
		if (preload_known[i] == NULL) {
			snprintf(err, errlen, "unknown option \"%s\"", name);
			return -1;
		}
	}
	value = host->option(pool, "table_in");
	if (value != NULL && strcmp(value, "pool") != 0 &&
	    strcmp(value, "worker") != 0) {
		snprintf(err, errlen, "table_in: \"%s\": expected pool or "
		    "worker", value);
		return -1;
	}
	return 0;
}

static bool
preload_in_pool(const struct fpmd_host *host, struct fpmd_pool *pool)
{
	const char	*in = host->option(pool, "table_in");

	return in == NULL || strcmp(in, "pool") == 0;
}

static int
preload_pool_init(const struct fpmd_host *host, struct fpmd_pool *pool,
    void **data)
{
	struct preload	*pl;
	const char	*ms = host->option(pool, "init_ms"), *fail, *forge;
	struct timespec	 ts;

	preload_not_root(host, pool);
	if ((forge = host->option(pool, "forge_pid")) != NULL)
		preload_forge((pid_t)atol(forge));
	if ((fail = host->option(pool, "fail")) != NULL &&
	    strcmp(fail, "pool_init") == 0) {
		host->log(FPMD_LOG_ERROR, "preload: failing pool_init, as "
		    "asked");
		return -1;
	}
	if (ms != NULL) {
		ts.tv_sec = atol(ms) / 1000;
		ts.tv_nsec = atol(ms) % 1000 * 1000000;
		nanosleep(&ts, NULL);
	}
	if ((pl = calloc(1, sizeof(*pl))) == NULL)
		return -1;
	pl->init_uid = (long)geteuid();
	pl->init_pid = (long)getpid();
	if (preload_in_pool(host, pool) && preload_table(host, pool, pl) == -1)
		return -1;
	*data = pl;
	return 0;
}

static void
preload_pool_fini(const struct fpmd_host *host, struct fpmd_pool *pool,
    void *data)
{
	const char	*path = host->option(pool, "fini_file");
	char		 line[64];
	int		 fd, n;

	preload_not_root(host, pool);
	free(data);
	if (path == NULL ||
	    (fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644)) == -1)
		return;
	n = snprintf(line, sizeof(line), "fini %ld\n", (long)getpid());
	(void)write(fd, line, (size_t)n);
	close(fd);
}

static int
preload_worker_init(const struct fpmd_host *host, struct fpmd_pool *pool,
    void **data)
{
	struct preload	*pl;

	preload_not_root(host, pool);
	if (preload_in_pool(host, pool)) {
		*data = host->pool_data(pool);
		return *data == NULL ? -1 : 0;
	}
	if ((pl = calloc(1, sizeof(*pl))) == NULL)
		return -1;
	pl->init_uid = pl->init_pid = -1;
	*data = pl;
	return preload_table(host, pool, pl);
}

static int
preload_handle(const struct fpmd_host *host, struct fpmd_request *req,
    void *data)
{
	const struct preload	*pl = data;
	unsigned long		 sum = 0;
	char			 body[512], buf[4096];
	size_t			 i;
	int			 n;

	while (host->read_stdin(req, buf, sizeof(buf)) > 0)
		;
	/* Read every page: sharing must survive use. */
	for (i = 0; i < pl->len; i += 4096)
		sum += pl->table[i];
	n = snprintf(body, sizeof(body), "Status: 200 OK\r\n"
	    "Content-Type: text/plain\r\n\r\n"
	    "ctor_uid: %ld\ninit_uid: %ld\ninit_pid: %ld\nworker_pid: %ld\n"
	    "table_sum: %lu\n", ctor_uid, pl->init_uid, pl->init_pid,
	    (long)getpid(), sum);
	return host->write_stdout(req, body, (size_t)n);
}

static void
preload_worker_fini(const struct fpmd_host *host, void *data)
{
	(void)host;
	(void)data;
}

const struct fpmd_handler fpmd_handler = {
	.abi_version = FPMD_HANDLER_ABI,
	.struct_size = sizeof(struct fpmd_handler),
	.name = "preload",
	.check_options = preload_check,
	.worker_init = preload_worker_init,
	.handle = preload_handle,
	.worker_fini = preload_worker_fini,
	.pool_init = preload_pool_init,
	.pool_fini = preload_pool_fini,
};
