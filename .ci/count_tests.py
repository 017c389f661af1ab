"""Counts passed and failed test cases in the test.xml files under dirs.

Prints "PASSED FAILED". A test.xml written by GoogleTest lists its cases; one
written by Bazel for another kind of test has a single case whose outcome is
the target's.
"""
import os
import sys
import xml.etree.ElementTree as ET


def main(roots):
    passed = failed = 0
    for dirpath, _, files in (w for root in roots for w in os.walk(root)):
        if "test.xml" not in files:
            continue
        try:
            tree = ET.parse(os.path.join(dirpath, "test.xml"))
        except ET.ParseError:
            failed += 1
            continue
        for case in tree.iter("testcase"):
            if case.get("status") == "notrun" or case.find("skipped") is not None:
                continue
            if case.find("failure") is not None or case.find("error") is not None:
                failed += 1
            else:
                passed += 1
    print(passed, failed)


if __name__ == "__main__":
    main(sys.argv[1:] or ["bazel-testlogs"])
