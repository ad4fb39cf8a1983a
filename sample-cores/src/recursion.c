/* Unbounded recursion: the stack overflows after tens of thousands of frames. */
#include <stdio.h>
#include <stdlib.h>

int walk_tree(const int *node, int depth)
{
    volatile char scratch[64];
    scratch[depth % 64] = (char)depth;
    /* the "tree" has a cycle: every node points back at itself */
    return walk_tree(node, depth + 1) + scratch[depth % 64];
}

int main(int argc, char **argv)
{
    int root = argc > 1 ? atoi(argv[1]) : 0;
    printf("%d\n", walk_tree(&root, 0));
    return 0;
}
