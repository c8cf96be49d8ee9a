// `ksmfs status`: one screen of what the engine is doing — counters, rates, pass progress,
// memory saved, the advisor — read from <mnt>/ksm/metrics of one mount or of every ksmfs
// mount in /proc/mounts. `--watch` refreshes like top, `--json` is for scripts.
import ArgumentParser
import Glibc
import KSMFS

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show what the merging engine of a ksmfs mount is doing.")

    @Argument(help: "A ksmfs mountpoint or any path inside one (default: every ksmfs mount).")
    var mountpoint: String?

    @Flag(help: "Refresh every --interval seconds until interrupted.")
    var watch = false

    @Flag(help: "Print JSON (one object per mount, in an array).")
    var json = false

    @Option(help: "Seconds between samples (rates are measured over it), from 0.05 to 86400 (default: 1 with --watch, else 0.2).")
    var interval: Double?

    func validate() throws {
        if let interval, !(interval.isFinite && interval >= 0.05 && interval <= 86400) {
            throw ValidationError("--interval must be a number of seconds from 0.05 to 86400, not \(interval)")
        }
    }

    func run() throws {
        // Daemons that died without unmounting: their files are gone, say so first.
        for previous in DaemonRecord.dead() { writeStderr("ksmfs: warning: \(previous.line)\n") }
        let mounts: [String]
        if let m = mountpoint {
            guard let abs = realpath(m, nil).map({ p in defer { free(p) }; return String(cString: p) }) else {
                writeStderr("ksmfs: \(m): \(String(cString: strerror(errno)))\n")
                throw ExitCode(1)
            }
            // The mount that holds the path (the path itself, or the nearest parent).
            var dir = abs
            while !MountTable.isKSMFSMount(dir) {
                guard dir != "/", let slash = dir.lastIndex(of: "/") else {
                    writeStderr("ksmfs: \(m) is not in a ksmfs mount\n")
                    throw ExitCode(1)
                }
                dir = slash == dir.startIndex ? "/" : String(dir[..<slash])
            }
            mounts = [dir]
        } else {
            mounts = MountTable.ksmfsMounts()
            if mounts.isEmpty {
                writeStderr("ksmfs: no ksmfs mount found in /proc/mounts\n")
                throw ExitCode(1)
            }
        }
        let interval = self.interval ?? (watch ? 1 : 0.2)
        let pause = timespec(tv_sec: Int(interval), tv_nsec: Int((interval - interval.rounded(.down)) * 1e9))
        var before = mounts.map { Metrics.read($0) }
        var t0 = monotonic()
        repeat {
            var left = pause, rest = timespec()
            while nanosleep(&left, &rest) != 0 && errno == EINTR { left = rest }
            let after = mounts.map { Metrics.read($0) }
            let dt = monotonic() - t0
            t0 = monotonic()
            var screen = ""
            if json {
                screen = "[" + zip(mounts, zip(before, after)).map { Metrics.json($0.0, $0.1.1, $0.1.0, dt) }.joined(separator: ",") + "]\n"
            } else {
                if watch { screen += isatty(1) != 0 ? "\u{1B}[H\u{1B}[2J" : "\n" }
                for (m, (b, a)) in zip(mounts, zip(before, after)) { screen += Metrics.screen(m, a, b, dt) + "\n" }
            }
            var bytes = Array(screen.utf8)
            _ = Glibc.write(1, &bytes, bytes.count)
            before = after
        } while watch
    }

    func monotonic() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

/// Parsed ksmfs_* metrics of one mount.
enum Metrics {
    static func read(_ mnt: String) -> [String: Double] {
        var out: [String: Double] = [:]
        guard let f = fopen(mnt + "/ksm/metrics", "r") else { return out }
        defer { fclose(f) }
        var line: UnsafeMutablePointer<CChar>? = nil
        var cap = 0
        while getline(&line, &cap, f) > 0 {
            let s = String(cString: line!)
            guard s.hasPrefix("ksmfs_"), let brace = s.firstIndex(of: "{"), let space = s.lastIndex(of: " ") else { continue }
            var name = String(s[s.index(s.startIndex, offsetBy: 6)..<brace])
            let value = s[s.index(after: space)...].filter { !$0.isWhitespace }
            // Series per FUSE operation: `name.op` (the histogram's buckets are left out).
            if let op = s.firstRange(of: ",op=\"") {
                if name.hasSuffix("_bucket") { continue }
                name += "." + s[op.upperBound...].prefix { $0 != "\"" }
            }
            out[name] = Double(value)
        }
        free(line)
        return out
    }

