#include "config.h"

#include <string.h>

#include "jobkinds.h"

#define MINUTES(n) ((long long)(n) * 60 * 1000)

const struct job_kind job_kinds[] = {
    { "connection.refresh", "default", 5, MINUTES(1), 0,
      "refresh or check the credentials of one connection {\"connection_id\":N,\"force\":bool}" },
    { "connections.plan", "maintenance", 3, MINUTES(10), 0,
      "enqueue connection.refresh for every connection due a refresh or check" },
    { "maintenance.prune_jobs", "maintenance", 3, MINUTES(10), 0,
      "delete finished jobs past job_retention / dead_job_retention in batches of 500" },
    { "maintenance.prune_workers", "maintenance", 3, MINUTES(10), 0,
      "delete workers rows stopped more than 7 days ago" },
    { "maintenance.prune_audit", "maintenance", 3, MINUTES(10), 0,
      "delete audit events older than audit_retention" },
    { "maintenance.prune_sessions", "maintenance", 3, MINUTES(10), 0,
      "delete sessions expired more than 1 day ago" },
    { "noop", "default", 5, MINUTES(1), 1,
      "does nothing (tests and benchmarks)" },
    { "publications.sweep", "maintenance", 3, MINUTES(10), 0,
      "fail publications whose job died, requeue due deferrals and orphans, fail stuck ones" },
    { "publish.post", "publish", 8, MINUTES(60), 0,
      "publish one video to one destination, resuming from its recorded state {\"publication_id\":N}" },
    { "sleep", "default", 5, MINUTES(10), 1,
      "sleeps {\"ms\":N} milliseconds, reporting progress (tests)" },
    { "sync.plan", "maintenance", 3, MINUTES(10), 0,
      "enqueue tiktok.sync for every enabled TikTok connection whose next sync has come" },
    { "tiktok.sync", "default", 5, MINUTES(10), 0,
      "list one TikTok connection's new videos and record them {\"connection_id\":N,\"backfill\":bool}" },
    { "video.fetch", "media", 5, MINUTES(60), 0,
      "download one video's media into storage {\"video_id\":N}" },
    { "video.probe", "media", 5, MINUTES(10), 0,
      "probe one stored video and make its thumbnail {\"video_id\":N}" },
};

const size_t job_nkinds = sizeof job_kinds / sizeof job_kinds[0];

const struct job_kind *job_kind_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < job_nkinds; i++)
        if (strcmp(job_kinds[i].name, name) == 0)
            return &job_kinds[i];
    return NULL;
}

int job_queue_name_ok(const char *name)
{
    size_t n = 0;

    if (!name)
        return 0;
    for (const char *p = name; *p; p++, n++) {
        char c = *p;

        if (n >= JOB_QUEUE_MAX)
            return 0;
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return n > 0;
}

int job_kind_name_ok(const char *name)
{
    size_t n = 0;

    if (!name)
        return 0;
    for (const char *p = name; *p; p++, n++) {
        char c = *p;

        if (n >= JOB_KIND_MAX)
            return 0;
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return n > 0;
}
