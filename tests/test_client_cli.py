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


CRASH_MODULES = [
    {"base_addr": "0x7ff600000000", "end_addr": "0x7ff603000000", "debug_file": "xul.pdb",
     "debug_id": "44E4EC8C2F41492B9369D6B9A059577C2", "filename": "xul.dll", "code_id": "5C8A9F3B6A3E000"},
    {"base_addr": "0x7ffb00000000", "end_addr": "0x7ffb00200000", "debug_file": "wntdll.pdb",
     "debug_id": "D74F79EB1F8D4A45ABCD2F476CCABACC2", "filename": "ntdll.dll"},
]


def test_a_crash_ping_stack_traces(trio, tmp_path):
    """Firefox crash pings: frames carry ip and module_index; offset = ip - base_addr."""
    report = {"stackTraces": {
        "crash_info": {"type": "EXCEPTION_ACCESS_VIOLATION_READ", "crashing_thread": 1},
        "modules": CRASH_MODULES,
        "threads": [
            {"frames": [{"ip": "0x7ffb0001010a", "module_index": 1, "trust": "context"}]},
            {"frames": [{"ip": "0x7ff600b2e3f7", "module_index": 0, "trust": "context"},
                        {"ip": "0x1234", "trust": "scan"}]},
        ]}}
    path = tmp_path / "crash.json"
    path.write_text(json.dumps(report))
    result = symbolicate(str(path), "--server", trio.url())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Thread 1 (crashing)"  # the crashing thread comes first
    assert "XREMain::XRE_mainRun() + 0xf7" in result.stdout
    assert "  #1    <unknown>  0x1234" in lines
    assert lines.index("Thread 0") < [i for i, l in enumerate(lines) if "KiUserCallbackDispatcher + 0x1a" in l][0]


def test_a_minidump_stackwalk_report(trio, tmp_path):
    """minidump-stackwalk JSON: frames name their module by file name, with module_offset."""
    report = {"crash_info": {"crashing_thread": 0}, "modules": CRASH_MODULES,
              "threads": [{"frames": [{"frame": 0, "module": "ntdll.dll", "module_offset": "0x1010a"},
                                      {"frame": 1, "module": "xul.dll", "module_offset": "0xb2e3f7"}]}]}
    result = symbolicate("--json", "--server", trio.url(), stdin=json.dumps(report))
    assert result.returncode == 0, result.stderr
    frames = json.loads(result.stdout)["results"][0]["stacks"][0]
    assert [f.get("function") for f in frames] == ["KiUserCallbackDispatcher", "XREMain::XRE_mainRun()"]


def test_a_broken_crash_report_names_the_frame():
    report = {"modules": CRASH_MODULES, "threads": [{"frames": [{"ip": "0xZZ", "module_index": 0}]}]}
    result = symbolicate(stdin=json.dumps(report))
    assert result.returncode == 2 and "threads[0].frames[0]" in result.stderr
    no_ids = symbolicate(stdin=json.dumps({"modules": [{"filename": "a.dll"}], "threads": []}))
    assert no_ids.returncode == 2 and "modules[0] has no debug_file/debug_id" in no_ids.stderr
