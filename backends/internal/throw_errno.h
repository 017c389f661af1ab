// The one way backends and core report a failed system call: errno as a
// std::system_error whose text says what failed ("epoll backend:
// EPOLL_CTL_ADD: Bad file descriptor"). Callers save errno before building
// `what`, since formatting may change it.
#ifndef ASYNCOREPP_BACKENDS_INTERNAL_THROW_ERRNO_H_
#define ASYNCOREPP_BACKENDS_INTERNAL_THROW_ERRNO_H_

#include <string>
#include <system_error>

namespace asyncore::internal {

[[noreturn]] inline void throw_errno(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), what);
}

}  // namespace asyncore::internal

#endif  // ASYNCOREPP_BACKENDS_INTERNAL_THROW_ERRNO_H_
