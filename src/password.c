#include "config.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <argon2.h>

#include "crypto.h"
#include "err.h"
#include "log.h"
#include "password.h"

const struct password_params password_default_params = {
    .m_kib = 19456,
    .t = 2,
    .p = 1,
};

#define SALT_LEN 16
#define HASH_LEN 32

/* The longest UTF-8 spelling of PASSWORD_MAX code points.  Nothing longer
 * is hashed, which also keeps far below argon2's own 2^32-1 byte limit. */
#define PASSWORD_MAX_BYTES (PASSWORD_MAX * 4)

/* Bounds a stored hash must respect before argon2 sees it, so a tampered
 * row cannot make a login allocate gigabytes or spin for minutes. */
#define PARAM_M_MAX (1024u * 1024u)     /* KiB: 1 GiB */
#define PARAM_T_MAX 100u
#define PARAM_P_MAX 16u

/*
 * The best-known most common passwords of at least PASSWORD_MIN
 * characters (shorter ones already fail the length rule), lower-case,
 * sorted by strcmp() for bsearch().  Drawn from the published top lists
 * (RockYou, SecLists, breach compilations): words, names, number runs,
 * keyboard walks and their "password1"-style variants.
 */
static const char *const common_passwords[] = {
    "!@#$%^&*", "!@#$%^&*()", "!qaz2wsx", "!qaz@wsx", "00000000", "000000000",
    "0000000000", "09876543", "098765432", "0987654321", "1!2@3#4$", "11111111",
    "111111111", "1111111111", "11112222", "1111aaaa", "11223344", "112233445566",
    "12121212", "123123123", "123321123", "12341234", "12344321", "1234512345",
    "1234554321", "123456123", "12345678", "123456789", "1234567890", "1234567890a",
    "1234567890q", "12345678910", "123456789a", "123456789abc", "123456789q",
    "123456789z", "12345678a", "12345678q", "1234567a", "1234567b", "1234567q",
    "12345687", "123456987", "123456aa", "123456abc", "123456qw", "123456qwerty",
    "12345qwert", "1234abcd", "1234asdf", "1234qwer", "1234qwerasdf", "1234zxcv",
    "123654789", "123abc123", "123qwe123", "123qweasd", "123qweasdzxc", "12qwaszx",
    "13131313", "147258369", "147258369a", "147852369", "159357456", "159753456",
    "19841984", "19851985", "19861986", "19871987", "19881988", "19891989", "19901990",
    "19911991", "19921992", "1a2b3c4d", "1password", "1q1q1q1q", "1q2w3e4r",
    "1q2w3e4r!", "1q2w3e4r5", "1q2w3e4r5t", "1q2w3e4r5t6y", "1qa2ws3ed", "1qaz!qaz",
    "1qaz1qaz", "1qaz2wsx", "1qaz2wsx3edc", "1qaz2wsx3edc4rfv", "1qazxsw2", "1qazzaq1",
    "1qw23er4", "20002000", "20102010", "20202020", "22222222", "2wsx3edc", "3edc4rfv",
    "5201314520", "55555555", "66666666", "69696969", "741852963", "77777777",
    "87654321", "88888888", "963852741", "987654321", "9876543210", "99999999",
    "a12345678", "a123456789", "a1b2c3d4", "a1b2c3d4e5", "aa123456", "aa12345678",
    "aaaaaaaa", "abc12345", "abc123456", "abc123abc", "abcabc123", "abcd1234",
    "abcde12345", "abcdefg1", "abcdefgh", "abcdefghi", "access123", "admin!@#",
    "admin123", "admin123!", "admin1234", "admin12345", "admin@123", "adminadmin",
    "administrator", "alexander", "andrew123", "anthony1", "apple123", "arsenal1",
    "asd12345", "asdasdasd", "asdf1234", "asdf;lkj", "asdfasdf", "asdfghjk",
    "asdfghjkl", "asdfghjkl1", "asdfghjkl123", "asdfqwer", "asdfzxcv", "ashley123",
    "asshole1", "azerty12", "azerty123", "azerty1234", "azertyuiop", "babygirl",
    "babygirl1", "barcelona", "baseball", "baseball1", "baseball123", "basketball",
    "basketball1", "batman123", "benjamin", "bigdaddy", "blahblah", "blessed1",
    "blink182", "brandon1", "butterfly", "butterfly1", "butthead", "cameron1",
    "carolina", "changeme", "changeme1", "changeme123", "charlie1", "charlie123",
    "chelsea1", "chocolate", "chocolate1", "christian", "christina", "christopher",
    "cocacola", "computer", "computer1", "contrasena", "corvette", "corvette1",
    "cowboys1", "cristiano", "daniel123", "danielle", "darkness", "david123",
    "default1", "diamond1", "dolphins", "dragon12", "dragon123", "dragon1234",
    "dragonball", "drowssap", "elephant", "elizabeth", "facebook", "facebook1",
    "fernando", "ferrari1", "fishing1", "football", "football1", "football12",
    "football123", "freedom1", "friends1", "fuckoff1", "fuckyou1", "fuckyou123",
    "gateway1", "genesis1", "gladiator", "godbless", "godisgood", "goodluck",
    "google123", "guest123", "hardcore", "harley123", "hello123", "hello1234",
    "hellokitty", "helloworld", "homelesspa", "hunter12", "hunter123", "ilovegod",
    "ilovejesus", "ilovemom", "ilovemyself", "iloveu123", "iloveyou", "iloveyou!",
    "iloveyou!!", "iloveyou1", "iloveyou12", "iloveyou123", "iloveyou2", "iloveyou3",
    "iloveyou7", "internet", "internet1", "jackson1", "jasmine1", "jasmine123",
    "jennifer", "jessica1", "jesus123", "jesuschrist", "johnson1", "jonathan",
    "jordan123", "jordan23", "joshua123", "kawasaki", "killer12", "killer123",
    "letmein!", "letmein1", "letmein12", "letmein123", "letmeinnow", "linkedin",
    "liverpool", "liverpool1", "lkjhgfdsa", "login123", "lovelove", "lovely123",
    "loveyou1", "manchester", "master12", "master123", "master1234", "matrix123",
    "matthew1", "maverick", "melissa1", "mercedes", "messi123", "michael1",
    "michael123", "michelle", "midnight", "minecraft", "minecraft1", "mnbvcxz1",
    "monkey!!", "monkey12", "monkey123", "monkey1234", "moonlight", "motdepasse",
    "motdepasse1", "mustang1", "mustang123", "mylove123", "mypassword", "myspace1",
    "naruto123", "newpassword", "nicholas", "nicole123", "nirvana1", "november",
    "onepiece", "p4ssw0rd", "p4ssword", "p@$$w0rd", "p@ssw0rd", "p@ssw0rd!",
    "p@ssw0rd1", "p@ssw0rd123", "p@ssword", "p@ssword1", "pa$$w0rd", "pa$$word",
    "pa55w0rd", "pa55word", "pass1234", "pass12345", "pass@123", "passpass", "passw0rd",
    "passw0rd!", "passw0rd1", "passw0rd123", "password", "password!", "password0",
    "password00", "password01", "password1", "password1!", "password11", "password12",
    "password123", "password123!", "password1234", "password12345", "password2",
    "password3", "password321", "password69", "password7", "password88", "password99",
    "password@123", "passwort", "passwort1", "passwort123", "patricia", "peaches1",
    "phoenix1", "playboy1", "poiuytrewq", "pokemon1", "pokemon12", "pokemon123",
    "princess", "princess1", "princess12", "princess123", "q1w2e3r4", "q1w2e3r4t",
    "q1w2e3r4t5", "q1w2e3r4t5y6", "qazqazqaz", "qazwsx123", "qazwsxedc", "qazwsxedc123",
    "qazxswedc", "qw123456", "qwe12345", "qwe123456", "qwe123qwe", "qwe123qwe123",
    "qweasdzxc", "qweasdzxc123", "qweqweqwe", "qwer1234", "qwerasdf", "qwerasdfzxcv",
    "qwert12345", "qwerty01", "qwerty1!", "qwerty11", "qwerty12", "qwerty123",
    "qwerty123!", "qwerty1234", "qwerty12345", "qwerty123456", "qwertyqwerty",
    "qwertyu1", "qwertyui", "qwertyuio", "qwertyuiop", "qwertyuiop123", "qwertz12",
    "qwertz123", "qwertzuiop", "rainbow1", "rebecca1", "robert123", "rockyou1",
    "ronaldo7", "root1234", "rootroot", "samantha", "samsung1", "samsung123",
    "scooter1", "sebastian", "secret!!", "secret12", "secret123", "secret1234",
    "senha123", "shadow12", "shadow123", "shannon1", "slipknot", "snickers", "soccer12",
    "soccer123", "spiderman", "spiderman1", "spiderman123", "starwars", "starwars!",
    "starwars1", "starwars123", "steelers", "stephanie", "summer12", "summer123",
    "sunflower", "sunshine", "sunshine1", "sunshine123", "superman", "superman1",
    "superman123", "superstar", "swordfish", "temp1234", "tequiero", "test1234",
    "test12345", "testing1", "testing123", "testtest", "thomas123", "thunder1",
    "toor1234", "trinity1", "trustno1", "trustno1!", "twilight", "unicorn1", "user1234",
    "valentina", "victoria", "welcome!", "welcome01", "welcome1", "welcome12",
    "welcome123", "welcome1234", "welcome2", "welcome@123", "whatever", "whatever1",
    "william1", "winston1", "winter12", "woaini1314", "wolverine", "xsw2zaq1",
    "xxxxxxxx", "yamaha123", "yankees1", "zaq!2wsx", "zaq123wsx", "zaq12wsx",
    "zaq1xsw2", "zaq1zaq1", "zxcv1234", "zxcvbnm1", "zxcvbnm12", "zxcvbnm123",
    "zxcvbnmasdf", "zxczxczxc", "zzzzzzzz",
};

