"""Record the demo's transcript on a quiet machine: `python docs/record_demo.py`.

Runs `hpsearch run --study digits-quick` in an empty folder, as a newcomer would, with its output going to a pipe
(plain lines, as in a log), and writes docs/transcripts/digits-quick.txt: a first line saying when and on what it
was recorded and how long the whole command took, then the command and its output. It copies the transcript into
README.md's tour (the block after its `demo transcript` marker); every docs page includes the file itself (hooks.py's
`demo` parts), and tests/test_docs.py checks that the README's copy agrees.

The seconds of a busy machine mislead, so it refuses to record while the load average is above a third of the
cores (--force records anyway, and the first line says the load).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRANSCRIPT = ROOT / "docs" / "transcripts" / "digits-quick.txt"
README = ROOT / "README.md"
README_MARKER = "<!-- demo transcript:"


def cpu_name() -> str:
    """The CPU's model name as Linux reports it, else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine()


def record() -> tuple[list[str], float]:
    """(the output lines, the whole command's wall seconds) of the demo in an empty folder, nothing inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPSEARCH_")}
    env.update(PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    with tempfile.TemporaryDirectory(prefix="hpsearch-demo-") as folder:
        start = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "hpsearch", "run", "--study", "digits-quick"], cwd=folder,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
        seconds = time.monotonic() - start
    if done.returncode != 0:
        sys.exit(f"record_demo: the run failed (exit status {done.returncode}):\n{done.stdout}")
    return done.stdout.splitlines(), seconds


def put_in_readme(lines: list[str]) -> None:
    """Replace the ```console block after README_MARKER's line with `lines`."""
    text = README.read_text()
    before, marker, after = text.partition(README_MARKER)
    head, fence, rest = after.partition("```console\n")
    if not marker or not fence or "\n```\n" not in rest:
        sys.exit(f"record_demo: {README} has no line {README_MARKER!r}... followed by a ```console block")
    README.write_text(before + marker + head + fence + "\n".join(lines) + "\n```\n" + rest.split("\n```\n", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="record on a busy machine too")
    args = parser.parse_args()
    cores, load = os.cpu_count() or 1, os.getloadavg()[0]
    if load > cores / 3 and not args.force:
        sys.exit(f"record_demo: the load average is {load:.2f} on {cores} cores: its seconds would mislead; record on "
                 "a quiet machine (or --force, and the transcript says the load)")
    output, seconds = record()
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    said = (f"# recorded {today} on an {cpu_name()} CPU with {cores} cores, load average {load:.2f} at the start: "
            f"{seconds:.0f} s for the whole command, start-up included.")
    lines = ["$ hpsearch run --study digits-quick", *output]
    TRANSCRIPT.write_text("\n".join([said, *lines]) + "\n")
    put_in_readme(lines)
    print(f"wrote {TRANSCRIPT} and its copy in {README}; say the date and CPU in the README's tour by hand")


if __name__ == "__main__":
    main()
