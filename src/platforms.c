#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "err.h"
#include "json.h"
#include "pkce.h"
#include "plat_internal.h"
#include "platforms.h"

const struct platform platforms[PLATFORM_COUNT] = {
    { PLATFORM_TIKTOK, "tiktok", "TikTok", 1, tiktok_configured, tiktok_auth_kind,
      tiktok_auth_begin, tiktok_auth_finish, tiktok_refresh, tiktok_check },
    { PLATFORM_INSTAGRAM, "instagram", "Instagram", 0, instagram_configured,
      instagram_auth_kind, instagram_auth_begin, instagram_auth_finish, instagram_refresh,
      instagram_check },
    { PLATFORM_YOUTUBE, "youtube", "YouTube", 0, youtube_configured, youtube_auth_kind,
      youtube_auth_begin, youtube_auth_finish, youtube_refresh, youtube_check },
    { PLATFORM_X, "x", "X", 0, x_configured, x_auth_kind, x_auth_begin, x_auth_finish,
      x_refresh, x_check },
};

const struct platform *platform_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < PLATFORM_COUNT; i++)
        if (strcmp(platforms[i].name, name) == 0)
            return &platforms[i];
    return NULL;
}

const struct platform *platform_get(enum platform_id id)
{
    if ((int)id < 0 || (int)id >= PLATFORM_COUNT)
        return NULL;
    return &platforms[id];
}

static const char *const auth_kind_names[] = {
    [AUTH_OAUTH2] = "oauth2",
    [AUTH_OAUTH1] = "oauth1",
    [AUTH_COOKIE] = "cookie",
};

const char *auth_kind_name(enum auth_kind k)
{
    if ((int)k < 0 || (size_t)k >= sizeof auth_kind_names / sizeof auth_kind_names[0])
        return "unknown";
    return auth_kind_names[k];
}

int auth_kind_parse(const char *name, enum auth_kind *out)
{
    if (!out)
        return CP_EINVAL;
    *out = AUTH_OAUTH2;
    if (!name)
        return CP_EINVAL;
    for (size_t i = 0; i < sizeof auth_kind_names / sizeof auth_kind_names[0]; i++) {
        if (strcmp(auth_kind_names[i], name) == 0) {
            *out = (enum auth_kind)i;
            return 0;
        }
    }
    return CP_EINVAL;
}

const char *plat_outcome_name(enum plat_outcome o)
{
    switch (o) {
    case PLAT_OK:
        return "ok";
    case PLAT_RETRY:
        return "retry";
    case PLAT_DEFER:
        return "defer";
    case PLAT_REAUTH:
        return "reauth";
    case PLAT_FATAL:
        return "fatal";
    }
    return "unknown";
}

/* ------------------------------------------------------------- tokens -- */

static void wipe_string(char **slot)
{
    if (*slot) {
        OPENSSL_cleanse(*slot, strlen(*slot));
        free(*slot);
        *slot = NULL;
    }
}

void plat_tokens_clear(struct plat_tokens *t)
{
    if (!t)
        return;
    wipe_string(&t->access_token);
    wipe_string(&t->refresh_token);
    wipe_string(&t->token_secret);
    OPENSSL_cleanse(t, sizeof *t);
    memset(t, 0, sizeof *t);
}

int plat_tokens_set(char **slot, const char *s)
{
    char *copy = NULL;

    if (!slot)
        return CP_EINVAL;
    if (s) {
        copy = strdup(s);
        if (!copy)
            return CP_ENOMEM;
    }
    wipe_string(slot);
    *slot = copy;
    return 0;
}

/* ------------------------------------------------------------- errors -- */

void plat_error_set(struct plat_error *err, enum plat_outcome outcome, long http_status,
                    const char *code, const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return;
    memset(err, 0, sizeof *err);
    err->outcome = outcome;
    err->http_status = http_status;
    plat_copy_text(err->code, sizeof err->code, code ? code : "");
    if (fmt) {
        /* Format past the limit, so the cut below can see where the
         * characters end (vsnprintf would cut one in two). */
        char text[2 * PLAT_MESSAGE_MAX];

        va_start(ap, fmt);
        vsnprintf(text, sizeof text, fmt, ap);
        va_end(ap);
        plat_copy_text(err->message, sizeof err->message, text);
    }
}

