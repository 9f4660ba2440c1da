"""Mutation fuzzing of the .vox reader: N mutated copies of the real MagicaVoxel files in
../shared/fixtures/vox (bits flipped, bytes set, int32 fields overwritten, cuts, inserts,
deletions; 1-4 edits each, seeded so a run can be repeated), each read as an import reads it.

Usage: python tools/bench_voxfuzz.py [--cases 100000] [--seed 1]
Prints how many read as a model, how many were refused with a one-line VoxFormatError, and
every other outcome (an exception of another type, a message of several lines, a model whose
parts disagree): those are bugs, and the exit code is 1 when there is one. No Blender needed.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import types
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "vox"


def _voxfile() -> types.ModuleType:
    """The add-on's pure .vox reader, imported without Blender (as the pure tests do)."""
    package = types.ModuleType("conjure_src")
    package.__path__ = [str(ROOT)]
    sys.modules.setdefault("conjure_src", package)
    from conjure_src.importers import voxfile

    return voxfile


def mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(max(len(out), 1))
        kind = rng.choice(("flip", "byte", "int", "cut", "insert", "delete"))
        if kind == "flip" and out:
            out[at] ^= 1 << rng.randrange(8)
        elif kind == "byte" and out:
            out[at] = rng.randrange(256)
        elif kind == "int":  # a size, count or id field set to anything
            out[at : at + 4] = rng.randrange(-(2**31), 2**31).to_bytes(4, "little", signed=True)
        elif kind == "cut":
            del out[at:]
        elif kind == "insert":
            out[at:at] = rng.randbytes(rng.randint(1, 16))
        elif kind == "delete":
            del out[at : at + rng.randint(1, 16)]
    return bytes(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    voxfile = _voxfile()
    corpus = {p.name: p.read_bytes() for p in sorted(FIXTURES.glob("*.vox"))}
    if not corpus:
        print(f"no .vox fixtures in {FIXTURES} (../shared is not beside the repo)")
        return 2
    rng, names = random.Random(args.seed), sorted(corpus)
    outcomes: Counter[str] = Counter()
    bugs: list[str] = []
    started = time.perf_counter()
    for case in range(args.cases):
        name = rng.choice(names)
        data, frame = mutate(corpus[name], rng), rng.randint(-1, 3)
        try:
            vox = voxfile.read(data, frame=frame)
        except voxfile.VoxFormatError as exc:
            one_line = bool(str(exc)) and "\n" not in str(exc)
            outcomes["refused in one line" if one_line else "BUG: refused in several lines"] += 1
            if not one_line:
                bugs.append(f"case {case} ({name}): {str(exc)[:120]!r}")
            continue
        except Exception as exc:  # what the fuzzing is for
            outcomes[f"BUG: {type(exc).__name__}"] += 1
            bugs.append(f"case {case} ({name}, frame {frame}): {type(exc).__name__}: {exc}"[:200])
            continue
        fine = vox.frame_count >= 1 and vox.palette.shape == (256, 4)
        outcomes["read as a model" if fine else "BUG: inconsistent model"] += 1
    took = time.perf_counter() - started
    print(f"{args.cases:,} mutated .vox files from {len(corpus)} fixtures, seed {args.seed}, "
          f"{took:.1f} s ({args.cases / took:,.0f} per second)")  # fmt: skip
    for outcome, count in outcomes.most_common():
        print(f"  {outcome:<32} {count:>8,}")
    for line in bugs[:20]:
        print("  ", line)
    return 1 if bugs else 0


if __name__ == "__main__":
    sys.exit(main())
