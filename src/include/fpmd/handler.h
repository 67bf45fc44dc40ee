/*
 * <fpmd/handler.h> -- the ABI between fpmd and a request handler.
 *
 * A handler is a C plugin (a shared object that exports one symbol,
 * FPMD_HANDLER_SYMBOL, of type struct fpmd_handler) or one of fpmd's
 * built-ins.  The plugin never links against the daemon: everything it
 * may ask of fpmd arrives through the struct fpmd_host function table.
 *
 * Versioning: abi_version must equal FPMD_HANDLER_ABI.  Fields are only
 * ever appended to either struct: a plugin built against an older header
 * sets a smaller struct_size, and fpmd treats the hooks it does not have as
 * NULL; a plugin checks host->struct_size before calling a host function
 * added after the first release (see FPMD_HOST_HAS).  FPMD_HANDLER_ABI
 * changes only when a field's meaning or a hook's signature changes.  A
 * mismatch is refused at configuration test, in plain words, and the pool
 * does not start.
 *
 * See fpmd-handler(3) for every function's contract.
 */
#ifndef FPMD_HANDLER_H
#define FPMD_HANDLER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FPMD_HANDLER_ABI	1
#define FPMD_HANDLER_SYMBOL	"fpmd_handler"

/* The FastCGI roles (FastCGI 1.0, section 6). */
enum fpmd_role {
	FPMD_ROLE_RESPONDER = 1,
	FPMD_ROLE_AUTHORIZER = 2,
	FPMD_ROLE_FILTER = 3
};

enum fpmd_log_level {
	FPMD_LOG_ERROR = 3,
	FPMD_LOG_WARNING = 4,
	FPMD_LOG_NOTICE = 5,
	FPMD_LOG_DEBUG = 7
};

struct fpmd_request;		/* opaque: one FastCGI request */
struct fpmd_pool;		/* opaque: the pool the handler serves */

/*
 * What fpmd offers a handler.  Every function is safe to call only from the
 * thread that runs the hook it was handed to.
 */
struct fpmd_host {
	size_t		 struct_size;

	/* The value of the request parameter NAME, NUL-terminated, or NULL. */
	const char	*(*param)(struct fpmd_request *, const char *name);
	/*
	 * The Nth parameter (0-based) in the order the client sent them;
	 * returns 0 and sets *name and *value, or -1 past the last one.
	 */
	int		 (*param_at)(struct fpmd_request *, size_t n,
			    const char **name, const char **value);
	enum fpmd_role	 (*role)(struct fpmd_request *);
	/*
	 * Reads up to LEN bytes of FCGI_STDIN into BUF, blocking until some
	 * arrive.  Returns the count, 0 at the end of the stream, -1 when the
	 * request was aborted or the client failed (stop and return).
	 */
	ssize_t		 (*read_stdin)(struct fpmd_request *, void *buf, size_t len);
	/* As read_stdin, for the FILTER role's FCGI_DATA stream. */
	ssize_t		 (*read_data)(struct fpmd_request *, void *buf, size_t len);
	/*
	 * Appends LEN bytes to FCGI_STDOUT (CGI headers first, then the body)
	 * or to FCGI_STDERR.  Output is buffered; returns 0, or -1 when the
	 * client is gone (stop and return).
	 */
	int		 (*write_stdout)(struct fpmd_request *, const void *, size_t);
	int		 (*write_stderr)(struct fpmd_request *, const void *, size_t);
	/* Sends what is buffered now.  Returns 0 or -1 as the writes do. */
	int		 (*flush)(struct fpmd_request *);
	/* Non-zero once the client aborted the request or went away. */
	int		 (*aborted)(struct fpmd_request *);
	/* Logs one line to the error log, prefixed with the pool and pid. */
	void		 (*log)(enum fpmd_log_level, const char *fmt, ...)
			    __attribute__((format(printf, 2, 3)));
	/* The value of handler.options key NAME for this pool, or NULL. */
	const char	*(*option)(struct fpmd_pool *, const char *name);
	/* The pool's name. */
	const char	*(*pool_name)(struct fpmd_pool *);
	/* The handler's per-pool state, as pool_init left it. */
	void		*(*pool_data)(struct fpmd_pool *);
	/*
	 * As read_stdin, but never waits: returns -2 when nothing can be
	 * read now; poll conn_fd() for POLLIN, then call it again.  For
	 * handlers that stream stdin to a program while reading its output.
	 */
	ssize_t		 (*read_stdin_nowait)(struct fpmd_request *, void *buf,
			    size_t len);
	/* The client connection's fd: only ever poll it, never read it. */
	int		 (*conn_fd)(struct fpmd_request *);

