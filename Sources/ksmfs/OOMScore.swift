// The daemon holds every file of its mount: if the OOM killer picks it, they are all gone.
// So it asks for oom_score_adj -1000 (never chosen) by default. Without CAP_SYS_RESOURCE a
// process may only raise its value (down to the last one a privileged process set), so an
// unprivileged daemon takes the lowest it is allowed and says so in one line.
import Glibc

enum OOMScore {
    static let path = "/proc/self/oom_score_adj"

    static func current() -> Int? {
        guard let f = fopen(path, "r") else { return nil }
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 32)
        guard fgets(&line, 32, f) != nil else { return nil }
        return Int(String(decoding: line.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }

    private static func set(_ value: Int) -> Bool {
        let fd = open(path, O_WRONLY)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let text = "\(value)\n"
        return text.withCString { Glibc.write(fd, $0, strlen($0)) } > 0
    }

    /// Sets `wanted`, or the lowest value at or above it the kernel allows. Returns the value
    /// in force and whether it is the one wanted.
    static func apply(_ wanted: Int) -> (value: Int, exact: Bool) {
        if set(wanted) { return (wanted, true) }
        let now = current() ?? 0
        guard wanted < now else { return (now, now == wanted) }
        // The allowed floor lies in (wanted, now]: find it by bisection (at most 11 writes).
        var lo = wanted, hi = now        // lo refused, hi allowed
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2
            if set(mid) { hi = mid } else { lo = mid }
        }
        _ = set(hi)
        return (hi, false)
    }
}
