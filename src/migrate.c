#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mysqld_error.h>
#include <openssl/evp.h>

#include "buf.h"
#include "db.h"
#include "err.h"
#include "log.h"
#include "migrate.h"

#define MIGRATION_FILE_MAX (1024 * 1024)
#define MIGRATION_COUNT_MAX 10000
#define MIGRATION_VERSION_MAX 4294967295ULL   /* INT UNSIGNED */
#define MIGRATION_PATH_MAX 4096
#define CHECKSUM_HEX 64
#define CHECKSUM_SHOWN 12                      /* prefix shown in messages */
#define LOCK_WAIT_MS 60000
#define LOCK_POLL_MS 250

static const char create_table_sql[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INT UNSIGNED NOT NULL PRIMARY KEY,"
    " name VARCHAR(255) NOT NULL,"
    " checksum CHAR(64) NOT NULL,"
    " applied_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),"
    " duration_ms INT UNSIGNED NOT NULL"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci";

struct migration {
    unsigned long long version;
    char *file;                        /* "001_instance.sql" */
    char *path;                        /* dir + "/" + file */
    char checksum[CHECKSUM_HEX + 1];   /* SHA-256, lower-case hex */
};

struct migration_set {
    struct migration *items;           /* sorted by version */
    size_t count;
};

/* One row of schema_migrations. */
struct applied {
    unsigned long long version;
    const char *name;
    const char *checksum;
    const char *applied_at;
};

/* ------------------------------------------------------------ files -- */

/* NNN_name.sql: digits, '_', then [a-z0-9_]+, then ".sql".  Returns 1 and
 * the digits' value when the name has that shape (the value may still be
 * out of range), 0 otherwise. */
static int parse_file_name(const char *name, unsigned long long *version, int *in_range)
{
    const char *p = name;
    unsigned long long v = 0;
    size_t rest;

    *version = 0;
    *in_range = 1;
    if (*p < '0' || *p > '9')
        return 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > MIGRATION_VERSION_MAX)
            *in_range = 0;
        else
            v = v * 10 + (unsigned long long)(*p - '0');
    }
    if (*p++ != '_')
        return 0;
    rest = strlen(p);
    if (rest <= 4 || strcmp(p + rest - 4, ".sql") != 0)
        return 0;
    for (size_t i = 0; i < rest - 4; i++)
        if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') || p[i] == '_'))
            return 0;
    if (v == 0 || v > MIGRATION_VERSION_MAX)
        *in_range = 0;
    *version = v;
    return 1;
}

static void sha256_hex(const void *data, size_t len, char hex[CHECKSUM_HEX + 1])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    hex[0] = '\0';
    if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) || mdlen * 2 != CHECKSUM_HEX)
        return;
    for (unsigned i = 0; i < mdlen; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 0xf];
    }
    hex[CHECKSUM_HEX] = '\0';
}

/* Read one migration file whole (at most MIGRATION_FILE_MAX bytes). */
static int read_file(const char *path, struct buf *out, struct buf *err)
{
    char chunk[16384];
    struct stat st;
    ssize_t n;
    int fd, rc = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        buf_printf(err, "cannot open %s: %s", path, strerror(errno));
        return errno == ENOENT ? CP_ENOTFOUND : CP_EIO;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        buf_printf(err, "%s is not a regular file", path);
        rc = CP_EINVAL;
        goto out;
    }
    if (st.st_size > MIGRATION_FILE_MAX) {
        buf_printf(err, "%s is larger than %d bytes", path, MIGRATION_FILE_MAX);
        rc = CP_ETOOBIG;
        goto out;
    }
    buf_init(out, MIGRATION_FILE_MAX);
    while ((n = read(fd, chunk, sizeof chunk)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            buf_printf(err, "cannot read %s: %s", path, strerror(errno));
            rc = CP_EIO;
            goto out;
        }
        rc = buf_add(out, chunk, (size_t)n);
        if (rc) {
            buf_printf(err, "%s is larger than %d bytes", path, MIGRATION_FILE_MAX);
            goto out;
        }
    }
    if (memchr(buf_str(out), '\0', out->len)) {
        buf_printf(err, "%s contains a NUL byte", path);
        rc = CP_EINVAL;
    }
