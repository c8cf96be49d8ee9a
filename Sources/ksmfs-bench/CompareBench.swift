// `ksmfs-bench compare`: the kernel's KSM and ksmfs side by side on the same bytes, one side
// at a time, alternating which goes first. Kernel: a helper process (`anon-hold`) holds the
// pages in MADV_MERGEABLE anonymous memory. ksmfs: the same pages in 64 files of a fresh
// mount. Same tunables; each side runs until pages_sharing (+ ksm_zero_pages) has not grown
// for 3 full scans and is stopped at a pass boundary, the same pass number on both sides, so
// the final counters must be equal. The daemon's scanner thread gets ksmd's nice (5). Leaves
// out: THP (the helper asks for 4 KiB pages), NUMA.
import ArgumentParser
import Glibc

struct CompareTunables {
    var pagesToScan = 1000
    var sleepMillisecs = 20
    var maxPageSharing = 256
    var smartScan = 1
    var useZeroPages = 0
    var pruneMillisecs = 2000

    /// The writes both sides get, in order (advisor off first so pages_to_scan may be set).
    func writes(_ pattern: ComparePattern) -> [(String, String)] {
        [("advisor_mode", "none"), ("pages_to_scan", "\(pagesToScan)"), ("sleep_millisecs", "\(sleepMillisecs)"),
         ("max_page_sharing", "\(maxPageSharing)"), ("smart_scan", "\(smartScan)"),
         ("use_zero_pages", pattern.forcesZeroPages ? "1" : "\(useZeroPages)"),
         ("stable_node_chains_prune_millisecs", "\(pruneMillisecs)"), ("merge_across_nodes", "1")]
    }
}

enum Side: String { case kernel, ksmfs }

/// One side's run until convergence.
struct Convergence {
    var converged = false
    var timeToConverge = 0.0   // s from run=1 to the last growth of pages_sharing + ksm_zero_pages
    var cpuToConverge = 0.0    // scanner CPU s at that moment
    var totalTime = 0.0        // s from run=1 to the stop
    var cpuTotal = 0.0, cpuStatTotal = 0.0
    var scanned: Int64 = 0     // pages_scanned during the run
    var skipped: Int64 = 0     // pages_skipped during the run
    var growthPass = 0         // full_scans when the last growth was seen
    var stopPass = 0           // full_scans at the snapshot
    var exactBoundary = false  // stopped between the pass's last batch and the next one
    var settledAtPass = -1     // sleep < 20: full_scans when batches became whole passes
    var grewAfterSettle = false
    var perPass: [Double] = [] // pages per scanner CPU-second, pass by pass
    var samples: [(t: Double, v: Int64)] = []
}

struct SideResult {
    var side: Side
    var pattern: ComparePattern
    var pages: Int
    var rep: Int
    var first: Bool
    var conv = Convergence()
    var counters = KSMCounters()
    var memBeforeKiB = 0, memAfterKiB = 0      // kernel: helper PSS; ksmfs: daemon memory (arena memfd + own RSS)
    var rssBeforeKiB = 0, rssAfterKiB = 0      // VmRSS of the helper / the daemon
    var anonBeforeKiB = 0, anonAfterKiB = 0    // /proc/meminfo AnonPages + Shmem (ksmfs's arena is a memfd)
    var availBeforeKiB = 0, availAfterKiB = 0  // /proc/meminfo MemAvailable
    var usedBeforeKiB = 0, usedAfterKiB = 0    // MemTotal - MemFree, once MemFree is still (the machine's figure)
    var unmergeSeconds = 0.0
    var latMerged: [Double] = [], latUnmerged: [Double] = []  // µs
    var directIO = true
    var tunablesChanged = false
    var attempts = 1

    init(side: Side, pattern: ComparePattern, pages: Int, rep: Int, first: Bool) {
        self.side = side; self.pattern = pattern; self.pages = pages; self.rep = rep; self.first = first
    }

