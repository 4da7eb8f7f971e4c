#include "config.h"

#include <string.h>

#include "sigflags.h"

void sigflags_install(const int *sigs, size_t n, void (*handler)(int), sigset_t *wait_mask)
{
    struct sigaction sa;
    sigset_t block;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sigemptyset(&block);
    for (size_t i = 0; i < n; i++) {
        sigaction(sigs[i], &sa, NULL);
        sigaddset(&block, sigs[i]);
    }
    signal(SIGPIPE, SIG_IGN);
    sigprocmask(SIG_BLOCK, &block, wait_mask);
    for (size_t i = 0; i < n; i++)
        sigdelset(wait_mask, sigs[i]);
}
