/*
 * steps/registry.h: the table of step kinds, one row per file in steps/.
 * main hands it to the manifest loader; nothing below steps/ includes this.
 * The kinds themselves are declared in registry.c, next to their rows, so
 * that a new kind is one file and one row there.
 */
#ifndef STAGEHAND_REGISTRY_H
#define STAGEHAND_REGISTRY_H

#include "model/kind.h"

/* NULL-terminated list of all kinds: the table the loader is handed. */
const struct step_kind *const *step_kinds(void);

#endif
