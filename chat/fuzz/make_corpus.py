#!/usr/bin/env python3
"""Writes the seed corpus of async_chat_fuzzer.cc into chat/fuzz/corpus/.

Each seed is a small program in the fuzzer's input format (see the Op enum
and Harness::read_term/read_action in async_chat_fuzzer.cc). Re-run after
changing the format: python3 chat/fuzz/make_corpus.py
"""
import os

(SET_TERM, SET_NEGATIVE, SET_BIG_COUNT, FEED, FEED_REPEAT, SPURIOUS_READ, PUSH,
 PUSH_VIEW, PRODUCER, CLOSE_WHEN_DONE, DISCARD, INITIATE_SEND, HANDLE_WRITE,
 IN_SIZE, OUT_SIZE, SCRIPT, PEER_EOF, COLLECT_SCRIPT) = range(18)
ALPHA = {"a": 0, "b": 1, "\r": 2, "\n": 3}
SIZES = [0, 1, 2, 3, 4, 5, 7, 8, 13, 16, 64, 100, 4096, 65536]


def alpha(s):
    return bytes(ALPHA[c] for c in s)


def term_str(s):  # read_term: kind 0 (string), alphabet bytes
    return bytes([0, len(s) - 1]) + alpha(s)


def term_raw(b):  # string terminator of raw bytes
    return bytes([0, 4 | (len(b) - 1)]) + b


def term_count(n):
    return bytes([2, n])


TERM_NONE, TERM_EMPTY, TERM_UNSET = bytes([3]), bytes([4]), bytes([5])


def set_term(t):
    return bytes([SET_TERM]) + t


def feed(s):  # alphabet bytes
    return bytes([FEED, len(s) - 1, 0]) + alpha(s)


def feed_raw(b):
    return bytes([FEED, len(b) - 1, 1]) + b


def feed_repeat(pattern, times):
    return bytes([FEED_REPEAT, len(pattern) - 1]) + alpha(pattern) + times.to_bytes(2, "little")


def in_size(n):
    return bytes([IN_SIZE, SIZES.index(n)])


def out_size(n):
    return bytes([OUT_SIZE, SIZES.index(n)])


def push(s, view=False):
    return bytes([PUSH_VIEW if view else PUSH, len(s)]) + alpha(s)


def producer(s, chunk):
    return bytes([PRODUCER, chunk, len(s)]) + alpha(s)


def script(action):
    return bytes([SCRIPT]) + action


def collect_script(action):
    return bytes([COLLECT_SCRIPT]) + action


ACT_NOTHING = bytes([0])
def act_set(t): return bytes([1]) + t
ACT_DISCARD = bytes([3])
def act_push(s): return bytes([4, len(s)]) + alpha(s)
def act_producer(s, chunk): return bytes([5, chunk, len(s)]) + alpha(s)
ACT_CLOSE_WHEN_DONE = bytes([6])
ACT_INITIATE_SEND = bytes([7])

SEEDS = {
    "crlf_lines": set_term(term_str("\r\n")) + feed("ab\r\nba\r\n\r\naa\r")
    + in_size(1) + feed("\nbbb\r\r\n") + in_size(4096) + feed_repeat("ab\r\n", 300),
    "count_then_lines": set_term(term_count(5)) + script(act_set(term_count(3)))
    + script(act_set(term_str("\n"))) + feed("aaaaabbbb\nab\n") + in_size(2) + feed("aabba\nb"),
    "overlapping_prefix": set_term(term_str("aab")) + in_size(1) + feed("aaab")
    + in_size(3) + feed("aaaaabaabaa") + set_term(TERM_NONE) + feed("b"),
    "output_fifo": out_size(1) + push("abb")
    + producer("abba\r\n", 2) + push("", True) + out_size(3) + bytes([CLOSE_WHEN_DONE])
    + push("abab") + bytes([INITIATE_SEND] * 8) + bytes([HANDLE_WRITE] * 4),
    "unset_terminator": feed("ab\r\n"),
    "discard": set_term(term_str("abab")) + feed("aaba") + bytes([DISCARD]) + feed("baabab")
    + out_size(2) + push("aaaa") + bytes([DISCARD]) + push("bb"),
    "peer_eof": set_term(term_str("\r\n")) + feed("ab\r") + set_term(TERM_EMPTY) + bytes([SPURIOUS_READ])
    + bytes([PEER_EOF]),
    "callbacks": set_term(term_str("\n")) + out_size(4)
    + script(act_push("ab\n")) + script(act_producer("aabbab", 3)) + script(ACT_DISCARD)
    + script(act_set(term_count(2))) + script(ACT_INITIATE_SEND) + script(ACT_CLOSE_WHEN_DONE)
    + script(ACT_INITIATE_SEND) + feed("a\nb\n\n") + feed("ab\nb\nbbb\na\n"),
    "raw_terminator": set_term(term_raw(b"\x00\xff\x00")) + feed_raw(b"\x00\x00\xff\x00\xff\x00\x00")
    + bytes([SET_NEGATIVE, 7]) + bytes([SET_BIG_COUNT]) + (2**40).to_bytes(8, "little")
    + feed_raw(b"\x01" * 100),
    "collect_callbacks": set_term(term_count(6)) + in_size(4) + collect_script(ACT_NOTHING)
    + collect_script(act_set(term_str("\n"))) + collect_script(act_push("ab"))
    + collect_script(ACT_DISCARD) + collect_script(act_set(term_count(3)))
    + feed("aaaaaaaab\nbb\nab\nabababab") + out_size(1) + collect_script(ACT_CLOSE_WHEN_DONE)
    + collect_script(ACT_INITIATE_SEND) + feed("ab\nab\n"),
    "unset_in_callback": set_term(term_str("\n")) + script(act_set(TERM_UNSET)) + feed("ab\nab"),
}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