int plat_error_transport(struct plat_error *err, int rc, const struct http_response *resp,
                         const char *what)
{
    const char *why = resp && resp->error[0] ? resp->error : cp_strerror(rc);
    enum plat_outcome outcome;
    const char *code;

    switch (rc) {
    case CP_ETIMEDOUT:
        outcome = PLAT_RETRY;
        code = "timeout";
        break;
    case CP_EUNAVAIL:
        outcome = PLAT_RETRY;
        code = "unavailable";
        break;
    case CP_EIO:
    case CP_ENOMEM:
        /* dropped connections, resets, TLS failures mid-way */
        outcome = PLAT_RETRY;
        code = "transport";
        break;
    case CP_ETOOBIG:
        outcome = PLAT_FATAL;
        code = "response_too_big";
        break;
    default:
        /* a malformed URL or request: configuration, not the network */
        outcome = PLAT_FATAL;
        code = "bad_request";
        break;
    }
    plat_error_set(err, outcome, resp ? resp->status : 0, code, "%s: %s",
                   what ? what : "request", why);
    return rc;
}

long long plat_retry_after_ms(const struct http_response *resp)
{
    struct buf v;
    long long ms = 0;
    const char *s;

    if (!resp)
        return 0;
    buf_init(&v, 256);
    if (http_response_header(resp, "Retry-After", &v) != 0 || v.len == 0)
        goto out;
    s = buf_str(&v);
    if (isdigit((unsigned char)s[0])) {
        char *end;
        long long secs;

        errno = 0;
        secs = strtoll(s, &end, 10);
        if (errno == 0 && *end == '\0' && secs >= 0 && secs <= 366LL * 86400)
            ms = secs * 1000;
    } else {
        time_t when = curl_getdate(s, NULL);
        time_t now = time(NULL);

        if (when != (time_t)-1 && when > now && when - now <= 366LL * 86400)
            ms = (long long)(when - now) * 1000;
    }
out:
    buf_free(&v);
    return ms;
}

/* ----------------------------------------------------- classification -- */

/* "LO-HI" as a numeric range, or an exact code. */
static int code_matches(const char *rule, const char *code)
{
    const char *dash = strchr(rule, '-');
    char *end;
    long lo, hi, n;

    if (!dash || !isdigit((unsigned char)rule[0]))
        return strcmp(rule, code) == 0;
    if (!isdigit((unsigned char)code[0]))
        return 0;
    lo = strtol(rule, &end, 10);
    if (end != dash)
        return 0;
    hi = strtol(dash + 1, &end, 10);
    if (*end)
        return 0;
    n = strtol(code, &end, 10);
    if (*end)
        return 0;
    return n >= lo && n <= hi;
}

const struct plat_rule *plat_rule_find(const struct plat_rules *rules, long status,
                                       const char *code, const char *subcode)
{
    for (size_t i = 0; i < rules->count; i++) {
        const struct plat_rule *r = &rules->rows[i];

        if (r->status_min && (status < r->status_min || status > r->status_max))
            continue;
        if (r->code && (!code || !*code || !code_matches(r->code, code)))
            continue;
        if (r->subcode && (!subcode || strcmp(r->subcode, subcode) != 0))
            continue;
        return r;
    }
    return NULL;
}

int plat_outcome_rc(enum plat_outcome o)
{
    switch (o) {
    case PLAT_OK:
        return 0;
    case PLAT_RETRY:
    case PLAT_DEFER:
        return CP_ERETRY;
    case PLAT_REAUTH:
        return CP_EINVAL;
    case PLAT_FATAL:
        break;
    }
    return CP_EPROTO;
}

enum plat_outcome plat_classify(const struct plat_rules *rules, const struct http_response *resp,
                                const char *what, struct plat_error *err)
{
    struct plat_fault f;
    const struct plat_rule *row;
    enum plat_outcome outcome;
    long status = resp->status;
    char code[PLAT_CODE_MAX];

    memset(err, 0, sizeof *err);
    memset(&f, 0, sizeof f);
    rules->fault(resp, &f);
    if (!f.found && status >= 200 && status <= 299)
        return PLAT_OK;

    row = plat_rule_find(rules, status, f.found ? f.code : NULL, f.found ? f.subcode : NULL);
    if (row)
        outcome = row->outcome;
    else
        outcome = status >= 500 && status <= 599 ? PLAT_RETRY : PLAT_FATAL;

    if (f.found && f.code[0])
        snprintf(code, sizeof code, "%s", f.code);
    else
        snprintf(code, sizeof code, "http_%ld", status);

    if (!f.found && !row)
        plat_error_set(err, outcome, status, code,
                       "%s: %s answered HTTP %ld with a body that is not its documented JSON",
                       what, rules->label, status);
    else
        plat_error_set(err, outcome, status, code, "%s: %s (HTTP %ld, %s%s%s)%s%s", what,
                       row ? row->meaning : "refused", status, code, f.subcode[0] ? "/" : "",
                       f.subcode, f.text[0] ? ": " : "", f.text);
    if (outcome == PLAT_RETRY || outcome == PLAT_DEFER)
        err->retry_after_ms = rules->wait_ms ? rules->wait_ms(resp, outcome)
                                             : plat_retry_after_ms(resp);
    return outcome;
}

