"""Timing of the Snowplow engine's hot paths: the TSV check and the event generator.

Not part of ``make bench``; run by hand::

    PYTHONPATH=. python bench/snowplow_engine.py [--lines 200000] [--repeat 3]

Generates the lines to a temporary file (timing the generator, plain and gzip), then times,
streaming the file as a loader does (line read → work, best of ``--repeat``):

* ``split`` alone (the floor: the loader must split every line anyway);
* ``split`` + ``invalid_values``;
* ``check`` (both in one, the fast path straight on the raw line);
* ``decode`` (tests and payloads only, for scale).

and the same per call on one realistic line (a checkout event: contexts with web_page and cart,
an unstruct event, derived contexts).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import timeit
from datetime import datetime, timezone
from pathlib import Path

from airflow_osds.snowplow import generate as gen
from airflow_osds.snowplow import tsv

START = datetime(2026, 3, 1, tzinfo=timezone.utc)


def _best(repeat: int, fn) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.lines
    print(f"python {platform.python_version()}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}, {n:,} lines")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "enriched.tsv"
        seconds = _best(1, lambda: gen.write(path, n, start=START))
        print(f"generate → file        {n / seconds:>10,.0f} lines/s")
        seconds = _best(args.repeat, lambda: sum(1 for _ in gen.generate(n, start=START)))
        print(f"generate (no I/O)      {n / seconds:>10,.0f} lines/s")
        seconds = _best(1, lambda: gen.write(Path(tmp) / "enriched.tsv.gz", n, gzip=True, start=START))
        print(f"generate → gzip (6)    {n / seconds:>10,.0f} lines/s")
        size = path.stat().st_size
        print(f"average line           {size / n:>10,.0f} bytes")

        def stream(work) -> float:  # type: ignore[no-untyped-def]
            def run() -> None:
                with open(path, encoding="utf-8") as lines:
                    for line in lines:
                        work(line)

            return _best(args.repeat, run) / n * 1e6

        read = stream(lambda line: None)
        split = stream(lambda line: line.split("\t"))
        both = stream(lambda line: tsv.invalid_values(tsv.split(line)))
        check = stream(tsv.check)
        decode = stream(lambda line: tsv.decode(tsv.split(line)))
        print(f"read lines             {read:>10.2f} µs/line")
        print(f"read + split           {split:>10.2f} µs/line")
        print(f"split + invalid_values {both:>10.2f} µs/line  (+{both - split:.2f} over split)")
        print(f"check                  {check:>10.2f} µs/line  (+{check - split:.2f} over split)")
        print(f"split + decode         {decode:>10.2f} µs/line")

    line = next(item for item in gen.generate(2000, start=START) if "\tunstruct\t" in item)
    parts = line.split("\t")
    number = 20_000
    for name, fn in (
        ("split", lambda: tsv.split(line)),
        ("invalid_values", lambda: tsv.invalid_values(parts)),
        ("split+invalid_values", lambda: tsv.invalid_values(tsv.split(line))),  # type: ignore[arg-type]
        ("check", lambda: tsv.check(line)),
    ):
        best = min(timeit.repeat(fn, number=number, repeat=args.repeat)) / number * 1e6
        print(f"one checkout line ({len(line)} chars) {name:<21} {best:6.2f} µs")


if __name__ == "__main__":
    main()
