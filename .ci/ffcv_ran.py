"""Exit 1 unless pytest's JUnit report shows FFCV tests (tests/data/test_ffcv.py) that ran, none
skipped. Used by .ci/run under CI=true, where FFCV is required.

Usage: python .ci/ffcv_ran.py REPORT.xml
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET

MODULE = "tests.data.test_ffcv"


def ffcv_problems(report: str) -> list[str]:
    """One line per problem: FFCV test cases skipped (a module-level skip is one case named
    after the module), or none found at all."""
    cases = [
        case for case in ET.parse(report).iter("testcase")
        if MODULE in (case.get("classname", ""), case.get("name", ""))
    ]  # fmt: skip
    if not cases:
        return [f"no FFCV tests ran ({MODULE} not in the report)"]
    problems = []
    for case in cases:
        skipped = case.find("skipped")
        if skipped is not None:
            name = f"{case.get('classname')}::{case.get('name')}".lstrip(":")
            problems.append(f"{name} was skipped: {skipped.get('message', '')}")
    return problems


if __name__ == "__main__":
    found = ffcv_problems(sys.argv[1])
    for line in found:
        print(f"error: {line} (CI=true requires FFCV)", file=sys.stderr)
    sys.exit(1 if found else 0)