void plat_response_free(struct http_response *resp)
{
    if (!resp)
        return;
    if (resp->body.data)
        OPENSSL_cleanse(resp->body.data, resp->body.alloc);
    http_response_free(resp);
}

int plat_call(struct plat_ctx *pc, const struct plat_rules *rules, const struct http_request *req,
              struct http_response *resp, const char *what, struct plat_error *err)
{
    enum plat_outcome outcome;
    int rc;

    memset(err, 0, sizeof *err);
    rc = http_do(pc->http, req, resp);
    if (rc) {
        plat_error_transport(err, rc, resp, what);
        plat_response_free(resp);
        return rc;
    }
    outcome = plat_classify(rules, resp, what, err);
    if (outcome == PLAT_OK)
        return 0;
    plat_response_free(resp);
    return plat_outcome_rc(outcome);
}

int plat_send(struct plat_ctx *pc, const struct plat_rules *rules, const char *method,
              const char *url, const char *authorization, const char *content_type,
              const struct buf *body, const char *what, struct http_response *resp,
              struct plat_error *err)
{
    struct http_header headers[3];
    struct http_request req;
    size_t n = 0;

    headers[n++] = (struct http_header){ "Accept", "application/json" };
    if (authorization)
        headers[n++] = (struct http_header){ "Authorization", authorization };
    if (body && content_type)
        headers[n++] = (struct http_header){ "Content-Type", content_type };
    http_request_init(&req, method, url);
    req.headers = headers;
    req.nheaders = n;
    if (body) {
        req.body = body->data ? body->data : "";
        req.body_len = body->len;
    }
    return plat_call(pc, rules, &req, resp, what, err);
}

int plat_bearer(struct buf *b, const char *token)
{
    if (!token || !*token)
        return CP_EINVAL;
    return buf_printf(b, "Bearer %s", token);
}

int plat_error_unexpected(struct plat_error *err, long status, const char *what,
                          const char *missing)
{
    plat_error_set(err, PLAT_FATAL, status, "unexpected_response",
                   "%s: the answer is not what the platform documents (%s)", what, missing);
    return CP_EPROTO;
}

/* ------------------------------------------------------------ helpers -- */

static const struct json_limits response_limits = {
    .max_size = 8u * 1024 * 1024,
    .max_depth = 32,
    .max_string = 256 * 1024,
};

int plat_json_parse(const char *body, size_t len, struct json_object **out)
{
    struct json_object *obj = NULL;
    int rc;

    *out = NULL;
    if (!body || len == 0)
        return CP_EPARSE;
    rc = json_parse(body, len, &response_limits, &obj, NULL);
    if (rc)
        return rc;
    if (!json_object_is_type(obj, json_type_object)) {
        json_object_put(obj);
        return CP_EINVAL;
    }
    *out = obj;
    return 0;
}

const char *plat_json_text(struct json_object *obj, const char *key, char *scratch, size_t cap)
{
    struct json_object *v;

    if (!obj || !json_object_object_get_ex(obj, key, &v) || !v)
        return NULL;
    if (json_object_is_type(v, json_type_string))
        return json_object_get_string(v);
    if (json_object_is_type(v, json_type_int) && cap > 0) {
        snprintf(scratch, cap, "%lld", (long long)json_object_get_int64(v));
        return scratch;
    }
    return NULL;
}

long long plat_json_seconds(struct json_object *obj, const char *key)
{
    struct json_object *v;
    long long n = 0;

    if (!obj || !json_object_object_get_ex(obj, key, &v) || !v)
        return 0;
    if (json_object_is_type(v, json_type_int)) {
        n = json_object_get_int64(v);
    } else if (json_object_is_type(v, json_type_string)) {
        const char *s = json_object_get_string(v);
        char *end;

        if (!isdigit((unsigned char)s[0]))
            return 0;
        errno = 0;
        n = strtoll(s, &end, 10);
        if (errno || *end)
            return 0;
    }
    /* a century is past any token's lifetime: treat more as unreadable */
    return n > 0 && n < 100LL * 366 * 86400 ? n : 0;
}

