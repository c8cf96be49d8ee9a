// What the kernel asks of the filesystem: requests per operation since the mount, and for the
// ones answered, how long each took from its read off /dev/fuse to the write of its reply
// (counted in the session's I/O hooks, so every request is seen, whichever handler runs it).
import CFuse3

public struct RequestStats: Sendable {
    /// One operation's figures.
    public struct Operation: Sendable {
        public let name: String
        public let count: UInt64
        /// Answered requests and their total time in seconds.
        public let answered: UInt64
        public let seconds: Double
        /// Answered requests per latency bucket: `buckets[b]` took under `bucketBounds[b]`
        /// seconds and at least the bound before it; the last bucket has no upper bound.
        public let buckets: [UInt64]
    }

    public static let bucketCount = Int(CFUSE_BUCKETS)
    /// Upper bounds of all buckets but the last, in seconds (1 µs, 2 µs, ... 16.4 ms).
    public static let bucketBounds: [Double] = (0..<(bucketCount - 1)).map { Double(1 << $0) / 1e6 }

    /// Operations with at least one request, by opcode.
    public let operations: [Operation]

    public var total: UInt64 { operations.reduce(0) { $0 + $1.count } }

    /// Requests the daemon caused itself (its page-cache probe), left out of the figures.
    public static var ownRequests: UInt64 { cfuse_own_request_count() }
    /// Requests from thread `tid` are the daemon's own from now on (0: none).
    public static func countAsOwn(thread tid: Int32) { cfuse_set_own_thread(tid) }
    /// Whether a request from `pid` (a thread id) is the daemon's own.
    public static func isOwn(pid: pid_t) -> Bool { pid != 0 && cfuse_own_thread() == pid }
    /// A RELEASE that was the daemon's own (it carries no caller to tell by).
    public static func releaseWasOwn() { cfuse_reattribute_request(18) }

    public static func now() -> RequestStats {
        let n = Int(CFUSE_OPCODES), b = bucketCount
        var counts = [UInt64](repeating: 0, count: n), sums = [UInt64](repeating: 0, count: n)
        var buckets = [UInt64](repeating: 0, count: n * b)
        cfuse_request_stats(&counts, &sums, &buckets)
        var ops: [Operation] = []
        for op in 0..<n where counts[op] > 0 {
            let mine = Array(buckets[op * b ..< (op + 1) * b])
            ops.append(Operation(name: name(of: op), count: counts[op], answered: mine.reduce(0, +),
                                 seconds: Double(sums[op]) / 1e9, buckets: mine))
        }
        return RequestStats(operations: ops)
    }

    /// The kernel's name of an opcode, in lower case (fuse_kernel.h), or "other".
    public static func name(of opcode: Int) -> String {
        let names: [Int: String] = [
            1: "lookup", 2: "forget", 3: "getattr", 4: "setattr", 5: "readlink", 6: "symlink", 8: "mknod",
            9: "mkdir", 10: "unlink", 11: "rmdir", 12: "rename", 13: "link", 14: "open", 15: "read",
            16: "write", 17: "statfs", 18: "release", 20: "fsync", 21: "setxattr", 22: "getxattr",
            23: "listxattr", 24: "removexattr", 25: "flush", 26: "init", 27: "opendir", 28: "readdir",
            29: "releasedir", 30: "fsyncdir", 31: "getlk", 32: "setlk", 33: "setlkw", 34: "access",
            35: "create", 36: "interrupt", 37: "bmap", 38: "destroy", 39: "ioctl", 40: "poll",
            41: "notify_reply", 42: "batch_forget", 43: "fallocate", 44: "readdirplus", 45: "rename2",
            46: "lseek", 47: "copy_file_range", 48: "setupmapping", 49: "removemapping", 50: "syncfs",
            51: "tmpfile", 52: "statx",
        ]
        return names[opcode] ?? "other"
    }
}
