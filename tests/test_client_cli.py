"""The symbolicate command, against a real trio."""

from __future__ import annotations

import json
import subprocess
import sys

from harness import REPO, free_port, sample_request

XUL = "xul.pdb 44E4EC8C2F41492B9369D6B9A059577C2"
NTDLL = "wntdll.pdb/D74F79EB1F8D4A45ABCD2F476CCABACC2"


def symbolicate(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "symserver.client_cli", *args], input=stdin,
                          capture_output=True, text=True, timeout=120, cwd=REPO)


def test_module_offset_lines_print_readable_stacks(trio, tmp_path):
    frames = tmp_path / "frames.txt"
    frames.write_text(f"# a comment\n{XUL} 0xb2e3f7\n{NTDLL} 65802\n{XUL} 0x10\n")
    result = symbolicate(str(frames), "--server", trio.url())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("  #0    xul.dll    mozilla::StartupTimeline::Record(") and "(inlined)" in lines[0]
    assert lines[0].endswith("StartupTimeline.h:2c9e5f3b1a7d4e6f8a0b1c2d3e4f5a6b7c8d9e0f:121")
    assert "XREMain::XRE_mainStartup(bool*) (inlined)" in lines[1] and lines[1].startswith("        xul.dll")
    assert "XREMain::XRE_mainRun() + 0xf7" in lines[2] and lines[2].endswith(":4105")
    assert lines[3] == "  #1    ntdll.dll  KiUserCallbackDispatcher + 0x1a"
    assert lines[4] == "  #2    xul.dll  0x10"


def test_v4_request_from_stdin_and_json_output(trio):
    result = symbolicate("--json", "--server", trio.url(), stdin=json.dumps(sample_request()))
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    frames = answer["results"][0]["stacks"][0]
    assert [f["function"] for f in frames] == ["XREMain::XRE_mainRun()", "KiUserCallbackDispatcher"]


def test_v5_request_with_a_missing_module(trio, tmp_path):
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"jobs": [{"memoryMap": [["nothere.pdb", "0000000000000000000000000000000A"]],
                                             "stacks": [[[0, 0x1234]]]}]}))
    result = symbolicate(str(request), "--server", trio.url())
    assert result.returncode == 0
    assert "#0    nothere.pdb  0x1234" in result.stdout
    assert "no symbols found for nothere.pdb/0000000000000000000000000000000A" in result.stdout


def test_progress_on_stderr_when_the_server_is_slow(make_trio, symbol_store):
    trio = make_trio([symbol_store.url("slow/2500")])
    result = symbolicate("--progress", "always", "--server", trio.url(), stdin=f"{XUL} 0xb2e3f7\n")
    assert result.returncode == 0
    assert "symbolicating" in result.stderr and "fetching symbols" in result.stderr
    quick = symbolicate("--progress", "always", "--server", trio.url(), stdin=f"{XUL} 0xb2e3f7\n")
    assert "symbolicating" not in quick.stderr  # answered within a second: no progress line


def test_clear_errors(trio, tmp_path):
    missing = symbolicate(str(tmp_path / "nope.txt"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00")
    assert symbolicate(str(binary)).returncode == 2
    garbage = symbolicate(stdin="not a frame line\n")
    assert garbage.returncode == 2 and "line 1: expected 'debug_file debug_id offset'" in garbage.stderr
    bad_offset = symbolicate(stdin=f"{XUL} 0xZZ\n")
    assert bad_offset.returncode == 2 and "not an offset" in bad_offset.stderr
    wrong_json = symbolicate(stdin='{"hello": 1}')
    assert wrong_json.returncode == 2 and "v4 or v5 symbolication request" in wrong_json.stderr
    rejected = symbolicate("--server", trio.url(), stdin='{"memoryMap": [["../x", "AB"]], "stacks": []}')
    assert rejected.returncode == 1 and "400" in rejected.stderr and "memoryMap[0]" in rejected.stderr
    unreachable = symbolicate("--server", f"http://127.0.0.1:{free_port()}", stdin=f"{XUL} 1\n")
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr
