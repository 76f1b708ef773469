/*
 * report.h: the report directory that Packer and CI consume.
 *
 *   results.json   the full result model; schema in docs/results.schema.json
 *   junit.xml      one testsuite per stage; one testcase per step and per
 *                  embedded test (pgTAP assertion, permission row...)
 *   stagehand.env  sourceable STAGEHAND_* variables, safely single-quoted
 *   run.log        the human log (written by the UI, not here)
 *
 * Every file is written atomically (temp file in the same dir + rename),
 * and every string passes through the run's redactor first, so no secret
 * reaches the disk. report_write() creates dir if needed.
 *
 * report_show() reads a report dir back (results.json, parsed with libyaml,
 * which reads JSON as a YAML flow document), prints a summary, and returns
 * the exit code a gate should use: 0 when status is "passed", 1 otherwise,
 * or -1 with err when the dir holds no readable report.
 */
#ifndef STAGEHAND_REPORT_H
#define STAGEHAND_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "model/manifest.h"
#include "model/result.h"
#include "target/ctx.h"
#include "util/redact.h"
#include "util/util.h"

struct report_run {
	const char *version; /* stagehand version */
	const char *command; /* "run" or "plan" */
	const struct manifest *manifest;
	const struct step_result *results; /* manifest->nsteps entries */
	const char *target_user;           /* NULL when no target */
	const char *target_host;
	unsigned target_port;
	const struct target_facts *facts;
	const char *host_key_fingerprint; /* NULL when never connected */
	const char *host_key_type;
	bool host_key_accepted; /* accepted with --accept-new-host-key */
	/* The jump hosts, in order; their keys as first seen (fingerprint
	 * NULL when the run never got through them). */
	const struct report_jump {
		const char *user;
		const char *host;
		unsigned port;
		const char *host_key_fingerprint;
		const char *host_key_type;
		bool host_key_accepted;
	} * jumps;
	size_t njumps;
	unsigned reconnects;
	int64_t started_at; /* unix time */
	int64_t finished_at;
	uint64_t duration_ms;
	const char *status; /* passed | failed | interrupted */
	int exit_code;
	const struct errbuf *run_err; /* run-level error, code SH_OK if none */
	const struct redact *redact;
};

int report_write(
    const char *dir, const struct report_run *r, struct errbuf *err);
int report_show(const char *dir, FILE *out, bool json, struct errbuf *err);

#endif
