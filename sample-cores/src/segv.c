/* A parser that trusts its input: a NULL field is dereferenced.
   argv[1] changes the input (and so the addresses), never the bug. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct request { const char *uri; const char *host; };

static size_t header_length(const struct request *req)
{
    return strlen(req->host) + strlen(req->uri);   /* host may be NULL */
}

size_t parse_request(const char *line)
{
    struct request req = { .uri = line, .host = NULL };
    char *copy = malloc(strlen(line) * (size_t)(1 + (line[0] % 7)) + 1);
    strcpy(copy, line);
    size_t n = header_length(&req);
    free(copy);
    return n;
}

int main(int argc, char **argv)
{
    const char *line = argc > 1 ? argv[1] : "GET / HTTP/1.1";
    printf("%zu\n", parse_request(line));
    return 0;
}
