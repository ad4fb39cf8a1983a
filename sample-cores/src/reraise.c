/* A service with its own crash handler, the way redis has one: on SIGSEGV
 * it logs, restores the default action and sends the signal to itself, so
 * the core is written inside the handler. "wait" mode pauses until some
 * other process kills it; "nested" mode faults again inside the handler. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct entry { const char *key; struct entry *next; };

static int nested;

static void on_crash(int sig, siginfo_t *info, void *uc) {
    (void)uc;
    fprintf(stderr, "crashed by signal %d at %p\n", sig, info->si_addr);
    if (nested)  /* a crash report that itself reads bad memory */
        *(volatile int *)0x20 = 1;
    signal(sig, SIG_DFL);
    kill(getpid(), sig);
}

__attribute__((noinline)) static const char *lookup_key(struct entry *table, int slot) {
    return table[slot].next->key;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "wait") == 0) {
        for (;;)
            pause();
    }
    nested = argc > 1 && strcmp(argv[1], "nested") == 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_crash;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_RESETHAND;
    sigaction(SIGSEGV, &sa, NULL);
    struct entry table[4] = {{0}};
    return lookup_key(table, argc > 1 ? 2 : 1) != NULL;
}
