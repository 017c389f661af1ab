// asyncore::readwrite()'s body, inline so that the loop's dispatch pays no
// call for it on every ready fd; the error handling stays out of line.
#ifndef ASYNCOREPP_CORE_INTERNAL_READWRITE_H_
#define ASYNCOREPP_CORE_INTERNAL_READWRITE_H_

#include <cstdint>

#include "backends/backend.h"
#include "core/dispatcher.h"

namespace asyncore::internal {

// What readwrite() does with the exception in flight (called inside its
// catch block, so handle_error() still sees it as current_exception()).
void readwrite_failed(Dispatcher& obj);

inline void readwrite_inline(Dispatcher& obj, unsigned flags) {
  const uint64_t registration = obj.registration();
  // A registered channel that closed itself in an earlier step gets no more
  // events (spec D1); a never-registered object keeps its generation.
  auto open = [&] { return obj.registration() == registration; };
  try {
    if (flags & events::kIn) obj.handle_read_event();
    if ((flags & events::kOut) && open()) obj.handle_write_event();
    if ((flags & events::kPri) && open()) obj.handle_expt_event();
    if ((flags & (events::kHup | events::kErr | events::kNval)) && open()) {
      obj.handle_close();
    }
  } catch (...) {
    readwrite_failed(obj);
  }
}

}  // namespace asyncore::internal

#endif  // ASYNCOREPP_CORE_INTERNAL_READWRITE_H_