void plat_copy_text(char *dst, size_t cap, const char *src)
{
    size_t n;

    if (cap == 0)
        return;
    if (!src)
        src = "";
    n = strlen(src);
    if (n >= cap) {
        n = cap - 1;
        /* back off continuation bytes so no character is cut */
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    memmove(dst, src, n);
    dst[n] = '\0';
}

static int token_char(int c)
{
    return isalnum(c) || strchr("-._~+/=%", c) != NULL;
}

/* Runs at least this long that mix letters and digits read as secrets. */
#define TOKEN_RUN_MIN 24

void plat_text_clean(char *dst, size_t cap, const char *src)
{
    size_t o = 0;
    const unsigned char *s = (const unsigned char *)(src ? src : "");

    if (cap == 0)
        return;
    while (*s && o + 1 < cap) {
        if (token_char(*s)) {
            const unsigned char *e = s;
            int digits = 0, alphas = 0;

            while (*e && token_char(*e)) {
                digits += isdigit(*e) != 0;
                alphas += isalpha(*e) != 0;
                e++;
            }
            if ((size_t)(e - s) >= TOKEN_RUN_MIN && digits && alphas) {
                const char *r = "[redacted]";
                size_t rl = strlen(r);

                if (o + rl + 1 > cap)
                    break;
                memcpy(dst + o, r, rl);
                o += rl;
            } else {
                size_t n = (size_t)(e - s);

                if (o + n + 1 > cap)
                    n = cap - 1 - o;
                memcpy(dst + o, s, n);
                o += n;
            }
            s = e;
            continue;
        }
        dst[o++] = *s < 0x20 || *s == 0x7f ? ' ' : (char)*s;
        s++;
    }
    dst[o] = '\0';
    plat_copy_text(dst, cap, dst);
}

int plat_form_add(struct buf *b, const char *name, const char *value)
{
    int rc = 0;

    if (b->len > 0 && b->data[b->len - 1] != '?')
        rc = buf_addc(b, '&');
    if (!rc)
        rc = buf_add_percent_encoded(b, name, strlen(name), NULL);
    if (!rc)
        rc = buf_addc(b, '=');
    if (!rc && value)
        rc = buf_add_percent_encoded(b, value, strlen(value), NULL);
    return rc;
}

static int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decode len bytes of form text into out[cap]. */
static int form_decode(const char *s, size_t len, char *out, size_t cap)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)s[i];

        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int hi, lo;

            if (i + 2 >= len)
                return CP_EINVAL;
            hi = hex_value((unsigned char)s[i + 1]);
            lo = hex_value((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0)
                return CP_EINVAL;
            c = hi * 16 + lo;
            if (c == 0)
                return CP_EINVAL;
            i += 2;
        }
        if (o + 1 >= cap)
            return CP_ETOOBIG;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

int plat_form_get(const char *body, size_t len, const char *name, char *out, size_t cap)
{
    const char *p = body, *end = body + len;
    size_t name_len = strlen(name);

    if (cap)
        out[0] = '\0';
    if (!body || cap == 0)
        return CP_EINVAL;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pair_end = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pair_end - p));
        char key[128];

        if (eq && form_decode(p, (size_t)(eq - p), key, sizeof key) == 0 &&
            strlen(key) == name_len && memcmp(key, name, name_len) == 0) {
            const char *v = eq + 1, *v_end = pair_end;

            /* a trailing newline is not part of the last value */
            while (v_end > v && (v_end[-1] == '\n' || v_end[-1] == '\r'))
                v_end--;
            return form_decode(v, (size_t)(v_end - v), out, cap);
        }
        p = pair_end + 1;
    }
    return CP_ENOTFOUND;
}

