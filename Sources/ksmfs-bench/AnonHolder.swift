// The kernel side of `compare`: `ksmfs-bench anon-hold` (hidden) maps anonymous memory,
// fills it with a pattern, marks it MADV_MERGEABLE, prints "ready PID" and then serves
// one-line commands on stdin until EOF or a signal: `w I` stores one byte into page I and
// answers the store's latency in nanoseconds (clock_gettime around the store; a merged page
// takes a copy-on-write fault there). The parent side spawns it and talks over two pipes.
import ArgumentParser
import Glibc

/// Buffered line reading from a file descriptor (a pipe).
struct LineReader {
    let fd: Int32
    private var buffer: [UInt8] = []

    init(fd: Int32) { self.fd = fd }

    mutating func next() -> String? {
        while true {
            if let nl = buffer.firstIndex(of: 10) {
                let line = String(decoding: buffer[..<nl], as: UTF8.self)
                buffer.removeSubrange(...nl)
                return line
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, 4096) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return nil }
            buffer.append(contentsOf: chunk[..<n])
        }
    }
}

func writeLine(_ fd: Int32, _ s: String) -> Bool {
    var b = Array((s + "\n").utf8)
    var done = 0
    while done < b.count {
        let n = b.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress! + done, $0.count - done) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return false }
        done += n
    }
    return true
}

/// The helper process's body.
struct AnonHolder {
    let pattern: ComparePattern
    let pages: Int

    func run() -> Never {
        let bytes = pages * 4096
        guard let base = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), base != MAP_FAILED else {
            fail("anon-hold: mmap \(bytes) bytes: \(String(cString: strerror(errno)))")
        }
        _ = madvise(base, bytes, 15)  // MADV_NOHUGEPAGE: 4 KiB pages, as ksmfs's blocks
        for i in 0..<pages { pattern.fill(base + i * 4096, page: i, of: pages) }
        if madvise(base, bytes, 12) != 0 {  // MADV_MERGEABLE
            fail("anon-hold: madvise(MADV_MERGEABLE): \(String(cString: strerror(errno)))")
        }
        if !writeLine(1, "ready \(getpid())") { exit(0) }
        var input = LineReader(fd: 0)
        while let line = input.next() {
            let parts = line.split(separator: " ")
            guard parts.first == "w", parts.count == 2, let i = Int(parts[1]), i >= 0, i < pages else {
                if !writeLine(1, "error \(line)") { exit(0) }
                continue
            }
            let p = base + i * 4096 + 2048
            let v = p.load(as: UInt8.self) &+ 1  // read first: the page is mapped either way
            var t0 = timespec(), t1 = timespec()
            clock_gettime(CLOCK_MONOTONIC, &t0)
            p.storeBytes(of: v, as: UInt8.self)
            clock_gettime(CLOCK_MONOTONIC, &t1)
            let ns = (Int64(t1.tv_sec) - Int64(t0.tv_sec)) * 1_000_000_000 + Int64(t1.tv_nsec) - Int64(t0.tv_nsec)
            if !writeLine(1, "\(ns)") { exit(0) }
        }
        exit(0)
    }
}

/// Starts this executable with `arguments`, its stdin and stdout on pipes: the pid, the pipe
/// to its stdin and a reader of its stdout.
func spawnHelper(_ arguments: [String]) -> (pid_t, Int32, LineReader) {
    let exe = selfExecutable()
    var input: [Int32] = [0, 0], output: [Int32] = [0, 0]
    guard pipe(&input) == 0, pipe(&output) == 0 else { fail("pipe failed") }
    for fd in input + output { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }  // dup2 clears it on 0 and 1
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, input[0], 0)
    posix_spawn_file_actions_adddup2(&actions, output[1], 1)
    var cargs: [UnsafeMutablePointer<CChar>?] = ([exe] + arguments).map { strdup($0) } + [nil]
    defer { for p in cargs { free(p) } }
    var child: pid_t = 0
    let rc = posix_spawn(&child, exe, &actions, nil, &cargs, environ)
    Glibc.close(input[0]); Glibc.close(output[1])
    if rc != 0 { fail("posix_spawn \(exe): \(String(cString: strerror(rc)))") }
    return (child, input[1], LineReader(fd: output[0]))
}

/// The parent's handle on a running helper.
final class AnonHolderProcess {
    let pid: pid_t
    private let toChild: Int32
    private var fromChild: LineReader

    init(pattern: ComparePattern, pages: Int) {
        let child: pid_t
        (child, toChild, fromChild) = spawnHelper(["anon-hold", "--pattern", pattern.rawValue, "--pages", "\(pages)"])
        pid = child
        kernelGuardHelperPid = child
        guard let ready = fromChild.next(), ready.hasPrefix("ready ") else {
            stop()
            fail("anon-hold did not start (pattern \(pattern.rawValue), \(pages) pages)")
        }
    }

    /// Stores one byte into page `i` in the helper; the store's latency in nanoseconds.
    func writeByte(page i: Int) -> Double {
        guard writeLine(toChild, "w \(i)"), let answer = fromChild.next(), let ns = Double(answer) else {
            fail("anon-hold (pid \(pid)) stopped answering")
        }
        return ns
    }

    /// Proportional set size of the helper (KSM pages count once, the zero page not at all).
    func pssKiB() -> Int { procKiB("/proc/\(pid)/smaps_rollup", "Pss:") }

    func stop() {
        Glibc.close(toChild)
        Glibc.close(fromChild.fd)
        kill(pid, SIGKILL)
        var st: Int32 = 0
        waitpid(pid, &st, 0)
        kernelGuardHelperPid = 0
    }
}

extension Bench {
    /// Hidden: the kernel side's memory holder, started by `compare`.
    struct AnonHold: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "anon-hold", abstract: "Helper of compare.", shouldDisplay: false)
        @Option var pattern: String
        @Option var pages: Int
        func run() {
            guard let p = ComparePattern(rawValue: pattern), pages > 0 else { fail("anon-hold: bad pattern or page count") }
            AnonHolder(pattern: p, pages: pages).run()
        }
    }
}
