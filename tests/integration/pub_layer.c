#include "config.h"

/*
 * pub_layer - run one publisher (pub_youtube or pub_x) once against the
 * platform simulators, for tests/integration/test_pub_layer.py.
 *
 *   pub_layer youtube|x MEDIA STATE_FILE [STOP_AT_BYTES]
 *
 * The configuration comes from conf_load() (CROSSPOST_* variables name
 * the simulators).  The request comes from the environment: PUB_TOKEN
 * (access token), PUB_TOKEN_SECRET (set: OAuth 1.0a credentials),
 * PUB_ACCOUNT_ID, PUB_CAPTION, PUB_TITLE, PUB_SETTINGS (JSON object),
 * PUB_DURATION_MS.  STATE_FILE holds the remote state: read when it
 * exists, rewritten by every save.  With STOP_AT_BYTES the progress hook
 * asks to stop once that many bytes are confirmed.
 *
 * Prints one JSON object: rc, outcome, code, message, http_status,
 * retry_after_ms, remote_id, url, quota{...}, saves, first_sent,
 * max_sent, state.  Exit 0 when the publisher ran (whatever it
 * returned), 1 when the run could not be set up, 2 for a usage error.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "buf.h"
#include "conf.h"
#include "err.h"
#include "http.h"
#include "platforms.h"
#include "publish.h"

struct run {
    const char *state_path;
    long long stop_at;
    int saves;
    long long first_sent, max_sent;
};

static int on_save(void *arg, struct json_object *state)
{
    struct run *r = arg;

    r->saves++;
    return json_object_to_file_ext(r->state_path, state, JSON_C_TO_STRING_PLAIN) ? 1 : 0;
}

static int on_progress(void *arg, long long sent, long long total)
{
    struct run *r = arg;

    if (r->first_sent < 0)
        r->first_sent = sent;
    if (sent > r->max_sent)
        r->max_sent = sent;
    return r->stop_at > 0 && sent >= r->stop_at;
}

static const char *env(const char *name, const char *dflt)
{
    const char *v = getenv(name);

    return v ? v : dflt;
}

static void print_result(int rc, const struct plat_error *err, const struct pub_result *res,
                         const struct pub_quota *q, const struct run *r,
                         struct json_object *state)
{
    struct json_object *o = json_object_new_object(), *quota = json_object_new_object();

    json_object_object_add(o, "rc", json_object_new_int(rc));
    json_object_object_add(o, "outcome", json_object_new_string(plat_outcome_name(err->outcome)));
    json_object_object_add(o, "code", json_object_new_string(err->code));
    json_object_object_add(o, "message", json_object_new_string(err->message));
    json_object_object_add(o, "http_status", json_object_new_int64(err->http_status));
    json_object_object_add(o, "retry_after_ms", json_object_new_int64(err->retry_after_ms));
    json_object_object_add(o, "remote_id", json_object_new_string(res->remote_id));
    json_object_object_add(o, "url", json_object_new_string(res->url));
    json_object_object_add(quota, "exhausted", json_object_new_boolean(q->exhausted));
    json_object_object_add(quota, "bucket", json_object_new_string(q->bucket));
    json_object_object_add(quota, "scope", json_object_new_string(q->scope));
    json_object_object_add(quota, "reset_ms", json_object_new_int64(q->reset_ms));
    json_object_object_add(quota, "remaining", json_object_new_int64(q->remaining));
    json_object_object_add(quota, "limit", json_object_new_int64(q->limit));
    json_object_object_add(o, "quota", quota);
    json_object_object_add(o, "saves", json_object_new_int(r->saves));
    json_object_object_add(o, "first_sent", json_object_new_int64(r->first_sent));
    json_object_object_add(o, "max_sent", json_object_new_int64(r->max_sent));
    json_object_object_add(o, "state", json_object_get(state));
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
}

int main(int argc, char **argv)
{
    struct run r = { .first_sent = -1 };
    struct pub_hooks hooks = { &r, on_save, on_progress, NULL };
    struct plat_creds creds;
    struct pub_request rq;
    struct pub_result res;
    struct pub_quota quota;
    struct plat_error err;
    struct plat_ctx pc;
    struct http_client *http = NULL;
    struct json_object *state = NULL, *settings = NULL;
    struct conf *c = NULL;
    struct buf why;
    int (*publish)(struct plat_ctx *, const struct pub_request *, struct json_object *,
                   const struct pub_hooks *, struct pub_result *, struct pub_quota *,
                   struct plat_error *);
    int rc, status = 1;

    if (argc < 4 || argc > 5 || (strcmp(argv[1], "youtube") && strcmp(argv[1], "x"))) {
        fprintf(stderr, "usage: pub_layer youtube|x MEDIA STATE_FILE [STOP_AT_BYTES]\n");
        return 2;
    }
    publish = strcmp(argv[1], "youtube") == 0 ? pub_youtube : pub_x;
    r.state_path = argv[3];
    r.stop_at = argc == 5 ? atoll(argv[4]) : 0;
    buf_init(&why, 1024);
    if (conf_load(&c, NULL, &why)) {
        fprintf(stderr, "pub_layer: %s\n", buf_str(&why));
        goto out;
    }
    if (http_client_new(c, &http)) {
        fprintf(stderr, "pub_layer: no HTTP client\n");
        goto out;
    }
    state = access(r.state_path, F_OK) == 0 ? json_object_from_file(r.state_path)
                                             : json_object_new_object();
    if (!state || !json_object_is_type(state, json_type_object)) {
        fprintf(stderr, "pub_layer: %s is not a JSON object\n", r.state_path);
        goto out;
    }
    settings = json_tokener_parse(env("PUB_SETTINGS", "{}"));
    memset(&creds, 0, sizeof creds);
    creds.access_token = env("PUB_TOKEN", "");
    creds.refresh_token = "";
    creds.token_secret = getenv("PUB_TOKEN_SECRET");
    creds.kind = creds.token_secret ? AUTH_OAUTH1 : AUTH_OAUTH2;
    memset(&rq, 0, sizeof rq);
    rq.publication_id = 1;
    rq.creds = &creds;
    rq.account_id = env("PUB_ACCOUNT_ID", "");
    rq.caption = env("PUB_CAPTION", "");
    rq.title = env("PUB_TITLE", "");
    rq.settings = settings;
    rq.media.path = argv[2];
    rq.media.content_type = "video/mp4";
    rq.media.duration_ms = atoll(env("PUB_DURATION_MS", "3000"));
    pc.conf = c;
    pc.http = http;
    rc = publish(&pc, &rq, state, &hooks, &res, &quota, &err);
    print_result(rc, &err, &res, &quota, &r, state);
    status = 0;
out:
    json_object_put(state);
    json_object_put(settings);
    http_client_free(http);
    conf_free(c);
    buf_free(&why);
    return status;
}
