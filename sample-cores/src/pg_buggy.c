/* A PostgreSQL extension that trusts its catalogue: normalize_sku(text) maps
   'widget-42' to 'WDG-00042', but a SKU whose prefix is not in the table (the
   empty string, say) gets a NULL entry that is dereferenced in the backend. */
#include "postgres.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fmgr.h"
#include "utils/builtins.h"

PG_MODULE_MAGIC;

typedef struct SkuPrefix
{
	const char *name;			/* as typed by people */
	const char *code;			/* as stored by the warehouse */
} SkuPrefix;

static const SkuPrefix prefixes[] = {
	{"widget", "WDG"},
	{"gadget", "GDG"},
	{"gizmo", "GZM"},
	{NULL, NULL},
};

static const SkuPrefix *
find_prefix(const char *sku, size_t len)
{
	const SkuPrefix *p;

	for (p = prefixes; p->name != NULL; p++)
	{
		size_t		n = strlen(p->name);

		if (n <= len && strncasecmp(sku, p->name, n) == 0)
			return p;
	}
	return NULL;				/* unknown prefix */
}

PG_FUNCTION_INFO_V1(normalize_sku);

Datum
normalize_sku(PG_FUNCTION_ARGS)
{
	text	   *in = PG_GETARG_TEXT_PP(0);
	char	   *sku = text_to_cstring(in);
	const SkuPrefix *prefix = find_prefix(sku, strlen(sku));
	const char *serial = strchr(sku, '-');
	char	   *out;

	/* "every SKU in the catalogue has a known prefix": prefix is never checked */
	out = psprintf("%s-%05d", prefix->code, serial ? atoi(serial + 1) : 0);
	PG_RETURN_TEXT_P(cstring_to_text(out));
}
