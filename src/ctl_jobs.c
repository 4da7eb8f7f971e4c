/*
 * crosspostctl jobs ... and workers: the job queue from the operator's
 * shell.  State changes go through queue.c, so the shell and the API keep
 * the same rules, and each is written to the audit log with the actor
 * "crosspostctl".
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "ctl.h"
#include "db.h"
#include "err.h"
#include "jobkinds.h"
#include "json.h"
#include "queue.h"
#include "retry.h"
#include "users.h"

#define LIST_LIMIT_DEFAULT 50
#define LIST_LIMIT_MAX 1000
#define ENQUEUE_COUNT_MAX 100000
#define DEAD_RETRY_MAX 1000
#define HISTORY_MAX 100

static const char jobs_usage[] =
    "usage: crosspostctl jobs list [--state S] [--queue Q] [--kind K] [--user EMAIL|ID] [--limit N]\n"
    "       crosspostctl jobs show ID\n"
    "       crosspostctl jobs retry ID\n"
    "       crosspostctl jobs retry --dead [--queue Q] [--kind K] [--error-class C] [--limit N]\n"
    "       crosspostctl jobs cancel ID\n"
    "       crosspostctl jobs enqueue KIND [--payload JSON] [--count N] [--queue Q] [--delay DURATION]\n"
    "                                 [--priority P] [--unique-key K] [--user EMAIL|ID] [--max-attempts N]\n"
    "       crosspostctl jobs kinds\n"
    "States: scheduled ready running failed succeeded dead cancelled.  Durations: 500ms, 30s, 5m,\n"
    "1h, 2d.  A list is newest first (--limit 1 to 1000, default 50).\n";

/* "250ms", "30s", "5m", "1h", "2d"; a bare number is seconds.  Up to a year. */
static int parse_duration_ms(const char *s, long long *out)
{
    static const struct {
        const char *unit;
        long long ms;
    } units[] = { { "ms", 1 }, { "s", 1000 }, { "", 1000 }, { "m", 60000 }, { "h", 3600000 },
                  { "d", 86400000 } };
    char *end;
    long long v;

    if (!s || *s < '0' || *s > '9')
        return CP_EINVAL;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno)
        return CP_EINVAL;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(end, units[i].unit) == 0) {
            if (v > 366LL * 86400000 / units[i].ms)
                return CP_EINVAL;
            *out = v * units[i].ms;
            return 0;
        }
    return CP_EINVAL;
}

static void audit(struct db *db, const char *action, int failed, long long job, long long owner,
                  const char *detail)
{
    struct audit_event ev = {
        .actor_label = "crosspostctl", .action = action, .failed = failed, .target_type = "job",
        .target_id = job, .owner_id = owner, .detail = detail,
    };

    audit_write(db, &ev);
}

/* A user named by email or id: 0 with *id, or EXIT_FAILED after saying why. */
static int find_user_id(struct db *db, const char *who, long long *id)
{
    struct user u;
    long long n;
    int rc;

    if (ctl_parse_number(who, 1, LLONG_MAX, &n) == 0)
        rc = user_find_by_id(db, n, &u);
    else
        rc = user_find_by_email(db, who, &u);
    if (rc == CP_ENOTFOUND) {
        fprintf(stderr, "crosspostctl: no user %s\n", who);
        return EXIT_FAILED;
    }
    if (rc)
        return ctl_db_failed(db);
    *id = u.id;
    return 0;
}

/* The user_id of a job, for the audit trail (0 when none or gone). */
static long long job_user(struct db *db, long long id)
{
    struct db_param p[] = { DB_I64(id) };
    struct db_result *r = NULL;
    long long user = 0;

    if (db_query(db, "SELECT user_id FROM jobs WHERE id = ?", p, 1, &r) == 0 && db_result_rows(r) == 1)
        db_result_i64(r, 0, 0, &user);
    db_result_free(r);
    return user;
}

static const char *or_dash(const char *s)
{
    return s && *s ? s : "-";
}

/* --------------------------------------------------------------- list -- */