    var releasedKiB: Int { memBeforeKiB - memAfterKiB }
    var idealKiB: Int { Int(counters.progress) * 4 }
    var pagesPerCPU: Double { conv.cpuTotal > 0 ? Double(conv.scanned) / conv.cpuTotal : 0 }
}

struct CompareBench {
    var patterns: [ComparePattern]
    var sizes: [Int]
    var repetitions: Int
    var tunables: CompareTunables
    var files = 64
    var timeout = 600.0
    var latencySamples = 1000
    var jsonPath = "ksmfs-compare.json"
    var svgPath = "ksmfs-compare.svg"
    var scale = false
    var scaleKernel = false
    var scalePages = 1 << 20

    let kernel = KSMControl(dir: KSMControl.kernelDir)

    func log(_ s: String) {
        var b = Array((s + "\n").utf8)
        _ = Glibc.write(2, &b, b.count)
    }

    // MARK: convergence

    /// Sets run=1, samples every 100 ms, and stops (run=0) at the boundary of pass
    /// max(last growth + 3, target): polled every millisecond during the pass before it, so the
    /// stop lands in the sleep between the pass's last batch and the next pass.
    func converge(_ ctl: KSMControl, cpu: () -> ThreadCPU?, target: Int?) -> Convergence {
        var r = Convergence()
        let c0 = ctl.counters()
        let f0 = c0["full_scans"], s0 = c0["pages_scanned"], k0 = c0["pages_skipped"]
        var scanner = cpu()
        let cpu0 = scanner?.nanos() ?? 0, stat0 = scanner?.statSeconds() ?? 0
        func cpuNow() -> Double {
            if scanner == nil { scanner = cpu() }
            return Double((scanner?.nanos() ?? cpu0) - cpu0) / 1e9
        }
        ctl.set("run", "1")
        let t0 = now()
        var best = c0.progress
        r.samples.append((0, best))
        var lastSample = t0, prevPoll = t0, lastProgress = t0
        var prevF = 0
        var marks: [(s: Int64, cpu: Double)] = [(0, 0)]
        var stopAt = max(3, target ?? 0)
        // A batch ends at the end of a pass on both sides (scan_get_next_rmap_item returns
        // NULL there), so with a sleep the stop can land between two passes. With a short
        // sleep there is no room for it: in the last pass before the stop (two passes without
        // growth are behind), each batch is made a whole pass followed by a 1 s sleep (time
        // and CPU to converge are taken before; a growth after it is reported).
        let settleSleep = 1000
        let settle = tunables.sleepMillisecs < 20
        var gapLimit = Double(tunables.sleepMillisecs) / 2000
        func unsettle() {
            ctl.set("pages_to_scan", "\(tunables.pagesToScan)")
            ctl.set("sleep_millisecs", "\(tunables.sleepMillisecs)")
        }
        while true {
            let t = now()
            let f = Int(ctl.int("full_scans") - f0)
            if settle && r.settledAtPass < 0 && f >= stopAt - 1 {
                ctl.set("pages_to_scan", "100000000")
                ctl.set("sleep_millisecs", "\(settleSleep)")
                r.settledAtPass = f
                gapLimit = Double(settleSleep) / 2000
            }
            // Near the boundary only full_scans is read every millisecond; progress every 10 ms
            // and at the boundary itself.
            let fast = prevF >= stopAt - 1
            let progress = !fast || f >= stopAt || t - lastProgress >= 0.01
                ? ctl.int("pages_sharing") + max(0, ctl.int("ksm_zero_pages")) : best
            if !fast || f >= stopAt || t - lastProgress >= 0.01 { lastProgress = t }
            if progress > best {
                best = progress
                r.timeToConverge = t - t0; r.cpuToConverge = cpuNow(); r.growthPass = f
                stopAt = max(f + 3, target ?? 0)
                if r.settledAtPass >= 0 { r.grewAfterSettle = true }
            }
            if f >= stopAt {
                let s1 = ctl.int("pages_scanned")
                ctl.set("run", "0")
                if r.settledAtPass >= 0 { unsettle() }
                let s2 = ctl.int("pages_scanned"), f2 = Int(ctl.int("full_scans") - f0)
                r.exactBoundary = f == stopAt && prevF == stopAt - 1 && t - prevPoll < gapLimit && s1 == s2 && f2 == f
                r.stopPass = f2
                r.converged = true
                break
            }
            if t - lastSample >= 0.1 || f != prevF {
                lastSample = t
                let c = cpuNow()
                r.samples.append((t - t0, progress))
                if f > prevF {
                    let s = ctl.int("pages_scanned") - s0
                    let last = marks.last!
                    if f == prevF + 1 && c > last.cpu { r.perPass.append(Double(s - last.s) / (c - last.cpu)) }
                    marks.append((s, c))
                }
            }
            if t - t0 > timeout {
                ctl.set("run", "0")
                if r.settledAtPass >= 0 { unsettle() }
                log("  timeout after \(Int(timeout)) s: pass \(f), still growing at pass \(r.growthPass)")
                r.stopPass = Int(ctl.int("full_scans") - f0)
                break
            }
            prevF = f
            prevPoll = t
            usleep(f >= stopAt - 1 || settle ? 1000 : 20_000)
        }
        r.totalTime = now() - t0
        r.cpuTotal = cpuNow()
        r.cpuStatTotal = (scanner?.statSeconds() ?? stat0) - stat0
        r.scanned = ctl.int("pages_scanned") - s0
        r.skipped = ctl.int("pages_skipped") - k0
        r.samples.append((r.totalTime, ctl.int("pages_sharing") + max(0, ctl.int("ksm_zero_pages"))))
        return r
    }

