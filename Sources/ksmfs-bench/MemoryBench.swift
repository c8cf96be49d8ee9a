// `ksmfs-bench memory`: what N copies of one file cost the machine, side by side in one run.
// tmpfs, the kernel's KSM (the same bytes in N processes' MADV_MERGEABLE memory) and ksmfs,
// with files written by ordinary write()s through the page cache, as users write them. The
// figure is the machine's: growth of MemTotal - MemFree from a baseline taken after the page
// cache was dropped, with Cached, Shmem and Mapped beside it, and the daemon's own memory,
// each as a ratio to the unique data. Scenarios: (a) written, merged, nobody using them;
// (b) N processes each read() their copy (twice, then hold it open); (c) N processes each
// mmap(MAP_SHARED) their copy and touch every page; (d) as (c) with the copies immutable
// (chattr +i). For the kernel the N processes hold the data in their own memory, so one
// measurement stands for every scenario.
import ArgumentParser
import Glibc

/// /proc/meminfo figures in KiB.
struct MachineMemory {
    var used = 0, cached = 0, shmem = 0, mapped = 0, anon = 0

    static func now() -> MachineMemory {
        guard let text = readSmallFile("/proc/meminfo") else { return MachineMemory() }
        var v: [Substring: Int] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count >= 2 { v[parts[0].dropLast()] = Int(parts[1]) ?? 0 }
        }
        return MachineMemory(used: (v["MemTotal"] ?? 0) - (v["MemFree"] ?? 0), cached: v["Cached"] ?? 0,
                             shmem: v["Shmem"] ?? 0, mapped: v["Mapped"] ?? 0, anon: v["AnonPages"] ?? 0)
    }

    /// Once MemFree has stopped moving: unchanged within 1 MiB for `quiet` seconds (at most
    /// 180 s). Freed memory comes back late on some machines (a VM's free page reporting holds
    /// freed pages out of MemFree until it has reported them), and a figure taken before that
    /// is wrong.
    static func settled(quiet: Int) -> MachineMemory {
        var anchor = now(), since = Glibc.time(nil)
        let start = since
        while Glibc.time(nil) - since < quiet && Glibc.time(nil) - start < 180 {
            usleep(250_000)
            let m = now()
            if abs(m.used - anchor.used) > 1024 { anchor = m; since = Glibc.time(nil) }
        }
        return now()
    }

    static func - (a: MachineMemory, b: MachineMemory) -> MachineMemory {
        MachineMemory(used: a.used - b.used, cached: a.cached - b.cached, shmem: a.shmem - b.shmem,
                      mapped: a.mapped - b.mapped, anon: a.anon - b.anon)
    }
}

enum MemoryScenario: String, CaseIterable {
    case idle = "a", read = "b", mapped = "c", immutable = "d"
    var title: String {
        switch self {
        case .idle: return "(a) written, merged, unused"
        case .read: return "(b) N processes read() their copy"
        case .mapped: return "(c) N processes mmap their copy"
        case .immutable: return "(d) as (c), chattr +i"
        }
    }
}

/// One measurement: growth over the baseline, daemon memory, and a note (what did not apply).
struct MemorySample {
    let system: String
    let scenario: MemoryScenario
    let growth: MachineMemory
    let daemonKiB: Int
    var note = ""
}

/// A process of this executable's hidden `page-user` command using one copy; it answers
/// "ready" when it has read or mapped the whole file, and exits when its stdin closes.
final class PageUser {
    let pid: pid_t
    private let toChild: Int32
    private var fromChild: LineReader

    init(path: String, mmap: Bool) {
        (pid, toChild, fromChild) = spawnHelper(["page-user", mmap ? "--mmap" : "--read", path])
    }

    /// Waits for "ready"; the helper's error line otherwise.
    func waitReady() {
        guard let line = fromChild.next(), line.hasPrefix("ready ") else { fail("page-user (pid \(pid)) did not get ready") }
    }

