// Address: 16 bytes, IPv4 inline and other families on the heap; copies,
// moves and comparisons keep every family whole.
#include <gtest/gtest.h>
#include <sys/un.h>

#include <utility>
#include <vector>

#include "core/socket.h"

namespace {

using asyncore::Address;

static_assert(sizeof(Address) == 16);

std::vector<Address> samples() {
  sockaddr_un unnamed{};
  unnamed.sun_family = AF_UNIX;
  return {Address(),
          Address::ipv4("127.0.0.1", 8080),
          Address::ipv4("10.1.2.3", 0),
          Address::ipv6("::1", 443),
          Address::unix_path("/tmp/some.socket"),
          Address::unix_path(std::string_view("\0abstract", 9)),
          Address::from_sockaddr(reinterpret_cast<sockaddr*>(&unnamed),
                                 sizeof(sa_family_t))};
}

TEST(AddressTest, FamiliesAndText) {
  const std::vector<Address> a = samples();
  EXPECT_TRUE(a[0].empty());
  EXPECT_EQ(a[0].size(), 0u);
  EXPECT_EQ(a[0].family(), AF_UNSPEC);
  EXPECT_EQ(a[1].to_string(), "127.0.0.1:8080");
  EXPECT_EQ(a[1].size(), sizeof(sockaddr_in));
  EXPECT_EQ(a[3].to_string(), "[::1]:443");
  EXPECT_EQ(a[3].family(), AF_INET6);
  EXPECT_EQ(a[3].size(), sizeof(sockaddr_in6));
  EXPECT_EQ(a[4].host(), "/tmp/some.socket");
  EXPECT_EQ(a[4].family(), AF_UNIX);
  EXPECT_EQ(a[5].host(), std::string("\0abstract", 9));
  EXPECT_FALSE(a[6].empty());  // an unnamed Unix socket still has a family
  EXPECT_EQ(a[6].family(), AF_UNIX);
  EXPECT_EQ(a[6].host(), "");
}

TEST(AddressTest, CopyMoveAndCompare) {
  const std::vector<Address> a = samples();
  for (size_t i = 0; i < a.size(); ++i) {
    for (size_t j = 0; j < a.size(); ++j) {
      EXPECT_EQ(a[i] == a[j], i == j) << i << " vs " << j;
    }
    Address copy = a[i];
    EXPECT_TRUE(copy == a[i]);
    Address moved = std::move(copy);
    EXPECT_TRUE(moved == a[i]);
    EXPECT_TRUE(copy.empty());  // NOLINT: moved-from is empty
    for (const Address& other : a) {
      Address x = other;
      x = a[i];  // copy-assign over every family
      EXPECT_TRUE(x == a[i]);
      Address y = other;
      y = Address(a[i]);  // move-assign over every family
      EXPECT_TRUE(y == a[i]);
    }
    Address self = a[i];
    const Address& alias = self;
    self = alias;
    EXPECT_TRUE(self == a[i]);
  }
}

}  // namespace