static int jobs_list(struct db *db, int argc, char **argv)
{
    const char *state = NULL, *queue = NULL, *kind = NULL, *who = NULL;
    long long limit = LIST_LIMIT_DEFAULT, user = 0;
    enum job_state st;
    struct db_param p[6];
    struct db_result *r = NULL;
    struct buf sql;
    size_t n = 0;
    int rc;

    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!val)
            return usage_error("jobs list: %s needs a value", opt);
        if (!strcmp(opt, "--state"))
            state = val;
        else if (!strcmp(opt, "--queue"))
            queue = val;
        else if (!strcmp(opt, "--kind"))
            kind = val;
        else if (!strcmp(opt, "--user"))
            who = val;
        else if (!strcmp(opt, "--limit")) {
            if (ctl_parse_number(val, 1, LIST_LIMIT_MAX, &limit))
                return usage_error("jobs list: --limit must be a number from 1 to %d", LIST_LIMIT_MAX);
        } else
            return usage_error("jobs list: unexpected argument \"%s\"", opt);
        i++;
    }
    if (state && job_state_parse(state, &st))
        return usage_error("jobs list: unknown state \"%s\"", state);
    if (queue && !job_queue_name_ok(queue))
        return usage_error("jobs list: \"%s\" is not a queue name", queue);
    if (kind && strlen(kind) > JOB_KIND_MAX)
        return usage_error("jobs list: \"%s\" is not a job kind", kind);
    if (who && (rc = find_user_id(db, who, &user)))
        return rc;

    buf_init(&sql, 2048);
    buf_adds(&sql, "SELECT id, queue, kind, state, CONCAT(attempts, '/', max_attempts), "
                   "DATE_FORMAT(run_at, '%Y-%m-%d %H:%i:%s'), COALESCE(user_id, '-'), "
                   "COALESCE(LEFT(REPLACE(last_error, '\\n', ' '), 60), '') FROM jobs");
    buf_adds(&sql, user ? " FORCE INDEX (ix_jobs_user) WHERE 1" : " WHERE 1");
    if (user) {
        buf_adds(&sql, " AND user_id = ?");
        p[n++] = DB_I64(user);
    }
    if (state) {
        buf_adds(&sql, " AND state = ?");
        p[n++] = DB_STR(state);
    }
    if (queue) {
        buf_adds(&sql, " AND queue = ?");
        p[n++] = DB_STR(queue);
    }
    if (kind) {
        buf_adds(&sql, " AND kind = ?");
        p[n++] = DB_STR(kind);
    }
    rc = buf_adds(&sql, " ORDER BY id DESC LIMIT ?");
    p[n++] = DB_I64(limit);
    rc = rc ? rc : db_query(db, buf_str(&sql), p, n, &r);
    buf_free(&sql);
    if (rc)
        return ctl_db_failed(db);
    printf("%-10s %-12s %-28s %-10s %-9s %-19s %-7s %s\n", "id", "queue", "kind", "state",
           "attempts", "run_at (UTC)", "user", "last error");
    for (size_t i = 0; i < db_result_rows(r); i++)
        printf("%-10s %-12s %-28s %-10s %-9s %-19s %-7s %s\n", db_result_get(r, i, 0),
               db_result_get(r, i, 1), db_result_get(r, i, 2), db_result_get(r, i, 3),
               db_result_get(r, i, 4), db_result_get(r, i, 5), db_result_get(r, i, 6),
               db_result_get(r, i, 7));
    db_result_free(r);
    return 0;
}

/* --------------------------------------------------------------- show -- */

static int job_id_arg(const char *cmd, int argc, char **argv, long long *id)
{
    if (argc != 2)
        return usage_error("jobs %s: one job ID is needed", cmd);
    if (ctl_parse_number(argv[1], 1, LLONG_MAX, id))
        return usage_error("jobs %s: \"%s\" is not a job id", cmd, argv[1]);
    return 0;
}