#define COMMON_COUNT (sizeof common_passwords / sizeof common_passwords[0])
/* Longer than any entry: such passwords are never looked up. */
#define COMMON_MAX_LEN 31

/*
 * Count the code points of s, refusing what a password should not hold:
 * malformed UTF-8 (overlong forms, surrogates, values past U+10FFFF,
 * truncated sequences) and control characters (C0 including NUL, DEL and
 * C1), which cannot be typed reliably and often mean binary garbage.
 * Returns 0 and the count, or -1.
 */
static int utf8_count(const unsigned char *s, size_t len, size_t *count)
{
    size_t i = 0, n = 0;

    while (i < len) {
        unsigned char c = s[i];
        uint32_t cp;
        size_t seq;

        if (c < 0x80) {
            cp = c;
            seq = 1;
        } else if (c >= 0xc2 && c <= 0xdf) {
            cp = c & 0x1f;
            seq = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            cp = c & 0x0f;
            seq = 3;
        } else if (c >= 0xf0 && c <= 0xf4) {
            cp = c & 0x07;
            seq = 4;
        } else {
            return -1;
        }
        if (seq > len - i)
            return -1;
        for (size_t k = 1; k < seq; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return -1;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((seq == 3 && cp < 0x800) || (cp >= 0xd800 && cp <= 0xdfff) ||
            (seq == 4 && (cp < 0x10000 || cp > 0x10ffff)))
            return -1;
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
            return -1;
        i += seq;
        n++;
    }
    *count = n;
    return 0;
}

static unsigned char ascii_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Equal ignoring ASCII case; a and b both hold len bytes. */
static int ascii_case_equal(const char *a, const char *b, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (ascii_lower((unsigned char)a[i]) != ascii_lower((unsigned char)b[i]))
            return 0;
    return 1;
}

static int compare_entries(const void *key, const void *entry)
{
    return strcmp(key, *(const char *const *)entry);
}

static int is_common(const char *pw, size_t len)
{
    char folded[COMMON_MAX_LEN + 1];

    if (len > COMMON_MAX_LEN)
        return 0;
    for (size_t i = 0; i < len; i++)
        folded[i] = (char)ascii_lower((unsigned char)pw[i]);
    folded[len] = '\0';
    return bsearch(folded, common_passwords, COMMON_COUNT, sizeof common_passwords[0],
                   compare_entries) != NULL;
}

static int is_like_email(const char *pw, size_t len, const char *email)
{
    const char *at;
    size_t email_len;

    if (!email)
        return 0;
    email_len = strlen(email);
    if (email_len == len && ascii_case_equal(pw, email, len))
        return 1;
    at = strrchr(email, '@');
    return at && (size_t)(at - email) == len && ascii_case_equal(pw, email, len);
}

enum password_verdict password_check(const char *pw, size_t len, const char *email)
{
    size_t chars = 0;

    if (!pw && len)
        return PASSWORD_NOT_UTF8;
    if (!pw)
        pw = "";
    if (utf8_count((const unsigned char *)pw, len, &chars) < 0)
        return PASSWORD_NOT_UTF8;
    if (chars < PASSWORD_MIN)
        return PASSWORD_TOO_SHORT;
    if (chars > PASSWORD_MAX)
        return PASSWORD_TOO_LONG;
    if (is_common(pw, len))
        return PASSWORD_TOO_COMMON;
    if (is_like_email(pw, len, email))
        return PASSWORD_LIKE_EMAIL;
    return PASSWORD_OK;
}

const char *password_verdict_text(enum password_verdict v)
{
    switch (v) {
    case PASSWORD_OK:
        return "The password is acceptable.";
    case PASSWORD_TOO_SHORT:
        return "The password must have at least 8 characters.";
    case PASSWORD_TOO_LONG:
        return "The password must have at most 128 characters.";
    case PASSWORD_NOT_UTF8:
        return "The password must be valid UTF-8 text without control characters.";
    case PASSWORD_TOO_COMMON:
        return "The password is too common; choose one that is harder to guess.";
    case PASSWORD_LIKE_EMAIL:
        return "The password must not be the account's email address.";
    }
    return "The password is not acceptable.";
}

static int params_valid(unsigned long m, unsigned long t, unsigned long p)
{
    /* argon2 itself needs 8 KiB per lane. */
    return p >= 1 && p <= PARAM_P_MAX && t >= 1 && t <= PARAM_T_MAX &&
           m >= 8 * p && m <= PARAM_M_MAX;
}

/* Read a decimal without sign or leading zeros, at most max. */
static const char *parse_decimal(const char *s, unsigned long max, unsigned long *out)
{
    unsigned long v = 0;
    size_t digits = 0;

    if (s[0] == '0' && s[1] >= '0' && s[1] <= '9')
        return NULL;
    while (s[digits] >= '0' && s[digits] <= '9') {
        v = v * 10 + (unsigned long)(s[digits] - '0');
        if (v > max)
            return NULL;
        digits++;
    }
    if (!digits)
        return NULL;
    *out = v;
    return s + digits;
}

/* Skip a run of standard base64 characters (PHC: no padding); NULL if empty. */
static const char *skip_b64(const char *s)
{
    const char *start = s;

    while ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
           (*s >= '0' && *s <= '9') || *s == '+' || *s == '/')
        s++;
    return s == start ? NULL : s;
}