int plat_url(struct buf *b, const char *base, const char *fmt, ...)
{
    size_t n = base ? strlen(base) : 0;
    va_list ap;
    int rc;

    if (n == 0)
        return CP_EINVAL;
    while (n > 0 && base[n - 1] == '/')
        n--;
    rc = buf_add(b, base, n);
    if (rc)
        return rc;
    va_start(ap, fmt);
    rc = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void plat_buf_wipe(struct buf *b)
{
    if (!b)
        return;
    if (b->data)
        OPENSSL_cleanse(b->data, b->alloc);
    buf_free(b);
}

int plat_pkce(struct auth_begin_out *out, char challenge[PKCE_CHALLENGE_LEN + 1])
{
    char verifier[PKCE_VERIFIER_LEN + 1];
    int rc = pkce_verifier(verifier);

    if (!rc)
        rc = pkce_challenge(verifier, challenge);
    if (!rc)
        snprintf(out->verifier, sizeof out->verifier, "%s", verifier);
    OPENSSL_cleanse(verifier, sizeof verifier);
    return rc;
}

int plat_no_memory(struct plat_error *err, const char *what)
{
    plat_error_set(err, PLAT_RETRY, 0, "no_memory", "%s: out of memory", what);
    return CP_ENOMEM;
}

int plat_need_token(const char *token, const char *kind, const char *what,
                    struct plat_error *err)
{
    char code[PLAT_CODE_MAX];

    if (token && *token)
        return 0;
    snprintf(code, sizeof code, "no_%s_token", kind);
    plat_error_set(err, PLAT_REAUTH, 0, code,
                   "%s: there is no %s token: reconnect the account", what, kind);
    return CP_EINVAL;
}

int plat_form_pairs(struct buf *b, const char *const *pairs, size_t npairs)
{
    int rc = 0;

    for (size_t i = 0; i + 1 < npairs && !rc; i += 2)
        rc = plat_form_add(b, pairs[i], pairs[i + 1]);
    return rc;
}

int plat_query_url(struct buf *out, const char *base, const char *const *pairs, size_t npairs)
{
    int rc;

    if (!base || !*base)
        return CP_EINVAL;
    rc = buf_adds(out, base);
    if (!rc && !strchr(base, '?'))
        rc = buf_addc(out, '?');
    if (!rc)
        rc = plat_form_pairs(out, pairs, npairs);
    return rc;
}

int plat_begin_check(const struct auth_begin_in *in, const struct auth_begin_out *out,
                     const char *what, struct plat_error *err)
{
    if (in->state && *in->state && strlen(in->state) < sizeof out->state_key &&
        in->redirect_uri && *in->redirect_uri)
        return 0;
    plat_error_set(err, PLAT_FATAL, 0, "bad_request", "%s: no state or redirect URI", what);
    return CP_EINVAL;
}

int plat_begin_pkce(struct plat_ctx *pc, const struct auth_begin_in *in,
                    struct auth_begin_out *out, plat_authorize_fn build, const char *what,
                    struct plat_error *err)
{
    char challenge[PKCE_CHALLENGE_LEN + 1];
    int rc = plat_pkce(out, challenge);

    if (!rc)
        rc = build(pc->conf, in->state, in->redirect_uri, challenge, &out->url);
    if (rc) {
        buf_free(&out->url);
        memset(out->verifier, 0, sizeof out->verifier);
        return plat_no_memory(err, what);
    }
    snprintf(out->state_key, sizeof out->state_key, "%s", in->state);
    return 0;
}

int plat_finish_check(const struct auth_finish_in *in, const char *what, struct plat_error *err)
{
    if (in->code && *in->code)
        return 0;
    plat_error_set(err, PLAT_FATAL, 0, "bad_request", "%s: no authorization code", what);
    return CP_EINVAL;
}

/* The client's credentials, when the platform wants them in the form. */
static int form_client(struct buf *form, const char *id_name, const char *client_id,
                       const char *client_secret)
{
    const char *pairs[] = { id_name, client_id, "client_secret", client_secret };

    return id_name ? plat_form_pairs(form, pairs, 4) : 0;
}

int plat_code_form(struct buf *form, const char *id_name, const char *client_id,
                   const char *client_secret, const struct auth_finish_in *in, int pkce_required)
{
    const char *pairs[] = {
        "code", in->code, "grant_type", "authorization_code",
        "redirect_uri", in->redirect_uri ? in->redirect_uri : "",
    };
    int rc = form_client(form, id_name, client_id, client_secret);

    if (!rc)
        rc = plat_form_pairs(form, pairs, sizeof pairs / sizeof *pairs);
    if (!rc && (pkce_required || (in->verifier && *in->verifier)))
        rc = plat_form_add(form, "code_verifier", in->verifier ? in->verifier : "");
    return rc;
}

int plat_refresh_form(struct buf *form, const char *id_name, const char *client_id,
                      const char *client_secret, const char *refresh_token)
{
    const char *pairs[] = { "grant_type", "refresh_token", "refresh_token", refresh_token };
    int rc = form_client(form, id_name, client_id, client_secret);

    if (!rc)
        rc = plat_form_pairs(form, pairs, 4);
    return rc;
}

int plat_token_call(struct plat_ctx *pc, const struct plat_token_req *r, struct plat_tokens *tok,
                    struct plat_error *err)
{
    struct http_response resp;
    int rc;

    rc = plat_send(pc, r->rules, r->form ? "POST" : "GET", r->url, r->authorization,
                   r->form ? "application/x-www-form-urlencoded" : NULL, r->form, r->what, &resp,
                   err);
    if (!rc) {
        rc = plat_parse_oauth2_tokens(resp.body.data, resp.body.len,
                                      r->answer ? r->answer : r->what, tok, r->id_key, r->id,
                                      r->id_cap, err);
        plat_response_free(&resp);
    }
    return rc;
}

static int set_token(char **slot, const char *value, const char *what, const char *name,
                     struct plat_error *err)
{
    if (strlen(value) > PLAT_TOKEN_MAX)
        return plat_error_unexpected(err, 200, what, name);
    if (plat_tokens_set(slot, value)) {
        plat_error_set(err, PLAT_RETRY, 200, "no_memory", "%s: out of memory", what);
        return CP_ENOMEM;
    }
    return 0;
}

int plat_parse_oauth2_tokens(const char *body, size_t len, const char *what,
                             struct plat_tokens *tok, const char *id_key, char *id, size_t cap,
                             struct plat_error *err)
{
    struct json_object *root = NULL;
    const char *access = NULL, *refresh = NULL, *scope = NULL, *ident = NULL;
    char scratch[32];
    int rc;

    memset(tok, 0, sizeof *tok);
    if (id && cap)
        id[0] = '\0';
    if (plat_json_parse(body, len, &root))
        return plat_error_unexpected(err, 200, what, "not a JSON object");
    if (json_get_string(root, "access_token", &access) || !*access) {
        rc = plat_error_unexpected(err, 200, what, "no access_token");
        goto out;
    }
    if (id_key) {
        ident = plat_json_text(root, id_key, scratch, sizeof scratch);
        if (ident && strlen(ident) >= cap) {
            rc = plat_error_unexpected(err, 200, what, id_key);
            goto out;
        }
    }
    rc = set_token(&tok->access_token, access, what, "access_token", err);
    if (rc)
        goto out;
    /* absent or empty: none was given, the caller keeps the one it has */
    if (json_get_string(root, "refresh_token", &refresh) == 0 && *refresh) {
        rc = set_token(&tok->refresh_token, refresh, what, "refresh_token", err);
        if (rc)
            goto out;
    }
    tok->access_expires_in_s = plat_json_seconds(root, "expires_in");
    if (tok->refresh_token) {
        tok->refresh_expires_in_s = plat_json_seconds(root, "refresh_expires_in");
        if (!tok->refresh_expires_in_s)      /* Google's name for it */
            tok->refresh_expires_in_s = plat_json_seconds(root, "refresh_token_expires_in");
    }
    if (json_get_string(root, "scope", &scope) == 0)
        plat_copy_text(tok->scopes, sizeof tok->scopes, scope);
    if (ident)
        snprintf(id, cap, "%s", ident);
out:
    if (rc)
        plat_tokens_clear(tok);
    json_object_put(root);
    return rc;
}

/* ----------------------------------------------------- TikTok cookies -- */

#define COOKIES_MAX_COUNT 300

struct cookie {
    const char *domain;               /* without "#HttpOnly_" */
    int http_only;
    const char *subdomains;           /* "TRUE" / "FALSE" */
    const char *path;
    const char *secure;
    long long expires;                /* unix s, 0 = session */
    const char *name;
    const char *value;
};

struct cookie_jar {
    char *text;                       /* a copy of the input, cut into fields */
    size_t text_len;
    struct cookie c[COOKIES_MAX_COUNT];
    size_t n;
    int netscape;                     /* the input was a cookies.txt */
    int expired_sessionid;            /* a sessionid was there but expired */
};

static void jar_free(struct cookie_jar *jar)
{
    if (jar->text) {
        OPENSSL_cleanse(jar->text, jar->text_len);
        free(jar->text);
    }
    jar->text = NULL;
}

static int cookie_name_ok(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
            return 0;
    return 1;
}

/* RFC 6265 cookie-octets: no spaces, quotes, commas, semicolons, backslashes or controls. */
static int cookie_value_ok(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if (c <= 0x20 || c >= 0x7f || c == '"' || c == ',' || c == ';' || c == '\\')
            return 0;
    }
    return 1;
}