out:
    if (rc)
        buf_free(out);
    close(fd);
    return rc;
}

static int by_version(const void *a, const void *b)
{
    const struct migration *x = a, *y = b;

    return x->version < y->version ? -1 : x->version > y->version;
}

void migration_set_free(struct migration_set *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->count; i++) {
        free(set->items[i].file);
        free(set->items[i].path);
    }
    free(set->items);
    free(set);
}

int migration_set_load(const char *dir, struct migration_set **out, struct buf *err)
{
    struct migration_set *set;
    struct dirent *de;
    size_t alloc = 0;
    DIR *d;
    int rc = 0;

    *out = NULL;
    set = calloc(1, sizeof *set);
    if (!set)
        return CP_ENOMEM;
    d = opendir(dir);
    if (!d) {
        rc = errno == ENOENT ? CP_ENOTFOUND : CP_EIO;
        buf_printf(err, "cannot open the migrations directory %s: %s", dir, strerror(errno));
        goto out;
    }
    while ((errno = 0, de = readdir(d)) != NULL) {
        struct migration *m;
        unsigned long long version;
        struct buf content;
        int in_range;

        if (!parse_file_name(de->d_name, &version, &in_range))
            continue;
        if (!in_range) {
            buf_printf(err, "%s/%s: the version must be 1 to %llu", dir, de->d_name,
                       MIGRATION_VERSION_MAX);
            rc = CP_EINVAL;
            goto out;
        }
        if (set->count >= MIGRATION_COUNT_MAX) {
            buf_printf(err, "%s holds more than %d migrations", dir, MIGRATION_COUNT_MAX);
            rc = CP_ETOOBIG;
            goto out;
        }
        if (set->count == alloc) {
            size_t want = alloc ? alloc * 2 : 16;
            struct migration *items = realloc(set->items, want * sizeof *items);

            if (!items) {
                rc = CP_ENOMEM;
                goto out;
            }
            set->items = items;
            alloc = want;
        }
        m = &set->items[set->count];
        memset(m, 0, sizeof *m);
        m->version = version;
        m->file = strdup(de->d_name);
        if (!m->file || asprintf(&m->path, "%s/%s", dir, de->d_name) < 0) {
            free(m->file);
            rc = CP_ENOMEM;
            goto out;
        }
        set->count++;
        rc = read_file(m->path, &content, err);
        if (rc)
            goto out;
        sha256_hex(content.data ? content.data : "", content.len, m->checksum);
        buf_free(&content);
        if (!m->checksum[0]) {
            buf_printf(err, "cannot compute the checksum of %s", m->path);
            rc = CP_EIO;
            goto out;
        }
    }
    if (errno) {
        buf_printf(err, "cannot read the migrations directory %s: %s", dir, strerror(errno));
        rc = CP_EIO;
        goto out;
    }
    if (set->count)
        qsort(set->items, set->count, sizeof *set->items, by_version);
    for (size_t i = 1; i < set->count; i++)
        if (set->items[i].version == set->items[i - 1].version) {
            buf_printf(err, "%s and %s have the same version %llu", set->items[i - 1].file,
                       set->items[i].file, set->items[i].version);
            rc = CP_EINVAL;
            goto out;
        }
out:
    if (d)
        closedir(d);
    if (rc) {
        migration_set_free(set);
        return rc;
    }
    *out = set;
    return 0;
}

size_t migration_set_count(const struct migration_set *set)
{
    return set ? set->count : 0;
}

long long migration_set_latest(const struct migration_set *set)
{
    if (!set || !set->count)
        return 0;
    return (long long)set->items[set->count - 1].version;
}

/* ------------------------------------------------------ the database -- */

/* Read schema_migrations (ordered by version).  *missing is set when the
 * table does not exist yet, which is not an error: nothing is applied. */
static int load_applied(struct db *db, const char *sql, struct db_result **res,
                        struct applied **rows, size_t *nrows, int *missing,
                        struct buf *err)
{
    struct applied *a = NULL;
    size_t n, cols;
    int rc;

