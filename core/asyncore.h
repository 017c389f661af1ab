// The whole asyncore API in one include.
#ifndef ASYNCOREPP_CORE_ASYNCORE_H_
#define ASYNCOREPP_CORE_ASYNCORE_H_

#include "backends/backend.h"
#include "core/channel_map.h"
#include "core/dispatcher.h"
#include "core/dispatcher_with_send.h"
#include "core/file_dispatcher.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/signals.h"
#include "core/socket.h"

#endif  // ASYNCOREPP_CORE_ASYNCORE_H_