    // MARK: the sides

    /// Merged and unmerged pages to write to, interleaved, the same on both sides.
    func latencyPicks(_ pattern: ComparePattern, _ pages: Int) -> [(page: Int, merged: Bool)] {
        var rng: UInt64 = 0x2545_F491_4F6C_DD1D
        var merged: [Int] = [], unmerged: [Int] = []
        var seen = Set<Int>()
        var tries = 0
        while (merged.count < latencySamples || unmerged.count < latencySamples) && tries < latencySamples * 40 {
            tries += 1
            rng = rng &* 6364136223846793005 &+ 1442695040888963407
            let i = Int(rng >> 33) % pages
            if !seen.insert(i).inserted { continue }
            if pattern.merges(i, of: pages) {
                if merged.count < latencySamples { merged.append(i) }
            } else if unmerged.count < latencySamples {
                unmerged.append(i)
            }
        }
        var out: [(Int, Bool)] = []
        for k in 0..<max(merged.count, unmerged.count) {
            if k < merged.count { out.append((merged[k], true)) }
            if k < unmerged.count { out.append((unmerged[k], false)) }
        }
        return out
    }

    func applyTunables(_ ctl: KSMControl, _ pattern: ComparePattern) {
        for (n, v) in tunables.writes(pattern) { ctl.set(n, v) }
    }

    func tunablesHold(_ ctl: KSMControl, _ pattern: ComparePattern) -> Bool {
        tunables.writes(pattern).allSatisfy { n, v in n == "advisor_mode" || ctl.read(n) == v }
    }