    *res = NULL;
    *rows = NULL;
    *nrows = 0;
    *missing = 0;
    rc = db_query(db, sql, NULL, 0, res);
    if (rc == CP_EDB && db_errno(db) == ER_NO_SUCH_TABLE) {
        *missing = 1;
        return 0;
    }
    if (rc) {
        buf_printf(err, "cannot read schema_migrations: %s",
                   db_error(db)[0] ? db_error(db) : cp_strerror(rc));
        return rc;
    }
    n = db_result_rows(*res);
    cols = db_result_cols(*res);
    if (n) {
        a = calloc(n, sizeof *a);
        if (!a) {
            rc = CP_ENOMEM;
            goto fail;
        }
    }
    for (size_t i = 0; i < n; i++) {
        long long v;

        if (db_result_i64(*res, i, 0, &v) || v < 0) {
            buf_printf(err, "schema_migrations holds a bad version in row %zu", i + 1);
            rc = CP_EDB;
            goto fail;
        }
        a[i].version = (unsigned long long)v;
        /* Columns: version, checksum[, name, applied_at]. */
        a[i].checksum = db_result_get(*res, i, 1);
        a[i].name = cols > 2 ? db_result_get(*res, i, 2) : NULL;
        a[i].applied_at = cols > 3 ? db_result_get(*res, i, 3) : NULL;
        if (!a[i].checksum)
            a[i].checksum = "";
    }
    *rows = a;
    *nrows = n;
    return 0;
fail:
    free(a);
    db_result_free(*res);
    *res = NULL;
    return rc;
}

static const struct applied *find_applied(const struct applied *rows, size_t n,
                                          unsigned long long version)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (rows[mid].version == version)
            return &rows[mid];
        if (rows[mid].version < version)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static const struct migration *find_file(const struct migration_set *set,
                                         unsigned long long version)
{
    size_t lo = 0, hi = set->count;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (set->items[mid].version == version)
            return &set->items[mid];
        if (set->items[mid].version < version)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static void describe_change(struct buf *err, const struct migration *m, const char *recorded)
{
    buf_printf(err, "%s was changed after it was applied (recorded sha256 %.*s..., file %.*s...); "
               "add a new numbered migration instead of editing an applied one",
               m->file, CHECKSUM_SHOWN, recorded, CHECKSUM_SHOWN, m->checksum);
}

static long long elapsed_ms(const struct timespec *start)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)(now.tv_sec - start->tv_sec) * 1000 +
           (now.tv_nsec - start->tv_nsec) / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/*
 * Take the named lock that serialises migrations across hosts.  It is
 * polled rather than waited for on the server, so the wait can never run
 * into the connection's read timeout.
 */
static int take_lock(struct db *db, FILE *log, struct buf *err)
{
    struct timespec start;
    int announced = 0;

    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        struct db_result *res;
        long long got = 0;
        int rc;

        rc = db_query(db, "SELECT GET_LOCK('crosspost.migrate', 0)", NULL, 0, &res);
        if (rc) {
            buf_printf(err, "cannot take the migration lock: %s",
                       db_error(db)[0] ? db_error(db) : cp_strerror(rc));
            return rc;
        }
        rc = db_result_i64(res, 0, 0, &got);
        db_result_free(res);
        if (rc == 0 && got == 1)
            return 0;
        if (rc != 0 && rc != CP_ENOTFOUND) {
            buf_adds(err, "GET_LOCK returned an unexpected value");
            return CP_EDB;
        }
        if (elapsed_ms(&start) >= LOCK_WAIT_MS) {
            buf_printf(err, "another migration has held the lock for %d s; giving up",
                       LOCK_WAIT_MS / 1000);
            return CP_ETIMEDOUT;
        }
        if (!announced && log) {
            fprintf(log, "waiting for another migration to finish...\n");
            fflush(log);
        }
        announced = 1;
        sleep_ms(LOCK_POLL_MS);
    }
}

static void release_lock(struct db *db)
{
    struct db_result *res;

    if (db_query(db, "SELECT RELEASE_LOCK('crosspost.migrate')", NULL, 0, &res) == 0)
        db_result_free(res);
}

