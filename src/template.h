/*
 * template.h - captions, titles and post texts rendered from a video.
 *
 * Templates are text with variables in braces:
 *   {description}  the source description without its hashtags
 *   {title}        the source title (or the description's first line)
 *   {hashtags}     the hashtags after the destination's add/remove/limit,
 *                  "#a #b"
 *   {share_url}    the source's share link
 *   {date}         the source's creation date, YYYY-MM-DD (UTC)
 *   {{ and }}      literal braces
 * Any other name, or an unclosed brace, is an error naming it and its
 * byte offset.  Rendering never fails on data: only on the template.
 *
 * Per destination platform (the settings object of a rule destination,
 * documented in docs/API.md), template_render() gives the texts a
 * publisher needs, within the platform's limits:
 *   instagram  caption (caption_template, default "{description} {hashtags}")
 *              at most 2,200 characters and 30 hashtags
 *   youtube    title (title_template, default "{title}") at most 100
 *              characters, no '<' or '>'; description (caption_template,
 *              default "{description}\n\n{hashtags}") at most 5,000 bytes
 *   x          text (text_template, default "{description} {hashtags}")
 *              at most 280 by X's weighted count; an over-long text is
 *              cut in its {description} part first (ending with "…"),
 *              then hashtags are dropped from the end, and only then is
 *              it refused
 * Hashtag settings (every platform): "hashtags_add" (array of words,
 * with or without '#'), "hashtags_remove" (array, matched without case),
 * "hashtags_max" (0..30).
 */
#ifndef CP_TEMPLATE_H
#define CP_TEMPLATE_H

#include <stddef.h>

#include <json-c/json.h>

#include "buf.h"
#include "platforms.h"

/* The source values the variables take. */
struct template_vars {
    const char *description;          /* as the source has it, hashtags included */
    const char *title;
    const char *share_url;
    long long created_ms;             /* epoch ms; 0 = unknown ("" for {date}) */
};

#define TEMPLATE_ERROR_MAX 256

/* Render tmpl with vars (hashtags as given in hashtags, already
 * processed) into out.  CP_EINVAL with a sentence in why (at most
 * TEMPLATE_ERROR_MAX) for a template error. */
int template_expand(const char *tmpl, const struct template_vars *vars, const char *hashtags,
                    struct buf *out, char *why, size_t why_cap);

/* Only check tmpl (names and braces); 0 or CP_EINVAL with why. */
int template_check(const char *tmpl, char *why, size_t why_cap);

/* The texts for one destination. */
struct template_result {
    struct buf caption;               /* IG caption, YouTube description, X text */
    struct buf title;                 /* YouTube title; empty elsewhere */
    int truncated;                    /* the text was cut to fit */
};

void template_result_init(struct template_result *r);
void template_result_free(struct template_result *r);

/* Render for a destination of platform with its settings (an object; NULL
 * = defaults).  CP_EINVAL with field (the settings key at fault, e.g.
 * "text_template") and why when a template is bad or the text cannot fit
 * even when cut. */
int template_render(enum platform_id platform, struct json_object *settings,
                    const struct template_vars *vars, struct template_result *out,
                    char *field, size_t field_cap, char *why, size_t why_cap);

/* X's weighted length of UTF-8 text (twitter-text v3: code points in
 * U+0000-10FF, U+2000-200D, U+2010-201F, U+2032-2037 weigh 1, others 2;
 * each URL weighs 23). */
long long template_x_weight(const char *text);

/* The hashtags of text ("#word", without the '#', in order, no
 * duplicates without case) into out[cap][64]; *n found.  The text without
 * them (and the spaces they leave collapsed) into rest when not NULL. */
#define TEMPLATE_TAG_MAX 64
size_t template_hashtags(const char *text, char (*out)[TEMPLATE_TAG_MAX], size_t cap,
                         struct buf *rest);

#endif