static int jobs_show(struct db *db, int argc, char **argv)
{
    static const char *const labels[] = {
        "id", "queue", "kind", "state", "priority", "attempts", "max_attempts", "run_at",
        "created_at", "claimed_at", "finished_at", "unique_key", "user_id", "progress",
        "owner", "lease_expires_at", "last_error_class", "last_error", "payload",
    };
    struct db_result *r = NULL;
    long long id;
    int rc = job_id_arg("show", argc, argv, &id);

    if (rc)
        return rc;
    struct db_param p[] = { DB_I64(id), DB_I64(HISTORY_MAX) };
    rc = db_query(db, "SELECT j.id, j.queue, j.kind, j.state, j.priority, j.attempts, j.max_attempts, "
                      "j.run_at, j.created_at, j.claimed_at, j.finished_at, j.unique_key, j.user_id, "
                      "IF(j.progress_done IS NULL, NULL, CONCAT(j.progress_done, ' of ', "
                      "COALESCE(NULLIF(j.progress_total, 0), '?'))), "
                      "IF(j.state = 'running', CONCAT('worker ', j.owner, ' (', COALESCE(w.host, '?'), "
                      "' pid ', COALESCE(w.pid, '?'), ')'), NULL), "
                      "IF(j.state = 'running', j.lease_expires_at, NULL), j.last_error_class, "
                      "j.last_error, j.payload FROM jobs j LEFT JOIN workers w ON w.id = j.owner "
                      "WHERE j.id = ?", p, 1, &r);
    if (rc)
        return ctl_db_failed(db);
    if (db_result_rows(r) != 1) {
        db_result_free(r);
        fprintf(stderr, "crosspostctl: no job %lld\n", id);
        return EXIT_FAILED;
    }
    for (size_t c = 0; c < sizeof labels / sizeof labels[0]; c++)
        printf("%-17s %s\n", labels[c], or_dash(db_result_get(r, 0, c)));
    db_result_free(r);
    r = NULL;

    rc = db_query(db, "SELECT * FROM (SELECT id, attempt, at, outcome, error_class, error, "
                      "worker_host, worker_pid FROM job_attempts WHERE job_id = ? "
                      "ORDER BY id DESC LIMIT ?) latest ORDER BY id", p, 2, &r);
    if (rc)
        return ctl_db_failed(db);
    if (db_result_rows(r)) {
        printf("\n%-7s %-23s %-9s %-12s %-24s %s\n", "attempt", "at (UTC)", "outcome", "class",
               "worker", "error");
        for (size_t i = 0; i < db_result_rows(r); i++) {
            char worker[300];
            snprintf(worker, sizeof worker, "%s:%s", or_dash(db_result_get(r, i, 6)),
                     or_dash(db_result_get(r, i, 7)));
            printf("%-7s %-23s %-9s %-12s %-24s %s\n", db_result_get(r, i, 1),
                   db_result_get(r, i, 2), db_result_get(r, i, 3), db_result_get(r, i, 4), worker,
                   or_dash(db_result_get(r, i, 5)));
        }
    }
    db_result_free(r);
    return 0;
}

/* -------------------------------------------------------- retry/cancel -- */

static int jobs_retry_dead(struct db *db, int argc, char **argv)
{
    struct dead_filter f = { 0 };
    enum job_error_class cls;
    long long limit = DEAD_RETRY_MAX;
    char detail[256];
    size_t n = 0;

    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(opt, "--dead"))
            continue;
        if (!val)
            return usage_error("jobs retry --dead: %s needs a value", opt);
        if (!strcmp(opt, "--queue"))
            f.queue = val;
        else if (!strcmp(opt, "--kind"))
            f.kind = val;
        else if (!strcmp(opt, "--error-class"))
            f.error_class = val;
        else if (!strcmp(opt, "--limit")) {
            if (ctl_parse_number(val, 1, DEAD_RETRY_MAX, &limit))
                return usage_error("jobs retry --dead: --limit must be a number from 1 to %d",
                                   DEAD_RETRY_MAX);
        } else
            return usage_error("jobs retry --dead: unexpected argument \"%s\"", opt);
        i++;
    }
    if (f.queue && !job_queue_name_ok(f.queue))
        return usage_error("jobs retry --dead: \"%s\" is not a queue name", f.queue);
    if (f.kind && strlen(f.kind) > JOB_KIND_MAX)
        return usage_error("jobs retry --dead: \"%s\" is not a job kind", f.kind);
    if (f.error_class && job_error_class_parse(f.error_class, &cls))
        return usage_error("jobs retry --dead: unknown error class \"%s\"", f.error_class);
    if (queue_retry_dead(db, &f, (int)limit, &n))
        return ctl_db_failed(db);
    snprintf(detail, sizeof detail, "retried %zu; queue=%s kind=%s error_class=%s limit=%lld", n,
             f.queue ? f.queue : "*", f.kind ? f.kind : "*", f.error_class ? f.error_class : "*",
             limit);
    audit(db, "job.dead_retry", 0, 0, 0, detail);
    printf("retried %zu dead job%s\n", n, n == 1 ? "" : "s");
    return 0;
}

