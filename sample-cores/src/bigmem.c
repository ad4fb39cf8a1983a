/* Touch N MiB of memory in a chosen pattern, then crash: a big core.
   argv[1] = MiB, argv[2] = "zero" | "text" | "random". */
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 256;
    const char *kind = argc > 2 ? argv[2] : "text";
    size_t n = mib << 20;
    unsigned char *p = malloc(n);
    unsigned int x = 12345;
    for (size_t i = 0; i < n; i++) {
        if (kind[0] == 'z') { if (i % 4096 == 0) p[i] = 1; }
        else if (kind[0] == 't') p[i] = "GET /webhook/orders HTTP/1.1\r\nHost: shop\r\n"[i % 43] + (i >> 20) % 3;
        else { x = x * 1103515245u + 12345u; p[i] = (unsigned char)(x >> 16); }
    }
    return *(volatile int *)0 + p[n - 1];
}
