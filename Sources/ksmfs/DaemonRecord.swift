// What a user finds after a daemon is gone: each running daemon keeps a small record (pid,
// start, log) in a runtime directory; a clean stop removes it, a fatal signal appends how it
// ended, and a record whose daemon is dead tells the next mount and `ksmfs status` that the
// files were lost and how (a crash by signal, the OOM killer as the kernel log says, or a
// kill). Also picks the default log file for a daemon without syslog.
import FUSE
import Glibc

struct DaemonRecord {
    /// $KSMFS_RUNTIME_DIR if set (tests), else /run/ksmfs as root, else $XDG_RUNTIME_DIR/ksmfs,
    /// else /tmp/ksmfs-UID.
    static var directory: String {
        if let d = getenv("KSMFS_RUNTIME_DIR"), d.pointee != 0 { return String(cString: d) }
        if getuid() == 0 { return "/run/ksmfs" }
        if let x = getenv("XDG_RUNTIME_DIR"), x.pointee != 0 { return String(cString: x) + "/ksmfs" }
        return "/tmp/ksmfs-\(getuid())"
    }

    /// A file name for a mountpoint: '/' as '-', '-' and '%' escaped (like systemd's units).
    static func name(for mountpoint: String) -> String {
        var out = ""
        for b in mountpoint.utf8.dropFirst(mountpoint.hasPrefix("/") ? 1 : 0) {
            switch b {
            case UInt8(ascii: "/"): out += "-"
            case UInt8(ascii: "-"), UInt8(ascii: "%"), UInt8(ascii: "\\"): out += "%" + String(b, radix: 16)
            case 0..<32, 127...: out += "%" + String(b, radix: 16)
            default: out.unicodeScalars.append(Unicode.Scalar(b))
            }
        }
        return out.isEmpty ? "root" : out
    }

    static func path(for mountpoint: String) -> String { directory + "/" + name(for: mountpoint) + ".state" }

    /// Where a daemonized ksmfs logs when there is no syslog socket and no `log=`: one file for
    /// every daemon, lines tagged with the pid as syslog's are.
    static var defaultLog: String {
        getuid() == 0 && getenv("KSMFS_RUNTIME_DIR") == nil ? "/var/log/ksmfs.log" : directory + "/ksmfs.log"
    }

    let path: String
    private let fd: Int32

    /// Writes the record of this daemon and arms the crash handler to append to it.
    init?(mountpoint: String, log: String) {
        mkdir(DaemonRecord.directory, 0o755)
        path = DaemonRecord.path(for: mountpoint)
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return nil }
        let text = "pid=\(getpid())\nstarted=\(time(nil))\nmountpoint=\(mountpoint)\nlog=\(log)\n"
        _ = text.withCString { Glibc.write(fd, $0, strlen($0)) }
        DaemonProcess.recordCrashes(to: fd)
    }

    /// A clean end: the record goes.
    func remove() {
        unlink(path)
        close(fd)
    }

    // MARK: reading

    struct Previous {
        let mountpoint: String
        let pid: Int32
        let started: Int
        let how: String
        let log: String
        var line: String {
            "the previous ksmfs on \(mountpoint) (pid \(pid), started \(DaemonRecord.date(started))) \(how); its files were lost" +
                (log.isEmpty ? "" : " (its log: \(log))")
        }
    }

    /// Records whose daemon is no longer running (for `mountpoint`, or all).
    static func dead(mountpoint: String? = nil) -> [Previous] {
        var paths: [String] = []
        if let mountpoint { paths = [path(for: mountpoint)] } else if let d = opendir(directory) {
            while let e = readdir(d) {
                let n = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if n.hasSuffix(".state") { paths.append(directory + "/" + n) }
            }
            closedir(d)
        }
        return paths.compactMap(previous)
    }

    private static func previous(_ path: String) -> Previous? {
        guard let f = fopen(path, "r") else { return nil }
        defer { fclose(f) }
        var fields: [String: String] = [:]
        var line: UnsafeMutablePointer<CChar>? = nil
        var cap = 0
        while getline(&line, &cap, f) > 0 {
            let s = String(decoding: UnsafeRawBufferPointer(start: line, count: strlen(line!)), as: UTF8.self)
            guard let eq = s.firstIndex(of: "=") else { continue }
            fields[String(s[..<eq])] = String(s[s.index(after: eq)...].filter { $0 != "\n" })
        }
        free(line)
        guard let pid = fields["pid"].flatMap({ Int32($0) }), let mnt = fields["mountpoint"] else { return nil }
        if alive(pid) { return nil }
        // A mountpoint that is gone (a temporary directory) has nobody to tell: forget it.
        var st = stat()
        if stat(mnt, &st) != 0 { unlink(path); return nil }
        let how: String
        if let ended = fields["ended"], ended.hasPrefix("signal ") {
            let sig = Int32(ended.dropFirst(7)) ?? 0
            how = "crashed (\(signalName(sig)))"
        } else if oomKilled(pid) {
            how = "was killed by the kernel's OOM killer"
        } else {
            how = "was killed (SIGKILL, or the machine stopped) before it could unmount"
        }
        return Previous(mountpoint: mnt, pid: pid, started: Int(fields["started"] ?? "") ?? 0, how: how, log: fields["log"] ?? "")
    }

    /// A running (not zombie) ksmfs process with this pid exists.
    static func alive(_ pid: Int32) -> Bool {
        guard let f = fopen("/proc/\(pid)/stat", "r") else { return false }
        defer { fclose(f) }
        var buf = [CChar](repeating: 0, count: 256)
        guard fgets(&buf, 256, f) != nil else { return false }
        let stat = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // "PID (comm) STATE ...": comm may hold spaces and parentheses, the state follows the last ")".
        guard let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")") else { return false }
        let comm = stat[stat.index(after: open)..<close]
        let state = stat[stat.index(after: close)...].drop { $0 == " " }.first
        return comm.hasPrefix("ksmfs") && state != "Z" && state != "X"
    }

    /// The kernel log says "Killed process PID" (readable by root; false when it cannot be read).
    static func oomKilled(_ pid: Int32) -> Bool {
        DaemonProcess.kernelLog()?.contains("Killed process \(pid) ") ?? false
    }

    static func signalName(_ sig: Int32) -> String {
        let names: [Int32: String] = [SIGSEGV: "SIGSEGV", SIGBUS: "SIGBUS", SIGILL: "SIGILL: a Swift runtime trap",
                                      SIGTRAP: "SIGTRAP: a Swift runtime trap", SIGFPE: "SIGFPE", SIGABRT: "SIGABRT",
                                      SIGTERM: "SIGTERM", SIGINT: "SIGINT", SIGHUP: "SIGHUP"]
        return names[sig] ?? "signal \(sig)"
    }

    static func date(_ t: Int) -> String {
        var tt = time_t(t)
        var tmv = tm()
        gmtime_r(&tt, &tmv)
        var buf = [CChar](repeating: 0, count: 32)
        strftime(&buf, 32, "%Y-%m-%d %H:%M:%S UTC", &tmv)
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
