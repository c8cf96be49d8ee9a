// What `compare` prints and writes: the side-by-side table (min/median/max per side and the
// per-repetition ratio ksmfs/kernel), the counter check (MISMATCH when the two sides' final
// counters differ), a hand-written JSON file and a hand-written SVG chart of pages_sharing
// (+ ksm_zero_pages) over time, one panel per pattern and size.
import Glibc

struct CompareReport {
    let bench: CompareBench
    let results: [SideResult]
    let seconds: Double
    let kernelDiff: [(name: String, before: String, after: String)]

    typealias Metric = (name: String, unit: String, digits: Int, value: @Sendable (SideResult) -> Double?)

    static func p(_ v: [Double], _ q: Double) -> Double? { v.isEmpty ? nil : Stats(values: v).percentile(q) }

    static let metrics: [Metric] = [
        ("time until pages_sharing stops growing", "s", 2, { $0.conv.timeToConverge }),
        ("scanner CPU until then", "s", 3, { $0.conv.cpuToConverge }),
        ("scanner CPU, whole run", "s", 3, { $0.conv.cpuTotal }),
        ("pages per scanner CPU-s, all passes", "pages/s", 0, { $0.pagesPerCPU }),
        ("pages per scanner CPU-s, median pass", "pages/s", 0, { $0.conv.perPass.isEmpty ? nil : Stats(values: $0.conv.perPass).median }),
        ("memory released (k: helper PSS, f: daemon memory)", "MiB", 1, { Double($0.releasedKiB) / 1024 }),
        ("released / (sharing+zero) x 4 KiB", "x", 3, { $0.idealKiB > 0 ? Double($0.releasedKiB) / Double($0.idealKiB) : nil }),
        ("machine memory released (MemTotal - MemFree)", "MiB", 1, { Double($0.usedBeforeKiB - $0.usedAfterKiB) / 1024 }),
        ("AnonPages+Shmem drop", "MiB", 1, { Double($0.anonBeforeKiB - $0.anonAfterKiB) / 1024 }),
        ("MemAvailable change", "MiB", 1, { Double($0.availAfterKiB - $0.availBeforeKiB) / 1024 }),
        ("unmerge (write 2 to run)", "ms", 1, { $0.unmergeSeconds * 1000 }),
        ("first write, merged page p50", "us", 2, { p($0.latMerged, 0.5) }),
        ("first write, unmerged page p50", "us", 2, { p($0.latUnmerged, 0.5) }),
        ("first write, merged page p99", "us", 2, { p($0.latMerged, 0.99) }),
        ("first write, unmerged page p99", "us", 2, { p($0.latUnmerged, 0.99) }),
        ("merged / unmerged p50", "x", 2, { r in p(r.latMerged, 0.5).flatMap { m in p(r.latUnmerged, 0.5).map { m / $0 } } }),
        ("merged / unmerged p99", "x", 2, { r in p(r.latMerged, 0.99).flatMap { m in p(r.latUnmerged, 0.99).map { m / $0 } } }),
    ]

    /// (pattern, pages) groups in run order.
    var groups: [(pattern: ComparePattern, pages: Int)] {
        var out: [(ComparePattern, Int)] = []
        for r in results where !out.contains(where: { $0.0 == r.pattern && $0.1 == r.pages }) { out.append((r.pattern, r.pages)) }
        return out
    }

    func runs(_ side: Side, _ g: (pattern: ComparePattern, pages: Int)) -> [SideResult] {
        results.filter { $0.side == side && $0.pattern == g.pattern && $0.pages == g.pages }.sorted { $0.rep < $1.rep }
    }

    static func triple(_ v: [Double], _ d: Int) -> String {
        if v.isEmpty { return "-" }
        let s = Stats(values: v)
        return "\(fmt(s.min, d)) / \(fmt(s.median, d)) / \(fmt(s.max, d))"
    }