    func runKernel(_ pattern: ComparePattern, pages: Int, rep: Int, first: Bool, target: Int?, latency: Bool = true) -> SideResult {
        var r = SideResult(side: .kernel, pattern: pattern, pages: pages, rep: rep, first: first)
        kernel.set("run", "2")  // nothing merged, full_scans 0
        applyTunables(kernel, pattern)
        guard let ksmd = ThreadCPU.kernelKsmd() else { fail("no ksmd process (comm \"ksmd\") in /proc") }
        let helper = AnonHolderProcess(pattern: pattern, pages: pages)
        r.memBeforeKiB = helper.pssKiB()
        r.rssBeforeKiB = procKiB("/proc/\(helper.pid)/status", "VmRSS:")
        r.usedBeforeKiB = MachineMemory.settled(quiet: 2).used
        r.anonBeforeKiB = anonAndShmemKiB()
        r.availBeforeKiB = procKiB("/proc/meminfo", "MemAvailable:")
        r.conv = converge(kernel, cpu: { ksmd }, target: target)
        r.counters = kernel.counters()
        r.tunablesChanged = !tunablesHold(kernel, pattern)
        r.memAfterKiB = helper.pssKiB()
        r.rssAfterKiB = procKiB("/proc/\(helper.pid)/status", "VmRSS:")
        r.anonAfterKiB = anonAndShmemKiB()
        r.availAfterKiB = procKiB("/proc/meminfo", "MemAvailable:")
        r.usedAfterKiB = MachineMemory.settled(quiet: 2).used
        if latency {
            for (page, merged) in latencyPicks(pattern, pages) {
                let us = helper.writeByte(page: page) / 1000
                if merged { r.latMerged.append(us) } else { r.latUnmerged.append(us) }
            }
        }
        let t = now()
        kernel.set("run", "2")
        r.unmergeSeconds = now() - t
        helper.stop()
        return r
    }

    /// Writes the pattern into `files` files (page i in file i / perFile) with write()s
    /// through the page cache, as users write files, and closes them.
    func writeFiles(_ dir: String, _ pattern: ComparePattern, pages: Int) {
        let per = pages / files
        let chunk = 256
        let buf = UnsafeMutableRawPointer.allocate(byteCount: chunk * 4096, alignment: 4096)
        defer { buf.deallocate() }
        for f in 0..<files {
            let fd = open("\(dir)/f\(f)", O_CREAT | O_WRONLY | O_TRUNC, 0o644)
            if fd < 0 { fail("create \(dir)/f\(f): \(String(cString: strerror(errno)))") }
            var p = 0
            while p < per {
                let n = min(chunk, per - p)
                for k in 0..<n { pattern.fill(buf + k * 4096, page: f * per + p + k, of: pages) }
                if Glibc.write(fd, buf, n * 4096) != n * 4096 { fail("write \(dir)/f\(f): \(String(cString: strerror(errno)))") }
                p += n
            }
            if Glibc.close(fd) != 0 { fail("close \(dir)/f\(f): \(String(cString: strerror(errno)))") }
        }
    }