static int jobs_act(struct db *db, int argc, char **argv, int cancel)
{
    const char *cmd = cancel ? "cancel" : "retry", *action = cancel ? "job.cancel" : "job.retry";
    enum job_state was = JOB_READY;
    char detail[96];
    long long id;
    int rc = job_id_arg(cmd, argc, argv, &id);

    if (rc)
        return rc;
    rc = cancel ? queue_cancel(db, id, 0, &was) : queue_retry(db, id, 0, &was);
    if (rc == CP_ENOTFOUND) {
        fprintf(stderr, "crosspostctl: no job %lld\n", id);
        return EXIT_FAILED;
    }
    if (rc == CP_ECONFLICT) {
        int key_taken = !cancel && (was == JOB_DEAD || was == JOB_FAILED || was == JOB_CANCELLED);
        snprintf(detail, sizeof detail, "refused: %s",
                 key_taken ? "another unfinished job holds its unique key" : job_state_name(was));
        audit(db, action, 1, id, job_user(db, id), detail);
        if (key_taken)
            fprintf(stderr, "crosspostctl: another unfinished job holds the unique key of job %lld\n", id);
        else
            fprintf(stderr, "crosspostctl: job %lld is %s; only %s jobs can be %s\n", id,
                    job_state_name(was), cancel ? "scheduled, ready or failed" : "dead, failed or cancelled",
                    cancel ? "cancelled" : "retried");
        return EXIT_FAILED;
    }
    if (rc)
        return ctl_db_failed(db);
    snprintf(detail, sizeof detail, "%s -> %s", job_state_name(was), cancel ? "cancelled" : "ready");
    audit(db, action, 0, id, job_user(db, id), detail);
    printf("job %lld: %s\n", id, detail);
    return 0;
}

/* ------------------------------------------------------------ enqueue -- */

