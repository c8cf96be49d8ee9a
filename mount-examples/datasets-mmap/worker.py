#!/usr/bin/env python3
# One data-loading worker: maps its own copy of the dataset read-only (mmap, no read()
# calls), runs over every byte of it and prints one JSON line with what it computed: the
# Adler-32 checksum (two running sums over the bytes), a sha256, and the first and last
# uint64 records. Both checksums run in C, so the workers stay quick on a busy machine.
# Usage: worker.py ID PATH
import hashlib
import json
import mmap
import struct
import sys
import time
import zlib

wid, path = int(sys.argv[1]), sys.argv[2]
t0 = time.monotonic()
with open(path, "rb") as f:
    m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    try:
        adler = zlib.adler32(m)
        digest = hashlib.sha256(m).hexdigest()
        first, = struct.unpack_from("<Q", m, 0)
        last, = struct.unpack_from("<Q", m, len(m) - 8)
    finally:
        m.close()
print(json.dumps({"worker": wid, "path": path, "adler32": adler, "sha256": digest,
                  "first": first, "last": last, "seconds": round(time.monotonic() - t0, 2)}),
      flush=True)