    static func rate(_ a: [String: Double], _ b: [String: Double], _ k: String, _ dt: Double) -> Double {
        dt > 0 ? max(0, (a[k] ?? 0) - (b[k] ?? 0)) / dt : 0
    }

    static func f(_ v: Double, _ d: Int = 1) -> String {
        var buf = [CChar](repeating: 0, count: 48)
        _ = withVaList([v]) { vsnprintf(&buf, 48, "%.\(d)f", $0) }
        return String(decodingCString: buf)
    }

    static func bytes(_ v: Double) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var x = v, i = 0
        while abs(x) >= 1024 && i < units.count - 1 { x /= 1024; i += 1 }
        return "\(f(x)) \(units[i])"
    }

    static func int(_ m: [String: Double], _ k: String) -> String { String(Int64(m[k] ?? 0)) }

    static func derived(_ a: [String: Double], _ b: [String: Double], _ dt: Double) -> [String: Double] {
        let logical = a["logical_bytes"] ?? 0, physical = a["physical_bytes"] ?? 0
        let done = a["pass_pages_done"] ?? 0, total = a["pass_pages_total"] ?? 0
        return [
            "scanned_per_second": rate(a, b, "pages_scanned", dt),
            "merged_per_second": rate(a, b, "merged_pages_total", dt),
            "cow_per_second": rate(a, b, "cow_ksm", dt),
            "scanner_cpu_percent": rate(a, b, "scanner_cpu_seconds_total", dt) * 100,
            "dedup_ratio": physical > 0 ? logical / physical : 1,
            "saved_bytes": max(0, logical - physical),
            "pass_progress": total > 0 ? min(1, done / total) : 0,
            "fuse_requests_per_second": requestRates(a, b, dt).reduce(0) { $0 + $1.rate },
        ]
    }

    /// Requests per second by FUSE operation over the interval, busiest first.
    static func requestRates(_ a: [String: Double], _ b: [String: Double], _ dt: Double) -> [(op: String, rate: Double)] {
        let prefix = "fuse_requests_total."
        return a.keys.filter { $0.hasPrefix(prefix) }
            .map { (String($0.dropFirst(prefix.count)), rate(a, b, $0, dt)) }
            .filter { $0.1 > 0 }
            .sorted { $0.1 > $1.1 }
    }

    /// The requests line: the rate, the busiest operations and their mean time.
    static func requestLine(_ a: [String: Double], _ b: [String: Double], _ dt: Double) -> String {
        let rates = requestRates(a, b, dt)
        let busiest = rates.prefix(5).map { r -> String in
            let n = (a["fuse_request_seconds_count.\(r.op)"] ?? 0) - (b["fuse_request_seconds_count.\(r.op)"] ?? 0)
            let t = (a["fuse_request_seconds_sum.\(r.op)"] ?? 0) - (b["fuse_request_seconds_sum.\(r.op)"] ?? 0)
            return "\(r.op) \(f(r.rate, 0))/s" + (n > 0 ? " (\(f(t / n * 1e6, 0)) µs)" : "")
        }
        let total = a.filter { $0.key.hasPrefix("fuse_requests_total.") }.values.reduce(0, +)
        return "\(f(rates.reduce(0) { $0 + $1.rate }, 0))/s  " + (busiest.isEmpty ? "idle" : busiest.joined(separator: "  ")) + "  total \(Int64(total))"
    }

    static func screen(_ mnt: String, _ a: [String: Double], _ b: [String: Double], _ dt: Double) -> String {
        let d = derived(a, b, dt)
        let run = Int(a["tunable_run"] ?? 0)
        let state = run == 1 ? "running" : run == 2 ? "unmerged" : "stopped"
        let width = 30
        let filled = Int((d["pass_progress"] ?? 0) * Double(width))
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let advisor = (a["tunable_advisor_scan_time"] ?? 0) == 1
            ? "scan-time: pages_to_scan \(int(a, "advisor_last_pages_to_scan")) at \(int(a, "advisor_last_cpu_percent"))% CPU"
            : "none"
        return """
        ksmfs \(mnt)  [\(state)]  pages_to_scan \(int(a, "tunable_pages_to_scan"))  sleep \(int(a, "tunable_sleep_millisecs")) ms  max_page_sharing \(int(a, "tunable_max_page_sharing"))
          merged    shared \(int(a, "pages_shared"))  sharing \(int(a, "pages_sharing"))  unshared \(int(a, "pages_unshared"))  volatile \(int(a, "pages_volatile"))  zero \(int(a, "ksm_zero_pages"))  chains \(int(a, "stable_node_chains"))/\(int(a, "stable_node_dups"))
          rates     scanned \(f(d["scanned_per_second"]!, 0))/s  merged \(f(d["merged_per_second"]!, 0))/s  copy-on-write \(f(d["cow_per_second"]!, 0))/s  scanner CPU \(f(d["scanner_cpu_percent"]!))%
          pass      #\(int(a, "full_scans") ) [\(bar)] \(f((d["pass_progress"] ?? 0) * 100, 0))%  \(int(a, "pass_pages_done"))/\(int(a, "pass_pages_total")) pages  last pass \(f(a["last_pass_seconds"] ?? 0, 2)) s
          memory    \(bytes(a["logical_bytes"] ?? 0)) of data in \(bytes(a["physical_bytes"] ?? 0)) (dedup \(f(d["dedup_ratio"]!, 2))x)  saved \(bytes(d["saved_bytes"]!))  general_profit \(bytes(a["general_profit"] ?? 0))
                    daemon memory \(bytes(a["daemon_resident_bytes"] ?? 0))  capacity \(bytes(a["capacity_bytes"] ?? 0))  on tmpfs: \(bytes(a["logical_bytes"] ?? 0))
          page cache \(pageCacheLine(a))
          requests  \(requestLine(a, b, dt))
          advisor   \(advisor)
        """
    }

    static func unixNow() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// What the kernel's page cache holds for the mount: the files' own caches (measured by
    /// the daemon), what was dropped, and the shared page cache of identical immutable files.
    static func pageCacheLine(_ a: [String: Double]) -> String {
        var s: String
        if let held = a["page_cache_bytes"] {
            let probed = Int64(a["page_cache_files_probed"] ?? 0), files = Int64(a["page_cache_files_held"] ?? 0)
            s = "\(bytes(held)) in the files' own caches (\(probed == files ? "\(files) files" : "\(probed) largest of \(files) files"), \(f(max(0, unixNow() - (a["page_cache_measured_timestamp_seconds"] ?? 0)), 0)) s ago)"
        } else {
            s = "files' own caches not measured yet (the daemon measures them as root)"
        }
        s += "  dropped \(bytes((a["page_cache_pages_dropped_total"] ?? 0) * 4096))"
        if (a["share_immutable"] ?? 0) == 1 {
            s += "\n           shared \(bytes(a["shared_cache_bytes"] ?? 0)) for \(int(a, "shared_groups")) \((a["shared_groups"] ?? 0) == 1 ? "group" : "groups") of \(int(a, "shared_group_files")) identical immutable files (\(int(a, "shared_opens")) opens), saving \(bytes(a["shared_cache_saved_bytes"] ?? 0))"
        }
        return s
    }

    static func json(_ mnt: String, _ a: [String: Double], _ b: [String: Double], _ dt: Double) -> String {
        var fields = ["\"mountpoint\":\"\(mnt.replacingBackslashesAndQuotes())\""]
        for (k, v) in a.sorted(by: { $0.key < $1.key }) { fields.append("\"\(k)\":\(num(v))") }
        for (k, v) in derived(a, b, dt).sorted(by: { $0.key < $1.key }) { fields.append("\"\(k)\":\(num(v))") }
        return "{" + fields.joined(separator: ",") + "}"
    }

    static func num(_ v: Double) -> String {
        if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
        return f(v, 4)
    }
}
