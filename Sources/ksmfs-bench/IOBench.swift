// `ksmfs-bench io`: ksmfs, tmpfs and a minimal C libfuse in-memory filesystem (the baseline
// issue 2 states its targets against: CReferenceFS, same kernel settings as ksmfs) side by
// side in one run, rotating order, N repetitions: sequential write/read of a file with 1 MiB
// and 4 KiB blocks, mmap read of every page, and create/stat/unlink of small files. Reads drop
// the kernel's page cache of the file first (POSIX_FADV_DONTNEED) so the daemon is measured,
// not the cache.
import Glibc
import KSMFS

struct IOBench {
    let fileBytes: Int
    let repetitions: Int
    let smallFiles: Int
    var ksmfsOptions = ""

    typealias Case = (name: String, unit: String, run: (String) -> Double)

    func cases() -> [Case] {
        [
            ("seq write 1 MiB", "MB/s", { self.write($0, block: 1 << 20) }),
            ("seq read 1 MiB", "MB/s", { self.read($0, block: 1 << 20) }),
            ("seq write 4 KiB", "MB/s", { self.write($0, block: 4096) }),
            ("seq read 4 KiB", "MB/s", { self.read($0, block: 4096) }),
            ("mmap read (cold cache)", "MB/s", { self.mmapRead($0, warm: false) }),
            ("mmap read (warm cache)", "MB/s", { self.mmapRead($0, warm: true) }),
            ("mmap read (hot file)", "MB/s", { self.mmapRead($0, warm: true, hot: true) }),
            ("create+stat+unlink", "files/s", { self.smallFileOps($0) }),
        ]
    }