    func stop() {
        Glibc.close(toChild)
        _ = fromChild.next()  // EOF when it exits
        Glibc.close(fromChild.fd)
        var st: Int32 = 0
        waitpid(pid, &st, 0)
    }
}

struct MemoryBench {
    var copies = 6
    var mib = 256
    var repetitions = 3
    var systems = ["tmpfs", "kernel", "ksmfs", "ksmfs-share"]
    var scenarios = MemoryScenario.allCases
    var mergeTimeout = 600.0
    var settleSeconds = 4
    var jsonPath = ""
    var pages: Int { mib * 256 }
    var uniqueKiB: Int { mib * 1024 }

    func log(_ s: String) {
        var b = Array((s + "\n").utf8)
        _ = Glibc.write(2, &b, b.count)
    }

    /// Flushes and drops the page cache, lets the machine settle, and reads the baseline.
    func baseline() -> MachineMemory {
        sync()
        _ = sh("echo 3 > /proc/sys/vm/drop_caches")
        // The helpers are this executable: its pages in the cache belong to the baseline.
        _ = sh("cat \(selfExecutable()) > /dev/null")
        return MachineMemory.settled(quiet: settleSeconds)
    }

    /// Writes the copies with 1 MiB write()s (through the page cache) and closes them.
    func writeCopies(_ dir: String) -> [String] {
        let chunk = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { chunk.deallocate() }
        var paths: [String] = []
        for c in 0..<copies {
            let path = "\(dir)/copy\(c)"
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            if fd < 0 { fail("create \(path): \(String(cString: strerror(errno)))") }
            for m in 0..<mib {
                for p in 0..<256 { ComparePattern.unique.fill(chunk + p * 4096, page: m * 256 + p, of: pages) }
                var done = 0
                while done < 1 << 20 {
                    let n = Glibc.write(fd, chunk + done, (1 << 20) - done)
                    if n <= 0 { fail("write \(path): \(String(cString: strerror(errno)))") }
                    done += n
                }
            }
            if Glibc.close(fd) != 0 { fail("close \(path): \(String(cString: strerror(errno)))") }
            paths.append(path)
        }
        return paths
    }

    /// Sets or clears FS_IMMUTABLE_FL; 0 or the errno.
    static func setImmutable(_ path: String, _ on: Bool) -> Int32 {
        let fd = open(path, O_RDONLY | O_NONBLOCK)
        if fd < 0 { return errno }
        defer { Glibc.close(fd) }
        var flags: Int32 = 0
        if ioctl(fd, 0x8008_6601, &flags) != 0 { return errno }  // FS_IOC_GETFLAGS
        flags = on ? flags | 0x10 : flags & ~0x10                  // FS_IMMUTABLE_FL
        return ioctl(fd, 0x4008_6602, &flags) != 0 ? errno : 0      // FS_IOC_SETFLAGS
    }

    /// The file scenarios (a)-(d) on copies in `dir`, against `base`.
    func fileScenarios(_ system: String, _ paths: [String], base: MachineMemory, daemon: () -> Int) -> [MemorySample] {
        var out: [MemorySample] = []
        for s in scenarios {
            var note = ""
            var users: [PageUser] = []
            switch s {
            case .idle: break
            case .read: users = paths.map { PageUser(path: $0, mmap: false) }
            case .mapped: users = paths.map { PageUser(path: $0, mmap: true) }
            case .immutable:
                let errs = paths.map { MemoryBench.setImmutable($0, true) }
                if let e = errs.first(where: { $0 != 0 }) { note = "chattr +i: \(String(cString: strerror(e))); measured as (c)" }
                users = paths.map { PageUser(path: $0, mmap: true) }
            }
            for u in users { u.waitReady() }
            out.append(MemorySample(system: system, scenario: s, growth: MachineMemory.settled(quiet: settleSeconds) - base, daemonKiB: daemon(), note: note))
            for u in users { u.stop() }
            if s == .immutable { for p in paths { _ = MemoryBench.setImmutable(p, false) } }
        }
        return out
    }

