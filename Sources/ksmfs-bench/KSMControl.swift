// The two KSM control directories (/sys/kernel/mm/ksm and <mnt>/ksm) read and written by
// one type, the /proc figures `compare` needs (a thread's CPU, a process's PSS, meminfo), and
// the guard that leaves the kernel's KSM as it was found: every tunable saved before, run=2
// then the old values after, also from SIGINT/SIGTERM/SIGHUP, fatal signals and exit().
import Glibc

/// Reads a small text file whole (sysfs, procfs, or a FUSE direct-I/O file) with pread from 0.
func readSmallFile(_ path: String, limit: Int = 16384) -> String? {
    let fd = open(path, O_RDONLY)
    if fd < 0 { return nil }
    defer { Glibc.close(fd) }
    var buf = [UInt8](repeating: 0, count: limit)
    var total = 0
    while total < limit {
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + total, limit - total, off_t(total)) }
        if n <= 0 { break }
        total += n
    }
    return String(decoding: buf[..<total], as: UTF8.self)
}

/// A `key: value kB` line of /proc/meminfo, /proc/PID/status or smaps_rollup, in KiB.
func procKiB(_ path: String, _ key: String) -> Int {
    guard let text = readSmallFile(path) else { return 0 }
    for line in text.split(separator: "\n") where line.hasPrefix(key) {
        return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
    }
    return 0
}

/// The machine's anonymous plus shared memory in KiB (the kernel's KSM frees anonymous pages;
/// ksmfs's arena is shared memory, a memfd).
func anonAndShmemKiB() -> Int { procKiB("/proc/meminfo", "AnonPages:") + procKiB("/proc/meminfo", "Shmem:") }

