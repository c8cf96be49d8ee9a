// Process-level facts a FUSE daemon needs beyond its session: a record of a fatal signal
// written from the signal handler itself, and the kernel log (to learn of an OOM kill).
import CFuse3

public enum DaemonProcess {
    /// From now on a fatal signal (SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE, SIGABRT) appends
    /// "ended=signal N" to `fd` before the previous handler (the Swift backtracer) runs.
    public static func recordCrashes(to fd: Int32) { _ = cfuse_record_crashes(fd) }

    /// The kernel's log buffer (klogctl; root or CAP_SYSLOG), or nil.
    public static func kernelLog() -> String? {
        let size = cfuse_klogctl(10 /* SYSLOG_ACTION_SIZE_BUFFER */, nil, 0)
        guard size > 0 else { return nil }
        var buf = [CChar](repeating: 0, count: Int(size))
        let n = cfuse_klogctl(3 /* SYSLOG_ACTION_READ_ALL */, &buf, size)
        guard n > 0 else { return nil }
        return String(decoding: buf.prefix(Int(n)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