    /// Counter differences of one repetition: (name, kernel, ksmfs).
    func mismatches(_ k: SideResult, _ f: SideResult) -> [(String, Int64, Int64)] {
        KSMCounters.compared.compactMap { n in k.counters[n] == f.counters[n] ? nil : (n, k.counters[n], f.counters[n]) }
    }

    /// Figures outside the six that should also agree: pages_volatile, and what the run
    /// scanned, skipped and how many passes it made. (general_profit differs by design: ksmfs
    /// charges its own 16 bytes per scan item, the kernel 64.)
    func otherDifferences(_ k: SideResult, _ f: SideResult) -> [(String, Int64, Int64)] {
        let pairs: [(String, Int64, Int64)] = [
            ("pages_volatile", k.counters["pages_volatile"], f.counters["pages_volatile"]),
            ("pages_scanned during the run", k.conv.scanned, f.conv.scanned),
            ("pages_skipped during the run", k.conv.skipped, f.conv.skipped),
            ("full_scans at the stop", Int64(k.conv.stopPass), Int64(f.conv.stopPass)),
        ]
        return pairs.filter { $0.1 != $0.2 }
    }

    var header: String {
        let t = bench.tunables
        return "pages_to_scan \(t.pagesToScan), sleep_millisecs \(t.sleepMillisecs), max_page_sharing \(t.maxPageSharing), "
            + "smart_scan \(t.smartScan), use_zero_pages \(t.useZeroPages) (1 for zero-heavy)"
    }

    func printTables() {
        print("ksmfs-bench compare: kernel KSM (anonymous memory of a helper) vs ksmfs (\(bench.files) files), "
              + "\(bench.repetitions) repetitions, order alternating, one side at a time, \(fmt(seconds, 0)) s")
        print(header)
        print("cells: min / median / max over repetitions; ratio = ksmfs / kernel per repetition. Kernel write latency: one byte "
              + "stored by the helper; ksmfs: 4 KiB pwrite\(results.allSatisfy { $0.directIO } ? " with O_DIRECT" : " (O_DIRECT refused)").")
        var rows: [[String]] = []
        for g in groups {
            let k = runs(.kernel, g), f = runs(.ksmfs, g)
            for m in CompareReport.metrics {
                let kv = k.compactMap(m.value), fv = f.compactMap(m.value)
                var ratios: [Double] = []
                for (a, b) in zip(k, f) { if let x = m.value(a), let y = m.value(b), x != 0 { ratios.append(y / x) } }
                rows.append([g.pattern.rawValue, "\(g.pages)", m.name, m.unit,
                             CompareReport.triple(kv, m.digits), CompareReport.triple(fv, m.digits), CompareReport.triple(ratios, 2)])
            }
        }
        printTable(["pattern", "pages", "measure", "unit", "kernel min / med / max", "ksmfs min / med / max", "ksmfs/kernel min / med / max"], rows)
        print("")
        printCounters()
    }

