# tools/exercise.py on a real mount: 3 seeds x 3,000 random syscalls (open/read/write/pwrite/
# mmap/msync/truncate/ftruncate/fallocate/rename/link/unlink/xattrs) checked step by step
# against the exerciser's model of tmpfs behaviour. On ksmfs the KSM scanner runs flat out
# meanwhile (pages_to_scan 10000, sleep_millisecs 0, run 1), so merges and copy-on-write
# breaks happen under the syscalls; under --target=tmpfs the same runs validate the model.

import os
import re
import subprocess
import sys

import pytest

from fsops import REPO_ROOT

EXERCISE = os.path.join(REPO_ROOT, "tools", "exercise.py")
STEPS = 3000


def _ksm_set(m, name, value):
    fd = os.open(os.path.join(m.path, "ksm", name), os.O_WRONLY)
    try:
        os.write(fd, f"{value}\n".encode())
    finally:
        os.close(fd)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_exercise_3000_random_syscalls_match_the_model(mounted, target, seed):
    with mounted("size=256m") as m:
        if target == "ksmfs":
            for name, value in (("pages_to_scan", 10000), ("sleep_millisecs", 0), ("run", 1)):
                _ksm_set(m, name, value)
        r = subprocess.run([sys.executable, EXERCISE, "--target", m.path, "--seed", str(seed),
                            "--steps", str(STEPS)], capture_output=True, text=True, timeout=120)
        m.assert_alive()
        summary = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
        assert r.returncode == 0 and re.fullmatch(rf"exercise: {STEPS} steps, seed {seed}, 0 mismatches", summary), (
            f"exit {r.returncode}, summary {summary!r}\n{r.stderr[-6000:]}")
