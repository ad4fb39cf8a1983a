/* A session object released twice: glibc aborts with
   "free(): double free detected in tcache 2". */
#include <stdlib.h>
#include <string.h>

struct session { char *buf; int refs; };

static void session_release(struct session *s)
{
    free(s->buf);          /* does not clear s->buf */
}

void close_connection(struct session *s)
{
    session_release(s);
    session_release(s);    /* the bug */
}

int main(int argc, char **argv)
{
    struct session s = { .buf = malloc(argc > 1 ? strlen(argv[1]) + 16 : 64), .refs = 1 };
    close_connection(&s);
    return 0;
}
