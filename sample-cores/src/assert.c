/* Two different failed assertions in one program: two bugs, two groups.
   argv[1] = "balance" or "queue"; argv[2] varies the data. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

void check_balance(int debit, int credit)
{
    assert(debit == credit && "ledger out of balance");
}

void check_queue(int depth)
{
    assert(depth < 16);
}

int main(int argc, char **argv)
{
    int n = argc > 2 ? atoi(argv[2]) : 1;
    if (argc > 1 && strcmp(argv[1], "queue") == 0)
        check_queue(16 + n);
    else
        check_balance(100 + n, 99);
    return 0;
}
