/*
 * err.h - the one error convention of crosspost.
 *
 * Every fallible function returns 0 on success or a negative CP_E* code,
 * so callers write `if (rc) return rc;` (or goto their cleanup label).
 * Out-parameters are set to NULL/0 on entry and filled only on success.
 */
#ifndef CP_ERR_H
#define CP_ERR_H

enum cp_err {
    CP_OK = 0,
    CP_ENOMEM = -1,      /* allocation failed */
    CP_ETOOBIG = -2,     /* a size, length or depth limit was exceeded */
    CP_EINVAL = -3,      /* bad argument or malformed input */
    CP_EIO = -4,         /* a system call or stream failed; see errno/log */
    CP_EDB = -5,         /* the database refused or failed a statement */
    CP_ENOTFOUND = -6,   /* no such row, file, key or route */
    CP_ETIMEDOUT = -7,   /* a deadline passed */
    CP_EPARSE = -8,      /* input could not be parsed (JSON, config) */
    CP_ERETRY = -9,      /* transient: the same call may succeed later */
    CP_ECONFLICT = -10,  /* a uniqueness or state conflict */
    CP_EUNAVAIL = -11,   /* a dependency (database, cache, peer) is down */
    CP_EPROTO = -12,     /* a peer answered outside its protocol */
    CP_ECHANGED = -13,   /* something recorded as fixed was changed */
    CP_EBUSY = -14,      /* a budget is used up or a lock is taken: come back later */
};

/* A short English description of a CP_E* code; never NULL. */
const char *cp_strerror(int code);

#endif
