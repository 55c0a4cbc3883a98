"""runTests.py's configuration options: -c copies, -o keeps, -n only sets up."""

from __future__ import annotations

import json
import subprocess
import sys

from harness import REPO, TEST_CONFIG

RUN_TESTS = [sys.executable, str(REPO / "runTests.py")]


def test_config_copy_keep_and_no_run(tmp_path):
    saved = TEST_CONFIG.read_bytes() if TEST_CONFIG.exists() else None
    config = tmp_path / "mine.json"
    config.write_text(json.dumps({"DiskCache": {"maxSizeMB": 77}}))
    try:
        result = subprocess.run([*RUN_TESTS, "-n", "-c", str(config)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0
        assert json.loads(TEST_CONFIG.read_text()) == {"DiskCache": {"maxSizeMB": 77}}
        assert "collected" not in result.stdout  # -n: nothing was run
        assert subprocess.run([*RUN_TESTS, "-n", "-o"], timeout=60).returncode == 0
        assert TEST_CONFIG.exists()  # -o kept the earlier copy
        assert subprocess.run([*RUN_TESTS, "-n"], timeout=60).returncode == 0
        assert not TEST_CONFIG.exists()  # without -o it is removed
    finally:
        if saved is not None:
            TEST_CONFIG.write_bytes(saved)
        else:
            TEST_CONFIG.unlink(missing_ok=True)


def test_failures_make_run_tests_exit_non_zero(tmp_path):
    failing = tmp_path / "test_fails.py"
    failing.write_text("def test_fails():\n    assert False\n")
    result = subprocess.run([*RUN_TESTS, "-o", "--", str(failing), "-q", "-p", "no:cacheprovider"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "1 failed" in result.stdout