static int tiktok_domain(const char *domain)
{
    const char *d = domain;
    size_t n;

    while (*d == '.')
        d++;
    n = strlen(d);
    if (strcasecmp(d, "tiktok.com") == 0)
        return 1;
    return n > 11 && strcasecmp(d + n - 11, ".tiktok.com") == 0;
}

static void say(struct buf *why, const char *s)
{
    if (why) {
        buf_reset(why);
        buf_adds(why, s);
    }
}

static char *trim(char *s)
{
    char *e;

    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
        *--e = '\0';
    return s;
}

static int jar_add(struct cookie_jar *jar, const struct cookie *c, struct buf *why)
{
    if (jar->n >= COOKIES_MAX_COUNT) {
        say(why, "There are too many cookies (at most 300 are accepted).");
        return CP_EINVAL;
    }
    jar->c[jar->n++] = *c;
    return 0;
}

/* One cookies.txt line into c; 0 or CP_EINVAL. */
static int parse_netscape_line(char *line, struct cookie *c)
{
    char *f[7];
    int n = 0;
    char *p = line, *end;

    memset(c, 0, sizeof *c);
    if (strncmp(line, "#HttpOnly_", 10) == 0) {
        c->http_only = 1;
        p += 10;
    }
    while (n < 7) {
        f[n++] = p;
        p = strchr(p, '\t');
        if (!p)
            break;
        *p++ = '\0';
    }
    if (p || n < 6)
        return CP_EINVAL;
    if (n == 6)
        f[6] = "";                    /* a cookie with an empty value */
    if (!*f[0] || strchr(f[0], ' ') || !cookie_value_ok(f[0]))
        return CP_EINVAL;
    if ((strcmp(f[1], "TRUE") && strcmp(f[1], "FALSE")) ||
        (strcmp(f[3], "TRUE") && strcmp(f[3], "FALSE")) || f[2][0] != '/' ||
        !cookie_value_ok(f[2]))
        return CP_EINVAL;
    if (!isdigit((unsigned char)f[4][0]))
        return CP_EINVAL;
    errno = 0;
    c->expires = strtoll(f[4], &end, 10);
    if (errno || *end)
        return CP_EINVAL;
    if (!cookie_name_ok(f[5]) || !cookie_value_ok(f[6]))
        return CP_EINVAL;
    c->domain = f[0];
    c->subdomains = f[1];
    c->path = f[2];
    c->secure = f[3];
    c->name = f[5];
    c->value = f[6];
    return 0;
}