static int jobs_enqueue(struct db *db, int argc, char **argv)
{
    struct job_spec spec = { 0 };
    struct json_object *payload = NULL;
    struct job_spec *many = NULL;
    long long count = 1, v;
    const char *who = NULL;
    char detail[160];
    long long id = 0;
    int rc;

    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (opt[0] != '-') {
            if (spec.kind)
                return usage_error("jobs enqueue: unexpected argument \"%s\"", opt);
            spec.kind = opt;
            continue;
        }
        if (!val)
            return usage_error("jobs enqueue: %s needs a value", opt);
        if (!strcmp(opt, "--payload"))
            spec.payload = val;
        else if (!strcmp(opt, "--queue"))
            spec.queue = val;
        else if (!strcmp(opt, "--unique-key"))
            spec.unique_key = val;
        else if (!strcmp(opt, "--user"))
            who = val;
        else if (!strcmp(opt, "--count")) {
            if (ctl_parse_number(val, 1, ENQUEUE_COUNT_MAX, &count))
                return usage_error("jobs enqueue: --count must be a number from 1 to %d", ENQUEUE_COUNT_MAX);
        } else if (!strcmp(opt, "--delay")) {
            if (parse_duration_ms(val, &spec.delay_ms))
                return usage_error("jobs enqueue: --delay must be a duration such as 30s, 5m or 1h");
        } else if (!strcmp(opt, "--priority")) {
            if (ctl_parse_number(val, -1000, 1000, &v))
                return usage_error("jobs enqueue: --priority must be a number from -1000 to 1000");
            spec.priority = (int)v;
        } else if (!strcmp(opt, "--max-attempts")) {
            if (ctl_parse_number(val, 1, 100, &v))
                return usage_error("jobs enqueue: --max-attempts must be a number from 1 to 100");
            spec.max_attempts = (int)v;
        } else
            return usage_error("jobs enqueue: unexpected argument \"%s\"", opt);
        i++;
    }
    if (!spec.kind)
        return usage_error("jobs enqueue: a KIND is needed (crosspostctl jobs kinds lists them)");
    if (!job_kind_find(spec.kind))
        return usage_error("jobs enqueue: unknown kind \"%s\" (crosspostctl jobs kinds lists them)", spec.kind);
    if (spec.queue && !job_queue_name_ok(spec.queue))
        return usage_error("jobs enqueue: \"%s\" is not a queue name (1 to %d of a-z, 0-9, _ and -)",
                           spec.queue, JOB_QUEUE_MAX);
    if (spec.unique_key && (!*spec.unique_key || strlen(spec.unique_key) > JOB_UNIQUE_KEY_MAX))
        return usage_error("jobs enqueue: --unique-key must be 1 to %d bytes", JOB_UNIQUE_KEY_MAX);
    if (spec.unique_key && count > 1)
        return usage_error("jobs enqueue: --unique-key and --count cannot go together");
    if (spec.payload) {
        if (json_parse(spec.payload, strlen(spec.payload), NULL, &payload, NULL) ||
            !json_object_is_type(payload, json_type_object) || strlen(spec.payload) > JOB_PAYLOAD_MAX) {
            json_object_put(payload);
            return usage_error("jobs enqueue: --payload must be a JSON object of at most %d bytes",
                               JOB_PAYLOAD_MAX);
        }
        json_object_put(payload);
    }
    if (who && (rc = find_user_id(db, who, &spec.user_id)))
        return rc;

    if (count == 1) {
        rc = queue_enqueue(db, &spec, &id);
    } else {
        many = calloc((size_t)count, sizeof *many);
        if (!many) {
            fprintf(stderr, "crosspostctl: out of memory\n");
            return EXIT_FAILED;
        }
        for (long long i = 0; i < count; i++)
            many[i] = spec;
        rc = queue_enqueue_many(db, many, (size_t)count);
        free(many);
    }
    if (rc == CP_ECONFLICT) {
        if (id)
            fprintf(stderr, "crosspostctl: job %lld holds the unique key \"%s\"\n", id, spec.unique_key);
        else
            fprintf(stderr, "crosspostctl: an unfinished job holds the unique key \"%s\"\n", spec.unique_key);
        return EXIT_FAILED;
    }
    if (rc == CP_EINVAL) {
        fprintf(stderr, "crosspostctl: the job was refused (kind, queue, payload or numbers out of range)\n");
        return EXIT_FAILED;
    }
    if (rc)
        return ctl_db_failed(db);
    if (count == 1) {
        snprintf(detail, sizeof detail, "%s on %s", spec.kind, spec.queue ? spec.queue : job_kind_find(spec.kind)->queue);
        audit(db, "job.enqueue", 0, id, spec.user_id, detail);
        printf("%lld\n", id);
    } else {
        snprintf(detail, sizeof detail, "%lld %s jobs on %s", count, spec.kind,
                 spec.queue ? spec.queue : job_kind_find(spec.kind)->queue);
        audit(db, "job.enqueue", 0, 0, spec.user_id, detail);
        printf("enqueued %lld jobs\n", count);
    }
    return 0;
}

static int jobs_kinds(void)
{
    printf("%-28s %-12s %-8s %-8s %-8s %s\n", "kind", "queue", "attempts", "timeout", "internal",
           "what it does");
    for (size_t i = 0; i < job_nkinds; i++) {
        const struct job_kind *k = &job_kinds[i];
        char timeout[24];
        if (k->timeout_ms % 60000 == 0)
            snprintf(timeout, sizeof timeout, "%lldm", k->timeout_ms / 60000);
        else
            snprintf(timeout, sizeof timeout, "%llds", k->timeout_ms / 1000);
        printf("%-28s %-12s %-8d %-8s %-8s %s\n", k->name, k->queue, k->max_attempts, timeout,
               k->internal ? "yes" : "no", k->summary);
    }
    return 0;
}