    func runKsmfs(_ pattern: ComparePattern, pages: Int, rep: Int, first: Bool, target: Int?, latency: Bool = true) -> SideResult {
        var r = SideResult(side: .ksmfs, pattern: pattern, pages: pages, rep: rep, first: first)
        let m = BenchMount(ksmfs: "size=\(pages * 4096 + pages * 2048 + (256 << 20))")
        kernelGuardDaemonPid = m.pid
        defer { m.close(); kernelGuardDaemonPid = 0 }
        let ctl = KSMControl(dir: m.path + "/ksm")
        applyTunables(ctl, pattern)
        writeFiles(m.path, pattern, pages: pages)
        r.memBeforeKiB = m.memoryKiB()
        r.rssBeforeKiB = r.memBeforeKiB
        r.usedBeforeKiB = MachineMemory.settled(quiet: 2).used
        r.anonBeforeKiB = anonAndShmemKiB()
        r.availBeforeKiB = procKiB("/proc/meminfo", "MemAvailable:")
        // The kernel's ksmd runs at nice 5; give the daemon's scanner thread the same so that a
        // busy machine slows both alike.
        if let t = ThreadCPU.thread(of: m.pid, named: "ksmd"), let tid = Int32(t.dir.split(separator: "/").last ?? "") {
            setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(tid), ThreadCPU.kernelNice())
        }
        r.conv = converge(ctl, cpu: { ThreadCPU.thread(of: m.pid, named: "ksmd") }, target: target)
        r.counters = ctl.counters()
        r.tunablesChanged = !tunablesHold(ctl, pattern)
        // Freed blocks go back to the OS in batches: wait until the daemon's memory stops falling.
        var rss = m.memoryKiB()
        for _ in 0..<30 {
            usleep(100_000)
            let next = m.memoryKiB()
            if next >= rss - 64 { rss = min(rss, next); break }
            rss = next
        }
        r.memAfterKiB = rss
        r.rssAfterKiB = rss
        r.anonAfterKiB = anonAndShmemKiB()
        r.availAfterKiB = procKiB("/proc/meminfo", "MemAvailable:")
        r.usedAfterKiB = MachineMemory.settled(quiet: 2).used
        if latency {
            let per = pages / files
            var fds: [Int32] = []
            for f in 0..<files {
                var fd = open("\(m.path)/f\(f)", O_RDWR | 0o40000 /* O_DIRECT */)
                if fd < 0 { r.directIO = false; fd = open("\(m.path)/f\(f)", O_RDWR) }
                if fd < 0 { fail("open \(m.path)/f\(f): \(String(cString: strerror(errno)))") }
                fds.append(fd)
            }
            let buf = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
            for (s, (page, merged)) in latencyPicks(pattern, pages).enumerated() {
                EngineBench.fill(buf, tag: 9_000_000 + UInt64(s))
                let fd = fds[page / per]
                let t0 = now()
                let n = pwrite(fd, buf, 4096, off_t((page % per) * 4096))
                let us = (now() - t0) * 1e6
                if n != 4096 { fail("pwrite page \(page): \(String(cString: strerror(errno)))") }
                if merged { r.latMerged.append(us) } else { r.latUnmerged.append(us) }
            }
            buf.deallocate()
            for fd in fds { Glibc.close(fd) }
        }
        let t = now()
        ctl.set("run", "2")
        r.unmergeSeconds = now() - t
        return r
    }

    /// One side; run again (at most twice) when the stop missed the pass boundary (this
    /// process was descheduled past the scanner's sleep), as counters then sit mid-pass.
    func runSide(_ side: Side, _ pattern: ComparePattern, pages: Int, rep: Int, first: Bool, target: Int?, latency: Bool = true) -> SideResult {
        var attempt = 1
        while true {
            var r = side == .kernel
                ? runKernel(pattern, pages: pages, rep: rep, first: first, target: target, latency: latency)
                : runKsmfs(pattern, pages: pages, rep: rep, first: first, target: target, latency: latency)
            r.attempts = attempt
            log(describe(r))
            if r.conv.exactBoundary || !r.conv.converged || attempt == 3 { return r }
            log("  the stop missed the pass boundary: running \(side.rawValue) again")
            attempt += 1
        }
    }

    func describe(_ r: SideResult) -> String {
        let c = r.counters
        return "  \(pad(r.side.rawValue, 6)) \(r.pattern.rawValue) \(r.pages) rep \(r.rep + 1): "
            + (r.conv.converged ? "" : "NOT CONVERGED ")
            + "growth ended \(fmt(r.conv.timeToConverge)) s (pass \(r.conv.growthPass)), stopped at pass \(r.conv.stopPass)"
            + (r.conv.exactBoundary ? "" : " (not exactly at the boundary)")
            + (r.conv.settledAtPass >= 0 ? ", whole-pass batches from pass \(r.conv.settledAtPass)" : "")
            + (r.conv.grewAfterSettle ? " (WARNING: grew after that: time and CPU include slower passes)" : "")
            + ", cpu \(fmt(r.conv.cpuTotal, 3)) s; shared \(c["pages_shared"]) sharing \(c["pages_sharing"])"
            + " unshared \(c["pages_unshared"]) chains \(c["stable_node_chains"]) dups \(c["stable_node_dups"])"
            + " zero \(c["ksm_zero_pages"]); released \(r.releasedKiB / 1024) MiB; unmerge \(fmt(r.unmergeSeconds * 1000, 1)) ms"
            + (r.tunablesChanged ? "; WARNING: the tunables were changed by someone else during the run" : "")
    }

    // MARK: run

    func preflight() -> KernelKSMGuard {
        if getuid() != 0 { fail("compare needs root (it writes /sys/kernel/mm/ksm and mounts ksmfs)") }
        var st = stat()
        if stat(KSMControl.kernelDir + "/run", &st) != 0 { fail("\(KSMControl.kernelDir) is absent: the kernel has no KSM to compare with") }
        if ThreadCPU.kernelKsmd() == nil { fail("no ksmd process found (comm \"ksmd\")") }
        if kernel.int("run") == 1 { fail("the kernel's KSM is running (run=1): compare needs it to itself; stop it first") }
        if kernel.int("pages_shared") > 0 || kernel.int("ksm_zero_pages") > 0 {
            fail("the kernel has merged pages from someone else (pages_shared \(kernel.int("pages_shared"))); compare would unmerge them")
        }
        let g = KernelKSMGuard()
        g.install()
        return g
    }

    func finish(_ g: KernelKSMGuard) -> [(name: String, before: String, after: String)] {
        let diff = g.restore()
        let tunableDiff = diff.filter { d in g.saved.contains { $0.name == d.name } }
        if tunableDiff.isEmpty {
            print("kernel KSM restored: every tunable in \(KSMControl.kernelDir) reads as before (run=\(kernel.read("run") ?? "?"))")
        } else {
            print("WARNING: kernel KSM tunables differ from before: " + tunableDiff.map { "\($0.name) \($0.before) -> \($0.after)" }.joined(separator: ", "))
        }
        let counterDiff = diff.filter { d in !g.saved.contains { $0.name == d.name } }
        if !counterDiff.isEmpty {
            print("kernel counters that moved (expected: pages_scanned/pages_skipped only grow; full_scans resets on run=2): "
                  + counterDiff.map { "\($0.name) \($0.before) -> \($0.after)" }.joined(separator: ", "))
        }
        return diff
    }

    func run() {
        let g = preflight()
        if scale { runScale(g); return }
        let t0 = now()
        var results: [SideResult] = []
        for pages in sizes {
            for pattern in patterns {
                for rep in 0..<repetitions {
                    let order: [Side] = rep % 2 == 0 ? [.kernel, .ksmfs] : [.ksmfs, .kernel]
                    let firstRun = runSide(order[0], pattern, pages: pages, rep: rep, first: true, target: nil)
                    var pair = [firstRun, runSide(order[1], pattern, pages: pages, rep: rep, first: false, target: firstRun.conv.stopPass)]
                    // Whether the last growth is seen just before or just after a pass boundary
                    // is a matter of sampling; if the second side had to go further, the first
                    // runs again to the same pass so the counters are taken at the same point.
                    for _ in 0..<2 where pair[1].conv.converged && pair[1].conv.stopPass > pair[0].conv.stopPass {
                        log("  \(order[1].rawValue) stopped at pass \(pair[1].conv.stopPass): running \(order[0].rawValue) again to that pass")
                        pair[0] = runSide(order[0], pattern, pages: pages, rep: rep, first: true, target: pair[1].conv.stopPass)
                    }
                    results += pair
                }
            }
        }
        let diff = finish(g)
        let report = CompareReport(bench: self, results: results, seconds: now() - t0, kernelDiff: diff)
        report.printTables()
        report.writeJSON(jsonPath)
        report.writeSVG(svgPath)
        print("json: \(jsonPath)\nsvg: \(svgPath)")
    }

    /// 4 GiB of dup16 in 64 files on ksmfs (and optionally in the helper): memory vs logical size.
    func runScale(_ g: KernelKSMGuard) {
        let t0 = now()
        var results: [SideResult] = []
        let f = runSide(.ksmfs, .dup16, pages: scalePages, rep: 0, first: true, target: nil, latency: false)
        results.append(f)
        if scaleKernel {
            results.append(runSide(.kernel, .dup16, pages: scalePages, rep: 0, first: false, target: f.conv.stopPass, latency: false))
        }
        let diff = finish(g)
        let report = CompareReport(bench: self, results: results, seconds: now() - t0, kernelDiff: diff)
        report.printScale()
        report.writeJSON(jsonPath)
        report.writeSVG(svgPath)
        print("json: \(jsonPath)\nsvg: \(svgPath)")
    }
}