static int apply_one(struct db *db, const struct migration *m, FILE *log, struct buf *err)
{
    struct buf content, script_err;
    struct timespec start;
    char checksum[CHECKSUM_HEX + 1];
    long long ms;
    int rc;

    rc = read_file(m->path, &content, err);
    if (rc)
        return rc;
    sha256_hex(content.data ? content.data : "", content.len, checksum);
    if (strcmp(checksum, m->checksum) != 0) {
        buf_printf(err, "%s changed while migrating; run the migration again", m->file);
        buf_free(&content);
        return CP_ECHANGED;
    }
    if (log) {
        fprintf(log, "applying %s ... ", m->file);
        fflush(log);
    }
    clock_gettime(CLOCK_MONOTONIC, &start);
    buf_init(&script_err, 4096);
    rc = db_exec_script(db, buf_str(&content), &script_err);
    buf_free(&content);
    if (rc) {
        if (log)
            fprintf(log, "failed\n");
        buf_printf(err, "%s: %s", m->file, buf_str(&script_err));
        buf_free(&script_err);
        return rc;
    }
    buf_free(&script_err);
    ms = elapsed_ms(&start);
    {
        struct db_param p[] = {
            DB_I64((long long)m->version),
            DB_STR(m->file),
            DB_STR(m->checksum),
            DB_I64(ms),
        };

        rc = db_exec(db, "INSERT INTO schema_migrations (version, name, checksum, duration_ms)"
                         " VALUES (?, ?, ?, ?)", p, 4, NULL, NULL);
    }
    if (rc) {
        if (log)
            fprintf(log, "failed\n");
        buf_printf(err, "%s was applied but could not be recorded: %s", m->file,
                   db_error(db)[0] ? db_error(db) : cp_strerror(rc));
        return rc;
    }
    if (log) {
        fprintf(log, "ok (%lld ms)\n", ms);
        fflush(log);
    }
    if (!log)
        log_info("applied migration %s in %lld ms", m->file, ms);
    return 0;
}

int migrate_apply(struct db *db, const struct migration_set *set, FILE *log, struct buf *err)
{
    struct db_result *res = NULL;
    struct applied *rows = NULL;
    size_t nrows = 0, pending = 0, changed = 0;
    const struct migration *first_changed = NULL;
    const char *first_recorded = NULL;
    int missing_table, locked = 0, rc;

    rc = take_lock(db, log, err);
    if (rc)
        return rc;
    locked = 1;
    rc = db_exec(db, create_table_sql, NULL, 0, NULL, NULL);
    if (rc) {
        buf_printf(err, "cannot create schema_migrations: %s",
                   db_error(db)[0] ? db_error(db) : cp_strerror(rc));
        goto out;
    }
    rc = load_applied(db, "SELECT version, checksum, name FROM schema_migrations ORDER BY version",
                      &res, &rows, &nrows, &missing_table, err);
    if (rc)
        goto out;

    /* Check everything before changing anything. */
    for (size_t i = 0; i < nrows; i++) {
        const struct migration *m = find_file(set, rows[i].version);

        if (!m) {
            if (log)
                fprintf(log, "warning: migration %llu (%s) is recorded as applied but its file "
                        "is missing\n", rows[i].version, rows[i].name ? rows[i].name : "?");
            else
                log_warn("migration %llu (%s) is recorded as applied but its file is missing",
                         rows[i].version, rows[i].name ? rows[i].name : "?");
        } else if (strcmp(m->checksum, rows[i].checksum) != 0) {
            if (log)
                fprintf(log, "changed: %s (recorded sha256 %.*s..., file %.*s...)\n", m->file,
                        CHECKSUM_SHOWN, rows[i].checksum, CHECKSUM_SHOWN, m->checksum);
            if (!first_changed) {
                first_changed = m;
                first_recorded = rows[i].checksum;
            }
            changed++;
        }
    }
    if (first_changed) {
        describe_change(err, first_changed, first_recorded);
        if (changed > 1)
            buf_printf(err, " (%zu files changed in all)", changed);
        rc = CP_ECHANGED;
        goto out;
    }

    for (size_t i = 0; i < set->count; i++) {
        const struct migration *m = &set->items[i];

        if (find_applied(rows, nrows, m->version))
            continue;
        rc = apply_one(db, m, log, err);
        if (rc)
            goto out;
        pending++;
    }
    if (log) {
        if (pending)
            fprintf(log, "%zu migration%s applied; schema at version %lld\n", pending,
                    pending == 1 ? "" : "s", migration_set_latest(set));
        else
            fprintf(log, "schema is up to date (%zu migration%s, latest version %lld)\n",
                    set->count, set->count == 1 ? "" : "s", migration_set_latest(set));
        fflush(log);
    }
out:
    if (locked)
        release_lock(db);
    free(rows);
    db_result_free(res);
    return rc;
}

