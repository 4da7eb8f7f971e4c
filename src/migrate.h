/*
 * migrate.h - numbered schema migrations.
 *
 * The files NNN_name.sql in a directory are applied in numeric order, each
 * recorded in schema_migrations (version, name, checksum = SHA-256 of the
 * file, applied_at).  A file whose checksum differs from the recorded one
 * is refused (CP_ECHANGED): applied migrations are never edited, a new
 * numbered file is added instead.  A named lock keeps two hosts from
 * migrating at once.
 */
#ifndef CP_MIGRATE_H
#define CP_MIGRATE_H

#include <stdio.h>

#include "buf.h"
#include "db.h"

struct migration_set;

enum migration_state {
    MIGRATION_PENDING,   /* file present, not applied */
    MIGRATION_APPLIED,   /* applied, checksum matches */
    MIGRATION_CHANGED,   /* applied, but the file has changed since */
    MIGRATION_MISSING,   /* recorded as applied, file gone */
};

/* Read the migration files of dir (names, versions, checksums).  Files not
 * named NNN_name.sql are ignored; two files with one number are an error. */
int migration_set_load(const char *dir, struct migration_set **out, struct buf *err);
void migration_set_free(struct migration_set *set);

/* Number of files, and the highest version among them (0 if none). */
size_t migration_set_count(const struct migration_set *set);
long long migration_set_latest(const struct migration_set *set);

/* Apply every pending migration in order; progress lines go to log (may
 * be NULL).  Refuses to start (CP_ECHANGED) if any applied file changed. */
int migrate_apply(struct db *db, const struct migration_set *set, FILE *log, struct buf *err);

/* Print one line per migration: version, name, state, applied time. */
int migrate_print_status(struct db *db, const struct migration_set *set, FILE *fp, struct buf *err);

/* 0 when every file is applied with a matching checksum; CP_ECHANGED or
 * CP_ENOTFOUND (pending work) otherwise, with a sentence in *err. */
int migrate_check_current(struct db *db, const struct migration_set *set, struct buf *err);

#endif
