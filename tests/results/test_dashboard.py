"""`hpsearch dashboard` serves a real optuna-dashboard: its JSON API and a headless browser read the study."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import pytest
from optuna.trial import TrialState

from hpsearch.record import keys as A

CHROMIUM = "/usr/bin/chromium"
STARTUP_S = 120  # importing torch on a busy two-core machine takes a while


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def dashboard(url: str, name: str):
    """The `hpsearch dashboard` command in a subprocess on a free port; yields (base URL, study page URL)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", "from hpsearch.cli import main; main()", "dashboard",
                             "--study", name, "--storage", url, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(STARTUP_S, proc.kill)  # a hung start fails the test instead of blocking it
    watchdog.start()
    try:
        page = proc.stdout.readline().strip()
        assert page.startswith(f"http://127.0.0.1:{port}/dashboard/studies/"), (page, proc.stderr.read())
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + STARTUP_S
        while True:  # the address is printed just before the server binds
            try:
                get_json(f"{base}/api/meta")
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
                time.sleep(0.2)
        watchdog.cancel()
        yield base, page
    finally:
        watchdog.cancel()
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def served(shared_study):
    """One dashboard for this module's tests: starting it imports torch, which is slow on a busy machine."""
    url, _, _ = shared_study
    with dashboard(url, "shared-digits") as addresses:
        yield addresses


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def test_the_dashboard_api_serves_the_study_and_its_weights(shared_study, served):
    _, _, study = shared_study
    base, page = served
    (summary,) = get_json(f"{base}/api/studies")["study_summaries"]
    assert summary["study_name"] == "shared-digits" and page.endswith(f"/studies/{summary['study_id']}")
    detail = get_json(f"{base}/api/studies/{summary['study_id']}")
    trials = {t["number"]: t for t in detail["trials"]}
    assert len(trials) == len(study.trials)
    for trial in study.trials:
        served = trials[trial.number]
        assert served["state"] == trial.state.name.capitalize()
        assert [v["value"] for v in served["intermediate_values"]] == list(trial.intermediate_values.values())
        if A.WEIGHTS in trial.user_attrs:
            assert [a["filename"] for a in served["artifacts"]] == [f"trial-{trial.number}.safetensors"]
    best = max(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.value)
    assert [t["number"] for t in detail["best_trials"]] == [best.number]


@pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"{CHROMIUM} is not installed (Debian package chromium; "
                                                      ".ci/run installs it when apt-get can)")
def test_a_headless_browser_shows_the_trials_on_the_study_page(shared_study, served):
    _, _, study = shared_study
    _, page = served
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom", page],
            capture_output=True, text=True, timeout=120).stdout
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<(style|script)[^>]*>.*?</\1>", " ", dom, flags=re.S)))
    assert "shared-digits" in text, text[:2000]
    best = max(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.value)
    assert f"Best Trial (number={best.number})" in text, text[:2000]
    for trial in study.trials:  # the intermediate-values chart names every trial in its legend
        assert f"trial #{trial.number}" in text, text[:2000]
