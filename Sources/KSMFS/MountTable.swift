// Reads /proc/mounts to find ksmfs mounts (for "already mounted" and `ksmfs status`), and
// sets a mount's read-ahead through its backing device in sysfs.
import Glibc

public enum MountTable {
    /// Mountpoints of fuse.ksmfs filesystems, in /proc/mounts order.
    public static func ksmfsMounts() -> [String] {
        lines("/proc/mounts").filter { $0.count >= 3 && $0[2] == "fuse.ksmfs" }.map { unescape(String($0[1])) }
    }

    /// The space-separated fields of each line of `path` (empty when it cannot be read).
    private static func lines(_ path: String) -> [[Substring]] {
        guard let f = fopen(path, "r") else { return [] }
        defer { fclose(f) }
        var result: [[Substring]] = []
        var line: UnsafeMutablePointer<CChar>? = nil
        var cap = 0
        while getline(&line, &cap, f) > 0 { result.append(String(cString: line!).split(separator: " ")) }
        free(line)
        return result
    }

    public static func isKSMFSMount(_ path: String) -> Bool { ksmfsMounts().contains(path) }

    /// The device ("major:minor") of the topmost mount at `path`, from /proc/self/mountinfo
    /// (read without touching the filesystem, which may not answer yet).
    public static func device(of path: String) -> String? {
        lines("/proc/self/mountinfo").last { $0.count >= 5 && unescape(String($0[4])) == path }.map { String($0[2]) }
    }

    /// Sets the kernel's read-ahead of the mount at `path` (its backing device's
    /// read_ahead_kb in sysfs; root only). Returns nil on success, else why not.
    public static func setReadahead(bytes: Int, of path: String) -> String? {
        writeBDI("read_ahead_kb", "\(bytes >> 10)", of: path)
    }

    /// Caps the kernel's dirty page cache for the mount at `path` (the bdi's max_bytes, Linux
    /// 6.2+; root only). Returns nil on success, else why not.
    public static func setDirtyLimit(bytes: Int, of path: String) -> String? {
        writeBDI("max_bytes", "\(bytes)", of: path)
    }

    /// The kernel's dirty limit for the mount at `path` in bytes (readable by anyone).
    public static func dirtyLimit(of path: String) -> Int? {
        guard let dev = device(of: path) else { return nil }
        return lines("/sys/class/bdi/\(dev)/max_bytes").first.flatMap { $0.first.flatMap { Int(String($0.filter(\.isNumber))) } }
    }

    private static func writeBDI(_ name: String, _ value: String, of path: String) -> String? {
        guard let dev = device(of: path) else { return "\(path) is not in /proc/self/mountinfo" }
        let file = "/sys/class/bdi/\(dev)/\(name)"
        let fd = open(file, O_WRONLY)
        guard fd >= 0 else { return "\(file): \(String(cString: strerror(errno)))" }
        defer { close(fd) }
        let text = "\(value)\n"
        let n = text.withCString { Glibc.write(fd, $0, strlen($0)) }
        return n < 0 ? "\(file): \(String(cString: strerror(errno)))" : nil
    }

    /// /proc/mounts escapes space, tab, newline and backslash as octal.
    static func unescape(_ s: String) -> String {
        var out: [UInt8] = []
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "\\"), i + 3 < b.count,
               let v = UInt8(String(decoding: b[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                out.append(v); i += 4
            } else { out.append(b[i]); i += 1 }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
