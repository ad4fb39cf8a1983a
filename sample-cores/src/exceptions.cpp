// Exceptions nobody catches, of several kinds: argv[1] says which.
#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

struct PaymentDeclined : std::runtime_error {
    explicit PaymentDeclined(const std::string &why) : std::runtime_error("payment declined: " + why) {}
};

struct Plain {
    int code;
};

[[noreturn]] static void fail(const std::string &kind)
{
    if (kind == "custom")
        throw PaymentDeclined("card expired");
    if (kind == "int")
        throw 42;
    if (kind == "plain")
        throw Plain{7};
    if (kind == "secret")
        throw std::runtime_error("connect failed: postgres://orders:hunter2@db/orders");
    if (kind == "bad_alloc")
        throw std::bad_alloc();
    if (kind == "rethrow") {
        std::exception_ptr saved;
        try {
            throw std::invalid_argument("order id must be numeric");
        } catch (...) {
            saved = std::current_exception();
        }
        std::rethrow_exception(saved);
    }
    throw std::logic_error("unknown kind " + kind);
}

int main(int argc, char **argv)
{
    fail(argc > 1 ? argv[1] : "custom");
}