    func runTmpfs() -> [MemorySample] {
        let m = BenchMount(tmpfs: "size=\(copies * mib + 64)m")
        defer { m.close() }
        let base = baseline()
        let paths = writeCopies(m.path)
        let samples = fileScenarios("tmpfs", paths, base: base, daemon: { 0 })
        for p in paths { unlink(p) }
        return samples
    }

    /// Waits until pages_sharing reaches `want`, then `passes` more full scans.
    func waitMerged(_ ctl: KSMControl, want: Int64, passes: Int64) -> Bool {
        let t0 = now()
        while ctl.int("pages_sharing") < want {
            if now() - t0 > mergeTimeout { return false }
            usleep(50_000)
        }
        let target = ctl.int("full_scans") + passes
        while ctl.int("full_scans") < target {
            if now() - t0 > mergeTimeout { return false }
            usleep(20_000)
        }
        return true
    }

    /// `share`: mounted with share_immutable (the system "ksmfs-share").
    func runKsmfs(share: Bool = false) -> [MemorySample] {
        let m = BenchMount(ksmfs: "size=\(copies * mib * 2 + 256)m" + (share ? ",share_immutable" : ""))  // room for the writeback reserve
        defer { m.close() }
        kernelGuardDaemonPid = m.pid
        defer { kernelGuardDaemonPid = 0 }
        let ctl = KSMControl(dir: m.path + "/ksm")
        let base = baseline()
        let daemonBase = m.memoryKiB()
        let paths = writeCopies(m.path)
        ctl.set("pages_to_scan", "10000")
        ctl.set("sleep_millisecs", "0")
        ctl.set("run", "1")
        let merged = waitMerged(ctl, want: Int64((copies - 1) * pages), passes: 2)
        ctl.set("run", "0")
        var samples = fileScenarios(share ? "ksmfs-share" : "ksmfs", paths, base: base, daemon: { m.memoryKiB() - daemonBase })
        if !merged { samples = samples.map { var s = $0; s.note = "not fully merged in \(Int(mergeTimeout)) s"; return s } }
        for p in paths { unlink(p) }
        return samples
    }

    func runKernel() -> [MemorySample] {
        let kernel = KSMControl(dir: KSMControl.kernelDir)
        kernel.set("run", "2")
        for (n, v) in [("advisor_mode", "none"), ("pages_to_scan", "10000"), ("sleep_millisecs", "0"),
                       ("max_page_sharing", "256"), ("use_zero_pages", "0")] { kernel.set(n, v) }
        let base = baseline()
        let holders = (0..<copies).map { _ in AnonHolderProcess(pattern: .unique, pages: pages) }
        kernel.set("run", "1")
        let merged = waitMerged(kernel, want: Int64((copies - 1) * pages), passes: 2)
        kernel.set("run", "0")
        let growth = MachineMemory.settled(quiet: settleSeconds) - base
        kernel.set("run", "2")
        for h in holders { h.stop() }
        return scenarios.map { MemorySample(system: "kernel", scenario: $0, growth: growth, daemonKiB: 0,
                                            note: merged ? "" : "not fully merged in \(Int(mergeTimeout)) s") }
    }

    func run() {
        if getuid() != 0 { fail("memory needs root (it mounts tmpfs and ksmfs, drops caches and drives /sys/kernel/mm/ksm)") }
        var guardian: KernelKSMGuard?
        if systems.contains("kernel") {
            let k = KSMControl(dir: KSMControl.kernelDir)
            if k.int("run") == 1 || k.int("pages_shared") > 0 { fail("the kernel's KSM is in use (run=1 or pages merged): memory needs it to itself") }
            guardian = KernelKSMGuard()
            guardian!.install()
        }
        let t0 = now()
        var all: [MemorySample] = []
        for rep in 0..<repetitions {
            // Alternate the order, so that what one system leaves behind does not always fall on the next.
            let order = rep % 2 == 0 ? systems : systems.reversed()
            for system in order {
                log("rep \(rep + 1)/\(repetitions): \(system), \(copies) copies of \(mib) MiB")
                switch system {
                case "tmpfs": all += runTmpfs()
                case "kernel": all += runKernel()
                case "ksmfs-share": all += runKsmfs(share: true)
                default: all += runKsmfs()
                }
            }
        }
        if let g = guardian {
            let diff = g.restore().filter { d in g.saved.contains { $0.name == d.name } }
            print(diff.isEmpty ? "kernel KSM restored: every tunable reads as before"
                  : "WARNING: kernel KSM tunables differ from before: " + diff.map { "\($0.name) \($0.before) -> \($0.after)" }.joined(separator: ", "))
        }
        report(all, seconds: now() - t0)
    }

