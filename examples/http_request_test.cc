// http_server's request parsing on its own: request lines, header fields,
// Content-Length, keep-alive, request targets and %-escapes.
#include "examples/http_request.h"

#include <gtest/gtest.h>

#include <string>

namespace {

using http::parse_head;
using namespace std::string_view_literals;
using http::Request;

int status_of(std::string_view head) {
  Request req;
  return parse_head(head, &req);
}

Request parsed(std::string_view head) {
  Request req;
  EXPECT_EQ(parse_head(head, &req), 0) << head;
  return req;
}

TEST(ParseHead, RequestLineAndHeaders) {
  Request req = parsed(
      "GET /a/b?c=d HTTP/1.1\r\nHost: example\r\nX-Thing:  spaced value \t");
  EXPECT_EQ(req.method, "GET");
  EXPECT_EQ(req.target, "/a/b?c=d");
  EXPECT_EQ(req.minor_version, 1);
  ASSERT_EQ(req.headers.size(), 2u);
  EXPECT_EQ(req.headers[0].first, "host");           // names are lower-cased
  EXPECT_EQ(req.headers[1].second, "spaced value");  // OWS trimmed
  EXPECT_EQ(req.content_length, 0u);
  EXPECT_EQ(parsed("GET / HTTP/1.0").minor_version, 0);  // no Host needed
  // HTTP/1.x with x > 1 is served as 1.x (RFC 9110 section 6.2).
  EXPECT_EQ(parsed("GET / HTTP/1.9\r\nHost: h").minor_version, 9);
}

TEST(ParseHead, MalformedRequestLinesAre400) {
  for (std::string_view head : {
           "", "GET", "GET /",
           "GET  / HTTP/1.1\r\nHost: h",  // double space
           "GET / HTTP/1.1 \r\nHost: h",  // trailing space
           "G(T / HTTP/1.1\r\nHost: h",   // not a token
           "GET / HTTP/11\r\nHost: h", "GET / http/1.1\r\nHost: h",
           "GET / HTTP/1.x\r\nHost: h", "GET / HTTP/1.10\r\nHost: h",
           "GET /a\x01 HTTP/1.1\r\nHost: h",  // control byte in the target
       }) {
    EXPECT_EQ(status_of(head), 400) << head;
  }
}

TEST(ParseHead, OtherMajorVersionsAre505) {
  EXPECT_EQ(status_of("GET / HTTP/2.0\r\nHost: h"), 505);
  EXPECT_EQ(status_of("GET / HTTP/0.9"), 505);
  // The format is checked before the number.
  EXPECT_EQ(status_of("GET / HTTP/2.x"), 400);
}

TEST(ParseHead, BadHeaderFieldsAre400) {
  for (std::string_view head : {
           "GET / HTTP/1.1\r\nHost: h\r\nNoColon"sv,
           "GET / HTTP/1.1\r\nHost: h\r\nSpace : before colon"sv,
           "GET / HTTP/1.1\r\nHost: h\r\n folded: line"sv,
           "GET / HTTP/1.1\r\nHost: h\r\n: empty name"sv,
           "GET / HTTP/1.1\r\nHost: h\r\nX: bare\rcr"sv,
           "GET / HTTP/1.1\r\nHost: h\r\nX: bare\nlf"sv,
           "GET / HTTP/1.1\r\nHost: h\r\nX: n\0ul"sv,
           "GET / HTTP/1.1\r\nHost: h\r\nX: del\x7f"sv,
       }) {
    EXPECT_EQ(status_of(head), 400) << head;
  }
}

TEST(ParseHead, Http11NeedsExactlyOneHost) {
  EXPECT_EQ(status_of("GET / HTTP/1.1"), 400);
  EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: a\r\nHost: b"), 400);
  EXPECT_EQ(status_of("GET / HTTP/1.1\r\nhOST: a"), 0);
}

TEST(ParseHead, ContentLength) {
  EXPECT_EQ(parsed("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 42")
                .content_length,
            42u);
  // Repeated or listed copies must agree.
  EXPECT_EQ(parsed("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 7, 7\r\n"
                   "Content-Length: 7")
                .content_length,
            7u);
  for (std::string_view head : {
           "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\n"
           "Content-Length: 8",
           "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 7, 8",
           "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1",
           "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +1",
           "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10",
           "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2",
           "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: ",
           "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: ,",
       }) {
    EXPECT_EQ(status_of(head), 400) << head;
  }
  // Overflow saturates (the server then answers 413), never wraps to small.
  EXPECT_EQ(parsed("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: "
                   "99999999999999999999999999")
                .content_length,
            UINT64_MAX);
}

TEST(ParseHead, EmptyLinesBeforeARequestAreSkipped) {
  EXPECT_EQ(http::skip_empty_lines("\r\n\r\nGET / HTTP/1.0"), "GET / HTTP/1.0");
  EXPECT_EQ(http::skip_empty_lines("\r\n\r\n"), "");
  EXPECT_EQ(http::skip_empty_lines("GET"), "GET");
}

TEST(KeepAlive, ByVersionAndConnectionHeader) {
  EXPECT_TRUE(http::wants_keep_alive(parsed("GET / HTTP/1.1\r\nHost: h")));
  EXPECT_FALSE(http::wants_keep_alive(parsed("GET / HTTP/1.0")));
  EXPECT_TRUE(http::wants_keep_alive(
      parsed("GET / HTTP/1.0\r\nConnection: Keep-Alive")));
  EXPECT_FALSE(http::wants_keep_alive(
      parsed("GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, CLOSE")));
  // close wins over keep-alive.
  EXPECT_FALSE(http::wants_keep_alive(
      parsed("GET / HTTP/1.0\r\nConnection: keep-alive, close")));
}

TEST(ParseTarget, OriginAndAbsoluteForms) {
  auto t = http::parse_target("/a%20b/c?x=%20");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->path, "/a b/c");
  EXPECT_EQ(t->query, "?x=%20");  // the query stays raw
  t = http::parse_target("HTTP://example.com:80/x/y?q");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->path, "/x/y");
  EXPECT_EQ(t->query, "?q");
  t = http::parse_target("http://example.com");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->path, "/");
  for (std::string_view bad :
       {"", "*", "x/y", "http:/", "/%", "/%4", "/%zz", "/a%00b"}) {
    EXPECT_FALSE(http::parse_target(bad)) << bad;
  }
}

TEST(PercentEscapes, DecodeOnceAndEncodeBack) {
  EXPECT_EQ(http::percent_decode("%252e%252E"), "%2e%2E");  // once, not twice
  EXPECT_EQ(http::percent_decode("%2E%2e/"), "../");
  EXPECT_FALSE(http::percent_decode("%00"));
  EXPECT_FALSE(http::percent_decode("a\0b"sv));
  EXPECT_EQ(http::percent_encode_path("/a b/é?#%"), "/a%20b/%C3%A9%3F%23%25");
  const std::string weird = "/ä b/%/?#;~._-";
  EXPECT_EQ(http::percent_decode(http::percent_encode_path(weird)), weird);
}

TEST(ReasonPhrase, KnownStatuses) {
  EXPECT_EQ(http::reason_phrase(200), "OK");
  EXPECT_EQ(http::reason_phrase(431), "Request Header Fields Too Large");
  EXPECT_EQ(http::reason_phrase(999), "Internal Server Error");
}

}  // namespace
