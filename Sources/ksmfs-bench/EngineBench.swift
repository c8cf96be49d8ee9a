// `ksmfs-bench engine`: the KSM engine alone (no FUSE), on dup16 and half-unique page
// patterns, reporting pages per scanner CPU-second for each phase (first visit, merge pass,
// steady state), heap bytes allocated in steady state, and metadata bytes per scan item.
import Glibc
import CKSMSupport
import KSM

struct EngineBench {
    let sizes: [Int]
    let repetitions: Int

    static func fill(_ buf: UnsafeMutableRawPointer, tag: UInt64) {
        var x = tag &* 0x9E37_79B9_7F4A_7C15 | 1
        for i in stride(from: 0, to: 4096, by: 8) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17
            buf.storeBytes(of: x, toByteOffset: i, as: UInt64.self)
        }
    }

    /// Page i's content tag for a pattern.
    static func tag(_ pattern: String, _ i: Int) -> UInt64 {
        switch pattern {
        case "dup16": return UInt64(i % 16)
        default: return i % 2 == 0 ? 1_000_000 + UInt64(i) : UInt64((i / 2) % 256)
        }
    }

    struct Phase { var pages: Int64; var cpu: Double }

    func measure(pattern: String, pages: Int) -> (first: Double, merge: Double, steady: Double, heap: Int, figures: String) {
        let arena = BlockArena(capacityBlocks: pages + 1024)
        let engine = KSMEngine(arena: arena)
        engine.updateTunables { $0.run = 1; $0.pagesToScan = 10_000; $0.sleepMillisecs = 0 }
        let perFile = 4096
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
        defer { buf.deallocate() }
        var files: [MergeableFile] = []
        var i = 0
        while i < pages {
            let f = MergeableFile(arena: arena, stats: engine.stats)
            engine.register(f, mergeable: true)
            for p in 0..<min(perFile, pages - i) {
                EngineBench.fill(buf, tag: EngineBench.tag(pattern, i + p))
                _ = try? f.write(UnsafeRawBufferPointer(start: buf, count: 4096), at: Int64(p) * 4096)
            }
            files.append(f)
            i += perFile
        }
        func pass() -> Phase {
            let s0 = engine.stats.pagesScanned
            let c0 = threadCPU()
            engine.scanPasses(1)
            return Phase(pages: engine.stats.pagesScanned - s0, cpu: threadCPU() - c0)
        }
        let p1 = pass()
        let p2 = pass()
        _ = pass()  // the first pass after merging still settles leftovers
        let heap0 = ksm_heap_in_use()
        var steady: [Double] = []
        for _ in 0..<3 { let p = pass(); steady.append(Double(p.pages) / p.cpu) }
        let heap = Int(ksm_heap_in_use()) - Int(heap0)
        let s = engine.stats
        let figures = "shared \(s.pagesShared) sharing \(s.pagesSharing) unshared \(s.pagesUnshared)"
        withExtendedLifetime(files) {}
        return (Double(p1.pages) / p1.cpu, Double(p2.pages) / p2.cpu, Stats(values: steady).median, heap, figures)
    }

    func run() {
        print("ksmfs-bench engine: pages per scanner CPU-second, median of \(repetitions) runs (min-max)")
        print("metadata per scan item: \(KSMEngine.bytesPerItem) bytes (kernel rmap_item: 64)")
        let kernel: [String: (Double, Double, Double)] = ["dup16": (8.6e5, 2.3e5, 2.6e6), "half": (8.6e5, 1.7e5, 2.5e5)]
        var rows: [[String]] = []
        for pattern in ["dup16", "half"] {
            for n in sizes {
                var firsts: [Double] = [], merges: [Double] = [], steadies: [Double] = [], heaps: [Int] = []
                var figures = ""
                for _ in 0..<repetitions {
                    let r = measure(pattern: pattern, pages: n)
                    firsts.append(r.first); merges.append(r.merge); steadies.append(r.steady); heaps.append(r.heap)
                    figures = r.figures
                }
                let k = kernel[pattern]!
                func cell(_ v: [Double], _ ref: Double) -> String {
                    let s = Stats(values: v)
                    return "\(fmt(s.median / 1e6, 2))M (\(fmt(s.min / 1e6, 2))-\(fmt(s.max / 1e6, 2))) = \(fmt(s.median / ref, 1))x"
                }
                rows.append([pattern, "\(n)", cell(firsts, k.0), cell(merges, k.1), cell(steadies, k.2),
                             "\(heaps.max() ?? 0)", figures])
            }
        }
        printTable(["pattern", "pages", "first visit (x kernel)", "merge pass (x kernel)", "steady (x kernel)",
                    "steady heap bytes", "final counters"], rows)
    }
}