    private func buffer(_ n: Int) -> UnsafeMutableRawPointer {
        let p = UnsafeMutableRawPointer.allocate(byteCount: n, alignment: 4096)
        var x: UInt64 = 0x9E37_79B9_7F4A_7C15
        for i in stride(from: 0, to: n, by: 8) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; p.storeBytes(of: x, toByteOffset: i, as: UInt64.self) }
        return p
    }

    /// Writes the whole file (write + fsync + close) and returns MB/s.
    func write(_ dir: String, block: Int) -> Double {
        let path = dir + "/io.dat"
        removeAndSettle(path)
        let buf = buffer(block)
        defer { buf.deallocate() }
        let t0 = now()
        let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o644)
        if fd < 0 { fail("open \(path): \(String(cString: strerror(errno)))") }
        var done = 0
        while done < fileBytes {
            let n = Glibc.write(fd, buf, block)
            if n != block { fail("write: \(String(cString: strerror(errno)))") }
            done += n
        }
        fsync(fd)
        Glibc.close(fd)
        return Double(fileBytes) / (now() - t0) / 1e6
    }

    /// Unlinks the previous file and waits until its memory is freed. tmpfs frees it inside
    /// unlink; a FUSE daemon frees it when the kernel's FORGET arrives, just after unlink
    /// returns, which would otherwise overlap the timed write that follows. ksmfs is waited
    /// for through statfs (its free blocks come back); the reference, which has no statfs,
    /// gets a fixed 300 ms.
    private func removeAndSettle(_ path: String) {
        let dir = String(path[..<path.lastIndex(of: "/")!])
        var st = stat()
        guard stat(path, &st) == 0 else { return }
        var fs = statvfs()
        statvfs(dir, &fs)
        let before = UInt64(fs.f_bfree)
        unlink(path)
        if fs.f_blocks == 0 { usleep(300_000); return }
        let blocks = UInt64(st.st_size) / UInt64(max(fs.f_frsize, 1))
        for _ in 0..<5000 {
            statvfs(dir, &fs)
            if UInt64(fs.f_bfree) >= before + blocks { return }
            usleep(1000)
        }
    }

    private func ensureFile(_ dir: String) -> String {
        let path = dir + "/io.dat"
        var st = stat()
        if stat(path, &st) != 0 || st.st_size != fileBytes { _ = write(dir, block: 1 << 20) }
        let fd = open(path, O_RDONLY)
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
        Glibc.close(fd)
        return path
    }

    func read(_ dir: String, block: Int, cold: Bool = true) -> Double {
        let path = cold ? ensureFile(dir) : dir + "/io.dat"
        let buf = buffer(block)
        defer { buf.deallocate() }
        let t0 = now()
        let fd = open(path, O_RDONLY)
        var done = 0
        while true {
            let n = Glibc.read(fd, buf, block)
            if n <= 0 { break }
            done += n
        }
        Glibc.close(fd)
        if done != fileBytes { fail("short read \(done)") }
        return Double(done) / (now() - t0) / 1e6
    }

    /// Touches every page through a shared mapping; `warm` reads the file once first so the
    /// pages are in the kernel's page cache; `hot` also maps and touches it once before the
    /// timed pass. (The first unmap after a read() pays the kernel's LRU activation of every
    /// page, folio_mark_accessed in zap_pte_range, which tmpfs's long-mapped pages do not:
    /// "hot" compares the two with their pages in the same state.)
    func mmapRead(_ dir: String, warm: Bool, hot: Bool = false) -> Double {
        let path = ensureFile(dir)
        if warm { _ = read(dir, block: 1 << 20, cold: false) }
        if hot { _ = touchMapped(path) }
        return touchMapped(path)
    }

    private func touchMapped(_ path: String) -> Double {
        let t0 = now()
        let fd = open(path, O_RDONLY)
        guard let p = mmap(nil, fileBytes, PROT_READ, MAP_SHARED, fd, 0), p != MAP_FAILED else { fail("mmap failed") }
        var sum: UInt64 = 0
        for off in stride(from: 0, to: fileBytes, by: 4096) { sum &+= UInt64(p.load(fromByteOffset: off, as: UInt8.self)) }
        munmap(p, fileBytes)
        Glibc.close(fd)
        if sum == UInt64.max { print(sum) }
        return Double(fileBytes) / (now() - t0) / 1e6
    }

    func smallFileOps(_ dir: String) -> Double {
        let sub = dir + "/small"
        mkdir(sub, 0o755)
        let data = "x"
        let t0 = now()
        for i in 0..<smallFiles {
            let fd = open("\(sub)/f\(i)", O_CREAT | O_WRONLY, 0o644)
            _ = data.withCString { Glibc.write(fd, $0, 1) }
            Glibc.close(fd)
        }
        var st = stat()
        for i in 0..<smallFiles { stat("\(sub)/f\(i)", &st) }
        for i in 0..<smallFiles { unlink("\(sub)/f\(i)") }
        let dt = now() - t0
        rmdir(sub)
        return Double(smallFiles) / dt
    }

    func run() {
        let size = "size=\(fileBytes * 2 + (256 << 20))"
        let mounts = [BenchMount(ksmfs: size + (ksmfsOptions.isEmpty ? "" : "," + ksmfsOptions)), BenchMount(reference: ()), BenchMount(tmpfs: size)]
        defer { for m in mounts { m.close() } }
        var results: [String: [String: [Double]]] = [:]
        let all = cases()
        for rep in 0..<repetitions {
            for c in all {
                for i in 0..<mounts.count {
                    let m = mounts[(i + rep) % mounts.count]
                    results[c.name, default: [:]][m.kind, default: []].append(c.run(m.path))
                }
            }
            for m in mounts { unlink(m.path + "/io.dat") }
        }
        print("ksmfs-bench io: \(fileBytes >> 20) MiB file, \(smallFiles) small files, \(repetitions) repetitions, order rotating"
              + (ksmfsOptions.isEmpty ? "" : ", ksmfs mounted with -o \(ksmfsOptions)"))
        print("reference = a minimal C libfuse in-memory filesystem with ksmfs's kernel settings (CReferenceFS)")
        func range(_ v: [Double], _ digits: Int) -> String {
            let st = Stats(values: v)
            return "\(fmt(st.min, digits)) / \(fmt(st.median, digits)) / \(fmt(st.max, digits))"
        }
        func ratios(_ a: [Double], _ b: [Double]) -> [Double] { zip(a, b).map { $0 / $1 } }
        var rows: [[String]] = []
        for c in all {
            let r = results[c.name]!
            let k = r["ksmfs"]!, ref = r["reference"]!, t = r["tmpfs"]!
            rows.append([c.name, c.unit, range(k, 0), range(ref, 0), range(t, 0),
                         range(ratios(k, t), 2), range(ratios(ref, t), 2), range(ratios(k, ref), 2)])
        }
        printTable(["test", "unit", "ksmfs min/med/max", "reference", "tmpfs",
                    "ksmfs/tmpfs", "reference/tmpfs", "ksmfs/reference"], rows)
    }
}
