#!/usr/bin/env python3
"""Generate a realistic, large Breakpad .sym file (seeded, deterministic, streamed to disk).

Shaped like dump_syms output for Firefox's xul: a MODULE and INFO header, tens of thousands
of FILE and INLINE_ORIGIN records, then FUNCs in address order, each with its INLINE and
line records, then PUBLICs, then STACK CFI records.  Names are built from a vocabulary of
namespaces, classes and methods, so they compress like real C++ names do; line numbers
climb within a function as real ones do.  About 85,000 FUNCs make 74 MB.

    python bench/gen_symfile.py --size-mb 74 xul.sym
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

FUNCS_PER_MB = 85_000 / 74

NAMESPACES = ["mozilla", "mozilla::dom", "mozilla::layers", "mozilla::gfx", "mozilla::net", "js",
              "js::jit", "js::gc", "mozilla::ipc", "mozilla::widget", "mozilla::image", "nsTArray_Impl",
              "mozilla::detail", "mozilla::a11y", "mozilla::css", "mozilla::layout", "JS", "xpc"]
CLASSES = ["Element", "Document", "PresShell", "nsFrame", "BaseCompiler", "Zone", "Runtime",
           "HttpChannel", "CompositorBridgeParent", "TextureClient", "DrawTarget", "ImageContainer",
           "MessageChannel", "EventListenerManager", "nsThread", "TaskController", "ScriptLoader",
           "StyleSheet", "Selection", "Accessible", "RefreshDriver", "WebGLContext", "MediaDecoder",
           "IonBuilder", "MacroAssembler", "LifoAlloc", "HashTable", "Vector", "Maybe", "Span"]
METHODS = ["Init", "Run", "Dispatch", "HandleEvent", "Get", "Set", "Process", "Update", "Paint",
           "Notify", "Observe", "Flush", "Reset", "Append", "Remove", "Lookup", "Resize", "Trace",
           "Finalize", "Visit", "Emit", "Compile", "Allocate", "Release", "AddRef", "QueryInterface"]
TYPES = ["int", "unsigned int", "bool", "char const*", "nsISupports*", "JSContext*", "JS::Handle<JS::Value>",
         "mozilla::ErrorResult&", "nsAString const&", "uint32_t", "size_t", "void*", "double"]
DIRECTORIES = ["dom/base", "dom/events", "layout/generic", "layout/style", "gfx/layers/ipc", "gfx/2d",
               "js/src/jit", "js/src/gc", "js/src/vm", "netwerk/protocol/http", "ipc/glue", "xpcom/threads",
               "widget/windows", "image", "media/libcubeb", "accessible/base", "toolkit/xre"]
HEADERS = ["mozilla/RefPtr.h", "mozilla/Maybe.h", "nsTArray.h", "mozilla/Span.h", "js/Vector.h",
           "mozilla/HashTable.h", "nsCOMPtr.h", "mozilla/UniquePtr.h", "mozilla/Atomics.h"]


def _name(rng: random.Random, template: bool = True) -> str:
    namespace, cls, method = rng.choice(NAMESPACES), rng.choice(CLASSES), rng.choice(METHODS)
    if template and rng.random() < 0.3:
        cls += f"<{rng.choice(TYPES).rstrip('*&')}>"
    arguments = ", ".join(rng.choice(TYPES) for _ in range(rng.randrange(4)))
    suffix = rng.choice(["", "", " const"])
    return f"{namespace}::{cls}::{method}{rng.randrange(40)}({arguments}){suffix}"


def generate(path: str | Path, size_mb: float, seed: int = 1, crlf: bool = False, junk: bool = False,
             debug_file: str = "xul.pdb", debug_id: str = "44E4EC8C2F41492B9369D6B9A059577C2",
             code_file: str = "xul.dll") -> dict[str, int]:
    """Write the file; return counts (bytes, funcs, publics, files, origins)."""
    rng = random.Random(seed)
    funcs = max(10, int(size_mb * FUNCS_PER_MB))
    files = max(10, funcs * 30 // 85)
    origins = max(10, funcs * 40 // 85)
    end = "\r\n" if crlf else "\n"
    revision = f"{rng.getrandbits(160):040x}"
    stats = {"funcs": funcs, "publics": 0, "files": files, "origins": origins}
    with open(path, "w", encoding="utf-8", newline="", buffering=1 << 20) as out:
        lines: list[str] = [f"MODULE windows x86_64 {debug_id} {debug_file}",
                            f"INFO CODE_ID {rng.getrandbits(52):X} {code_file}",
                            "INFO GENERATOR mozilla/dump_syms 2.3.4"]
        for number in range(files):
            if rng.random() < 0.8:
                lines.append(f"FILE {number} hg:hg.mozilla.org/mozilla-central:{rng.choice(DIRECTORIES)}/"
                             f"{rng.choice(CLASSES)}{number}.cpp:{revision}")
            else:
                lines.append(f"FILE {number} /builds/worker/workspace/obj-build/dist/include/"
                             f"{rng.choice(HEADERS)}")
            if len(lines) > 5000:
                out.write(end.join(lines) + end)
                lines = []
        for number in range(origins):
            lines.append(f"INLINE_ORIGIN {number} {_name(rng)}")
            if len(lines) > 5000:
                out.write(end.join(lines) + end)
                lines = []
        address = 0x1000
        layout: list[tuple[int, int]] = []
        for index in range(funcs):
            size = int(rng.lognormvariate(5.5, 1.0)) + 8
            name = _name(rng)
            lines.append(f"FUNC {'m ' if rng.random() < 0.03 else ''}{address:x} {size:x} {rng.randrange(0, 32, 4):x} {name}")
            depth_end = address + size
            for depth in range(rng.choice((0, 0, 1, 1, 2, 3))):
                start = address + rng.randrange(max(1, (depth_end - address) // 2))
                length = max(1, (depth_end - start) // 2)
                ranges = f"{start:x} {length:x}"
                if rng.random() < 0.2:
                    ranges += f" {start + length + 2:x} {max(1, length // 3):x}"
                lines.append(f"INLINE {depth} {rng.randrange(1, 4000)} {rng.randrange(files)} "
                             f"{rng.randrange(origins)} {ranges}")
                depth_end = start + length  # the next depth nests inside this one
            file_number = rng.randrange(files)
            line_number = rng.randrange(1, 5000)
            cursor = address
            while cursor < address + size:
                step = min(rng.randrange(2, 0x28), address + size - cursor)
                if rng.random() < 0.1:
                    file_number = rng.randrange(files)
                line_number += rng.randrange(0, 4)
                lines.append(f"{cursor:x} {step:x} {line_number} {file_number}")
                cursor += step
            if junk and rng.random() < 0.002:
                lines.append(rng.choice(["FUNC 0 junkline", "garbage line", "1000 zz 3 1"]))
            layout.append((address, size))
            address += size + rng.randrange(0, 0x20)
            if len(lines) > 5000:
                out.write(end.join(lines) + end)
                lines = []
        for address, size in layout:
            roll = rng.random()
            if roll < 0.35:
                lines.append(f"PUBLIC {address:x} 0 {_name(rng, template=False)}")
            elif roll < 0.5:
                lines.append(f"PUBLIC {'m ' if rng.random() < 0.1 else ''}{address + size + 1:x} 0 "
                             f"thunk_{rng.getrandbits(32):08x}")
            else:
                continue
            stats["publics"] += 1
            if len(lines) > 5000:
                out.write(end.join(lines) + end)
                lines = []
        for address, size in layout:
            lines.append(f"STACK CFI INIT {address:x} {size:x} .cfa: $rsp 8 + .ra: .cfa -8 + ^")
            for step in range(rng.randrange(1, 8)):
                lines.append(f"STACK CFI {address + step + 1:x} .cfa: $rsp {16 + 8 * step} +")
            if len(lines) > 5000:
                out.write(end.join(lines) + end)
                lines = []
        out.write(end.join(lines) + end)
    stats["bytes"] = Path(path).stat().st_size
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--size-mb", type=float, default=74.0, help="approximate size (default 74)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--crlf", action="store_true", help="CRLF line endings")
    parser.add_argument("--junk", action="store_true", help="sprinkle junk lines")
    parser.add_argument("--debug-file", default="xul.pdb")
    parser.add_argument("--debug-id", default="44E4EC8C2F41492B9369D6B9A059577C2")
    parser.add_argument("--code-file", default="xul.dll")
    args = parser.parse_args()
    stats = generate(args.output, args.size_mb, args.seed, args.crlf, args.junk,
                     args.debug_file, args.debug_id, args.code_file)
    print(" ".join(f"{key}={value}" for key, value in stats.items()))


if __name__ == "__main__":
    main()
