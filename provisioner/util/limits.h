/*
 * limits.h: every size cap in one place. Parsers and buffers take these as
 * their hard maximum; exceeding one is an error, never a truncation.
 */
#ifndef STAGEHAND_LIMITS_H
#define STAGEHAND_LIMITS_H

#define MANIFEST_MAX_BYTES (1u << 20) /* one YAML file */
#define MANIFEST_MAX_FILES 64         /* manifest + includes */
#define MANIFEST_MAX_DEPTH 32         /* YAML nesting */
#define MANIFEST_MAX_NODES 200000     /* nodes after alias expansion */
#define MANIFEST_MAX_ALIASES 64       /* alias uses per file */
#define MANIFEST_MAX_STEPS 10000
#define MANIFEST_MAX_VARS 1000
#define MANIFEST_MAX_SCALAR (256u << 10) /* one scalar after interpolation */
#define MANIFEST_MAX_INCLUDE_DEPTH 16
#define MANIFEST_MAX_NAME 128 /* a variable, stage or user name */
#define VARS_FILE_MAX_BYTES (1u << 20)

#define REMOTE_OUTPUT_MAX (4u << 20)  /* stdout/stderr kept per command */
#define REMOTE_SCRIPT_MAX (64u << 20) /* script + payload sent on stdin */
#define UPLOAD_FILE_MAX (1u << 30)
#define REPORT_OUTPUT_TAIL 4096 /* bytes of output kept per step */
#define REPORT_MAX_BYTES (64u << 20)
/* results.json as `stagehand report` reads it back: nesting (the top level
 * is 1; json.c writes at most JSON_MAX_DEPTH containers), and the values
 * kept, keys included (output, changes and details are not kept). */
#define REPORT_MAX_DEPTH 65
#define REPORT_MAX_VALUES 1000000u
#define STEP_CHANGES_MAX 10000 /* change lines recorded per step */

#define SSH_CONNECT_TIMEOUT_S 15
#define SSH_KEEPALIVE_S 15
#define SSH_RECONNECT_TRIES 5
#define SSH_KEY_MAX_BYTES (64u << 10)
/* Started commands waiting for their stdin, per session (ssh.h). sshd's
 * default MaxSessions is 10: this leaves room for the running command and
 * Postgres tunnels. */
#define SSH_SPARES_MAX 4
#define SSH_KEPT_MAX 4 /* kept commands (one per become user) */

#define STEP_DEFAULT_TIMEOUT_S 3600
#define STEP_MAX_TIMEOUT_S (7 * 24 * 3600)
#define STEP_MAX_RETRIES 100
/* A step's description in `plan --offline`, cut after redaction. */
#define PLAN_DESCRIBE_MAX 240

#endif
