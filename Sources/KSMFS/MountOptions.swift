// The daemon's `-o` options: ksmfs's own (size, nr_inodes, mode, uid, gid, merge,
// writeback) parsed into FileSystemOptions, and the FUSE/kernel ones passed to libfuse.
// Every bad value gets a one-line reason; nothing is mounted then.
import Glibc

public struct MountOptions {
    public var filesystem: FileSystemOptions
    /// Options for libfuse (`-o a,b=c`).
    public var fuseOptions: [String]
    /// Where a daemonized ksmfs logs (`log=`; default syslog) and writes its pid (`pidfile=`).
    public var logFile: String?
    public var pidFile: String?
    /// The kernel's read-ahead for the mount in bytes as `readahead=` gave it (0 keeps the
    /// kernel's 128 KiB); nil when not given (`defaultReadahead` then, and a failure to set it
    /// is not worth a warning).
    public var readahead: Int?
    /// The daemon's OOM score adjustment (`oom_score_adj=`): -1000 by default, so the OOM
    /// killer never picks the process that holds every file of the mount.
    public var oomScoreAdj = -1000
    /// 1 MiB: a cold sequential read then reaches the daemon as 1 MiB requests (max_write's
    /// size) instead of 128 KiB ones. Measured with dd after POSIX_FADV_DONTNEED, 7
    /// alternating runs against tmpfs: 1 MiB reads 0.26-0.28x -> 0.35-0.36x tmpfs (medians),
    /// 4 KiB reads 0.41-0.54x -> 0.56-0.57x; 512 KiB about the same, 2 and 4 MiB slower.
    public static let defaultReadahead = 1 << 20
    public static let maxReadahead = 1 << 30

    public struct Invalid: Error, CustomStringConvertible {
        public let description: String
    }

    /// Options mount(8) and mount.fuse3 pass along that mean nothing more here.
    static let ignored: Set<String> = ["defaults", "noauto", "auto", "user", "users", "nouser", "nofail", "_netdev", "x-systemd.automount"]
    static let passThrough: Set<String> = ["allow_other", "allow_root", "ro", "rw", "suid", "nosuid", "dev", "nodev",
                                           "exec", "noexec", "atime", "noatime", "relatime", "strictatime", "sync",
                                           "async", "dirsync", "auto_unmount", "default_permissions", "nonempty"]
    static let passThroughValued: Set<String> = ["max_read", "fsname", "subtype", "context", "fscontext",
                                                 "defcontext", "rootcontext"]

    /// Whether `word` is an option a remount leaves as it was at mount: one that mounting
    /// accepts, or one the kernel shows for a FUSE mount (mount(8) passes those along).
    public static func unchangedByRemount(_ word: String) -> Bool {
        let key = String(word.split(separator: "=", maxSplits: 1)[0])
        if ["user_id", "group_id", "rootmode", "fd", "blksize"].contains(key) { return true }
        return (try? parse([word], asRoot: false)) != nil
    }