    // MARK: small files

    /// `n` identical files of 8 KiB each: what one costs on tmpfs, and on ksmfs before and
    /// after merging (the daemon's memory and the machine's), in bytes per file.
    func runSmallFiles(_ n: Int) {
        if getuid() != 0 { fail("memory needs root (it mounts tmpfs and ksmfs and drops caches)") }
        let data = UnsafeMutableRawPointer.allocate(byteCount: 8192, alignment: 4096)
        defer { data.deallocate() }
        ComparePattern.unique.fill(data, page: 0, of: 2)
        ComparePattern.unique.fill(data + 4096, page: 1, of: 2)
        func write(_ dir: String) {
            for i in 0..<n {
                let path = "\(dir)/f\(i)"
                let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
                if fd < 0 || Glibc.write(fd, data, 8192) != 8192 { fail("write \(path): \(String(cString: strerror(errno)))") }
                Glibc.close(fd)
            }
        }
        func perFile(_ kib: Int) -> String { fmt(Double(kib) * 1024 / Double(n), 0) }
        var rows: [[String]] = []
        for rep in 0..<repetitions {
            log("rep \(rep + 1)/\(repetitions): \(n) files of 8 KiB on tmpfs and ksmfs")
            let t = BenchMount(tmpfs: "size=\(n / 64 + 64)m,nr_inodes=\(n + 1000)")
            let tbase = baseline()
            write(t.path)
            let tused = MachineMemory.settled(quiet: settleSeconds) - tbase
            rows.append(["tmpfs", "written", perFile(tused.used), "-"])
            t.close()
            let m = BenchMount(ksmfs: "size=\(n / 32 + 256)m")
            kernelGuardDaemonPid = m.pid
            let ctl = KSMControl(dir: m.path + "/ksm")
            let base = baseline()
            let daemon0 = m.memoryKiB()
            write(m.path)
            let written = MachineMemory.settled(quiet: settleSeconds) - base
            rows.append(["ksmfs", "written", perFile(written.used), perFile(m.memoryKiB() - daemon0)])
            ctl.set("pages_to_scan", "10000")
            ctl.set("sleep_millisecs", "0")
            ctl.set("run", "1")
            let t0 = now()
            while ctl.int("pages_shared") + ctl.int("pages_sharing") < Int64(2 * n) && now() - t0 < mergeTimeout { usleep(50_000) }
            let target = ctl.int("full_scans") + 2
            while ctl.int("full_scans") < target && now() - t0 < mergeTimeout { usleep(20_000) }
            ctl.set("run", "0")
            let merged = MachineMemory.settled(quiet: settleSeconds) - base
            rows.append(["ksmfs", "merged", perFile(merged.used), perFile(m.memoryKiB() - daemon0)])
            m.close()
            kernelGuardDaemonPid = 0
        }
        print("\nksmfs-bench memory --small-files \(n): identical 8 KiB files, bytes per file (\(repetitions) repetitions)\n")
        printTable(["system", "state", "machine (MemTotal-MemFree)", "daemon memory"], rows)
    }

    // MARK: report

    func ratio(_ kib: Int) -> Double { Double(kib) / Double(uniqueKiB) }