/*
 * Check that hash is "$argon2id$v=19$m=M,t=T,p=P$salt$hash" with sane
 * parameters, and read them.  The salt and digest are decoded by argon2;
 * here they only need to be non-empty base64 runs.
 */
static int phc_parse(const char *hash, struct password_params *params)
{
    static const char prefix[] = "$argon2id$v=19$m=";
    unsigned long m, t, p;
    const char *s;

    if (!hash || strnlen(hash, PASSWORD_HASH_MAX) >= PASSWORD_HASH_MAX)
        return CP_EINVAL;
    if (strncmp(hash, prefix, sizeof prefix - 1) != 0)
        return CP_EINVAL;
    s = parse_decimal(hash + sizeof prefix - 1, PARAM_M_MAX, &m);
    if (!s || strncmp(s, ",t=", 3) != 0)
        return CP_EINVAL;
    s = parse_decimal(s + 3, PARAM_T_MAX, &t);
    if (!s || strncmp(s, ",p=", 3) != 0)
        return CP_EINVAL;
    s = parse_decimal(s + 3, PARAM_P_MAX, &p);
    if (!s || *s != '$')
        return CP_EINVAL;
    s = skip_b64(s + 1);
    if (!s || *s != '$')
        return CP_EINVAL;
    s = skip_b64(s + 1);
    if (!s || *s != '\0')
        return CP_EINVAL;
    if (!params_valid(m, t, p))
        return CP_EINVAL;
    params->m_kib = (unsigned)m;
    params->t = (unsigned)t;
    params->p = (unsigned)p;
    return 0;
}