func directoryEntries(_ path: String) -> [String] {
    guard let d = opendir(path) else { return [] }
    defer { closedir(d) }
    var names: [String] = []
    while let e = readdir(d) {
        let name = withUnsafePointer(to: &e.pointee.d_name) {
            String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
        }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}

/// A thread's CPU time: `dir` is /proc/PID or /proc/PID/task/TID.
struct ThreadCPU {
    let dir: String

    /// Time on a CPU in nanoseconds (schedstat's first field: exact, not tick-sampled).
    func nanos() -> Int64 {
        guard let s = readSmallFile(dir + "/schedstat"), let f = s.split(separator: " ").first else { return 0 }
        return Int64(f) ?? 0
    }

    /// utime + stime from stat, in seconds (clock ticks).
    func statSeconds() -> Double {
        guard let s = readSmallFile(dir + "/stat"), let close = s.lastIndex(of: ")") else { return 0 }
        let f = s[s.index(after: close)...].split(separator: " ")
        guard f.count > 12 else { return 0 }
        return Double((Int64(f[11]) ?? 0) + (Int64(f[12]) ?? 0)) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// The nice value of the kernel's ksmd (5 on Linux), from its stat.
    static func kernelNice() -> Int32 {
        guard let k = kernelKsmd(), let s = readSmallFile(k.dir + "/stat"), let close = s.lastIndex(of: ")") else { return 5 }
        let f = s[s.index(after: close)...].split(separator: " ")
        return f.count > 16 ? Int32(f[16]) ?? 5 : 5
    }

    /// The kernel's ksmd (a process whose comm is "ksmd").
    static func kernelKsmd() -> ThreadCPU? {
        for name in directoryEntries("/proc") where name.first?.isNumber == true {
            if readSmallFile("/proc/\(name)/comm") == "ksmd\n" { return ThreadCPU(dir: "/proc/\(name)") }
        }
        return nil
    }

    /// The thread named `comm` inside process `pid`.
    static func thread(of pid: pid_t, named comm: String) -> ThreadCPU? {
        for tid in directoryEntries("/proc/\(pid)/task") {
            if readSmallFile("/proc/\(pid)/task/\(tid)/comm") == comm + "\n" { return ThreadCPU(dir: "/proc/\(pid)/task/\(tid)") }
        }
        return nil
    }
}

/// The counters `compare` reads; `compared` are the ones that must be equal on both sides.
struct KSMCounters {
    var values: [String: Int64] = [:]
    static let compared = ["pages_shared", "pages_sharing", "pages_unshared", "stable_node_chains", "stable_node_dups", "ksm_zero_pages"]
    static let all = compared + ["pages_volatile", "full_scans", "pages_scanned", "pages_skipped", "general_profit"]
    subscript(_ name: String) -> Int64 { values[name] ?? -1 }
    /// What merging has achieved so far: pages saved by sharing and by the zero page.
    var progress: Int64 { max(0, self["pages_sharing"]) + max(0, self["ksm_zero_pages"]) }
}

/// A KSM control directory: /sys/kernel/mm/ksm or <mnt>/ksm.
struct KSMControl {
    let dir: String
    var isKernel: Bool { dir == KSMControl.kernelDir }
    static let kernelDir = "/sys/kernel/mm/ksm"

    func read(_ name: String) -> String? {
        readSmallFile(dir + "/" + name, limit: 256)?.trimmingCharacters()
    }

    func int(_ name: String) -> Int64 { read(name).flatMap { Int64($0) } ?? -1 }

    /// Writes one value with one write(2); returns 0 or the errno.
    @discardableResult
    func write(_ name: String, _ value: String) -> Int32 {
        // Once the guard has started restoring the kernel, nothing may write there again.
        if isKernel && kernelGuardRestoring != 0 { while true { pause() } }
        let fd = open(dir + "/" + name, O_WRONLY)
        if fd < 0 { return errno }
        defer { Glibc.close(fd) }
        let n = value.withCString { Glibc.write(fd, $0, strlen($0)) }
        return n < 0 ? errno : 0
    }

    /// Writes or fails with the file, value and error.
    func set(_ name: String, _ value: String) {
        let e = write(name, value)
        if e != 0 { fail("write \(value) to \(dir)/\(name): \(String(cString: strerror(e)))") }
    }

    func counters() -> KSMCounters {
        var c = KSMCounters()
        for n in KSMCounters.all { c.values[n] = int(n) }
        return c
    }
}

// MARK: leaving the kernel's KSM as it was found

// The restore plan as C strings, built before any change, so a signal handler can run it
// with open/write/close only. Pairs of (path, value), ended by a nil path.
nonisolated(unsafe) var kernelGuardPlan: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = nil
nonisolated(unsafe) var kernelGuardArmed: Int32 = 0
nonisolated(unsafe) var kernelGuardRestoring: Int32 = 0
/// Processes the guard stops first: the anonymous-memory helper (SIGKILL) and a ksmfs daemon
/// (SIGTERM, so it unmounts).
nonisolated(unsafe) var kernelGuardHelperPid: pid_t = 0
nonisolated(unsafe) var kernelGuardDaemonPid: pid_t = 0

/// Async-signal-safe: stops our children and writes the saved kernel values back, once.
func kernelGuardRestoreNow() {
    if kernelGuardArmed == 0 { return }
    kernelGuardArmed = 0
    kernelGuardRestoring = 1
    if kernelGuardHelperPid > 0 { kill(kernelGuardHelperPid, SIGKILL); var st: Int32 = 0; waitpid(kernelGuardHelperPid, &st, 0) }
    if kernelGuardDaemonPid > 0 { kill(kernelGuardDaemonPid, SIGTERM) }
    guard let plan = kernelGuardPlan else { return }
    var i = 0
    while let path = plan[i] {
        if let value = plan[i + 1] {
            let fd = open(path, O_WRONLY)
            if fd >= 0 { _ = Glibc.write(fd, value, strlen(value)); Glibc.close(fd) }
        }
        i += 2
    }
}

/// Saves every writable file of /sys/kernel/mm/ksm and restores them at `restore()`, at exit
/// and on signals. The order of the plan: run=2 (unmerge, so max_page_sharing and
/// merge_across_nodes may change), advisor_mode=none (so pages_to_scan may be written), every
/// other tunable, advisor_mode, and run last.
final class KernelKSMGuard {
    let ctl = KSMControl(dir: KSMControl.kernelDir)
    private(set) var saved: [(name: String, value: String)] = []
    /// Every file's text before the run (counters too), for the before/after report.
    let before: [String: String]

    init() {
        var all: [String: String] = [:]
        var tunables: [(String, String)] = []
        for name in directoryEntries(KSMControl.kernelDir).sorted() {
            guard let v = ctl.read(name) else { continue }
            all[name] = v
            var st = stat()
            if stat(KSMControl.kernelDir + "/" + name, &st) == 0 && st.st_mode & 0o200 != 0 {
                tunables.append((name, KernelKSMGuard.writable(name, v)))
            }
        }
        before = all
        saved = tunables
    }

    /// The value to write back: advisor_mode reads `[none] scan-time`, takes `none`.
    static func writable(_ name: String, _ text: String) -> String {
        guard name == "advisor_mode", let open = text.firstIndex(of: "["), let close = text.firstIndex(of: "]") else { return text }
        return String(text[text.index(after: open)..<close])
    }

    func install() {
        var steps: [(String, String)] = [("run", "2")]
        if saved.contains(where: { $0.name == "advisor_mode" }) { steps.append(("advisor_mode", "none")) }
        for (n, v) in saved where n != "run" && n != "advisor_mode" { steps.append((n, v)) }
        for (n, v) in saved where n == "advisor_mode" { steps.append((n, v)) }
        for (n, v) in saved where n == "run" { steps.append((n, v)) }
        let plan = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: steps.count * 2 + 2)
        for (i, s) in steps.enumerated() {
            plan[2 * i] = strdup(KSMControl.kernelDir + "/" + s.0)
            plan[2 * i + 1] = strdup(s.1)
        }
        plan[steps.count * 2] = nil
        plan[steps.count * 2 + 1] = nil
        kernelGuardPlan = plan
        kernelGuardHelperPid = 0
        kernelGuardDaemonPid = 0
        kernelGuardRestoring = 0
        kernelGuardArmed = 1
        atexit { kernelGuardRestoreNow() }
        let onSignal: @convention(c) (Int32) -> Void = { sig in
            let msg: StaticString = "\nksmfs-bench: signal received; restoring /sys/kernel/mm/ksm and exiting\n"
            _ = Glibc.write(2, msg.utf8Start, msg.utf8CodeUnitCount)
            kernelGuardRestoreNow()
            _exit(128 + sig)
        }
        for s in [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE] { signal(s, onSignal) }
        signal(SIGPIPE, SIG_IGN)
    }

    /// Restores now (the normal path); returns the files whose text differs from before.
    func restore() -> [(name: String, before: String, after: String)] {
        // A signal arriving half-way must not cut the restore short.
        var block = sigset_t(), old = sigset_t()
        sigemptyset(&block)
        for s in [SIGINT, SIGTERM, SIGHUP, SIGQUIT] { sigaddset(&block, s) }
        sigprocmask(SIG_BLOCK, &block, &old)
        kernelGuardRestoreNow()
        sigprocmask(SIG_SETMASK, &old, nil)
        var diff: [(String, String, String)] = []
        for name in before.keys.sorted() {
            let now = ctl.read(name) ?? "?"
            if now != before[name]! { diff.append((name, before[name]!, now)) }
        }
        return diff
    }
}