/// `ksmfs-bench latency`: p50/p99 of 4 KiB O_DIRECT writes to unshared pages of a file on a
/// real mount, with the scanner idle and then running (default and full-speed tunables) over
/// 256 MiB of mergeable data.
struct LatencyBench {
    let samples: Int

    func run() {
        let m = BenchMount(ksmfs: "size=2g")
        defer { m.close() }
        let ksm = m.path + "/ksm/"
        func set(_ f: String, _ v: String) {
            let fd = open(ksm + f, O_WRONLY)
            _ = v.withCString { Glibc.write(fd, $0, strlen($0)) }
            Glibc.close(fd)
        }
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { buf.deallocate() }
        for f in 0..<4 {
            let fd = open(m.path + "/data\(f)", O_CREAT | O_WRONLY, 0o644)
            for i in 0..<64 {
                for p in 0..<256 { EngineBench.fill(buf + p * 4096, tag: UInt64((i * 256 + p) % 16)) }
                Glibc.write(fd, buf, 1 << 20)
            }
            fsync(fd); Glibc.close(fd)
        }
        let target = m.path + "/latency.dat"
        var fd = open(target, O_CREAT | O_RDWR | 0o40000 /* O_DIRECT */, 0o644)
        let direct = fd >= 0
        if !direct { fd = open(target, O_CREAT | O_RDWR, 0o644) }
        let filePages = 4096
        for p in 0..<filePages { EngineBench.fill(buf, tag: 5_000_000 + UInt64(p)); pwrite(fd, buf, 4096, off_t(p * 4096)) }
        fsync(fd)
        var rng: UInt64 = 42
        func sample() -> Stats {
            var v: [Double] = []
            v.reserveCapacity(samples)
            for s in 0..<samples {
                rng = rng &* 6364136223846793005 &+ 1442695040888963407
                let p = Int(rng >> 33) % filePages
                EngineBench.fill(buf, tag: 9_000_000 + UInt64(s))
                let t0 = now()
                pwrite(fd, buf, 4096, off_t(p * 4096))
                if !direct { fdatasync(fd) }
                v.append((now() - t0) * 1e6)
            }
            return Stats(values: v)
        }
        set("run", "0")
        let idle = sample()
        set("run", "1")
        usleep(200_000)
        let scanning = sample()
        set("pages_to_scan", "10000"); set("sleep_millisecs", "0")
        usleep(200_000)
        let full = sample()
        set("run", "0")
        Glibc.close(fd)
        print("ksmfs-bench latency: \(samples) random 4 KiB \(direct ? "O_DIRECT writes" : "writes + fdatasync") to unshared pages, microseconds")
        printTable(["scanner", "p50 µs", "p99 µs", "p50 / idle", "p99 / idle"], [
            ["idle (run=0)", fmt(idle.median, 1), fmt(idle.percentile(0.99), 1), "1.00", "1.00"],
            ["run=1, 100 pages / 20 ms", fmt(scanning.median, 1), fmt(scanning.percentile(0.99), 1),
             fmt(scanning.median / idle.median), fmt(scanning.percentile(0.99) / idle.percentile(0.99))],
            ["run=1, 10000 pages / 0 ms", fmt(full.median, 1), fmt(full.percentile(0.99), 1),
             fmt(full.median / idle.median), fmt(full.percentile(0.99) / idle.percentile(0.99))],
        ])
    }
}
