/*
 * model/kind.c: finding a kind in a table of kinds. See kind.h.
 */
#include "model/kind.h"

#include <string.h>

const struct step_kind *
step_kind_find(const struct step_kind *const *kinds, const char *name)
{
	for (size_t i = 0; kinds[i] != NULL; i++)
		if (strcmp(kinds[i]->name, name) == 0)
			return kinds[i];
	return NULL;
}