	/* Appended after ABI 1's first release: see FPMD_HOST_HAS. */

	/*
	 * The Nth entry (0-based) of the pool's handler.options, in the order
	 * of the configuration; returns 0 and sets *name and *value, or -1
	 * past the last one.  For check_options to refuse unknown names.
	 */
	int		 (*option_at)(struct fpmd_pool *, size_t n,
			    const char **name, const char **value);
	/*
	 * fastcgi.read_timeout in milliseconds (0: none): how long the
	 * client may leave a request's input stalled.  A handler that polls
	 * conn_fd() itself enforces it as read_stdin() does.
	 */
	long		 (*read_timeout_ms)(struct fpmd_request *);
	/*
	 * Ends the response as broken: what is buffered is sent, then the
	 * connection is closed without FCGI_END_REQUEST, so that the web
	 * server knows the response is truncated rather than pass it on as
	 * complete (nginx, with fastcgi_keep_conn on, logs "upstream
	 * prematurely closed connection" and cuts the client's response
	 * short).  The handler then returns; every later read and write
	 * fails.
	 */
	void		 (*abort_response)(struct fpmd_request *);
	/*
	 * Records PGID as the process group of the program the request runs
	 * now (0: none any more), so that a worker that dies mid-request
	 * (killed, request_terminate_timeout, a crash) takes the whole group
	 * along, not just the program.  Record it before the program can
	 * fork, clear it before reaping the group's leader.  It only writes
	 * shared memory: call it in a vfork() child before exec, or in the
	 * parent of a fork()ed child that waits until it is recorded, never
	 * in a fork()ed child.  See fpmd-handler(3) for the recipes.
	 */
	void		 (*program_group)(struct fpmd_request *, pid_t pgid);
};

/*
 * Whether HOST has the function FIELD: a plugin built against this header
 * may run under an older fpmd, whose table is shorter.
 */
#define FPMD_HOST_HAS(host, field)					\
	((host)->struct_size >= offsetof(struct fpmd_host, field) +	\
	    sizeof((host)->field) && (host)->field != NULL)

/*
 * The struct a plugin exports as FPMD_HANDLER_SYMBOL.  Every hook but
 * handle may be NULL.  Hooks return 0 on success; on -1 they should have
 * logged why through host->log.
 */
struct fpmd_handler {
	uint32_t	 abi_version;	/* FPMD_HANDLER_ABI */
	uint32_t	 struct_size;	/* sizeof(struct fpmd_handler) */
	const char	*name;

	/*
	 * Checks handler.options.  Called at configuration test, at start and
	 * at every reload, in a short-lived process that has already taken
	 * the pool's identity and confinement (no plugin code ever runs as
	 * root): it must not keep state.  On error, write one line naming
	 * the option into ERR (at most ERRLEN bytes) and return -1.
	 */
	int	(*check_options)(const struct fpmd_host *, struct fpmd_pool *,
		    char *err, size_t errlen);
	/*
	 * Once per worker, after the privilege drop; may set *worker_data.
	 */
	int	(*worker_init)(const struct fpmd_host *, struct fpmd_pool *,
		    void **worker_data);
	/*
	 * One request.  Return 0 when a response was written (whatever its
	 * status); -1 when none could be, in which case fpmd answers 500 if
	 * no output was sent yet.
	 */
	int	(*handle)(const struct fpmd_host *, struct fpmd_request *,
		    void *worker_data);
	/* Once per worker, before a clean exit. */
	void	(*worker_fini)(const struct fpmd_host *, void *worker_data);

	/* Appended after ABI 1's first release: a smaller struct_size is
	 * a plugin without them. */

	/*
	 * Once per pool (per generation: a reload that changes the pool runs
	 * it again), in the pool's template process, after the privilege
	 * drop and before any worker exists; may set *pool_data, which every
	 * worker then reads through host->pool_data().  Workers are forked
	 * from the template, so what pool_init builds (a parsed template
	 * cache, a loaded model, a preloaded interpreter) is shared by all of
	 * them copy-on-write.  It must leave no threads running: a worker is
	 * a fork of this one thread.  -1 fails the pool's start.
	 */
	int	(*pool_init)(const struct fpmd_host *, struct fpmd_pool *,
		    void **pool_data);
	/* In the template, when the pool (or its generation) ends. */
	void	(*pool_fini)(const struct fpmd_host *, struct fpmd_pool *,
		    void *pool_data);
};

#ifdef __cplusplus
}
#endif

#endif /* FPMD_HANDLER_H */
