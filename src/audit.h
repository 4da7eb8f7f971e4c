/*
 * audit.h - the audit log: who did what to whom, from where, when.
 *
 * Events are rows of audit_log (see sql/002_identity.sql).  Writing one
 * never fails the caller's operation silently: the result is returned and
 * a failure is logged, so the caller decides (security events that cannot
 * be recorded should fail closed).
 */
#ifndef CP_AUDIT_H
#define CP_AUDIT_H

#include <stddef.h>

#include "db.h"

struct audit_event {
    long long actor_id;          /* 0: no signed-in actor */
    const char *actor_label;     /* e.g. the email tried, or "crosspostctl" */
    const char *action;          /* e.g. "user.create", "auth.login" */
    int failed;                  /* outcome: 0 success, 1 failure */
    const char *target_type;     /* e.g. "user"; NULL = none */
    long long target_id;         /* 0 = none */
    long long owner_id;          /* whose trail; 0 = none */
    const char *client_addr;
    const char *request_id;
    const char *detail;          /* short, never a secret */
};

int audit_write(struct db *db, const struct audit_event *ev);

/* One row of alert_events, severity "warning": kind (e.g. "job.dead")
 * about subject_type subject_id, for user_id (0 or less: no user), with
 * message stored as given (the caller bounds it and keeps it UTF-8).
 * Runs on db as it stands, so inside the caller's transaction when there
 * is one.  0 or a CP_E* code. */
int alert_write(struct db *db, const char *kind, const char *subject_type, long long subject_id,
                long long user_id, const char *message);

/* Delete up to batch events older than retention_ms, oldest first;
 * *deleted is how many went.  Call again while *deleted == batch (small
 * batches keep the table usable meanwhile). */
int audit_prune(struct db *db, long long retention_ms, int batch, size_t *deleted);

#endif
