#include "config.h"

#include <stddef.h>

#include "publish.h"

/* One row per destination platform; TikTok is only a source. */
static const struct publisher publishers[] = {
    { PLATFORM_INSTAGRAM, pub_instagram },
    { PLATFORM_YOUTUBE, pub_youtube },
    { PLATFORM_X, pub_x },
};

const struct publisher *publisher_find(enum platform_id platform)
{
    for (size_t i = 0; i < sizeof publishers / sizeof publishers[0]; i++)
        if (publishers[i].platform == platform)
            return &publishers[i];
    return NULL;
}
