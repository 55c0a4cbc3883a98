"""The table every workload's goals end up in, and ``bench/work/results.json``.

A :class:`Row` is one figure: what is measured, ours, the baseline measured in the same run,
the ratio, the target and whether it is met.  Rows with ``counts=False`` are context (a
ladder step, a part of a sum) and do not decide the exit status.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable


@dataclass
class Row:
    goal: str
    ours: str
    baseline: str = ""
    ratio: str = ""
    target: str = ""
    met: bool = False
    counts: bool = True
    note: str = ""


def not_measured(goal: str, target: str, why: str = "not measured") -> Row:
    """A goal whose figures are missing (a phase failed): it counts, and it is not met."""
    return Row(goal, "n/a", target=target, met=False, note=why)


def ratio_text(ratio: float, target: float) -> str:
    """``0.42x``; with a third decimal when two would read as the target itself (0.503 vs 0.50)."""
    return f"{ratio:.3f}x" if f"{ratio:.2f}" == f"{target:.2f}" and ratio != target else f"{ratio:.2f}x"


def format_table(rows: Iterable[Row]) -> str:
    """Rows as aligned text; the met column says yes / NO, or (yes) / (no) for context rows."""
    header = ("goal", "ours", "baseline", "ratio", "target", "met")
    lines = [header] + [(r.goal, r.ours, r.baseline, r.ratio, r.target,
                         ("yes" if r.met else "NO") if r.counts else ("(yes)" if r.met else "(no)"))
                        for r in rows]
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = []
    for index, line in enumerate(lines):
        out.append("  " + " | ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip())
        if index == 0:
            out.append("  " + "-+-".join("-" * width for width in widths))
    return "\n".join(out)


def format_markdown(rows: Iterable[Row]) -> str:
    """The same table as Markdown, for the README."""
    out = ["| goal | ours | baseline | ratio | target | met |", "|---|---|---|---|---|---|"]
    for r in rows:
        met = ("yes" if r.met else "**no**") if r.counts else ("(yes)" if r.met else "(no)")
        out.append(f"| {r.goal.strip()} | {r.ours} | {r.baseline} | {r.ratio} | {r.target} | {met} |")
    return "\n".join(out)


def all_met(rows: list[Row], errors: dict[str, str]) -> bool:
    counted = [row for row in rows if row.counts]
    return bool(counted) and all(row.met for row in counted) and not errors


def machine_lines(machine: dict[str, Any], options: dict[str, Any]) -> list[str]:
    changed = machine.get("uncommitted_server_files") or []
    return [
        f"CPU        {machine.get('cpu')} ({machine.get('logical_cores')} logical / "
        f"{machine.get('physical_cores')} physical cores, {machine.get('memory_gb')} GB)",
        f"Python     {machine.get('python')} on {machine.get('platform')}",
        f"date       {machine.get('date')}; load average at start {machine.get('load_average_at_start')}",
        f"tools      {machine.get('wrk')}; symbolic {machine.get('symbolic')}; tornado {machine.get('tornado')}",
        f"code       commit {machine.get('git_commit')}"
        + (f", with uncommitted changes to {', '.join(changed)}" if changed else ", no uncommitted server changes"),
        "options    " + ", ".join(f"{k} {v}" for k, v in options.items()),
    ]


def print_report(results: dict[str, Any], rows: list[Row], details: list[str]) -> None:
    print("\n=== machine")
    for line in machine_lines(results.get("machine", {}), results.get("options", {})):
        print("  " + line)
    if details:
        print("\n=== details")
        for line in details:
            print("  " + line)
    print("\n=== goals")
    print(format_table(rows))
    for row in rows:
        if row.note:
            print(f"  note: {row.goal.strip()}: {row.note}")
    print("  (rows in parentheses are context and do not count)")


def write_results(path: Path, results: dict[str, Any], rows: list[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**results, "goals": [asdict(row) for row in rows]}, indent=2, default=str))


def main(argv: list[str] | None = None) -> int:
    """``python bench/table.py [results.json]``: the goals of a finished run as Markdown (for the README)."""
    import sys

    arguments = sys.argv[1:] if argv is None else argv
    path = Path(arguments[0]) if arguments else Path(__file__).resolve().parent / "work" / "results.json"
    results = json.loads(path.read_text())
    machine = results.get("machine", {})
    print(f"<!-- {path}: commit {machine.get('git_commit')}, {machine.get('date')}, "
          f"load average at start {machine.get('load_average_at_start')} -->")
    print(format_markdown(Row(**row) for row in results.get("goals", [])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
