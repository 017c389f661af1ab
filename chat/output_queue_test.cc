// OutputQueue: FIFO order through growth and wrap-around, push_front at any
// head position, and every item destroyed exactly once.
#include "chat/output_queue.h"

#include <gtest/gtest.h>

#include <deque>
#include <random>
#include <string>

namespace {

int g_live = 0;

struct Item {
  explicit Item(int v) : value(v), text(std::to_string(v) + " padding") {
    ++g_live;
  }
  Item(Item&& o) noexcept : value(o.value), text(std::move(o.text)) {
    ++g_live;
  }
  ~Item() { --g_live; }
  int value;
  std::string text;  // a member with heap state, moved on growth
};

TEST(OutputQueue, BehavesLikeADequeAtBothEnds) {
  {
    asynchat::OutputQueue<Item> q;
    std::deque<int> model;
    std::mt19937 gen(5);
    for (int step = 0; step < 20000; ++step) {
      switch (gen() % 4) {
        case 0:
        case 1:
          q.push_back(Item(step));
          model.push_back(step);
          break;
        case 2:
          q.push_front(Item(-step));
          model.push_front(-step);
          break;
        default:
          if (!model.empty()) {
            ASSERT_EQ(q.front().value, model.front());
            q.pop_front();
            model.pop_front();
          }
      }
      ASSERT_EQ(q.size(), model.size());
      if (step % 97 == 0) {
        for (size_t i = 0; i < model.size(); ++i) {
          ASSERT_EQ(q[i].value, model[i]);
          ASSERT_EQ(q[i].text, std::to_string(model[i]) + " padding");
        }
      }
      if (step % 5000 == 4999) {
        q.clear();
        model.clear();
        EXPECT_TRUE(q.empty());
      }
      ASSERT_EQ(g_live, static_cast<int>(model.size()));
    }
  }
  EXPECT_EQ(g_live, 0);  // the destructor ends what is left
}

}  // namespace