static int argon2_to_cp(int rc)
{
    switch (rc) {
    case ARGON2_OK:
        return 0;
    case ARGON2_VERIFY_MISMATCH:
        return CP_ENOTFOUND;
    case ARGON2_MEMORY_ALLOCATION_ERROR:
        return CP_ENOMEM;
    case ARGON2_THREAD_FAIL:
        return CP_EIO;
    default:
        return CP_EINVAL;
    }
}

int password_hash(const char *pw, size_t len, const struct password_params *params,
                  char *out, size_t out_cap)
{
    unsigned char salt[SALT_LEN];
    int rc;

    if (out && out_cap)
        out[0] = '\0';
    if (!params)
        params = &password_default_params;
    if (!out || (!pw && len) || len > PASSWORD_MAX_BYTES ||
        !params_valid(params->m_kib, params->t, params->p))
        return CP_EINVAL;
    if (out_cap < argon2_encodedlen(params->t, params->m_kib, params->p, SALT_LEN, HASH_LEN,
                                    Argon2_id))
        return CP_EINVAL;
    rc = crypto_random(salt, sizeof salt);
    if (rc)
        return rc;
    rc = argon2id_hash_encoded(params->t, params->m_kib, params->p, pw ? pw : "", len, salt,
                               sizeof salt, HASH_LEN, out, out_cap);
    if (rc != ARGON2_OK) {
        out[0] = '\0';
        log_error("argon2id hashing failed: %s", argon2_error_message(rc));
        return argon2_to_cp(rc);
    }
    return 0;
}

