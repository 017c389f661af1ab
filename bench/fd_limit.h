// Raises this process's open-file limit to its hard limit (20 000 on these
// machines): the benchmarks hold thousands of sockets.
#pragma once

#include <sys/resource.h>

inline void raise_fd_limit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
}
