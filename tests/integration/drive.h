/*
 * drive.h: what the test drivers (sshdrive.c, closuredrive.c) share.
 * Their tests match error codes by these names on stderr.
 */
#ifndef STAGEHAND_TEST_DRIVE_H
#define STAGEHAND_TEST_DRIVE_H

#include "util/util.h"

static inline const char *
drive_code_name(enum sh_err c)
{
	switch (c) {
	case SH_OK:
		return "SH_OK";
	case SH_ERR_USAGE:
		return "SH_ERR_USAGE";
	case SH_ERR_MANIFEST:
		return "SH_ERR_MANIFEST";
	case SH_ERR_UNREACHABLE:
		return "SH_ERR_UNREACHABLE";
	case SH_ERR_TRUST:
		return "SH_ERR_TRUST";
	case SH_ERR_SSH:
		return "SH_ERR_SSH";
	case SH_ERR_REMOTE:
		return "SH_ERR_REMOTE";
	case SH_ERR_TIMEOUT:
		return "SH_ERR_TIMEOUT";
	case SH_ERR_INTERRUPTED:
		return "SH_ERR_INTERRUPTED";
	case SH_ERR_IO:
		return "SH_ERR_IO";
	case SH_ERR_STEP:
		return "SH_ERR_STEP";
	case SH_ERR_LOCKED:
		return "SH_ERR_LOCKED";
	case SH_ERR_INTERNAL:
		return "SH_ERR_INTERNAL";
	}
	return "?";
}

#endif