int cmd_jobs(struct ctl *ctl, int argc, char **argv)
{
    static const char *const subcommands[] = { "list", "show", "retry", "cancel", "enqueue", NULL };
    struct db *db;
    size_t k = 0;
    int rc;

    if (argc < 2 || !strcmp(argv[1], "help")) {
        fputs(jobs_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    if (!strcmp(argv[1], "kinds")) {
        if (argc > 2)
            return usage_error("jobs kinds: unexpected argument \"%s\"", argv[2]);
        return jobs_kinds();
    }
    while (subcommands[k] && strcmp(subcommands[k], argv[1]))
        k++;
    if (!subcommands[k])
        return usage_error("jobs: unknown subcommand \"%s\" (crosspostctl jobs help)", argv[1]);
    rc = ctl_open_db(ctl, &db);
    if (rc)
        return rc;
    if (!strcmp(argv[1], "list"))
        rc = jobs_list(db, argc - 1, argv + 1);
    else if (!strcmp(argv[1], "show"))
        rc = jobs_show(db, argc - 1, argv + 1);
    else if (!strcmp(argv[1], "retry") && argc > 2 && !strcmp(argv[2], "--dead"))
        rc = jobs_retry_dead(db, argc - 1, argv + 1);
    else if (!strcmp(argv[1], "retry"))
        rc = jobs_act(db, argc - 1, argv + 1, 0);
    else if (!strcmp(argv[1], "cancel"))
        rc = jobs_act(db, argc - 1, argv + 1, 1);
    else
        rc = jobs_enqueue(db, argc - 1, argv + 1);
    db_close(db);
    return rc;
}

/* ------------------------------------------------------------ workers -- */

int cmd_workers(struct ctl *ctl, int argc, char **argv)
{
    struct db_result *r = NULL;
    struct conf *c;
    struct db *db;
    int all = 0, rc;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--all"))
            all = 1;
        else
            return usage_error("workers: unexpected argument \"%s\"", argv[i]);
    }
    rc = ctl_open_db(ctl, &db);
    if (rc)
        return rc;
    c = ctl_conf(ctl);
    struct db_param p[] = { DB_I64(c->worker_stale_after * 1000) };
    rc = db_query(db, all
        ? "SELECT id, COALESCE(supervisor_id, '-'), role, host, pid, queues, state, "
          "ROUND(TIMESTAMPDIFF(MICROSECOND, last_heartbeat_at, NOW(3)) / 1e6, 1), "
          "IF(state <> 'stopped' AND last_heartbeat_at > NOW(3) - INTERVAL ? MICROSECOND, 'yes', 'no'), "
          "jobs_done, COALESCE(current_job_id, '-') FROM workers ORDER BY id"
        : "SELECT id, COALESCE(supervisor_id, '-'), role, host, pid, queues, state, "
          "ROUND(TIMESTAMPDIFF(MICROSECOND, last_heartbeat_at, NOW(3)) / 1e6, 1), "
          "IF(last_heartbeat_at > NOW(3) - INTERVAL ? MICROSECOND, 'yes', 'no'), "
          "jobs_done, COALESCE(current_job_id, '-') FROM workers WHERE state <> 'stopped' ORDER BY id",
        p, 1, &r);
    if (rc) {
        rc = ctl_db_failed(db);
        db_close(db);
        return rc;
    }
    printf("%-8s %-10s %-10s %-20s %-8s %-24s %-9s %-10s %-5s %-10s %s\n", "id", "supervisor",
           "role", "host", "pid", "queues", "state", "heartbeat", "alive", "jobs_done", "job");
    for (size_t i = 0; i < db_result_rows(r); i++) {
        char age[32];
        snprintf(age, sizeof age, "%ss ago", db_result_get(r, i, 7));
        printf("%-8s %-10s %-10s %-20s %-8s %-24s %-9s %-10s %-5s %-10s %s\n", db_result_get(r, i, 0),
               db_result_get(r, i, 1), db_result_get(r, i, 2), db_result_get(r, i, 3),
               db_result_get(r, i, 4), or_dash(db_result_get(r, i, 5)), db_result_get(r, i, 6), age,
               db_result_get(r, i, 8), db_result_get(r, i, 9), db_result_get(r, i, 10));
    }
    db_result_free(r);
    db_close(db);
    return 0;
}
