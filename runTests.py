#!/usr/bin/env python3
"""Run the whole test suite (pytest underneath); exits non-zero on any failure.

``-c FILE`` copies a configuration to tests/config.json, which the tests use as their base
(they still override ports, directories and start/restart so they never touch a running
service); without ``-o`` an existing copy is removed first; ``-n`` only sets the copy up.
Anything after ``--`` goes to pytest (e.g. ``python runTests.py -- -k lru -x``, or
``python runTests.py -- tests/test_table.py`` to run one file).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEST_CONFIG = HERE / "tests" / "config.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", type=Path, help="configuration the tests start from")
    parser.add_argument("-o", "--oldConfig", action="store_true",
                        help="keep the configuration copied by an earlier run")
    parser.add_argument("-n", "--noRun", action="store_true",
                        help="only set the configuration up (for running single test files)")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args()
    if not args.oldConfig:
        TEST_CONFIG.unlink(missing_ok=True)
    if args.config is not None:
        shutil.copyfile(args.config, TEST_CONFIG)
        print(f"runTests: tests will use {args.config} (copied to {TEST_CONFIG})")
    if args.noRun:
        return 0
    names_tests = any(Path(arg.split("::")[0]).exists() for arg in args.pytest_args
                      if not arg.startswith("-"))
    targets = [] if names_tests else [str(HERE / "tests")]
    command = [sys.executable, "-m", "pytest", *targets, *args.pytest_args]
    return subprocess.call(command, cwd=HERE)


if __name__ == "__main__":
    sys.exit(main())
