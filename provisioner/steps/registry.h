/*
 * steps/registry.h: the table of step kinds, one row per file in steps/.
 * main hands it to the manifest loader; nothing below steps/ includes this.
 */
#ifndef STAGEHAND_REGISTRY_H
#define STAGEHAND_REGISTRY_H

#include "model/kind.h"

extern const struct step_kind step_kind_shell;
extern const struct step_kind step_kind_upload;
extern const struct step_kind step_kind_download;
extern const struct step_kind step_kind_user;
extern const struct step_kind step_kind_group;
extern const struct step_kind step_kind_path;
extern const struct step_kind step_kind_line;
extern const struct step_kind step_kind_alias;
extern const struct step_kind step_kind_closure;
extern const struct step_kind step_kind_postgres;
extern const struct step_kind step_kind_migration_test;
extern const struct step_kind step_kind_permissions;
extern const struct step_kind step_kind_sql;
extern const struct step_kind step_kind_pgtap;

/* NULL-terminated list of all kinds: the table the loader is handed. */
const struct step_kind *const *step_kinds(void);
/* The kind named name; NULL when unknown. */
const struct step_kind *step_kind_find(const char *name);

#endif
