// An exception nobody catches: std::terminate, then abort.
#include <stdexcept>
#include <string>
#include <vector>

namespace billing {
template <typename T>
struct Ledger {
    std::vector<T> entries;
    T total(int account) const {
        if (account < 0 || (size_t)account >= entries.size())
            throw std::out_of_range("no such account: " + std::to_string(account));
        return entries[account];
    }
};
}

int main(int argc, char **argv)
{
    billing::Ledger<long> ledger{{1, 2, 3}};
    return (int)ledger.total(argc > 1 ? std::stoi(argv[1]) : 7);
}