static int parse_netscape(struct cookie_jar *jar, struct buf *why)
{
    char *line = jar->text;
    long long now = (long long)time(NULL);
    int lineno = 0, rc;

    jar->netscape = 1;
    while (line && *line) {
        char *nl = strchr(line, '\n');
        struct cookie c;

        if (nl)
            *nl = '\0';
        lineno++;
        if (*line && line[strlen(line) - 1] == '\r')
            line[strlen(line) - 1] = '\0';
        if (*trim(line) == '\0' || (line[0] == '#' && strncmp(line, "#HttpOnly_", 10) != 0)) {
            line = nl ? nl + 1 : NULL;
            continue;
        }
        if (parse_netscape_line(line, &c)) {
            char msg[96];

            snprintf(msg, sizeof msg, "Line %d is not a cookies.txt line.", lineno);
            say(why, msg);
            return CP_EINVAL;
        }
        line = nl ? nl + 1 : NULL;
        if (!tiktok_domain(c.domain))
            continue;
        if (c.expires != 0 && c.expires < now) {
            if (strcmp(c.name, "sessionid") == 0)
                jar->expired_sessionid = 1;
            continue;
        }
        rc = jar_add(jar, &c, why);
        if (rc)
            return rc;
    }
    return 0;
}

static int parse_header(struct cookie_jar *jar, struct buf *why)
{
    char *s = trim(jar->text), *save = NULL, *part;
    static const char *const junk =
        "The text is neither a Cookie header (name=value; ...) nor a Netscape cookies.txt file.";

    if (strncasecmp(s, "Cookie:", 7) == 0)
        s += 7;
    if (strpbrk(s, "\r\n")) {
        say(why, junk);
        return CP_EINVAL;
    }
    for (part = strtok_r(s, ";", &save); part; part = strtok_r(NULL, ";", &save)) {
        struct cookie c;
        char *eq, *name, *value;
        size_t vl;
        int rc;

        part = trim(part);
        if (!*part)
            continue;
        eq = strchr(part, '=');
        if (!eq) {
            say(why, junk);
            return CP_EINVAL;
        }
        *eq = '\0';
        name = trim(part);
        value = trim(eq + 1);
        vl = strlen(value);
        if (vl >= 2 && value[0] == '"' && value[vl - 1] == '"') {
            value[vl - 1] = '\0';
            value++;
        }
        if (!cookie_name_ok(name) || !cookie_value_ok(value)) {
            say(why, junk);
            return CP_EINVAL;
        }
        memset(&c, 0, sizeof c);
        c.domain = ".tiktok.com";
        c.subdomains = "TRUE";
        c.path = "/";
        c.secure = "TRUE";
        c.name = name;
        c.value = value;
        rc = jar_add(jar, &c, why);
        if (rc)
            return rc;
    }
    return 0;
}