    func printCounters() {
        print("final counters at the stop (shared / sharing / unshared / chains / dups / zero), stopped at pass boundary N:")
        var rows: [[String]] = []
        var loud: [String] = []
        func cell(_ r: SideResult) -> String {
            KSMCounters.compared.map { "\(r.counters[$0])" }.joined(separator: " / ")
                + " @\(r.conv.stopPass)\(r.conv.exactBoundary ? "" : "~")\(r.conv.converged ? "" : " NOT CONVERGED")"
        }
        for g in groups {
            let k = runs(.kernel, g), f = runs(.ksmfs, g)
            for (a, b) in zip(k, f) {
                let mm = mismatches(a, b)
                let status = mm.isEmpty ? "equal" : "MISMATCH " + mm.map { "\($0.0) \($0.2 - $0.1 >= 0 ? "+" : "")\($0.2 - $0.1)" }.joined(separator: ", ")
                rows.append([g.pattern.rawValue, "\(g.pages)", "\(a.rep + 1)", a.first ? "kernel" : "ksmfs", cell(a), cell(b), status])
                for (n, kv, fv) in mm {
                    loud.append("*** MISMATCH *** \(g.pattern.rawValue) \(g.pages) pages rep \(a.rep + 1): \(n) kernel \(kv) ksmfs \(fv) (ksmfs \(fv - kv >= 0 ? "+" : "")\(fv - kv))"
                                + (a.conv.stopPass != b.conv.stopPass ? " [stopped at different passes: kernel \(a.conv.stopPass), ksmfs \(b.conv.stopPass)]" : "")
                                + (a.conv.exactBoundary && b.conv.exactBoundary ? "" : " [a stop was not exactly at a pass boundary]"))
                }
            }
        }
        printTable(["pattern", "pages", "rep", "first", "kernel", "ksmfs", "check"], rows)
        if loud.isEmpty { print("counters: kernel and ksmfs equal in every repetition") }
        for l in loud { print(l) }
        var notes: [String: [String]] = [:]
        var order: [String] = []
        for g in groups {
            for (a, b) in zip(runs(.kernel, g), runs(.ksmfs, g)) {
                for (n, kv, fv) in otherDifferences(a, b) {
                    let key = "\(g.pattern.rawValue) \(g.pages): \(n) kernel \(kv) ksmfs \(fv) (ksmfs \(fv - kv >= 0 ? "+" : "")\(fv - kv))"
                    if notes[key] == nil { order.append(key) }
                    notes[key, default: []].append("\(a.rep + 1)")
                }
            }
        }
        for k in order { print("note: also differs: \(k) in repetition \(notes[k]!.joined(separator: ","))") }
        let warned = results.filter { $0.tunablesChanged }
        for r in warned { print("WARNING: \(r.side.rawValue) tunables changed by someone else during \(r.pattern.rawValue) \(r.pages) rep \(r.rep + 1)") }
    }

    func printScale() {
        print("ksmfs-bench compare --scale: dup16, \(bench.scalePages) pages (\(bench.scalePages >> 8) MiB logical) in \(bench.files) files")
        print(header)
        var rows: [[String]] = []
        for r in results {
            let logical = Double(r.pages) * 4 / 1024
            rows.append([r.side.rawValue, fmt(logical, 0), fmt(Double(r.memBeforeKiB) / 1024, 1), fmt(Double(r.memAfterKiB) / 1024, 1),
                         fmt(Double(r.memAfterKiB) / 1024 / logical, 4), fmt(r.conv.timeToConverge, 1), fmt(r.conv.cpuTotal, 2),
                         fmt(r.unmergeSeconds * 1000, 0),
                         KSMCounters.compared.map { "\(r.counters[$0])" }.joined(separator: "/")])
        }
        printTable(["side", "logical MiB", "mem before MiB", "mem after MiB", "after / logical", "converge s", "scanner CPU s",
                    "unmerge ms", "shared/sharing/unshared/chains/dups/zero"], rows)
        print("mem: ksmfs = daemon memory (its RSS without shared pages, plus the arena memfd), kernel = helper PSS")
        if results.count == 2 {
            let mm = mismatches(results[1], results[0])
            if mm.isEmpty { print("counters: kernel and ksmfs equal") }
            for (n, kv, fv) in mm { print("*** MISMATCH *** scale: \(n) kernel \(kv) ksmfs \(fv)") }
        }
    }

    // MARK: JSON

