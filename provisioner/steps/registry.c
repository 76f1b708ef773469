/*
 * steps/registry.c: the table of step kinds. One row per kind; main hands
 * it to the manifest loader, which finds a step's kind here by its key.
 */
#include "steps/registry.h"

extern const struct step_kind step_kind_shell;
extern const struct step_kind step_kind_upload;
extern const struct step_kind step_kind_download;
extern const struct step_kind step_kind_user;
extern const struct step_kind step_kind_group;
extern const struct step_kind step_kind_path;
extern const struct step_kind step_kind_line;
extern const struct step_kind step_kind_alias;
extern const struct step_kind step_kind_service;
extern const struct step_kind step_kind_closure;
extern const struct step_kind step_kind_postgres;
extern const struct step_kind step_kind_migration_test;
extern const struct step_kind step_kind_permissions;
extern const struct step_kind step_kind_sql;
extern const struct step_kind step_kind_pgtap;
extern const struct step_kind step_kind_migrations;
extern const struct step_kind step_kind_reboot;
extern const struct step_kind step_kind_package;
extern const struct step_kind step_kind_backup;
extern const struct step_kind step_kind_restore_test;

static const struct step_kind *const kinds[] = {
	&step_kind_shell,
	&step_kind_upload,
	&step_kind_download,
	&step_kind_user,
	&step_kind_group,
	&step_kind_path,
	&step_kind_line,
	&step_kind_alias,
	&step_kind_service,
	&step_kind_closure,
	&step_kind_postgres,
	&step_kind_migration_test,
	&step_kind_permissions,
	&step_kind_sql,
	&step_kind_pgtap,
	&step_kind_migrations,
	&step_kind_reboot,
	&step_kind_package,
	&step_kind_backup,
	&step_kind_restore_test,
	NULL,
};

const struct step_kind *const *
step_kinds(void)
{
	return kinds;
}
