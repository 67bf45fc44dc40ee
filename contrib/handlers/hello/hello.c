/*
 * hello.c -- an fpmd handler plugin, built out of tree against the
 * installed <fpmd/handler.h>: the smallest useful example.
 *
 * It greets the name given in the query string (?name=...), counts the
 * requests its worker served, and reads a greeting from handler.options:
 *
 *	handler = hello
 *	handler.options { greeting = "Hello" }
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fpmd/handler.h>

struct hello {
	const char	*greeting;
	unsigned long	 served;
};

/*
 * Checked at `fpmd -t`, at start and at each reload.  "greeting" is the
 * only option: any other name is most likely a typo, which the user
 * wants to hear of now rather than wonder why it has no effect.
 * option_at() came after the ABI's first release: under an older fpmd,
 * which lacks it, unknown names pass unnoticed.
 */
static int
hello_check_options(const struct fpmd_host *host, struct fpmd_pool *pool,
    char *err, size_t errlen)
{
	const char	*g = host->option(pool, "greeting");
	const char	*name, *value;
	size_t		 i;

	for (i = 0; FPMD_HOST_HAS(host, option_at) &&
	    host->option_at(pool, i, &name, &value) == 0; i++) {
		if (strcmp(name, "greeting") != 0) {
			snprintf(err, errlen, "%s: not an option of the hello "
			    "handler (greeting)", name);
			return -1;
		}
	}
	if (g != NULL && strlen(g) > 64) {
		snprintf(err, errlen, "greeting: at most 64 bytes");
		return -1;
	}
	return 0;
}

static int
hello_worker_init(const struct fpmd_host *host, struct fpmd_pool *pool,
    void **data)
{
	struct hello	*h;

	if ((h = calloc(1, sizeof(*h))) == NULL)
		return -1;
	h->greeting = host->option(pool, "greeting");
	if (h->greeting == NULL)
		h->greeting = "Hello";
	*data = h;
	return 0;
}

static int
hello_handle(const struct fpmd_host *host, struct fpmd_request *req,
    void *data)
{
	struct hello	*h = data;
	const char	*qs = host->param(req, "QUERY_STRING");
	const char	*name = "world";
	char		 body[512], who[128];
	int		 n;

	if (qs != NULL && strncmp(qs, "name=", 5) == 0 && qs[5] != '\0') {
		snprintf(who, sizeof(who), "%.*s", (int)strcspn(qs + 5, "&"),
		    qs + 5);
		name = who;
	}
	h->served++;
	n = snprintf(body, sizeof(body), "Status: 200 OK\r\n"
	    "Content-Type: text/plain\r\n\r\n%s, %s! (request %lu of this "
	    "worker)\n", h->greeting, name, h->served);
	return host->write_stdout(req, body, (size_t)n);
}

static void
hello_worker_fini(const struct fpmd_host *host, void *data)
{
	(void)host;
	free(data);
}

const struct fpmd_handler fpmd_handler = {
	.abi_version = FPMD_HANDLER_ABI,
	.struct_size = sizeof(struct fpmd_handler),
	.name = "hello",
	.check_options = hello_check_options,
	.worker_init = hello_worker_init,
	.handle = hello_handle,
	.worker_fini = hello_worker_fini,
};
