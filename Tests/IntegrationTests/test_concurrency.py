# Several processes at once in one directory: four writers each writing and verifying
# their own 8 MiB file (also cold, from the daemon), and four processes each creating,
# checking and unlinking 500 files while a fifth stats and lists the directory. Nobody may
# see another's bytes or lose an entry, and the daemon must survive it.

import os
import random
import subprocess
import sys
import textwrap

from fsops import MiB, read_cold

HERE = os.path.dirname(os.path.abspath(__file__))


def _spawn(code):
    prelude = f"import os, sys, random\nsys.path.insert(0, {HERE!r})\nfrom fsops import *\n"
    return subprocess.Popen([sys.executable, "-c", prelude + textwrap.dedent(code)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


def _wait_all(procs, timeout=120):
    results = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, f"worker failed:\n{err}"
        results.append(out.strip())
    return results


def test_four_processes_write_and_verify_their_own_8_MiB_files_concurrently(d):
    procs = [_spawn(f"""
        data = random.Random({w}).randbytes(8 * MiB)
        path = os.path.join({d!r}, "worker{w}")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        for off in range(0, len(data), 65536 + 3):  # odd chunking: writes straddle pages
            os.pwrite(fd, data[off:off + 65536 + 3], off)
        os.fsync(fd)
        os.close(fd)
        assert read_file(path) == data, "warm read differs"
        assert read_cold(path) == data, "cold read differs"
        print("ok")
    """) for w in range(4)]
    assert _wait_all(procs) == ["ok"] * 4
    for w in range(4):
        assert read_cold(os.path.join(d, f"worker{w}")) == random.Random(w).randbytes(8 * MiB)
    assert sorted(os.listdir(d)) == [f"worker{w}" for w in range(4)]


def test_four_processes_create_and_unlink_500_files_each_in_one_directory(d, tmp_path):
    stop = str(tmp_path / "stop")
    watcher = _spawn(f"""
        n = 0
        while not os.path.exists({stop!r}):  # stat and list the directory while it churns
            os.stat({d!r})
            os.listdir({d!r})
            n += 1
        print("ok" if n > 0 else "never ran")
    """)
    procs = [_spawn(f"""
        d = {d!r}
        names = [os.path.join(d, f"p{w}-{{i}}") for i in range(500)]
        for i, n in enumerate(names):
            fd = os.open(n, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            os.write(fd, f"{w}:{{i}}".encode())
            os.close(fd)
            if i % 3 == 2:  # unlink as we go, too
                os.unlink(names[i - 1])
        listed = set(os.listdir(d))
        mine = {{n: i for i, n in enumerate(names) if not (i % 3 == 1 and i + 1 < 500)}}
        assert {{os.path.basename(n) for n in mine}} <= listed, "own entries missing from listing"
        for n, i in mine.items():
            with open(n, "rb") as f:
                assert f.read() == f"{w}:{{i}}".encode(), n
        for n in mine:
            os.unlink(n)
        print("ok")
    """) for w in range(4)]
    try:
        assert _wait_all(procs) == ["ok"] * 4
    finally:
        open(stop, "w").close()
    assert _wait_all([watcher]) == ["ok"]
    assert os.listdir(d) == []
    assert os.stat(d).st_nlink == 2