int password_verify(const char *hash, const char *pw, size_t len)
{
    struct password_params stored;
    int rc;

    rc = phc_parse(hash, &stored);
    if (rc)
        return rc;
    if (!pw && len)
        return CP_EINVAL;
    /* password_hash() never accepts more, so nothing longer can match. */
    if (len > PASSWORD_MAX_BYTES)
        return CP_ENOTFOUND;
    rc = argon2id_verify(hash, pw ? pw : "", len);
    if (rc == ARGON2_MEMORY_ALLOCATION_ERROR || rc == ARGON2_THREAD_FAIL)
        log_error("argon2id verification failed: %s", argon2_error_message(rc));
    return argon2_to_cp(rc);
}

int password_needs_rehash(const char *hash, const struct password_params *params)
{
    struct password_params stored;

    if (!params)
        params = &password_default_params;
    if (phc_parse(hash, &stored) != 0)
        return 1;
    return stored.m_kib != params->m_kib || stored.t != params->t || stored.p != params->p;
}

/* Made once from 32 random bytes nobody keeps.  Should that fail (no
 * memory, no randomness), a hash made the same way offline stands in, so
 * the caller still pays for a full verification. */
static char dummy_hash[PASSWORD_HASH_MAX];
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
static const char dummy_fallback[] =
    "$argon2id$v=19$m=19456,t=2,p=1$eGLVHRXbDJn9CAiJbipQ6g$"
    "UND58SMR5m5QwORTKfIZJwMNH7OkYQ8dIBbjjO6Kg8c";

static void dummy_init(void)
{
    unsigned char secret[32];

    if (crypto_random(secret, sizeof secret) != 0 ||
        password_hash((const char *)secret, sizeof secret, &password_default_params,
                      dummy_hash, sizeof dummy_hash) != 0)
        memcpy(dummy_hash, dummy_fallback, sizeof dummy_fallback);
    explicit_bzero(secret, sizeof secret);
}

const char *password_dummy_hash(void)
{
    pthread_once(&dummy_once, dummy_init);
    return dummy_hash;
}
