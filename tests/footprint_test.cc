// What an idle channel costs the framework: the object plus the map's slot
// (the make_shared control block, 16 bytes, comes on top of both), checked
// against the targets, printed for the README. An idle buffered channel
// holds no heap memory of its own beyond a first small output block.
#include <gtest/gtest.h>

#include <cstdio>

#include "chat/async_chat.h"
#include "core/asyncore.h"

namespace {

constexpr size_t kSlot = asyncore::ChannelMap::slot_size();

static_assert(kSlot <= 16);
static_assert(sizeof(asyncore::Address) == 16);
static_assert(sizeof(asyncore::DispatcherWithSend) + kSlot <= 160,
              "DispatcherWithSend + slot over 160 bytes");
static_assert(sizeof(asynchat::AsyncChat) + kSlot <= 256,
              "AsyncChat + slot over 256 bytes");

TEST(Footprint, IdleChannelBytes) {
  std::printf("Dispatcher %zu + slot %zu\n", sizeof(asyncore::Dispatcher),
              kSlot);
  std::printf("DispatcherWithSend %zu + slot %zu = %zu (target <= 160)\n",
              sizeof(asyncore::DispatcherWithSend), kSlot,
              sizeof(asyncore::DispatcherWithSend) + kSlot);
  std::printf("AsyncChat %zu + slot %zu = %zu (target <= 256)\n",
              sizeof(asynchat::AsyncChat), kSlot,
              sizeof(asynchat::AsyncChat) + kSlot);
  SUCCEED();
}

}  // namespace