static size_t tab_count(const char *s)
{
    size_t n = 0;

    for (; *s; s++)
        n += *s == '\t';
    return n;
}

/* Read text (either form) into jar: only cookies of tiktok domains that
 * have not expired, and at least a sessionid among them. */
static int jar_read(const char *text, struct cookie_jar *jar, struct buf *why)
{
    size_t len;
    const char *first;
    int rc;

    memset(jar, 0, sizeof *jar);
    if (!text) {
        say(why, "No cookies were given.");
        return CP_EINVAL;
    }
    len = strlen(text);
    if (len > PLAT_COOKIES_MAX) {
        say(why, "The cookies are longer than 32768 bytes.");
        return CP_EINVAL;
    }
    jar->text = malloc(len + 1);
    if (!jar->text)
        return CP_ENOMEM;
    memcpy(jar->text, text, len + 1);
    jar->text_len = len;

    first = text + strspn(text, " \t\r\n");
    if (!*first) {
        say(why, "No cookies were given.");
        return CP_EINVAL;
    }
    if (first[0] == '#' || tab_count(text) >= 5)
        rc = parse_netscape(jar, why);
    else
        rc = parse_header(jar, why);
    if (rc)
        return rc;
    if (jar->n == 0) {
        say(why, jar->expired_sessionid ? "The sessionid cookie has expired."
                                        : "There are no cookies for tiktok.com in the text.");
        return CP_EINVAL;
    }
    for (size_t i = 0; i < jar->n; i++)
        if (strcmp(jar->c[i].name, "sessionid") == 0 && jar->c[i].value[0])
            return 0;
    say(why, jar->expired_sessionid
                 ? "The sessionid cookie has expired."
                 : "There is no sessionid cookie for tiktok.com: sign in to TikTok in the "
                   "browser, then copy the cookies again.");
    return CP_EINVAL;
}

/* Whether an earlier cookie of the jar has the same name. */
static int jar_seen(const struct cookie_jar *jar, size_t i)
{
    for (size_t k = 0; k < i; k++)
        if (strcmp(jar->c[k].name, jar->c[i].name) == 0)
            return 1;
    return 0;
}

int tiktok_cookies_normalize(const char *text, struct buf *out, struct buf *why)
{
    struct cookie_jar *jar;
    struct buf tmp;
    int rc;

    if (why)
        buf_reset(why);
    if (!out)
        return CP_EINVAL;
    buf_reset(out);
    jar = calloc(1, sizeof *jar);
    if (!jar)
        return CP_ENOMEM;
    buf_init(&tmp, PLAT_COOKIES_MAX);
    rc = jar_read(text, jar, why);
    if (rc)
        goto out;
    rc = buf_adds(&tmp, "# Netscape HTTP Cookie File\n");
    for (size_t i = 0; i < jar->n && !rc; i++) {
        const struct cookie *c = &jar->c[i];

        if (jar_seen(jar, i))
            continue;
        rc = buf_printf(&tmp, "%s%s\t%s\t%s\t%s\t%lld\t%s\t%s\n", c->http_only ? "#HttpOnly_" : "",
                        c->domain, c->subdomains, c->path, c->secure, c->expires, c->name,
                        c->value);
    }
    if (rc == CP_ETOOBIG) {
        say(why, "The cookies are longer than 32768 bytes.");
        rc = CP_EINVAL;
    }
    if (!rc)
        rc = buf_add(out, tmp.data, tmp.len);
out:
    plat_buf_wipe(&tmp);
    jar_free(jar);
    free(jar);
    return rc;
}

int tiktok_cookie_header(const char *cookies_txt, struct buf *out)
{
    struct cookie_jar *jar;
    int rc;

    buf_reset(out);
    jar = calloc(1, sizeof *jar);
    if (!jar)
        return CP_ENOMEM;
    rc = jar_read(cookies_txt, jar, NULL);
    if (!rc && !jar->netscape)
        rc = CP_EINVAL;               /* stored cookies are always cookies.txt */
    for (size_t i = 0; i < jar->n && !rc; i++) {
        if (jar_seen(jar, i))
            continue;
        rc = buf_printf(out, "%s%s=%s", out->len ? "; " : "", jar->c[i].name, jar->c[i].value);
    }
    if (rc)
        plat_buf_wipe(out);
    jar_free(jar);
    free(jar);
    return rc;
}
