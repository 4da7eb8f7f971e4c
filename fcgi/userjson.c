#include "config.h"

#include <string.h>

#include "userjson.h"

/* An append past the cap empties the buffer, and a later small append
 * would then succeed on the remains: stop at the first failure. */
int user_json_members(struct buf *b, const struct user *u)
{
    int rc;

    if ((rc = buf_printf(b, "\"id\":%lld,\"email\":\"", u->id)) ||
        (rc = buf_add_json_escaped(b, u->email, strlen(u->email))) ||
        (rc = buf_adds(b, "\",\"display_name\":\"")) ||
        (rc = buf_add_json_escaped(b, u->display_name, strlen(u->display_name))) ||
        (rc = buf_printf(b, "\",\"role\":\"%s\",\"disabled\":%s,\"created_at\":\"",
                         user_role_name(u->role), u->disabled ? "true" : "false")) ||
        (rc = buf_add_json_escaped(b, u->created_at, strlen(u->created_at))) ||
        (rc = buf_adds(b, "\",\"last_login_at\":")))
        return rc;
    if (!u->last_login_at[0])
        return buf_adds(b, "null");
    if ((rc = buf_addc(b, '"')) ||
        (rc = buf_add_json_escaped(b, u->last_login_at, strlen(u->last_login_at))))
        return rc;
    return buf_addc(b, '"');
}

int user_json_append(struct buf *b, const struct user *u)
{
    int rc;

    if ((rc = buf_addc(b, '{')) || (rc = user_json_members(b, u)))
        return rc;
    return buf_addc(b, '}');
}