int migrate_print_status(struct db *db, const struct migration_set *set, FILE *fp, struct buf *err)
{
    struct db_result *res = NULL;
    struct applied *rows = NULL;
    size_t nrows = 0, i = 0, j = 0;
    size_t n_applied = 0, n_pending = 0, n_changed = 0, n_missing = 0;
    int missing_table, rc;

    rc = load_applied(db, "SELECT version, checksum, name, applied_at FROM schema_migrations"
                          " ORDER BY version", &res, &rows, &nrows, &missing_table, err);
    if (rc)
        return rc;

    fprintf(fp, "%10s  %-40s  %-8s  %s\n", "version", "file", "state", "applied at (UTC)");
    /* Merge the two version-ordered lists. */
    while (i < set->count || j < nrows) {
        const struct migration *m = i < set->count ? &set->items[i] : NULL;
        const struct applied *a = j < nrows ? &rows[j] : NULL;
        const char *state, *name, *when = "-";
        unsigned long long version;

        if (m && (!a || m->version < a->version)) {
            state = "pending";
            name = m->file;
            version = m->version;
            n_pending++;
            i++;
        } else if (a && (!m || a->version < m->version)) {
            state = "missing";
            name = a->name ? a->name : "?";
            version = a->version;
            when = a->applied_at ? a->applied_at : "-";
            n_missing++;
            j++;
        } else if (m && a) {
            int same = strcmp(m->checksum, a->checksum) == 0;

            state = same ? "applied" : "CHANGED";
            name = m->file;
            version = m->version;
            when = a->applied_at ? a->applied_at : "-";
            if (same)
                n_applied++;
            else
                n_changed++;
            i++;
            j++;
        } else {
            break;   /* unreachable: the loop runs while either list has rows */
        }
        fprintf(fp, "%10llu  %-40s  %-8s  %s\n", version, name, state, when);
    }
    fprintf(fp, "%zu applied, %zu pending, %zu changed, %zu missing%s\n", n_applied, n_pending,
            n_changed, n_missing, missing_table ? " (schema_migrations does not exist yet)" : "");
    free(rows);
    db_result_free(res);
    return 0;
}

int migrate_check_current(struct db *db, const struct migration_set *set, struct buf *err)
{
    struct db_result *res = NULL;
    struct applied *rows = NULL;
    const struct migration *first_pending = NULL;
    size_t nrows = 0, pending = 0;
    int missing_table, rc;

    rc = load_applied(db, "SELECT version, checksum FROM schema_migrations ORDER BY version",
                      &res, &rows, &nrows, &missing_table, err);
    if (rc)
        return rc;
    if (missing_table) {
        if (set->count) {
            buf_printf(err, "migrations pending: schema_migrations does not exist "
                       "(run crosspostctl migrate)");
            rc = CP_ENOTFOUND;
        }
        goto out;
    }
    /* Rows for versions this program has no file for are a newer schema
     * (a rolling upgrade), which this program can run against. */
    for (size_t i = 0; i < set->count; i++) {
        const struct migration *m = &set->items[i];
        const struct applied *a = find_applied(rows, nrows, m->version);

        if (!a) {
            if (!first_pending)
                first_pending = m;
            pending++;
        } else if (strcmp(a->checksum, m->checksum) != 0) {
            describe_change(err, m, a->checksum);
            rc = CP_ECHANGED;
            goto out;
        }
    }
    if (pending) {
        buf_printf(err, "migrations pending: %zu of %zu (next %s; run crosspostctl migrate)",
                   pending, set->count, first_pending->file);
        rc = CP_ENOTFOUND;
    }
out:
    free(rows);
    db_result_free(res);
    return rc;
}
