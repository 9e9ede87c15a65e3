"""Record the demo's transcript: `python docs/record_demo.py` on a quiet machine.

Runs `hpsearch run --study digits-quick` in an empty folder, as a newcomer would, and writes what stays on their
terminal to docs/transcripts/demo.txt, headed by one line that says when, on what and how long: the date, the CPU
and its cores, the load average at the start, the versions, and the whole command's wall time. It then copies the
transcript into README.md's one-minute tour (the block after the `demo transcript` marker), so the README and every
docs page that quotes the demo (hooks.py's `demo` part) show this one file. tests/test_docs.py checks that they
agree.

Accuracies, parameter counts and the order of trials repeat exactly on the same CPU type and versions; seconds do
not, and a busy machine inflates them: the script refuses to record while the load average is above a third of the
cores (--force records anyway, and the header says the load).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRANSCRIPT = ROOT / "docs" / "transcripts" / "demo.txt"
README = ROOT / "README.md"
README_MARKER = "<!-- demo transcript: docs/transcripts/demo.txt, written by docs/record_demo.py -->"
PROGRESS_LINE = re.compile(r"; \d+:\d\d elapsed$")  # a log's stand-in for the live bars, which a terminal erases


def cpu_name() -> str:
    """The CPU's model name as Linux reports it, else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def what_stays(output: str) -> str:
    """The run's combined stdout and stderr as a terminal keeps it: without the progress lines a log gets instead of
    the bars."""
    return "".join(line for line in output.splitlines(keepends=True) if not PROGRESS_LINE.search(line.rstrip("\n")))


def header(seconds: float, load: float) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"# recorded {now} on {cpu_name()} ({cores()} cores, load average {load:.2f} at the start); hpsearch "
            f"{version('hpsearch')}, torch {version('torch')}, optuna {version('optuna')}, Python "
            f"{platform.python_version()}; the whole command took {seconds:.1f} s, start-up included")


def record(study: str) -> tuple[str, float]:
    """(what stays on the terminal, the command's wall seconds) of `hpsearch run --study STUDY` in an empty folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPSEARCH_")}  # nothing inherited: the default run
    env.update(PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "hpsearch", "run", "--study", study]
    with tempfile.TemporaryDirectory(prefix="hpsearch-demo-") as folder:
        start = time.monotonic()
        done = subprocess.run(command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, check=False)
        seconds = time.monotonic() - start
    if done.returncode != 0:
        sys.exit(f"record_demo: the run failed (exit status {done.returncode}):\n{done.stdout}")
    return what_stays(done.stdout), seconds


def put_in_readme(readme: Path, transcript: str) -> None:
    """Replace the fenced block after README_MARKER with `transcript`."""
    text = readme.read_text()
    before, marker, after = text.partition(README_MARKER + "\n")
    if not marker or not after.startswith("```text\n"):
        sys.exit(f"record_demo: {readme} has no line {README_MARKER!r} followed by a ```text block")
    rest = after.split("\n```\n", 1)[1]
    readme.write_text(f"{before}{marker}```text\n{transcript.rstrip()}\n```\n{rest}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="digits-quick", help="the study to run (default: the demo)")
    parser.add_argument("--out", type=Path, default=TRANSCRIPT, help="the transcript file")
    parser.add_argument("--readme", type=Path, default=README, help="the README to copy it into")
    parser.add_argument("--force", action="store_true", help="record on a busy machine too")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    if load > cores() / 3 and not args.force:
        sys.exit(f"record_demo: the load average is {load:.2f} on {cores()} cores: its seconds would mislead; record "
                 "on a quiet machine (or --force, and the header says the load)")
    output, seconds = record(args.study)
    transcript = f"{header(seconds, load)}\n$ hpsearch run --study {args.study}\n{output}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(transcript)
    put_in_readme(args.readme, transcript)
    print(f"wrote {args.out} and its copy in {args.readme} ({seconds:.1f} s)")


if __name__ == "__main__":
    main()
