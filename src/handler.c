/*
 * handler.c -- the registry of handlers: the built-ins, and plugins loaded
 * with dlopen(3) from libdir/fpmd/handlers/NAME.so or an absolute path,
 * each checked against the ABI before use.
 *
 * A plugin stays loaded for the life of the process (handlers are few and
 * long-lived); loading the same file twice returns the same handler.
 */
#include "config.h"

#include <dlfcn.h>
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

struct plugin {
	char				*path;
	const struct fpmd_handler	*handler;
};

static struct plugin	*plugins;
static size_t		 nplugins;

static const struct fpmd_handler *
handler_load(const char *path, char *err, size_t errlen)
{
	const struct fpmd_handler	*h;
	struct plugin			*p;
	void				*dl;
	size_t				 i;

	for (i = 0; i < nplugins; i++)
		if (strcmp(plugins[i].path, path) == 0)
			return plugins[i].handler;
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
	if (h->struct_size < sizeof(struct fpmd_handler) || h->name == NULL ||
	    h->handle == NULL) {
		snprintf(err, errlen, "%s: its struct fpmd_handler is "
		    "incomplete (size %u, want %zu, and a name and a handle "
		    "hook)", path, h->struct_size,
		    sizeof(struct fpmd_handler));
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
	plugins[nplugins++].handler = h;
	return h;
fail:
	dlclose(dl);
	return NULL;
}

const struct fpmd_handler *
handler_find(const char *name, char *err, size_t errlen)
{
	char	 path[4096];
	size_t	 i;

	for (i = 0; i < sizeof(handler_builtins) / sizeof(handler_builtins[0]);
	    i++)
		if (strcmp(handler_builtins[i]->name, name) == 0)
			return handler_builtins[i];
	if (name[0] == '/')
		return handler_load(name, err, errlen);
	if (strchr(name, '/') != NULL || name[0] == '\0' || name[0] == '.') {
		snprintf(err, errlen, "\"%s\": expected a built-in handler "
		    "(echo, cgi), a plugin name or an absolute path", name);
		return NULL;
	}
	snprintf(path, sizeof(path), "%s/%s.so", HANDLERDIR, name);
	return handler_load(path, err, errlen);
}
