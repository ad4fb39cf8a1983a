/* A crash in one worker thread while the others wait. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static pthread_barrier_t ready;

static void *idle_worker(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&ready);
    for (;;) pause();
    return NULL;
}

void handle_job(int *job)
{
    *job += 1;     /* job is NULL for the poisoned message */
}

static void *crashing_worker(void *arg)
{
    pthread_barrier_wait(&ready);
    usleep(20000);
    handle_job((int *)arg);
    return NULL;
}

int main(int argc, char **argv)
{
    int nthreads = argc > 1 ? atoi(argv[1]) : 3;
    if (nthreads < 1) nthreads = 1;
    pthread_barrier_init(&ready, NULL, (unsigned)nthreads + 1);
    pthread_t t;
    for (int i = 0; i < nthreads - 1; i++)
        pthread_create(&t, NULL, idle_worker, NULL);
    pthread_create(&t, NULL, crashing_worker, NULL);
    pthread_barrier_wait(&ready);
    pthread_join(t, NULL);
    return 0;
}