extension Bench {
    struct Compare: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The kernel's KSM vs ksmfs on the same content, side by side (root, /sys/kernel/mm/ksm).",
            discussion: """
                Lays the same pages out in a helper's MADV_MERGEABLE anonymous memory and in files on a \
                ksmfs mount, runs each side alone to convergence with the same tunables, and reports \
                time, scanner CPU, final counters (MISMATCH when they differ), memory released, \
                unmerge time and first-write latency to merged vs unmerged pages. The kernel's KSM \
                settings are saved before and restored after, also on SIGINT/SIGTERM.
                """)
        @Option(help: "Page counts, comma separated (multiples of --files).") var pages = "65536,262144"
        @Option(help: "Patterns, comma separated: dup16, half, zero-heavy, image.") var patterns = "dup16,half,zero-heavy,image"
        @Option(help: "Repetitions per pattern and size (order alternates).") var repetitions = 3
        @Option(help: "Files on the ksmfs side.") var files = 64
        @Option(help: "pages_to_scan on both sides.") var pagesToScan = 1000
        @Option(help: "sleep_millisecs on both sides.") var sleepMillisecs = 20
        @Option(help: "max_page_sharing on both sides.") var maxPageSharing = 256
        @Option(help: "smart_scan on both sides.") var smartScan = 1
        @Option(help: "use_zero_pages on both sides (zero-heavy always uses 1).") var useZeroPages = 0
        @Option(help: "Seconds one side may take to converge.") var timeout = 600.0
        @Option(help: "First writes per class (merged, unmerged) for the latency test.") var latencySamples = 1000
        @Option(help: "JSON output.") var json = "ksmfs-compare.json"
        @Option(help: "SVG chart output.") var svg = "ksmfs-compare.svg"
        @Flag(help: "Instead: 4 GiB of dup16 in 64 files on ksmfs; daemon memory vs logical size.") var scale = false
        @Flag(help: "With --scale: the kernel side too (4 GiB of anonymous memory).") var scaleKernel = false

        func validate() throws {
            let sizes = pages.split(separator: ",").compactMap { Int($0) }
            if sizes.isEmpty || sizes.contains(where: { $0 < files || $0 % files != 0 || $0 % 4 != 0 }) {
                throw ValidationError("--pages: each size must be a positive multiple of --files (\(files)) and of 4")
            }
            for p in patterns.split(separator: ",") where ComparePattern(rawValue: String(p)) == nil {
                throw ValidationError("--patterns: unknown pattern \(p) (dup16, half, zero-heavy, image)")
            }
            if repetitions < 1 || files < 1 || latencySamples < 0 { throw ValidationError("--repetitions and --files must be at least 1") }
        }

        func run() {
            var b = CompareBench(
                patterns: patterns.split(separator: ",").compactMap { ComparePattern(rawValue: String($0)) },
                sizes: pages.split(separator: ",").compactMap { Int($0) },
                repetitions: repetitions,
                tunables: CompareTunables(pagesToScan: pagesToScan, sleepMillisecs: sleepMillisecs, maxPageSharing: maxPageSharing,
                                          smartScan: smartScan, useZeroPages: useZeroPages))
            b.files = files
            b.timeout = timeout
            b.latencySamples = latencySamples
            b.jsonPath = json
            b.svgPath = svg
            b.scale = scale
            b.scaleKernel = scaleKernel
            b.run()
        }
    }
}