    /// Total RAM in bytes.
    public static var physicalMemory: Int {
        Int(sysconf(Int32(_SC_PHYS_PAGES))) * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Parses `-o` option words (already split on commas).
    /// `asRoot`: mounted by root (shared with other users unless `private`).
    public static func parse(_ words: [String], asRoot: Bool = geteuid() == 0) throws(Invalid) -> MountOptions {
        let ram = physicalMemory
        var fs = FileSystemOptions(capacityBytes: ram / 2, maxInodes: max(1024, ram / 4096 / 2))
        var fuse: [String] = []
        var hasFsname = false, hasSubtype = false
        var logFile: String?, pidFile: String?
        var readahead: Int?
        var oomScoreAdj = -1000
        var writebackGiven = false
        var isPrivate = false, othersGiven = false
        for word in words where !word.isEmpty {
            let parts = word.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = String(parts[0])
            let value = parts.count > 1 ? String(parts[1]) : nil
            func need() throws(Invalid) -> String {
                guard let value, !value.isEmpty else { throw Invalid(description: "option '\(key)' needs a value") }
                return value
            }
            switch key {
            case "size":
                let v = try need()
                guard let bytes = parseSize(v, ram: ram) else {
                    throw Invalid(description: "bad value for size: '\(v)' (bytes, with k/m/g/t or %, e.g. size=4g or size=25%)")
                }
                let limit = (1 << 32 - 8192) * 4096
                guard bytes <= limit else { throw Invalid(description: "size '\(v)' is larger than ksmfs supports (16 TiB)") }
                fs.capacityBytes = bytes == 0 ? ram : max(4096, bytes)
            case "nr_inodes":
                let v = try need()
                guard let n = parseSize(v, ram: nil), n >= 0 else {
                    throw Invalid(description: "bad value for nr_inodes: '\(v)' (a count, with k/m/g)")
                }
                fs.maxInodes = n == 0 ? Int.max : max(2, n)
            case "mode":
                let v = try need()
                guard let m = UInt32(v, radix: 8), m <= 0o7777 else { throw Invalid(description: "bad value for mode: '\(v)' (octal, e.g. 1777)") }
                fs.rootMode = m
            case "uid":
                let v = try need()
                guard let u = UInt32(v) else { throw Invalid(description: "bad value for uid: '\(v)'") }
                fs.rootUID = u
            case "gid":
                let v = try need()
                guard let g = UInt32(v) else { throw Invalid(description: "bad value for gid: '\(v)'") }
                fs.rootGID = g
            case "merge":
                let v = try need()
                switch v {
                case "all": fs.mergeByDefault = true
                case "none": fs.mergeByDefault = false
                default: throw Invalid(description: "bad value for merge: '\(v)' (all or none)")
                }
            case "readahead":
                let v = try need()
                guard let bytes = parseSize(v, ram: nil), bytes >= 0 else {
                    throw Invalid(description: "bad value for readahead: '\(v)' (bytes, with k/m/g, e.g. readahead=1m; 0 keeps the kernel's)")
                }
                guard bytes <= maxReadahead else { throw Invalid(description: "readahead '\(v)' is larger than 1g") }
                readahead = (bytes + 4095) & ~4095     // whole pages: 1..4095 must not mean 0
            case "oom_score_adj":
                let v = try need()
                guard let n = Int(v), (-1000...1000).contains(n) else {
                    throw Invalid(description: "bad value for oom_score_adj: '\(v)' (an integer from -1000 to 1000)")
                }
                oomScoreAdj = n
            case "log": logFile = try need()
            case "pidfile": pidFile = try need()
            case "writeback_cache": fs.writebackCache = true; writebackGiven = true
            case "no_writeback_cache": fs.writebackCache = false
            case "private": isPrivate = true
            case "share_immutable": fs.shareImmutable = true
            case "no_share_immutable": fs.shareImmutable = false
            default:
                if ignored.contains(key) || key.hasPrefix("x-") || key.hasPrefix("comment=") { continue }
                if passThrough.contains(key) && value == nil {
                    if key == "ro" { fs.readOnly = true }
                    if key == "rw" { fs.readOnly = false }
                    if key == "allow_other" { fs.allowOther = true }
                    if key == "allow_other" || key == "allow_root" { othersGiven = true }
                    if key != "auto_unmount" && key != "default_permissions" { fuse.append(key) }
                } else if passThroughValued.contains(key), value != nil {
                    if key == "fsname" { hasFsname = true }
                    if key == "subtype" { hasSubtype = true }
                    fuse.append(word)
                } else {
                    throw Invalid(description: "unknown option '\(word)' (see ksmfs --help)")
                }
            }
        }
        if fs.shareImmutable && writebackGiven && fs.writebackCache {
            throw Invalid(description: "share_immutable and writeback_cache exclude each other (the kernel passes files through only on a connection without the writeback cache)")
        }
        if isPrivate && othersGiven {
            throw Invalid(description: "private and allow_other/allow_root exclude each other")
        }
        // A root mount is shared like tmpfs: everyone its modes allow may use it (the kernel
        // checks every access, default_permissions; files of different owners never merge
        // unless merge_across_owners is 1). `private` keeps it to its owner, as FUSE does.
        if asRoot && !isPrivate && !othersGiven {
            fuse.append("allow_other")
            fs.allowOther = true
        }
        fuse += ["default_permissions", "auto_unmount"]
        if !hasFsname { fuse.append("fsname=ksmfs") }
        if !hasSubtype { fuse.append("subtype=ksmfs") }
        return MountOptions(filesystem: fs, fuseOptions: fuse, logFile: logFile, pidFile: pidFile,
                            readahead: readahead, oomScoreAdj: oomScoreAdj)
    }

    /// "4096", "64k", "2g", "25%" -> bytes (binary units); nil when malformed or overflowing.
    static func parseSize(_ s: String, ram: Int?) -> Int? {
        guard let last = s.last else { return nil }
        var digits = s
        var mult = 1
        if last == "%" {
            guard let ram else { return nil }
            digits.removeLast()
            guard let pct = Int(digits), pct >= 0, pct <= 100 else { return nil }
            return ram / 100 * pct
        }
        switch last {
        case "k", "K": mult = 1 << 10
        case "m", "M": mult = 1 << 20
        case "g", "G": mult = 1 << 30
        case "t", "T": mult = 1 << 40
        default: break
        }
        if mult != 1 { digits.removeLast() }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(digits) else { return nil }
        let (r, o) = n.multipliedReportingOverflow(by: mult)
        return o ? nil : r
    }
}