    static func q(_ s: String) -> String {
        var o = "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": o += "\\\""
            case "\\": o += "\\\\"
            case "\n": o += "\\n"
            default: o += c.value < 0x20 ? "\\u00\(c.value < 16 ? "0" : "")\(String(c.value, radix: 16))" : String(c)
            }
        }
        return o + "\""
    }

    static func n(_ v: Double, _ d: Int = 6) -> String { v.isFinite ? fmt(v, d) : "null" }
    static func arr(_ v: [Double], _ d: Int = 3) -> String { "[" + v.map { n($0, d) }.joined(separator: ",") + "]" }

    func json(_ r: SideResult) -> String {
        let c = r.conv
        var o: [String] = []
        o.append("\"side\":\(CompareReport.q(r.side.rawValue))")
        o.append("\"pattern\":\(CompareReport.q(r.pattern.rawValue)),\"pages\":\(r.pages),\"repetition\":\(r.rep + 1),\"ran_first\":\(r.first)")
        o.append("\"converged\":\(c.converged),\"time_to_converge_s\":\(CompareReport.n(c.timeToConverge)),\"total_time_s\":\(CompareReport.n(c.totalTime))")
        o.append("\"scanner_cpu_to_converge_s\":\(CompareReport.n(c.cpuToConverge)),\"scanner_cpu_s\":\(CompareReport.n(c.cpuTotal)),\"scanner_cpu_stat_s\":\(CompareReport.n(c.cpuStatTotal, 2))")
        o.append("\"pages_scanned\":\(c.scanned),\"pages_per_cpu_s\":\(CompareReport.n(r.pagesPerCPU, 0)),\"pages_per_cpu_s_per_pass\":\(CompareReport.arr(c.perPass, 0))")
        o.append("\"last_growth_pass\":\(c.growthPass),\"stop_pass\":\(c.stopPass),\"stop_exactly_at_pass_boundary\":\(c.exactBoundary)")
        o.append("\"counters\":{" + KSMCounters.all.map { "\(CompareReport.q($0)):\(r.counters[$0])" }.joined(separator: ",") + "}")
        o.append("\"memory_kib\":{\"measure\":\(CompareReport.q(r.side == .kernel ? "helper PSS" : "daemon memory")),\"before\":\(r.memBeforeKiB),\"after\":\(r.memAfterKiB),\"released\":\(r.releasedKiB),\"ideal_released\":\(r.idealKiB),\"rss_before\":\(r.rssBeforeKiB),\"rss_after\":\(r.rssAfterKiB),"
                 + "\"anon_shmem_before\":\(r.anonBeforeKiB),\"anon_shmem_after\":\(r.anonAfterKiB),\"mem_available_before\":\(r.availBeforeKiB),\"mem_available_after\":\(r.availAfterKiB),"
                 + "\"machine_used_before\":\(r.usedBeforeKiB),\"machine_used_after\":\(r.usedAfterKiB)}")
        o.append("\"unmerge_s\":\(CompareReport.n(r.unmergeSeconds))")
        func lat(_ v: [Double]) -> String {
            "{\"count\":\(v.count),\"p50_us\":\(CompareReport.p(v, 0.5).map { CompareReport.n($0, 3) } ?? "null"),\"p99_us\":\(CompareReport.p(v, 0.99).map { CompareReport.n($0, 3) } ?? "null")}"
        }
        o.append("\"first_write_latency\":{\"method\":\(CompareReport.q(r.side == .kernel ? "1-byte store, clock_gettime around it" : (r.directIO ? "4 KiB pwrite O_DIRECT" : "4 KiB pwrite"))),\"merged\":\(lat(r.latMerged)),\"unmerged\":\(lat(r.latUnmerged))}")
        o.append("\"tunables_changed_by_others\":\(r.tunablesChanged),\"attempts\":\(r.attempts),\"pages_skipped_during_run\":\(c.skipped)")
        o.append("\"pages_sharing_over_time\":[" + c.samples.map { "[\(CompareReport.n($0.t, 3)),\($0.v)]" }.joined(separator: ",") + "]")
        return "{" + o.joined(separator: ",\n     ") + "}"
    }

    func writeJSON(_ path: String) {
        let t = bench.tunables
        var uts = utsname()
        uname(&uts)
        let release = withUnsafePointer(to: &uts.release) { String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)) }
        var s = "{\n"
        s += "  \"tool\": \"ksmfs-bench compare\",\n  \"kernel_release\": \(CompareReport.q(release)),\n"
        s += "  \"mode\": \(CompareReport.q(bench.scale ? "scale" : "compare")),\n  \"seconds\": \(CompareReport.n(seconds, 1)),\n"
        s += "  \"repetitions\": \(bench.repetitions),\n  \"files\": \(bench.files),\n"
        s += "  \"tunables\": {\"pages_to_scan\":\(t.pagesToScan),\"sleep_millisecs\":\(t.sleepMillisecs),\"max_page_sharing\":\(t.maxPageSharing),"
            + "\"smart_scan\":\(t.smartScan),\"use_zero_pages\":\(t.useZeroPages),\"use_zero_pages_zero_heavy\":1,\"stable_node_chains_prune_millisecs\":\(t.pruneMillisecs)},\n"
        s += "  \"kernel_ksm_changed_after_restore\": {" + kernelDiff.map { "\(CompareReport.q($0.name)):[\(CompareReport.q($0.before)),\(CompareReport.q($0.after))]" }.joined(separator: ",") + "},\n"
        var mm: [String] = []
        for g in groups {
            for (a, b) in zip(runs(.kernel, g), runs(.ksmfs, g)) {
                for (n, kv, fv) in mismatches(a, b) {
                    mm.append("{\"pattern\":\(CompareReport.q(g.pattern.rawValue)),\"pages\":\(g.pages),\"repetition\":\(a.rep + 1),\"counter\":\(CompareReport.q(n)),\"kernel\":\(kv),\"ksmfs\":\(fv)}")
                }
            }
        }
        s += "  \"counter_mismatches\": [" + mm.joined(separator: ",\n    ") + "],\n"
        var other: [String] = []
        for g in groups {
            for (a, b) in zip(runs(.kernel, g), runs(.ksmfs, g)) {
                for (n, kv, fv) in otherDifferences(a, b) {
                    other.append("{\"pattern\":\(CompareReport.q(g.pattern.rawValue)),\"pages\":\(g.pages),\"repetition\":\(a.rep + 1),\"figure\":\(CompareReport.q(n)),\"kernel\":\(kv),\"ksmfs\":\(fv)}")
                }
            }
        }
        s += "  \"other_differences\": [" + other.joined(separator: ",\n    ") + "],\n"
        var summary: [String] = []
        for g in groups {
            let k = runs(.kernel, g), f = runs(.ksmfs, g)
            var ms: [String] = []
            for m in CompareReport.metrics {
                let kv = k.compactMap(m.value), fv = f.compactMap(m.value)
                var ratios: [Double] = []
                for (a, b) in zip(k, f) { if let x = m.value(a), let y = m.value(b), x != 0 { ratios.append(y / x) } }
                func st(_ v: [Double]) -> String {
                    v.isEmpty ? "null" : "{\"min\":\(CompareReport.n(Stats(values: v).min)),\"median\":\(CompareReport.n(Stats(values: v).median)),\"max\":\(CompareReport.n(Stats(values: v).max))}"
                }
                ms.append("{\"measure\":\(CompareReport.q(m.name)),\"unit\":\(CompareReport.q(m.unit)),\"kernel\":\(st(kv)),\"ksmfs\":\(st(fv)),\"ratio_ksmfs_over_kernel\":\(st(ratios))}")
            }
            summary.append("{\"pattern\":\(CompareReport.q(g.pattern.rawValue)),\"pages\":\(g.pages),\"measures\":[\n      " + ms.joined(separator: ",\n      ") + "]}")
        }
        s += "  \"summary\": [\n    " + summary.joined(separator: ",\n    ") + "],\n"
        s += "  \"runs\": [\n    " + results.map(json).joined(separator: ",\n    ") + "]\n}\n"
        writeText(path, s)
    }

    func writeText(_ path: String, _ text: String) {
        guard let f = fopen(path, "w") else { print("cannot write \(path): \(String(cString: strerror(errno)))"); return }
        let b = Array(text.utf8)
        fwrite(b, 1, b.count, f)
        fclose(f)
    }

    // MARK: SVG

    static func e(_ s: String) -> String {
        var o = ""
        for c in s { switch c { case "<": o += "&lt;"; case ">": o += "&gt;"; case "&": o += "&amp;"; default: o.append(c) } }
        return o
    }

    /// A round step for about `n` ticks over [0, max].
    static func tickStep(_ max: Double, _ n: Double = 5) -> Double {
        if max <= 0 { return 1 }
        let raw = max / n
        var p = 1.0
        while p * 10 <= raw { p *= 10 }
        while p > raw { p /= 10 }
        for m in [1.0, 2.0, 5.0, 10.0] where p * m >= raw { return p * m }
        return p * 10
    }

    static func label(_ v: Double) -> String {
        if v >= 1e6 { return fmt(v / 1e6, v.truncatingRemainder(dividingBy: 1e6) == 0 ? 0 : 1) + "M" }
        if v >= 1e3 { return fmt(v / 1e3, v.truncatingRemainder(dividingBy: 1e3) == 0 ? 0 : 1) + "k" }
        return fmt(v, v == v.rounded() ? 0 : 1)
    }

    /// The repetition whose time to converge is the median, so one disturbed run is not the
    /// one drawn.
    func medianRun(_ side: Side, _ g: (pattern: ComparePattern, pages: Int)) -> SideResult? {
        let r = runs(side, g).sorted { $0.conv.timeToConverge < $1.conv.timeToConverge }
        return r.isEmpty ? nil : r[(r.count - 1) / 2]
    }

    /// One panel per (pattern, size), patterns down and sizes across (or two across for one
    /// size): the median repetition of each side.
    func writeSVG(_ path: String) {
        let gs = groups
        let sizes = gs.reduce(into: [Int]()) { if !$0.contains($1.pages) { $0.append($1.pages) } }
        let pats = gs.reduce(into: [ComparePattern]()) { if !$0.contains($1.pattern) { $0.append($1.pattern) } }
        let grid = sizes.count > 1
        let cols = grid ? sizes.count : min(2, gs.count)
        func cell(_ idx: Int) -> (row: Int, col: Int) {
            grid ? (pats.firstIndex(of: gs[idx].pattern)!, sizes.firstIndex(of: gs[idx].pages)!) : (idx / cols, idx % cols)
        }
        let rowsN = gs.indices.map { cell($0).row }.max().map { $0 + 1 } ?? 1
        let pw = 560.0, ph = 300.0, top = 76.0
        let width = pw * Double(max(1, cols)), height = top + ph * Double(rowsN) + 10
        let colors: [Side: String] = [.kernel: "#1f77b4", .ksmfs: "#d62728"]
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" font-family=\"sans-serif\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"\(Int(width / 2))\" y=\"24\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\">KSM merging over time: kernel vs ksmfs</text>\n"
        s += "<text x=\"\(Int(width / 2))\" y=\"44\" text-anchor=\"middle\" font-size=\"11\" fill=\"#444\">pages_sharing + ksm_zero_pages, sampled every 100 ms from run=1; the median repetition of each side</text>\n"
        s += "<text x=\"\(Int(width / 2))\" y=\"60\" text-anchor=\"middle\" font-size=\"11\" fill=\"#444\">\(CompareReport.e(header))</text>\n"
        for (idx, g) in gs.enumerated() {
            let ox = pw * Double(cell(idx).col), oy = top + ph * Double(cell(idx).row)
            let left = ox + 70, right = ox + pw - 20, ptop = oy + 30, bottom = oy + ph - 45
            let series: [(Side, [(t: Double, v: Int64)])] = [Side.kernel, Side.ksmfs].compactMap { side in
                medianRun(side, g).map { (side, $0.conv.samples) }
            }
            let maxT = max(0.1, series.flatMap { $0.1.map(\.t) }.max() ?? 1)
            let maxV = max(1.0, Double(series.flatMap { $0.1.map(\.v) }.max() ?? 1))
            let xs = CompareReport.tickStep(maxT), ys = CompareReport.tickStep(maxV)
            let xMax = (maxT / xs).rounded(.up) * xs, yMax = (maxV / ys).rounded(.up) * ys
            func X(_ t: Double) -> Double { left + (right - left) * t / xMax }
            func Y(_ v: Double) -> Double { bottom - (bottom - ptop) * v / yMax }
            s += "<g>\n<text x=\"\(fmt((left + right) / 2, 1))\" y=\"\(fmt(oy + 18, 1))\" text-anchor=\"middle\" font-size=\"13\" font-weight=\"bold\">\(g.pattern.rawValue), \(g.pages) pages</text>\n"
            var tick = 0.0
            while tick <= yMax + ys / 2 {
                s += "<line x1=\"\(fmt(left, 1))\" y1=\"\(fmt(Y(tick), 1))\" x2=\"\(fmt(right, 1))\" y2=\"\(fmt(Y(tick), 1))\" stroke=\"#e5e5e5\"/>"
                s += "<text x=\"\(fmt(left - 6, 1))\" y=\"\(fmt(Y(tick) + 4, 1))\" text-anchor=\"end\" font-size=\"10\">\(CompareReport.label(tick))</text>\n"
                tick += ys
            }
            tick = 0
            while tick <= xMax + xs / 2 {
                s += "<line x1=\"\(fmt(X(tick), 1))\" y1=\"\(fmt(bottom, 1))\" x2=\"\(fmt(X(tick), 1))\" y2=\"\(fmt(bottom + 4, 1))\" stroke=\"#000\"/>"
                s += "<text x=\"\(fmt(X(tick), 1))\" y=\"\(fmt(bottom + 16, 1))\" text-anchor=\"middle\" font-size=\"10\">\(CompareReport.label(tick))</text>\n"
                tick += xs
            }
            s += "<line x1=\"\(fmt(left, 1))\" y1=\"\(fmt(bottom, 1))\" x2=\"\(fmt(right, 1))\" y2=\"\(fmt(bottom, 1))\" stroke=\"#000\"/>"
            s += "<line x1=\"\(fmt(left, 1))\" y1=\"\(fmt(ptop, 1))\" x2=\"\(fmt(left, 1))\" y2=\"\(fmt(bottom, 1))\" stroke=\"#000\"/>\n"
            s += "<text x=\"\(fmt((left + right) / 2, 1))\" y=\"\(fmt(bottom + 32, 1))\" text-anchor=\"middle\" font-size=\"11\">seconds since run=1</text>\n"
            s += "<text transform=\"translate(\(fmt(ox + 14, 1)),\(fmt((ptop + bottom) / 2, 1))) rotate(-90)\" text-anchor=\"middle\" font-size=\"11\">pages</text>\n"
            for (side, pts) in series {
                let list = pts.map { "\(fmt(X($0.t), 1)),\(fmt(Y(Double($0.v)), 1))" }.joined(separator: " ")
                s += "<polyline fill=\"none\" stroke=\"\(colors[side]!)\" stroke-width=\"1.8\" points=\"\(list)\"/>\n"
            }
            for (k, (side, _)) in series.enumerated() {
                let lx = right - 150, ly = bottom - 40 + Double(k) * 16
                let r = medianRun(side, g)!
                s += "<line x1=\"\(fmt(lx, 1))\" y1=\"\(fmt(ly - 4, 1))\" x2=\"\(fmt(lx + 18, 1))\" y2=\"\(fmt(ly - 4, 1))\" stroke=\"\(colors[side]!)\" stroke-width=\"2.5\"/>"
                s += "<text x=\"\(fmt(lx + 24, 1))\" y=\"\(fmt(ly, 1))\" font-size=\"11\">\(side.rawValue) (\(fmt(r.conv.timeToConverge, 1)) s)</text>\n"
            }
            s += "</g>\n"
        }
        s += "</svg>\n"
        writeText(path, s)
    }
}
