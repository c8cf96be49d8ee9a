// Shared pieces of the benchmarks: timing, statistics, mounting ksmfs and tmpfs side by
// side in one run, and a plain table printer.
import Glibc
import KSMFS

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func threadCPU() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

struct Stats {
    let values: [Double]
    var sorted: [Double] { values.sorted() }
    var min: Double { sorted.first ?? 0 }
    var max: Double { sorted.last ?? 0 }
    var median: Double {
        let s = sorted
        if s.isEmpty { return 0 }
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
    func percentile(_ p: Double) -> Double {
        let s = sorted
        if s.isEmpty { return 0 }
        return s[Swift.min(s.count - 1, Int(Double(s.count - 1) * p + 0.5))]
    }
}

func fmt(_ v: Double, _ digits: Int = 2) -> String {
    var buf = [CChar](repeating: 0, count: 64)
    _ = withVaList([v]) { vsnprintf(&buf, 64, "%.\(digits)f", $0) }
    return String(decodingCString: buf)
}

func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }

func printTable(_ header: [String], _ rows: [[String]]) {
    var widths = header.map(\.count)
    for r in rows { for (i, c) in r.enumerated() { widths[i] = Swift.max(widths[i], c.count) } }
    func line(_ r: [String]) -> String { "| " + r.enumerated().map { pad($0.element, widths[$0.offset]) }.joined(separator: " | ") + " |" }
    print(line(header))
    print("|" + widths.map { String(repeating: "-", count: $0 + 2) }.joined(separator: "|") + "|")
    for r in rows { print(line(r)) }
}

@discardableResult
func sh(_ cmd: String) -> Int32 {
    let r = system(cmd)
    return r == -1 ? -1 : (r >> 8) & 0xff
}

func fail(_ msg: String) -> Never {
    var b = Array("ksmfs-bench: \(msg)\n".utf8)
    _ = Glibc.write(2, &b, b.count)
    exit(1)
}

/// The ksmfs binary beside this one.
func ksmfsBinary() -> String {
    if let env = getenv("KSMFS_BIN") { return String(cString: env) }
    guard let me = selfExecutableOrNil() else { return ".build/release/ksmfs" }
    return String(me[..<(me.lastIndex(of: "/") ?? me.endIndex)]) + "/ksmfs"
}

/// This executable's path (/proc/self/exe).
func selfExecutable() -> String {
    guard let me = selfExecutableOrNil() else { fail("readlink /proc/self/exe failed") }
    return me
}

private func selfExecutableOrNil() -> String? {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, 4095)
    return n > 0 ? String(decodingCString: buf) : nil
}

/// A mounted filesystem under test; unmounted by `close()`.
final class BenchMount {
    let path: String
    let kind: String
    var pid: pid_t = 0

    init(ksmfs options: String) {
        kind = "ksmfs"
        path = BenchMount.tempDir("ksmfs")
        pid = BenchMount.startDaemon("\(ksmfsBinary()) \(path) -f -o \(options)", at: path, log: "/tmp/ksmfs-bench-daemon.log")
    }

    /// The minimal C libfuse filesystem (CReferenceFS), served by this executable's hidden
    /// `reference-fs` command, with ksmfs's default read-ahead: the baseline of issue 2.
    init(reference: Void) {
        kind = "reference"
        path = BenchMount.tempDir("reference")
        pid = BenchMount.startDaemon("KSMFS_REF_STATS=\(BenchMount.referenceStats) \(selfExecutable()) reference-fs \(path)", at: path, log: "/tmp/ksmfs-bench-reference.log")
        if let why = MountTable.setReadahead(bytes: MountOptions.defaultReadahead, of: path) { fail("reference read-ahead: \(why)") }
    }

    /// Runs `command` in the background and waits until it has mounted `path`; returns its pid.
    private static func startDaemon(_ command: String, at path: String, log: String) -> pid_t {
        guard let p = popen("\(command) >\(log) 2>&1 & echo $!", "r") else { fail("cannot start \(command)") }
        var line = [CChar](repeating: 0, count: 64)
        fgets(&line, 64, p)
        pclose(p)
        let pid = pid_t(String(decodingCString: line).trimmingCharacters()) ?? 0
        for _ in 0..<200 {
            if isMounted(path) { return pid }
            usleep(25_000)
        }
        fail("nothing mounted at \(path) by: \(command) (see \(log))")
    }

    init(tmpfs options: String) {
        kind = "tmpfs"
        path = BenchMount.tempDir("tmpfs")
        if sh("mount -t tmpfs -o \(options) tmpfs \(path)") != 0 { fail("cannot mount tmpfs (root needed)") }
    }

    /// Where the reference filesystem counts its requests by opcode (64 u64).
    static let referenceStats = "/tmp/ksmfs-bench-reference.stats"

    static func tempDir(_ tag: String) -> String {
        var template = Array("/tmp/ksmfs-bench-\(tag)-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { fail("mkdtemp failed") }
        return String(decodingCString: template)
    }

    static func isMounted(_ path: String) -> Bool {
        guard let f = fopen("/proc/mounts", "r") else { return false }
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 4096)
        while fgets(&line, 4096, f) != nil {
            let parts = String(decodingCString: line).split(separator: " ")
            if parts.count > 1 && parts[1] == path { return true }
        }
        return false
    }

    /// What the daemon costs the machine in KiB: its resident memory other than shared pages
    /// (VmRSS - RssShmem) plus its arena memfd's pages, which it maps only now and then.
    func memoryKiB() -> Int {
        guard pid > 0, let f = fopen("/proc/\(pid)/status", "r") else { return 0 }
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 256)
        var rss = 0, shmem = 0
        while fgets(&line, 256, f) != nil {
            let s = String(decodingCString: line)
            let value = Int(s.split(separator: " ").dropFirst().first ?? "0") ?? 0
            if s.hasPrefix("VmRSS:") { rss = value } else if s.hasPrefix("RssShmem:") { shmem = value }
        }
        return rss - shmem + BenchMount.arenaKiB(pid: pid)
    }

    /// KiB allocated by a daemon's arena memfd (0 when it has none).
    static func arenaKiB(pid: Int32) -> Int {
        var link = [CChar](repeating: 0, count: 256)
        for name in directoryEntries("/proc/\(pid)/fd") {
            let path = "/proc/\(pid)/fd/\(name)"
            let n = readlink(path, &link, 255)
            guard n > 0 else { continue }
            link[n] = 0
            guard String(decodingCString: link).hasPrefix("/memfd:ksmfs-arena") else { continue }
            var st = stat()
            return stat(path, &st) == 0 ? Int(st.st_blocks) / 2 : 0
        }
        return 0
    }

    func close() {
        if kind != "tmpfs" {
            sh("fusermount3 -u \(path)")
            var status: Int32 = 0
            for _ in 0..<200 where kill(pid, 0) == 0 { usleep(25_000); _ = waitpid(pid, &status, WNOHANG) }
        } else {
            sh("umount \(path)")
        }
        rmdir(path)
    }
}

extension String {
    func trimmingCharacters() -> String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\n" || c == "\t" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\n" || c == "\t" { s.removeLast() }
        return String(s)
    }
}

extension String {
    /// The text of a NUL-terminated C buffer (up to the first NUL).
    init(decodingCString buffer: [CChar]) {
        self = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
