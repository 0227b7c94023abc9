"""Per-file memory stays small: 1,000,000 empty files commit under 1 GiB of peak RSS."""
import os
import subprocess
import sys

BENCH = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "bench_million_files.py")


def test_million_empty_files_commit_under_one_gib_peak_rss():
    # The benchmark's child process does the work; we only read its report.
    out = subprocess.check_output([sys.executable, BENCH, "--files", "1000000", "--dirs", "1000"], text=True)
    line = next(l for l in out.splitlines() if l.startswith("peak RSS"))
    peak_mib = float(line.split()[2])
    assert peak_mib < 1024, out
    assert "target: peak RSS < 1024 MiB -> met" in out
