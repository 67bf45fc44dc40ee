/*
 * query.h -- for the test plugins: the integer value of KEY in a query
 * string (a=1&b=2), or DFLT.  Plugins are built against <fpmd/handler.h>
 * alone, as out-of-tree ones are; this is shared test code, not ABI.
 */
#ifndef TEST_QUERY_H
#define TEST_QUERY_H

#include <stdlib.h>
#include <string.h>

static inline long
query_long(const char *qs, const char *key, long dflt)
{
	size_t		 klen = strlen(key);
	const char	*p = qs;

	while (p != NULL && *p != '\0') {
		if (strncmp(p, key, klen) == 0 && p[klen] == '=')
			return strtol(p + klen + 1, NULL, 10);
		if ((p = strchr(p, '&')) != NULL)
			p++;
	}
	return dflt;
}

#endif /* TEST_QUERY_H */