    func report(_ all: [MemorySample], seconds: Double) {
        print("\nksmfs-bench memory: \(copies) copies of \(mib) MiB of unique data written with write(), \(repetitions) repetitions, \(Int(seconds)) s")
        print("Figures are growth over a baseline taken after dropping the page cache, as multiples of the unique data (\(mib) MiB).")
        print("MemTotal-MemFree is what the machine gave; tmpfs holding \(copies) copies is about \(copies).0x.\n")
        var rows: [[String]] = []
        var notes: [String] = []
        var chart: [(String, Double)] = []
        for s in scenarios {
            for system in systems {
                let xs = all.filter { $0.system == system && $0.scenario == s }
                guard !xs.isEmpty else { continue }
                let used = Stats(values: xs.map { ratio($0.growth.used) })
                func med(_ f: (MemorySample) -> Int) -> String { fmt(Stats(values: xs.map { ratio(f($0)) }).median) }
                rows.append([s.title, system, "\(fmt(used.min)) / \(fmt(used.median)) / \(fmt(used.max))",
                             med { $0.growth.cached }, med { $0.growth.shmem }, med { $0.growth.mapped }, med { $0.growth.anon },
                             system.hasPrefix("ksmfs") ? med { $0.daemonKiB } : "-"])
                chart.append(("\(s.rawValue) \(system)", used.median))
                for n in Set(xs.map(\.note)) where !n.isEmpty { notes.append("\(s.rawValue) \(system): \(n)") }
            }
        }
        printTable(["scenario", "system", "MemTotal-MemFree min/med/max", "Cached", "Shmem", "Mapped", "AnonPages", "daemon memory"], rows)
        for n in notes { print("note: \(n)") }
        print("\nMemTotal-MemFree growth, median, as multiples of the unique data:")
        let top = max(Double(copies) + 1, chart.map(\.1).max() ?? 1)
        for (label, v) in chart {
            let bar = String(repeating: "#", count: max(0, Int((v / top * 50).rounded())))
            print("  \(pad(label, 14)) \(pad(bar, 50)) \(fmt(v))x")
        }
        if !jsonPath.isEmpty { writeJSON(all, seconds: seconds) }
    }

    func writeJSON(_ all: [MemorySample], seconds: Double) {
        var s = "{\"copies\": \(copies), \"mib\": \(mib), \"repetitions\": \(repetitions), \"seconds\": \(fmt(seconds, 1)), \"samples\": [\n"
        s += all.map { x in
            "  {\"system\": \"\(x.system)\", \"scenario\": \"\(x.scenario.rawValue)\", \"used_kib\": \(x.growth.used), "
                + "\"cached_kib\": \(x.growth.cached), \"shmem_kib\": \(x.growth.shmem), \"mapped_kib\": \(x.growth.mapped), \"anon_kib\": \(x.growth.anon), "
                + "\"daemon_kib\": \(x.daemonKiB), \"note\": \"\(x.note.replacingBackslashesAndQuotes())\"}"
        }.joined(separator: ",\n")
        s += "\n]}\n"
        guard let f = fopen(jsonPath, "w") else { fail("cannot write \(jsonPath)") }
        fputs(s, f)
        fclose(f)
        print("json: \(jsonPath)")
    }
}

