"""Smoke tests of bench/: the modules import, the shared table prints and judges rows, wrk's
output and a cProfile dump are read.  Nothing here is timed: the bench measures, tests do not."""

from __future__ import annotations

import cProfile
import importlib
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

WRK_OUTPUT = """Running 3s test @ http://127.0.0.1:40000/
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.61ms  800.00us  12.80ms   90.00%
    Req/Sec     3.10k   150.00     3.30k    70.00%
  Latency Distribution
     50%    2.50ms
     75%    2.80ms
     90%    3.10ms
     99%    9.70ms
  9294 requests in 3.00s, 20.10MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:   3098.11
Transfer/sec:      6.70MB
"""


@pytest.mark.parametrize("name", ["common", "table", "warm", "cold", "profile_cold", "run", "profiled",
                                  "echo_server", "symbolic_baseline", "gen_symfile"])
def test_bench_modules_import(name: str) -> None:
    importlib.import_module(name)


def test_table_formats_and_judges_rows() -> None:
    from table import Row, all_met, format_markdown, format_table, not_measured

    rows = [Row("1 warm", "2,000 req/s", "floor 4,000 req/s", "0.50x", ">= 0.60x", met=False),
            Row("    ladder step", "10 req/s", met=True, counts=False),
            not_measured("2 profile", "<= 0.35x")]
    text = format_table(rows).splitlines()
    assert text[0].split("|")[0].strip() == "goal"
    assert set(text[1].replace("+", "")) == {" ", "-"}
    bars = [i for i, c in enumerate(text[0]) if c == "|"]
    assert bars and bars == [i for i, c in enumerate(text[1]) if c == "+"]  # header and rule line up
    assert all(line[i] == "|" for line in text[2:] for i in bars)  # every row in the same columns
    assert text[2].rstrip().endswith("NO") and text[3].rstrip().endswith("(yes)") and text[4].rstrip().endswith("NO")
    assert "n/a" in text[4]
    assert not all_met(rows, {})
    assert all_met([Row("a", "1", met=True), Row("b", "2", met=False, counts=False)], {})
    assert not all_met([Row("a", "1", met=True)], {"warm": "failed"})
    assert not all_met([Row("b", "2", met=True, counts=False)], {})  # nothing counted is not success
    markdown = format_markdown(rows).splitlines()
    assert markdown[0].startswith("| goal |") and markdown[2].endswith("| **no** |")


def test_wrk_output_is_parsed() -> None:
    from common import parse_wrk

    figures = parse_wrk(WRK_OUTPUT)
    assert figures["requests_per_second"] == 3098.11
    assert figures["p50_ms"] == pytest.approx(2.5) and figures["p99_ms"] == pytest.approx(9.7)
    assert figures["requests"] == 9294 and figures["non_2xx"] == 5
    assert figures["errors"] == 5 + 2 + 1
    assert "error" in parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")


def test_profile_breakdown_charges_json_work(tmp_path: Path) -> None:
    from warm import profile_breakdown

    body = json.dumps({"stacks": [[[0, n] for n in range(2000)]]})
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(30):
        json.dumps(json.loads(body))
    profiler.disable()
    profiler.dump_stats(str(tmp_path / "out.pstats"))
    breakdown = profile_breakdown(tmp_path / "out.pstats", 30)
    categories = {c["category"]: c for c in breakdown["categories"]}
    assert breakdown["requests"] == 30
    assert "JSON decode" in categories and "JSON encode" in categories
    assert sum(c["share"] for c in breakdown["categories"]) == pytest.approx(1.0)


def test_quick_options_and_profile_requests() -> None:
    from profile_cold import JOBS_PER_REQUEST, requests_of
    from run import make_context, parse_args

    quick = make_context(parse_args(["--quick"]))
    assert quick.sizes == [10.0, 74.0] and quick.duration == 3.0 and quick.repeat == 1
    full = make_context(parse_args(["--sizes", "10,1024", "--duration", "5"]))
    assert full.sizes == [10.0, 1024.0] and full.duration == 5.0 and full.repeat == 3
    groups = requests_of([{"n": n} for n in range(126)])
    assert len(groups) == 13 and all(len(g) == JOBS_PER_REQUEST for g in groups[:-1]) and len(groups[-1]) == 6


def test_a_public_inside_a_func_is_told_apart(tmp_path: Path) -> None:
    from common import public_inside_func

    sym = tmp_path / "m.sym"
    sym.write_text("MODULE Linux x86_64 0123456789ABCDEF0123456789ABCDEF0 m\n"
                   "FUNC 1000 100 0 inside_func\n1000 100 1 0\n"
                   "FUNC 2000 10 0 other\n"
                   "PUBLIC 1080 0 thunk_inside\nPUBLIC 3000 0 thunk_after\n")
    module = {"path": sym, "funcs": [(0x1000, 0x100), (0x2000, 0x10)]}
    assert public_inside_func(module, 0x1090, "thunk_inside")
    assert not public_inside_func(module, 0x1010, "thunk_inside")  # below the PUBLIC
    assert not public_inside_func(module, 0x3004, "thunk_after")  # no FUNC covers it
    assert not public_inside_func(module, 0x1090, "something_else")


def test_results_json_prints_as_markdown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from table import Row, main, write_results

    path = tmp_path / "results.json"
    write_results(path, {"machine": {"git_commit": "abc1234"}}, [Row("1 warm", "900 req/s", met=False),
                                                                 Row("  ladder", "1 req/s", met=True, counts=False)])
    assert main([str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "commit abc1234" in lines[0]
    assert lines[3] == "| 1 warm | 900 req/s |  |  |  | **no** |"
    assert lines[4].endswith("| (yes) |")


def test_py_spy_samples_are_charged_to_the_innermost_known_frame(tmp_path: Path) -> None:
    from warm import spy_breakdown

    raw = tmp_path / "spy.txt"
    raw.write_text(
        "main (symserver/__main__.py:53);post (symcommon/web.py:260);parse_job (symcommon/requests.py:112) 6\n"
        "main (symserver/__main__.py:53);post (symcommon/web.py:260);dumps (symcommon/jsonio.py:33);"
        "iterencode (json/encoder.py:205) 3\n"
        "main (symserver/__main__.py:53);run_forever (asyncio/base_events.py:607);select (selectors.py:468) 90\n"
        "main (symserver/__main__.py:53);somewhere (elsewhere.py:1) 1\n")
    breakdown = spy_breakdown(raw)
    shares = {c["category"]: c["share"] for c in breakdown["categories"]}
    assert breakdown["samples"] == 100 and breakdown["idle_share"] == pytest.approx(0.9)
    assert shares["validation (symcommon/requests.py)"] == pytest.approx(0.6)
    assert shares["JSON encode"] == pytest.approx(0.3) and shares["other"] == pytest.approx(0.1)


def test_a_ratio_that_rounds_to_its_target_shows_a_third_decimal() -> None:
    from table import ratio_text

    assert ratio_text(0.5026, 0.5) == "0.503x"
    assert ratio_text(0.42, 0.5) == "0.42x" and ratio_text(0.5, 0.5) == "0.50x"
