# The CI short form of the soak test (tools/soak.py): 60 s of 4 worker processes writing,
# mmap-writing, truncating, punching, copying, renaming and recreating mostly-identical files
# on a fresh 2 GiB ksmfs mount while ksm/run toggles between 0, 1 and 2 with the scanner at
# full speed and faults are injected; every byte checked against the workers' models, and the
# daemon alive, silent in its log and exiting 0. Env: KSMFS_SOAK_SECONDS (default 60),
# KSMFS_SOAK_SEED (default: a random one, shown on failure). `make soak` is the long form.

import os
import random
import re
import subprocess
import sys

import pytest

from fsops import REPO_ROOT

pytestmark = pytest.mark.ksmfs_only

SOAK = os.path.join(REPO_ROOT, "tools", "soak.py")
SUMMARY = re.compile(r"soak: (\d+) operations, ([\d.]+) GB verified, (\d+) mismatches, (\d+) errors, "
                     r"(\d+) daemon errors, (\d+) run toggles, (\d+) faults injected, seed (\d+)")


def test_soak_under_load_with_run_toggling_finds_no_mismatch():
    seconds = float(os.environ.get("KSMFS_SOAK_SECONDS", "60"))
    seed = int(os.environ.get("KSMFS_SOAK_SEED") or random.randrange(1 << 31))
    r = subprocess.run([sys.executable, SOAK, "--seconds", str(seconds), "--seed", str(seed), "--procs", "4"],
                       capture_output=True, text=True, timeout=seconds + 300)
    lines = r.stdout.strip().splitlines()
    m = SUMMARY.fullmatch(lines[-1]) if lines else None
    why = f"seed {seed}, exit {r.returncode}\nstdout: {r.stdout[-2000:]}\nstderr: {r.stderr[-8000:]}"
    assert m, "no summary line; " + why
    ops, mismatches = int(m.group(1)), int(m.group(3))
    assert r.returncode == 0, why
    assert ops > 1000, f"only {ops} operations; " + why
    assert mismatches == 0, why
    assert int(m.group(6)) > 0, "ksm/run was never toggled; " + why
