/*
 * handler.c -- the registry of handlers: the built-ins, and plugins loaded
 * with dlopen(3) from libdir/fpmd/handlers/NAME.so or an absolute path,
 * each checked against the ABI before use.
 *
 * Plugins are never loaded in the master: only in processes that have
 * taken a pool's identity (child.c), so that no plugin code runs as root.
 * A plugin stays loaded for the life of the process (handlers are few and
 * long-lived); loading the same file twice returns the same handler.
 */
#include "config.h"

#include <dlfcn.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "fpmd.h"

#ifndef HANDLERDIR
#define HANDLERDIR	"/usr/local/lib/fpmd/handlers"
#endif

static const struct fpmd_handler *const handler_builtins[] = {
	&h_echo,
	&h_cgi,
};

/* The size of ABI 1's first struct fpmd_handler: the hooks up to worker_fini. */
#define HANDLER_SIZE_MIN	offsetof(struct fpmd_handler, pool_init)

struct plugin {
	char			*path;
	/* The plugin's struct, widened to this fpmd's: hooks it lacks are
	 * NULL. */
	struct fpmd_handler	 handler;
};

static struct plugin	*plugins;
static size_t		 nplugins;

const struct fpmd_handler *
handler_builtin(const char *name)
{
	size_t	 i;

	for (i = 0; i < sizeof(handler_builtins) / sizeof(handler_builtins[0]);
	    i++)
		if (strcmp(handler_builtins[i]->name, name) == 0)
			return handler_builtins[i];
	return NULL;
}

int
handler_path(const char *name, char *path, size_t len, char *err,
    size_t errlen)
{
	int	 n;

	if (name[0] == '/')
		n = snprintf(path, len, "%s", name);
	else if (strchr(name, '/') != NULL || name[0] == '\0' ||
	    name[0] == '.') {
		snprintf(err, errlen, "\"%s\": expected a built-in handler "
		    "(echo, cgi), a plugin name or an absolute path", name);
		return -1;
	} else
		n = snprintf(path, len, "%s/%s.so", HANDLERDIR, name);
	if (n < 0 || (size_t)n >= len) {
		snprintf(err, errlen, "\"%s\": path too long", name);
		return -1;
	}
	return 0;
}

const struct fpmd_handler *
handler_open(const char *path, char *err, size_t errlen)
{
	const struct fpmd_handler	*h;
	struct plugin			*p;
	void				*dl;
	size_t				 i;

	for (i = 0; i < nplugins; i++)
		if (strcmp(plugins[i].path, path) == 0)
			return &plugins[i].handler;
	if ((dl = dlopen(path, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		snprintf(err, errlen, "cannot load %s: %s", path, dlerror());
		return NULL;
	}
	h = dlsym(dl, FPMD_HANDLER_SYMBOL);
	if (h == NULL) {
		snprintf(err, errlen, "%s does not export the symbol \"%s\": "
		    "is it an fpmd handler?", path, FPMD_HANDLER_SYMBOL);
		goto fail;
	}
	if (h->abi_version != FPMD_HANDLER_ABI) {
		snprintf(err, errlen, "%s was built for handler ABI %u, this "
		    "fpmd speaks ABI %u: rebuild it against this fpmd's "
		    "<fpmd/handler.h>", path, h->abi_version,
		    FPMD_HANDLER_ABI);
		goto fail;
	}
	if (h->struct_size < HANDLER_SIZE_MIN || h->name == NULL ||
	    h->handle == NULL) {
		snprintf(err, errlen, "%s: its struct fpmd_handler is "
		    "incomplete (size %u, want at least %zu, and a name and a "
		    "handle hook)", path, h->struct_size, HANDLER_SIZE_MIN);
		goto fail;
	}
	p = reallocarray(plugins, nplugins + 1, sizeof(*plugins));
	if (p == NULL || (p[nplugins].path = strdup(path)) == NULL) {
		if (p != NULL)
			plugins = p;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	plugins = p;
	memset(&p[nplugins].handler, 0, sizeof(p[nplugins].handler));
	memcpy(&p[nplugins].handler, h, h->struct_size <
	    sizeof(struct fpmd_handler) ? h->struct_size :
	    sizeof(struct fpmd_handler));
	return &plugins[nplugins++].handler;
fail:
	dlclose(dl);
	return NULL;
}

const struct fpmd_handler *
handler_find(const char *name, char *err, size_t errlen)
{
	const struct fpmd_handler	*h;
	char				 path[4096];

	if ((h = handler_builtin(name)) != NULL)
		return h;
	if (handler_path(name, path, sizeof(path), err, errlen) == -1)
		return NULL;
	return handler_open(path, err, errlen);
}
