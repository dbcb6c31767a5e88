"""The systemd unit in deploy/: valid to systemd itself, unprivileged, restarted on failure, and
given longer to stop than the collector's drain."""

import os
import re
import shutil
import subprocess

import pytest

from collector.config import Config

UNIT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "deploy",
                    "collector.service")


def settings() -> dict:
    with open(UNIT) as f:
        return dict(re.findall(r"^(\w+)=(.*)$", f.read(), re.M))


def test_unit_runs_unprivileged_and_outlasts_the_drain():
    unit = settings()
    assert unit["User"] not in ("", "root") and unit["Restart"] == "on-failure"
    assert int(unit["TimeoutStopSec"].rstrip("s")) > Config().drain_seconds
    assert unit["UMask"] == "0077"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is missing")
def test_systemd_accepts_the_unit(tmp_path):
    # verify checks that ExecStart's program exists: point it at this install's
    collector = shutil.which("collector")
    assert collector, "collector is not on PATH (pip install -e .)"
    with open(UNIT) as f:
        text = f.read().replace("/opt/collector/bin/collector", collector)
    copy = tmp_path / "collector.service"
    copy.write_text(text)
    done = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
