/*
 * sigflags.h - signal handling for supervisor loops (the API pool master
 * and the worker supervisor).
 *
 * Handlers only set flags.  The signals are blocked except while the
 * loop waits in ppoll()/pselect() with the mask this returns, so a flag
 * set by a handler is always seen at the top of the next iteration and
 * never raced.
 */
#ifndef CP_SIGFLAGS_H
#define CP_SIGFLAGS_H

#include <signal.h>
#include <stddef.h>

/* Install handler for each of sigs, block them, ignore SIGPIPE, and
 * fill *wait_mask with the mask to wait with (the old mask minus sigs). */
void sigflags_install(const int *sigs, size_t n, void (*handler)(int), sigset_t *wait_mask);

#endif
