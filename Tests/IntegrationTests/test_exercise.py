# tools/exercise.py on a real mount: 3 seeds x 3,000 random syscalls (open/read/write/pwrite/
# mmap/msync/truncate/ftruncate/fallocate/rename/link/unlink/xattrs) checked step by step
# against the exerciser's model of tmpfs behaviour, with the writeback cache and without
# (no_writeback_cache sends every write to the daemon at once). On ksmfs the KSM scanner runs
# flat out meanwhile (pages_to_scan 10000, sleep_millisecs 0, run 1), so merges and
# copy-on-write breaks happen under the syscalls; under --target=tmpfs the same runs validate
# the model. Last, the minimal reproduction of what the exerciser found.

import os
import re
import subprocess
import sys

import pytest

from fsops import REPO_ROOT, read_cold, write_file
from ksmops import kset

EXERCISE = os.path.join(REPO_ROOT, "tools", "exercise.py")
STEPS = 3000


@pytest.mark.parametrize("cache", ["writeback", "no_writeback_cache"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_exercise_3000_random_syscalls_match_the_model(mounted, target, seed, cache):
    if cache != "writeback" and target != "ksmfs":
        pytest.skip("no_writeback_cache is a ksmfs mount option")
    with mounted("size=256m" + ("," + cache if cache != "writeback" else "")) as m:
        if target == "ksmfs":
            for name, value in (("pages_to_scan", 10000), ("sleep_millisecs", 0), ("run", 1)):
                kset(m, name, value)
        r = subprocess.run([sys.executable, EXERCISE, "--target", m.path, "--seed", str(seed),
                            "--steps", str(STEPS)], capture_output=True, text=True, timeout=120)
        m.assert_alive()
        summary = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
        assert r.returncode == 0 and re.fullmatch(rf"exercise: {STEPS} steps, seed {seed}, 0 mismatches", summary), (
            f"exit {r.returncode}, summary {summary!r}\n{r.stderr[-6000:]}")


def test_open_O_RDONLY_O_TRUNC_empties_the_file_for_good(mounted):
    """Found by the exerciser (seed 1, step 752): Linux truncates on open(O_RDONLY|O_TRUNC)
    (the caller needs write permission). The file must really be empty: growing it again
    with truncate shows zeros, not the old bytes."""
    with mounted("size=64m") as m:
        path = os.path.join(m.path, "f")
        write_file(path, b"hello")
        os.close(os.open(path, os.O_RDONLY | os.O_TRUNC))
        assert os.stat(path).st_size == 0
        os.truncate(path, 5)
        assert read_cold(path) == bytes(5), "the bytes from before open(O_RDONLY|O_TRUNC) came back"
        m.assert_alive()
