// Errors: input problems are reported as lowbit::Error (a message naming the file, tensor or
// field, what was found and what was expected). Front ends catch it and print one line.
// Internal invariants use LOWBIT_CHECK, which also throws (never abort: RELIABILITY.md rule 1).
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace lowbit {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace lowbit

#define LOWBIT_CHECK(cond, ...)                                                                  \
  do {                                                                                           \
    if (!(cond)) {                                                                               \
      throw ::lowbit::Error(std::string("internal check failed: " #cond " (") + __FILE__ + ":" + \
                            std::to_string(__LINE__) + ") " + fmt::format(__VA_ARGS__));         \
    }                                                                                            \
  } while (0)