extension Bench {
    struct Memory: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "What N copies of a file cost the machine: tmpfs, the kernel's KSM and ksmfs (root).",
            discussion: """
                Writes N copies of the same data with write() on tmpfs and on ksmfs (merged at 10000 \
                pages per batch, no sleep, measured two full scans after the merge), and holds them in \
                N MADV_MERGEABLE processes for the kernel's KSM, then reports the growth of \
                MemTotal - MemFree, Cached, Shmem and Mapped, and the daemon's memory, as multiples \
                of the unique data, min/median/max over repetitions, for four scenarios: (a) nobody \
                uses the copies, (b) N processes read() them, (c) N processes mmap them and touch \
                every page, (d) as (c) after chattr +i. ksmfs-share is ksmfs mounted with \
                share_immutable (identical immutable files share one page cache). The kernel's KSM settings are restored after.
                """)
        @Option(help: "Copies of the file.") var copies = 6
        @Option(help: "Size of the file in MiB.") var mib = 256
        @Option(help: "Repetitions (the order of systems alternates).") var repetitions = 3
        @Option(help: "Systems, comma separated: tmpfs, kernel, ksmfs, ksmfs-share (mounted with share_immutable).") var systems = "tmpfs,kernel,ksmfs,ksmfs-share"
        @Option(help: "Scenarios, comma separated: a, b, c, d.") var scenarios = "a,b,c,d"
        @Option(help: "Seconds a merge may take.") var timeout = 600.0
        @Option(help: "JSON output (none when empty).") var json = ""
        @Option(help: "Seconds MemFree must stay still before a figure is taken.") var settle = 4
        @Option(help: "Instead: this many identical 8 KiB files on tmpfs and ksmfs, bytes per file.") var smallFiles = 0

        func validate() throws {
            if copies < 2 || copies > 64 { throw ValidationError("--copies must be between 2 and 64") }
            if mib < 1 || mib > 4096 { throw ValidationError("--mib must be between 1 and 4096") }
            if repetitions < 1 || repetitions > 100 { throw ValidationError("--repetitions must be between 1 and 100") }
            if !(timeout > 0 && timeout <= 86_400) { throw ValidationError("--timeout must be between 0 and 86400 seconds") }
            if settle < 0 || settle > 60 { throw ValidationError("--settle must be between 0 and 60 seconds") }
            if smallFiles < 0 || smallFiles > 10_000_000 { throw ValidationError("--small-files must be between 0 and 10000000") }
            for s in systems.split(separator: ",") where !["tmpfs", "kernel", "ksmfs", "ksmfs-share"].contains(String(s)) {
                throw ValidationError("--systems: unknown system \(s) (tmpfs, kernel, ksmfs, ksmfs-share)")
            }
            for s in scenarios.split(separator: ",") where MemoryScenario(rawValue: String(s)) == nil {
                throw ValidationError("--scenarios: unknown scenario \(s) (a, b, c, d)")
            }
            if systems.isEmpty || scenarios.isEmpty { throw ValidationError("--systems and --scenarios may not be empty") }
        }

        func run() {
            var b = MemoryBench()
            b.copies = copies
            b.mib = mib
            b.repetitions = repetitions
            b.systems = systems.split(separator: ",").map(String.init)
            b.scenarios = scenarios.split(separator: ",").compactMap { MemoryScenario(rawValue: String($0)) }
            b.mergeTimeout = timeout
            b.jsonPath = json
            b.settleSeconds = settle
            if smallFiles > 0 { b.runSmallFiles(smallFiles) } else { b.run() }
        }
    }

    /// Hidden: a process using one copy for `memory`.
    struct PageUserCommand: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "page-user", abstract: "Helper of memory.", shouldDisplay: false)
        @Flag var mmap = false
        @Flag var read = false
        @Argument var path: String

        func run() {
            let fd = open(path, O_RDONLY)
            if fd < 0 { fail("page-user: open \(path): \(String(cString: strerror(errno)))") }
            var st = stat()
            fstat(fd, &st)
            let size = Int(st.st_size)
            var sum: UInt8 = 0
            if mmap {
                guard size > 0, let base = Glibc.mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), base != MAP_FAILED else {
                    fail("page-user: mmap \(path): \(String(cString: strerror(errno)))")
                }
                for off in stride(from: 0, to: size, by: 4096) { sum &+= base.load(fromByteOffset: off, as: UInt8.self) }
            } else {
                let buf = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 4096)
                for _ in 0..<2 {
                    var off = 0
                    while true {
                        let n = pread(fd, buf, 1 << 20, off_t(off))
                        if n <= 0 { break }
                        sum &+= buf.load(as: UInt8.self)
                        off += n
                    }
                }
                buf.deallocate()
            }
            // The sum goes out with the answer, so the loads of the mapping cannot be optimized away.
            if !writeLine(1, "ready \(sum)") { Glibc.exit(0) }
            var input = LineReader(fd: 0)
            while input.next() != nil {}
            Glibc.exit(0)
        }
    }
}
