# Runs ksm_scenario.sh (ksmfs-only): the shell walk-through that mounts its own ksmfs, merges
# 64 MiB of duplicated files to the computed counter figures, unmerges with run=2, checks the
# sha256 of every file and unmounts. Passes only if the script exits 0.

import os
import subprocess

import pytest

from fsops import ksmfs_bin

pytestmark = pytest.mark.ksmfs_only

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ksm_scenario.sh")


def test_ksm_scenario_script_exits_0():
    r = subprocess.run(["bash", SCRIPT], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "KSMFS_BIN": ksmfs_bin()})
    assert r.returncode == 0, (f"ksm_scenario.sh exited {r.returncode}\n--- stdout ---\n{r.stdout}"
                               f"--- stderr ---\n{r.stderr}")
    assert r.stdout.rstrip().endswith("PASS: ksm scenario"), r.stdout
