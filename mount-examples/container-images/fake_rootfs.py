#!/usr/bin/env python3
"""Deterministic fake container root filesystems, and what merging them should give.

  fake_rootfs.py base DIR            a rootfs of a few hundred files of varied sizes (seed 7)
  fake_rootfs.py customize DIR N     per-container changes to the tree DIR (a hard-linked copy
                                     of the base): hostname, machine-id, a log, one "upgraded"
                                     library on odd N. Changed files are replaced, never
                                     written through, so the base's hard links stay intact.
  fake_rootfs.py pages DIR...        JSON {"pages", "distinct", "expected_sharing"}: every file
                                     cut into 4 KiB pages (the last one zero-padded) as ksmfs
                                     stores them; identical pages are what merging can fold.
"""
import hashlib
import json
import os
import random
import sys

PAGE = 4096
WORDS = ("lorem ipsum dolor sit amet config path service daemon library package version "
         "install depends maintainer architecture description license copyright shared object "
         "binary runtime network socket user group cache log").split()

LAYOUT = [  # directory, how many files, size range in bytes, kind
    ("bin", 40, (20_000, 400_000), "elf"),
    ("sbin", 20, (10_000, 200_000), "elf"),
    ("lib/x86_64-linux-gnu", 50, (8_000, 900_000), "elf"),
    ("usr/bin", 50, (5_000, 300_000), "elf"),
    ("usr/lib/python3/dist-packages/app", 60, (200, 30_000), "text"),
    ("usr/share/doc", 50, (100, 6_000), "text"),
    ("usr/share/locale/de/LC_MESSAGES", 12, (2_000, 60_000), "elf"),
    ("etc", 30, (20, 3_000), "text"),
    ("var/lib/dpkg/info", 40, (50, 8_000), "text"),
]


def _text(rng, size):
    out, n = [], 0
    while n < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) + "\n"
        out.append(line)
        n += len(line)
    return "".join(out)[:size].encode()


def _write(path, data, mode=0o644):
    if os.path.lexists(path):
        os.unlink(path)  # break a hard link to the base rather than writing through it
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def make_base(root):
    rng = random.Random(7)
    for d, count, (lo, hi), kind in LAYOUT:
        os.makedirs(os.path.join(root, d), exist_ok=True)
        for i in range(count):
            size = int(lo * (hi / lo) ** rng.random())  # log-uniform: many small, few large
            if kind == "elf":
                name, mode = f"{os.path.basename(d)}-{i:03d}", 0o755
                data = b"\x7fELF" + rng.randbytes(size - 4)
            else:
                name, mode = f"file-{i:03d}.txt", 0o644
                data = _text(rng, size)
            _write(os.path.join(root, d, name), data, mode)
    lib = os.path.join(root, "lib/x86_64-linux-gnu")
    for i in range(10):  # the usual soname symlinks
        os.symlink(f"x86_64-linux-gnu-{i:03d}", os.path.join(lib, f"libdemo{i}.so.1"))
    os.makedirs(os.path.join(root, "tmp"), mode=0o1777, exist_ok=True)
    os.makedirs(os.path.join(root, "var/log"), exist_ok=True)
    _write(os.path.join(root, "etc/hostname"), b"base\n")
    _write(os.path.join(root, "etc/os-release"), b'NAME="Fake Linux"\nVERSION_ID="1.0"\n')


def customize(root, n):
    rng = random.Random(1000 + n)
    _write(os.path.join(root, "etc/hostname"), f"container-{n}\n".encode())
    _write(os.path.join(root, "etc/machine-id"), (rng.randbytes(16).hex() + "\n").encode())
    _write(os.path.join(root, "var/log/app.log"),
           "".join(f"container-{n} start {i} ok\n" for i in range(200 + 37 * n)).encode())
    if n % 2:  # half the containers run an upgraded library: one page in its middle differs
        lib = os.path.join(root, "lib/x86_64-linux-gnu/x86_64-linux-gnu-003")
        with open(lib, "rb") as f:
            data = bytearray(f.read())
        mid = (len(data) // 2) & ~(PAGE - 1)
        data[mid:mid + 64] = rng.randbytes(64)
        _write(lib, bytes(data), 0o755)


def pages(roots):
    total, seen = 0, set()
    for root in roots:
        for dirpath, _, files in os.walk(root):
            for name in files:
                p = os.path.join(dirpath, name)
                if os.path.islink(p):
                    continue
                with open(p, "rb") as f:
                    while chunk := f.read(PAGE):
                        total += 1
                        seen.add(hashlib.sha256(chunk.ljust(PAGE, b"\0")).digest())
    return {"pages": total, "distinct": len(seen), "expected_sharing": total - len(seen)}


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "base":
        make_base(args[0])
    elif cmd == "customize":
        customize(args[0], int(args[1]))
    elif cmd == "pages":
        print(json.dumps(pages(args)))
    else:
        sys.exit(__doc__)
