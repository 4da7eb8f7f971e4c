#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "buf.h"
#include "conf.h"
#include "err.h"
#include "keyring.h"
#include "secretbox.h"

#define COLUMN "connections.access_token"
#define TOKEN "ya29.a0-sandbox-access-token-0123456789"
#define SEALED_MAX 8192

struct fixture {
    char dir[64];
    char path[128];
    struct secretbox *sb;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    struct buf err;

    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/test_secretbox.XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/secrets.keys", f->dir);
    if (keyring_create(f->path))
        return -1;
    buf_init(&err, 1024);
    if (secretbox_open_path(f->path, &f->sb, &err)) {
        fprintf(stderr, "# %s\n", buf_str(&err));
        buf_free(&err);
        return -1;
    }
    buf_free(&err);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char other[160];

    secretbox_free(f->sb);
    unlink(f->path);
    snprintf(other, sizeof other, "%s.new", f->path);
    unlink(other);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void seal_ok(struct secretbox *sb, const char *column, long long row, long long owner,
                    const char *plain, struct buf *out)
{
    int rc = secretbox_seal(sb, column, row, owner, plain, strlen(plain), out);

    if (rc)
        fail_msg("seal: %s", cp_strerror(rc));
}

/* Wait until a change of the ring file is noticed (checked once a second). */
static void pass_reload_check(void)
{
    struct timespec ts = { 1, 100 * 1000 * 1000 };

    nanosleep(&ts, NULL);
}

static void test_round_trip(void **state)
{
    struct fixture *f = *state;
    struct buf sealed, plain, again;

    buf_init(&sealed, SEALED_MAX);
    buf_init(&again, SEALED_MAX);
    buf_init(&plain, SEALED_MAX);
    seal_ok(f->sb, COLUMN, 7, 42, TOKEN, &sealed);
    assert_int_equal(sealed.len, strlen(TOKEN) + KEYRING_OVERHEAD);
    assert_null(memmem(sealed.data, sealed.len, TOKEN, strlen(TOKEN)));
    assert_null(memmem(sealed.data, sealed.len, "sandbox", 7));
    assert_int_equal(secretbox_current_id(f->sb), 1);

    /* A fresh nonce every time: the same secret never seals the same. */
    seal_ok(f->sb, COLUMN, 7, 42, TOKEN, &again);
    assert_int_equal(again.len, sealed.len);
    assert_memory_not_equal(again.data, sealed.data, sealed.len);

    assert_int_equal(secretbox_open(f->sb, COLUMN, 7, 42, sealed.data, sealed.len, &plain), 0);
    assert_int_equal(plain.len, strlen(TOKEN));
    assert_string_equal(buf_str(&plain), TOKEN);

    /* Opening replaces what the buffer held. */
    assert_int_equal(secretbox_open(f->sb, COLUMN, 7, 42, again.data, again.len, &plain), 0);
    assert_string_equal(buf_str(&plain), TOKEN);

    secretbox_wipe(&plain);
    assert_null(plain.data);
    assert_int_equal(plain.len, 0);

    /* Empty secrets seal too (overhead only). */
    assert_int_equal(secretbox_seal(f->sb, COLUMN, 7, 42, "", 0, &sealed), 0);
    assert_int_equal(sealed.len, KEYRING_OVERHEAD);
    assert_int_equal(secretbox_open(f->sb, COLUMN, 7, 42, sealed.data, sealed.len, &plain), 0);
    assert_int_equal(plain.len, 0);

    buf_free(&sealed);
    buf_free(&again);
    secretbox_wipe(&plain);
}

struct aad_case {
    const char *what;
    const char *column;
    long long row, owner;
};

static const struct aad_case aad_cases[] = {
    { "another column", "connections.refresh_token", 7, 42 },
    { "another table", "posts.access_token", 7, 42 },
    { "another row", COLUMN, 8, 42 },
    { "another owner", COLUMN, 7, 43 },
    { "row and owner swapped", COLUMN, 42, 7 },
    { "no row", COLUMN, 0, 42 },
};

static void test_bound_to_its_row(void **state)
{
    struct fixture *f = *state;
    struct buf sealed, plain;

    buf_init(&sealed, SEALED_MAX);
    buf_init(&plain, SEALED_MAX);
    seal_ok(f->sb, COLUMN, 7, 42, TOKEN, &sealed);
    for (size_t i = 0; i < sizeof aad_cases / sizeof aad_cases[0]; i++) {
        const struct aad_case *t = &aad_cases[i];
        int rc = secretbox_open(f->sb, t->column, t->row, t->owner, sealed.data, sealed.len, &plain);

        if (rc != CP_EINVAL)
            fail_msg("%s: opened (%d)", t->what, rc);
        assert_int_equal(plain.len, 0);
    }
    assert_int_equal(secretbox_open(f->sb, COLUMN, 7, 42, sealed.data, sealed.len, &plain), 0);
    buf_free(&sealed);
    secretbox_wipe(&plain);
}

static void test_tampering_fails(void **state)
{
    struct fixture *f = *state;
    struct buf sealed, plain;
    unsigned char *copy;

    buf_init(&sealed, SEALED_MAX);
    buf_init(&plain, SEALED_MAX);
    seal_ok(f->sb, COLUMN, 7, 42, TOKEN, &sealed);
    copy = malloc(sealed.len);
    assert_non_null(copy);
    /* Every byte: version, key id, nonce, ciphertext and tag. */
    for (size_t i = 0; i < sealed.len; i++) {
        int rc;

        memcpy(copy, sealed.data, sealed.len);
        copy[i] ^= 0x01;
        rc = secretbox_open(f->sb, COLUMN, 7, 42, copy, sealed.len, &plain);
        if (i >= 1 && i < 5) {
            /* A key id of no key in the ring. */
            if (rc != CP_ENOTFOUND)
                fail_msg("key id byte %zu flipped: %d", i, rc);
        } else if (rc != CP_EINVAL) {
            fail_msg("byte %zu flipped: %d", i, rc);
        }
        assert_int_equal(plain.len, 0);
    }
    /* Cut short, cut to the header, or a tag shortened. */
    assert_int_equal(secretbox_open(f->sb, COLUMN, 7, 42, sealed.data, sealed.len - 1, &plain), CP_EINVAL);
    assert_int_equal(secretbox_open(f->sb, COLUMN, 7, 42, sealed.data, KEYRING_OVERHEAD - 1, &plain),
                     CP_EINVAL);
    assert_int_equal(secretbox_open(f->sb, COLUMN, 7, 42, sealed.data, 0, &plain), CP_EINVAL);
    free(copy);
    buf_free(&sealed);
    secretbox_wipe(&plain);
}

static void test_reload_after_a_key_is_added(void **state)
{
    struct fixture *f = *state;
    struct secretbox *other = NULL;
    struct buf old, fresh, plain, err;
    unsigned id = 0, kid = 0;

    buf_init(&old, SEALED_MAX);
    buf_init(&fresh, SEALED_MAX);
    buf_init(&plain, SEALED_MAX);
    buf_init(&err, 1024);
    seal_ok(f->sb, COLUMN, 1, 2, "under key one", &old);

    /* Another process (crosspostctl rotate-key) adds key 2 and seals
     * with it. */
    assert_int_equal(keyring_add_key(f->path, &id, &err), 0);
    assert_int_equal(id, 2);
    assert_int_equal(secretbox_open_path(f->path, &other, &err), 0);
    assert_int_equal(secretbox_current_id(other), 2);
    seal_ok(other, COLUMN, 1, 2, "under key two", &fresh);
    assert_int_equal(keyring_sealed_id((unsigned char *)fresh.data, fresh.len, &kid), 0);
    assert_int_equal(kid, 2);

    /* An unknown key id reloads at once... */
    assert_int_equal(secretbox_open(f->sb, COLUMN, 1, 2, fresh.data, fresh.len, &plain), 0);
    assert_string_equal(buf_str(&plain), "under key two");
    assert_int_equal(secretbox_current_id(f->sb), 2);
    seal_ok(f->sb, COLUMN, 1, 2, "sealed after the reload", &fresh);
    assert_int_equal(keyring_sealed_id((unsigned char *)fresh.data, fresh.len, &kid), 0);
    assert_int_equal(kid, 2);

    /* ... and rows under the old key still open. */
    assert_int_equal(secretbox_open(f->sb, COLUMN, 1, 2, old.data, old.len, &plain), 0);
    assert_string_equal(buf_str(&plain), "under key one");

    /* Sealing notices a new key by itself within a second. */
    assert_int_equal(keyring_add_key(f->path, &id, &err), 0);
    assert_int_equal(id, 3);
    pass_reload_check();
    assert_int_equal(secretbox_current_id(f->sb), 3);
    seal_ok(f->sb, COLUMN, 1, 2, "three", &fresh);
    assert_int_equal(keyring_sealed_id((unsigned char *)fresh.data, fresh.len, &kid), 0);
    assert_int_equal(kid, 3);
    assert_int_equal(secretbox_open(other, COLUMN, 1, 2, fresh.data, fresh.len, &plain), 0);
    assert_string_equal(buf_str(&plain), "three");

    secretbox_free(other);
    buf_free(&old);
    buf_free(&fresh);
    buf_free(&err);
    secretbox_wipe(&plain);
}

static void test_broken_file_keeps_the_loaded_keys(void **state)
{
    struct fixture *f = *state;
    struct buf sealed, plain;
    FILE *fp;

    buf_init(&sealed, SEALED_MAX);
    buf_init(&plain, SEALED_MAX);
    seal_ok(f->sb, COLUMN, 5, 6, TOKEN, &sealed);
    fp = fopen(f->path, "w");
    assert_non_null(fp);
    fputs("1 not-hex\n", fp);
    fclose(fp);
    pass_reload_check();
    assert_int_equal(secretbox_current_id(f->sb), 1);
    assert_int_equal(secretbox_open(f->sb, COLUMN, 5, 6, sealed.data, sealed.len, &plain), 0);
    assert_string_equal(buf_str(&plain), TOKEN);
    seal_ok(f->sb, COLUMN, 5, 6, TOKEN, &sealed);
    buf_free(&sealed);
    secretbox_wipe(&plain);
}

static void test_unknown_key_id(void **state)
{
    struct fixture *f = *state;
    static const char foreign_ring[] =
        "5 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
    struct keyring *foreign = NULL;
    unsigned char sealed[128];
    char aad[KEYRING_AAD_MAX + 1];
    struct buf plain, err;
    size_t len = 0;

    buf_init(&plain, SEALED_MAX);
    buf_init(&err, 1024);
    assert_int_equal(keyring_parse("foreign", foreign_ring, &foreign, &err), 0);
    assert_int_equal(keyring_aad(aad, sizeof aad, COLUMN, 7, 42), 0);
    assert_int_equal(keyring_seal(foreign, "x", 1, aad, sealed, sizeof sealed, &len), 0);
    assert_int_equal(secretbox_open(f->sb, COLUMN, 7, 42, sealed, len, &plain), CP_ENOTFOUND);
    assert_int_equal(plain.len, 0);
    keyring_free(foreign);
    buf_free(&err);
    secretbox_wipe(&plain);
}

static void test_limits(void **state)
{
    struct fixture *f = *state;
    struct buf small, plain;
    char *big;

    /* The sealed value must fit the caller's buffer (its column). */
    buf_init(&small, 32);
    assert_int_equal(secretbox_seal(f->sb, COLUMN, 1, 1, TOKEN, strlen(TOKEN), &small), CP_ETOOBIG);
    big = calloc(1, KEYRING_PLAIN_MAX + 2);
    assert_non_null(big);
    buf_init(&plain, 2 * KEYRING_PLAIN_MAX);
    assert_int_equal(secretbox_seal(f->sb, COLUMN, 1, 1, big, KEYRING_PLAIN_MAX + 1, &plain), CP_ETOOBIG);
    /* And an opened one too. */
    buf_init(&small, 128);
    seal_ok(f->sb, COLUMN, 1, 1, TOKEN, &small);
    buf_init(&plain, 8);
    assert_int_equal(secretbox_open(f->sb, COLUMN, 1, 1, small.data, small.len, &plain), CP_ETOOBIG);
    free(big);
    buf_free(&small);
    secretbox_wipe(&plain);
}

static void test_opening_rings(void **state)
{
    struct fixture *f = *state;
    struct secretbox *sb = NULL;
    struct conf *c = NULL;
    struct buf err;

    buf_init(&err, 1024);
    assert_int_equal(conf_defaults(&c), 0);
    /* Not configured. */
    assert_int_equal(secretbox_open_conf(c, &sb, &err), CP_ENOTFOUND);
    assert_null(sb);
    assert_int_equal(secretbox_open_path("", &sb, &err), CP_ENOTFOUND);
    /* Configured. */
    free(c->secrets_key_file);
    c->secrets_key_file = strdup(f->path);
    assert_int_equal(secretbox_open_conf(c, &sb, &err), 0);
    assert_int_equal(secretbox_current_id(sb), 1);
    secretbox_free(sb);
    sb = NULL;
    /* A ring others may read is refused, with the file named. */
    assert_int_equal(chmod(f->path, 0644), 0);
    assert_int_equal(secretbox_open_conf(c, &sb, &err), CP_EINVAL);
    assert_null(sb);
    assert_non_null(strstr(buf_str(&err), f->path));
    buf_reset(&err);
    assert_int_equal(secretbox_open_path("/nonexistent/ring", &sb, &err), CP_EIO);
    assert_null(sb);
    secretbox_free(NULL);
    conf_free(c);
    buf_free(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bound_to_its_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tampering_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_after_a_key_is_added, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broken_file_keeps_the_loaded_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_key_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_opening_rings, setup, teardown),
    };

    return cmocka_run_group_tests_name("secretbox", tests, NULL, NULL);
}
