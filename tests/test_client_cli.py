"""The symbolicate command, against a real trio."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

from harness import REPO, free_port, sample_request

XUL = "xul.pdb 44E4EC8C2F41492B9369D6B9A059577C2"
NTDLL = "wntdll.pdb/D74F79EB1F8D4A45ABCD2F476CCABACC2"


def symbolicate(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "symclient", *args], input=stdin,
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


# Firefox profiles ---------------------------------------------------------------------------------

XUL_LIB = {"name": "xul.dll", "path": "C:\\Program Files\\Mozilla Firefox\\xul.dll", "debugName": "xul.pdb",
           "debugPath": "xul.pdb", "breakpadId": "44E4EC8C2F41492B9369D6B9A059577C2", "arch": "x86_64"}
NTDLL_LIB = {"name": "ntdll.dll", "path": "C:\\Windows\\System32\\ntdll.dll", "debugName": "wntdll.pdb",
             "debugPath": "wntdll.pdb", "breakpadId": "D74F79EB1F8D4A45ABCD2F476CCABACC2", "arch": "x86_64"}
UNUSED_LIB = {"name": "nss3.dll", "path": "nss3.dll", "debugName": "nss3.pdb", "debugPath": "nss3.pdb",
              "breakpadId": "0123456789ABCDEF0123456789ABCDEF1", "arch": "x86_64"}
XUL_BASE, NTDLL_BASE = 0x7FF600000000, 0x7FFB00000000
XUL_END_LINE = ":4105"  # XRE_mainRun's own line at 0xb2e3f7 (the call site of its inlines)


def gecko_lib(lib: dict, start: int, size: int) -> dict:
    return dict(lib, start=start, end=start + size, offset=0)


def gecko_thread(name: str, samples: list, **extra) -> dict:
    """A Gecko thread with ``count`` samples of each ``(stack, count)``, stacks leaf first (None: a
    sample without a stack). The schemas put the columns in an unusual order, so only a reader
    that follows them gets the stacks right."""
    strings: list[str] = []
    frame_rows: list[list] = []
    stack_rows: list[list] = []
    frame_of: dict[str, int] = {}
    stack_of: dict[tuple, int] = {}

    def frame(location: str) -> int:
        if location not in frame_of:
            frame_of[location] = len(frame_rows)
            strings.append(location)
            frame_rows.append([False, None, len(strings) - 1, None, None, None, 0, 0])
        return frame_of[location]

    def stack(leaf_first: list[str]) -> int:
        prefix = None
        for location in reversed(leaf_first):
            key = (prefix, frame(location))
            if key not in stack_of:
                stack_of[key] = len(stack_rows)
                stack_rows.append([key[1], key[0]])
            prefix = stack_of[key]
        return prefix

    rows = []
    for leaf_first, count in samples:
        index = stack(leaf_first) if leaf_first else None
        rows.extend([len(rows) * 1.0, index, 0.1] for _ in range(count))
    return {"name": name, "processType": "default", "tid": 1, **extra,
            "samples": {"schema": {"time": 0, "stack": 1, "eventDelay": 2}, "data": rows},
            "stackTable": {"schema": {"frame": 0, "prefix": 1}, "data": stack_rows},
            "frameTable": {"schema": {"relevantForJS": 0, "innerWindowID": 1, "location": 2, "implementation": 3,
                                      "line": 4, "column": 5, "category": 6, "subcategory": 7},
                           "data": frame_rows},
            "stringTable": strings}


def gecko_profile(libs: list, threads: list, processes: list | None = None) -> dict:
    return {"meta": {"version": 27, "interval": 1, "startTime": 0, "processType": 0, "product": "Firefox"},
            "libs": libs, "threads": threads, "processes": processes or [], "pausedRanges": []}


def sample_gecko_profile() -> dict:
    """A parent process (three stacks, a JS label frame, a thread without samples), a content
    child with xul elsewhere in memory and an address in no lib, and a grandchild."""
    xul, ntdll = (lambda offset: hex(XUL_BASE + offset)), (lambda offset: hex(NTDLL_BASE + offset))
    start = ntdll(0x4C2F0)  # RtlUserThreadStart + 0x10
    parent = gecko_thread("GeckoMain", [
        ([xul(0xB2DA10), start], 1),
        ([xul(0xB2E3F7), "js::RunScript", "onLoad (https://example.com/app.js:12:3)", start], 6),
        (None, 2),
        ([ntdll(0x1010A), xul(0xB2F1C5), start], 3),
    ], pid=4242)
    child_xul = 0x180000000
    child = gecko_profile([gecko_lib(XUL_LIB, child_xul, 0x3000000), gecko_lib(NTDLL_LIB, NTDLL_BASE, 0x200000)], [
        gecko_thread("GeckoMain", [([hex(child_xul + 0xB2E3F7), start], 2), (["0x1234", hex(child_xul + 0xB2F1D8)], 1)],
                     pid="5151", processType="tab"),
    ], [gecko_profile([gecko_lib(NTDLL_LIB, NTDLL_BASE, 0x200000)], [
        gecko_thread("Renderer", [([ntdll(0x6E0A0)], 4)], pid=6161, processName="GPU Process")])])
    return gecko_profile([gecko_lib(UNUSED_LIB, 0x7FF500000000, 0x100000), gecko_lib(XUL_LIB, XUL_BASE, 0x3000000),
                          gecko_lib(NTDLL_LIB, NTDLL_BASE, 0x200000)],
                         [parent, gecko_thread("Compositor", [], pid=4242)], [child])


def run_profile(trio, tmp_path, profile: dict, *args: str, name: str = "profile.json"):
    path = tmp_path / name
    path.write_text(json.dumps(profile))
    return symbolicate(str(path), "--server", trio.url(), *args)


def block(lines: list[str], header: str) -> list[str]:
    """The lines from ``header`` up to the next blank line."""
    start = lines.index(header)
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    return lines[start:end]


def test_a_gecko_profile_with_child_processes(trio, tmp_path):
    result = run_profile(trio, tmp_path, sample_gecko_profile())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    threads = [line for line in lines if line.startswith("Thread ")]
    assert threads == ["Thread GeckoMain (pid 4242): 10 samples",  # the 2 samples without a stack do not count
                       "Thread GeckoMain (pid 5151, tab process): 3 samples",
                       "Thread Renderer (pid 6161, GPU Process): 4 samples"]  # Compositor has no samples
    parent = lines[:lines.index(threads[1])]
    heaviest = [line for line in parent if line.startswith("  ") and line.endswith("%):")]
    assert heaviest == ["  6 samples (60.0%):", "  3 samples (30.0%):", "  1 sample (10.0%):"]
    first = block(lines, "  6 samples (60.0%):")[1:]
    assert first[0].startswith("  #0    xul.dll    mozilla::StartupTimeline::Record(") and "(inlined)" in first[0]
    assert first[1].startswith("        xul.dll    XREMain::XRE_mainStartup(bool*) (inlined)")
    assert "xul.dll  XREMain::XRE_mainRun() + 0xf7" in first[2] and first[2].endswith(XUL_END_LINE)
    assert first[3:] == ["  #1    js::RunScript", "  #2    onLoad (https://example.com/app.js:12:3)",
                         "  #3    ntdll.dll  RtlUserThreadStart + 0x10"]
    second = block(lines, "  3 samples (30.0%):")[1:]
    assert second[0] == "  #0    ntdll.dll  KiUserCallbackDispatcher + 0x1a"
    assert "mozilla::TimeStamp::Now() (inlined)" in second[1] and second[1].startswith("  #1    xul.dll")
    assert "nsThread::ProcessNextEvent(bool, bool*) + 0x25" in second[2]
    assert second[3] == "  #2    ntdll.dll  RtlUserThreadStart + 0x10"
    assert "mozilla::detail::RunnableFunction<void (*)()>::Run() + 0x10" in block(lines, "  1 sample (10.0%):")[1]
    child = block(lines, "  1 sample (33.3%):")[1:]  # xul at another base in the child: offsets still right
    assert child[0] == "  #0    <unknown>  0x1234"  # in no lib: printed, not a crash
    assert "nsThread::ProcessNextEvent(bool, bool*) + 0x38" in child[1]
    assert "XREMain::XRE_mainRun() + 0xf7" in "\n".join(block(lines, "  2 samples (66.7%):"))
    assert block(lines, "  4 samples (100.0%):")[1] == "  #0    ntdll.dll  NtWaitForSingleObject + 0x0"


def test_top_limits_the_stacks_printed_and_sent(trio, tmp_path):
    result = run_profile(trio, tmp_path, sample_gecko_profile(), "--top", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "  1 sample (10.0%):" not in lines
    assert "  (1 more stack: 1 sample, 10.0%; see --top)" in lines
    assert lines.index("  6 samples (60.0%):") < lines.index("  3 samples (30.0%):")
    answer = json.loads(run_profile(trio, tmp_path, sample_gecko_profile(), "--top", "1", "--json").stdout)
    result = answer["results"][0]
    # one stack per printed stack (one per thread here), native frames only; unused libs not asked
    assert [len(stack) for stack in result["stacks"]] == [2, 2, 1]
    assert [frame["function"] for frame in result["stacks"][0]] == ["XREMain::XRE_mainRun()", "RtlUserThreadStart"]
    assert result["found_modules"] == {"xul.pdb/44E4EC8C2F41492B9369D6B9A059577C2": True,
                                       "wntdll.pdb/D74F79EB1F8D4A45ABCD2F476CCABACC2": True}
    assert symbolicate("--top", "0", stdin="{}").returncode == 2


def processed_thread(name: str, samples: list, libs: list, strings: list | None = None, **extra) -> dict:
    """A processed thread's column tables. Stacks are leaf first; a frame is ``(lib, offset)``
    (native, func named by its address as the profiler does before symbolication), ``(None,
    address)`` (an address in no lib, kept by name) or a string (JS or a label). Strings go to
    ``strings`` (the profile's shared.stringArray) when given, else to the thread's stringArray."""
    own = strings is None
    strings = [] if own else strings
    funcs: dict = {"name": [], "resource": [], "isJS": [], "relevantForJS": [], "fileName": [],
                   "lineNumber": [], "columnNumber": [], "length": 0}
    resources: dict = {"lib": [], "name": [], "host": [], "type": [], "length": 0}
    frames: dict = {"address": [], "inlineDepth": [], "category": [], "subcategory": [], "func": [],
                    "nativeSymbol": [], "innerWindowID": [], "implementation": [], "line": [], "column": [],
                    "length": 0}
    stacks: dict = {"frame": [], "prefix": [], "category": [], "subcategory": [], "length": 0}
    ids: dict = {}

    def string(text: str) -> int:
        if text not in strings:
            strings.append(text)
        return strings.index(text)

    def add(table: dict, **row) -> int:
        for column, value in row.items():
            table[column].append(value)
        table["length"] += 1
        return table["length"] - 1

    def resource(lib) -> int:
        if ("resource", lib) not in ids:
            ids["resource", lib] = add(resources, lib=lib, name=string(libs[lib]["name"] if lib is not None
                                                                          else "example.com"), host=None, type=1)
        return ids["resource", lib]

    def frame(spec) -> int:
        if spec not in ids:
            if isinstance(spec, str):  # a label frame has no resource; a JS one a web host without lib
                func = add(funcs, name=string(spec), resource=resource(None) if "(" in spec else -1, isJS=True,
                           relevantForJS=False, fileName=None, lineNumber=None, columnNumber=None)
                address = -1
            else:
                lib, address = spec
                func = add(funcs, name=string(hex(address)), resource=resource(lib) if lib is not None else -1,
                           isJS=False, relevantForJS=False, fileName=None, lineNumber=None, columnNumber=None)
            ids[spec] = add(frames, address=address, inlineDepth=0, category=0, subcategory=0, func=func,
                            nativeSymbol=None, innerWindowID=0, implementation=None, line=None, column=None)
        return ids[spec]

    def stack(leaf_first: list) -> int:
        prefix = None
        for spec in reversed(leaf_first):
            key = ("stack", prefix, frame(spec))
            if key not in ids:
                ids[key] = add(stacks, frame=key[2], prefix=prefix, category=0, subcategory=0)
            prefix = ids[key]
        return prefix

    sample_stacks, weights = [], []
    for leaf_first, weight in samples:
        sample_stacks.append(stack(leaf_first) if leaf_first else None)
        weights.append(weight)
    thread = {"name": name, "processType": "default", "tid": 7, **extra,
              "samples": {"stack": sample_stacks, "time": [float(i) for i in range(len(samples))],
                          "weight": weights if any(w != 1 for w in weights) else None, "weightType": "samples",
                          "length": len(samples)},
              "stackTable": stacks, "frameTable": frames, "funcTable": funcs, "resourceTable": resources}
    if own:
        thread["stringArray"] = strings
    return thread


def processed_profile(threads: list, libs: list, shared_strings: list | None = None) -> dict:
    profile = {"meta": {"version": 27, "preprocessedProfileVersion": 50, "interval": 1, "product": "Firefox",
                        "symbolicated": False},
               "libs": libs, "threads": threads, "counters": [], "pages": []}
    if shared_strings is not None:
        profile["shared"] = {"stringArray": shared_strings}
    return profile


PROCESSED_LIBS = [gecko_lib(XUL_LIB, XUL_BASE, 0x3000000), gecko_lib(UNUSED_LIB, 0x7FF500000000, 0x100000),
                  gecko_lib(NTDLL_LIB, NTDLL_BASE, 0x200000)]


def test_a_processed_profile_with_shared_strings_and_weights(trio, tmp_path):
    """The newest shape: strings in profile.shared.stringArray, a weight column that decides the order."""
    strings: list[str] = []
    start = (2, 0x4C2F0)
    thread = processed_thread("GeckoMain", [
        ([(2, 0x1010A), start], 1),
        ([(0, 0xB2E3F7), "js::RunScript", "onLoad (https://example.com/app.js:12:3)", (None, 0x5000), start], 5),
        ([(2, 0x1010A), start], 1),
        (None, 1),
    ], PROCESSED_LIBS, strings, pid="4242", processName="Parent Process")
    result = run_profile(trio, tmp_path, processed_profile([thread], PROCESSED_LIBS, strings))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # the sample without a stack does not count
    assert lines[0] == "Thread GeckoMain (pid 4242, Parent Process): 7 samples"
    assert [line for line in lines if line.endswith("%):")] == ["  5 samples (71.4%):", "  2 samples (28.6%):"]
    heaviest = block(lines, "  5 samples (71.4%):")[1:]
    assert "XREMain::XRE_mainRun() + 0xf7" in heaviest[2] and heaviest[2].startswith("        xul.dll")
    assert heaviest[3:] == ["  #1    js::RunScript", "  #2    onLoad (https://example.com/app.js:12:3)",
                            "  #3    0x5000",  # an address in no lib keeps its profile name
                            "  #4    ntdll.dll  RtlUserThreadStart + 0x10"]
    assert block(lines, "  2 samples (28.6%):")[1:] == ["  #0    ntdll.dll  KiUserCallbackDispatcher + 0x1a",
                                                        "  #1    ntdll.dll  RtlUserThreadStart + 0x10"]


def add_inlined_leaf(thread: dict, sample: int, name: str) -> None:
    """Make ``sample``'s leaf look symbolicated with an inline, as the profiler stores it: a
    frame at the same address with inlineDepth 1, whose stack's prefix is the depth-0 frame's."""
    frames, funcs, stacks, strings = (thread[key] for key in ("frameTable", "funcTable", "stackTable", "stringArray"))
    leaf_stack = thread["samples"]["stack"][sample]
    leaf_frame = stacks["frame"][leaf_stack]
    strings.append(name)
    for column in funcs:
        if column != "length":
            funcs[column].append(funcs[column][frames["func"][leaf_frame]])
    funcs["name"][-1] = len(strings) - 1
    for column in frames:
        if column != "length":
            frames[column].append(frames[column][leaf_frame])
    frames["inlineDepth"][-1], frames["func"][-1] = 1, len(funcs["name"]) - 1
    for column in stacks:
        if column != "length":
            stacks[column].append(stacks[column][leaf_stack])
    stacks["frame"][-1], stacks["prefix"][-1] = len(frames["address"]) - 1, leaf_stack
    for table in (funcs, frames, stacks):
        table["length"] += 1
    thread["samples"]["stack"][sample] = len(stacks["frame"]) - 1


def test_a_processed_profile_with_per_thread_strings_gzipped(trio, tmp_path):
    """Older processed profiles keep strings per thread; the profiler saves them gzipped."""
    libs = PROCESSED_LIBS
    threads = [
        processed_thread("Idle", [], libs, pid="10"),  # no samples: skipped
        processed_thread("DOM Worker", [([(0, 0xB2E42C)], 1), ([(0, 0xB2E150), (2, 0x4C2F0)], 3)], libs,
                         pid="20", processName="Isolated Web Content"),
    ]
    add_inlined_leaf(threads[1], 0, "RefPtr<nsAppShell>::get() const")  # the server gives the inlines again
    threads[1]["stringTable"] = threads[1].pop("stringArray")  # the older name
    threads.append(processed_thread("StreamTrans #1", [([(2, 0x6E0C0)], 2)], libs, pid="20"))
    path = tmp_path / "profile.json.gz"
    path.write_bytes(gzip.compress(json.dumps(processed_profile(threads, libs)).encode()))
    result = symbolicate(str(path), "--server", trio.url())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line for line in lines if line.startswith("Thread")] == [
        "Thread DOM Worker (pid 20, Isolated Web Content): 4 samples", "Thread StreamTrans #1 (pid 20): 2 samples"]
    assert lines[1:5] == ["", "  3 samples (75.0%):",
                          "  #0    xul.dll  SelectProfile(nsToolkitProfileService*, nsINativeAppSupport*, "
                          "nsIProfileLock**, nsIToolkitProfile**, bool*) + 0x50  "
                          "hg:hg.mozilla.org/mozilla-central:toolkit/xre/nsAppRunner.cpp:"
                          "2c9e5f3b1a7d4e6f8a0b1c2d3e4f5a6b7c8d9e0f:2470",
                          "  #1    ntdll.dll  RtlUserThreadStart + 0x10"]
    inlined = block(lines, "  1 sample (25.0%):")[1:]
    assert len(inlined) == 3 and "RefPtr<nsAppShell>::get() const (inlined)" in inlined[0]
    assert "XREMain::XRE_mainRun() + 0x12c" in inlined[2] and inlined[2].endswith(":4131")
    assert block(lines, "  2 samples (100.0%):")[1] == "  #0    ntdll.dll  NtWaitForMultipleObjects + 0x0"


def test_broken_profiles_say_what_is_missing(trio, tmp_path):
    def error_of(profile: dict) -> str:
        result = symbolicate("--server", trio.url(), stdin=json.dumps(profile))
        assert result.returncode == 2 and result.stdout == "", result.stdout
        return result.stderr.strip()

    libs = [gecko_lib(XUL_LIB, XUL_BASE, 0x3000000)]
    assert error_of({"meta": {"version": 27}, "libs": libs}) == \
        'symbolicate: -: a Firefox profile needs a "threads" list'
    assert "JSON input must be" in error_of({"profile": {}})
    assert error_of(gecko_profile(libs, [gecko_thread("Idle", [])])) == \
        "symbolicate: -: no thread of the profile has samples"
    no_location = gecko_profile(libs, [gecko_thread("GeckoMain", [([hex(XUL_BASE + 1)], 1)])])
    del no_location["threads"][0]["frameTable"]["schema"]["location"]
    assert error_of(no_location).endswith("threads[0].frameTable.schema has no 'location' column")
    in_child = gecko_profile(libs, [], [gecko_profile(libs, [{"name": "GeckoMain", "samples": {"data": []}}])])
    assert error_of(in_child).endswith('processes[0].threads[0].samples needs "schema" and "data"')
    dangling = gecko_profile(libs, [gecko_thread("GeckoMain", [([hex(XUL_BASE + 1)], 1)])])
    dangling["threads"][0]["samples"]["data"][0][1] = 99
    assert error_of(dangling).endswith("threads[0].stackTable.data[99] does not exist")
    no_id = gecko_profile([dict(libs[0], breakpadId="")], [gecko_thread("T", [([hex(XUL_BASE + 1)], 1)])])
    assert error_of(no_id).endswith("libs[0] (xul.pdb) has no breakpadId")
    no_strings = processed_profile([processed_thread("T", [([(0, 0xB2E3F7)], 1)], PROCESSED_LIBS)], PROCESSED_LIBS)
    del no_strings["threads"][0]["stringArray"]
    assert "threads[0] has no strings" in error_of(no_strings)
    no_func_table = processed_profile([processed_thread("T", [([(0, 1)], 1)], PROCESSED_LIBS)], PROCESSED_LIBS)
    del no_func_table["threads"][0]["funcTable"]
    assert error_of(no_func_table).endswith("threads[0].funcTable is missing")
    cycle = processed_profile([processed_thread("T", [([(0, 1)], 1)], PROCESSED_LIBS)], PROCESSED_LIBS)
    cycle["threads"][0]["stackTable"]["prefix"][0] = 0
    assert error_of(cycle).endswith("threads[0]: stack 0 has a prefix cycle")


# Terminal safety ---------------------------------------------------------------------------------

EVIL_ID = "0123456789ABCDEF0123456789ABCDEF1"
EVIL_FUNCTION = "clear\x1b[2Jscreen\x07\x9b31m()"  # ESC sequence, bell, C1 CSI
EVIL_FILE = "src/\u202egnp.exe\x7f.c"  # a bidi override and DEL
EVIL_CODE_FILE = "ev\x1b]0;title\x07il.dll"  # an OSC sequence setting the window title
RAW_CONTROLS = ("\x1b", "\x07", "\x9b", "\x7f", "\u202e")


def evil_symbols(directory) -> None:
    sym = directory / "evil.pdb" / EVIL_ID / "evil.sym"
    sym.parent.mkdir(parents=True)
    sym.write_bytes(f"MODULE windows x86_64 {EVIL_ID} evil.pdb\nINFO CODE_ID 5C8A9F3B6A3E000 {EVIL_CODE_FILE}\n"
                    f"FILE 0 {EVIL_FILE}\nFUNC 1000 100 0 {EVIL_FUNCTION}\n1000 100 42 0\n".encode())


def test_control_characters_from_symbols_and_profiles_are_escaped(make_trio, tmp_path):
    symbols = tmp_path / "symbols"
    evil_symbols(symbols)
    trio = make_trio([], {"DiskCache": {"localSymbolDirs": [str(symbols)]}}, memcached=False)
    printed = symbolicate("--server", trio.url(), stdin=f"evil.pdb {EVIL_ID} 0x1010\n")
    assert printed.returncode == 0, printed.stderr
    assert not any(control in printed.stdout for control in RAW_CONTROLS), repr(printed.stdout)
    line = printed.stdout.splitlines()[0]
    assert "clear\\x1b[2Jscreen\\x07\\x9b31m() + 0x10" in line
    assert "ev\\x1b]0;title\\x07il.dll" in line and "src/\\u202egnp.exe\\x7f.c:42" in line
    as_json = symbolicate("--json", "--server", trio.url(), stdin=f"evil.pdb {EVIL_ID} 0x1010\n")
    frame = json.loads(as_json.stdout)["results"][0]["stacks"][0][0]  # --json is data: kept exact
    assert (frame["function"], frame["file"], frame["module"]) == (EVIL_FUNCTION, EVIL_FILE, EVIL_CODE_FILE)
    lib = dict(XUL_LIB, debugName="evil.pdb", breakpadId=EVIL_ID, name="evil.dll")
    profile = gecko_profile([gecko_lib(lib, XUL_BASE, 0x100000)], [
        gecko_thread("Main\x1b[2J", [([hex(XUL_BASE + 0x1010), "js\u202eevil\x07\ud800"], 1)], pid=1,
                     processName="web\x9bcontent")])
    from_profile = run_profile(trio, tmp_path, profile)
    assert from_profile.returncode == 0, from_profile.stderr
    assert not any(control in from_profile.stdout for control in RAW_CONTROLS), repr(from_profile.stdout)
    assert "Thread Main\\x1b[2J (pid 1, web\\x9bcontent): 1 sample" in from_profile.stdout
    assert "  #1    js\\u202eevil\\x07\\ud800" in from_profile.stdout.splitlines()  # a lone surrogate too


def test_the_client_stands_apart_from_the_servers():
    """symclient talks to SymServer over HTTP only: importing it loads no server code."""
    probe = ("import sys, symclient.cli; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('symserver', 'diskcache', 'symcommon')))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    shown = symbolicate("--help")
    assert shown.returncode == 0 and shown.stdout.startswith("usage: symbolicate")
