/* Built with musl-gcc, like the binaries in Alpine images. */
#include <stdlib.h>
#include <string.h>

void compress_block(char *dst, const char *src, size_t n)
{
    memcpy(dst, src, n);      /* dst was never allocated */
}

int main(int argc, char **argv)
{
    char *window = NULL;
    const char *data = argc > 1 ? argv[1] : "payload";
    compress_block(window, data, strlen(data) + 1);
    return 0;
}
