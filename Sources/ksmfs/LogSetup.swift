// Where the daemon's log lines go: stderr in the foreground, a file (`-o log=`), or syslog
// (the journal) when daemonized, which is what admins look at first.
import Glibc
import Logging

enum LogSetup {
    static func bootstrap(level: Logger.Level, file: String?, syslog toSyslog: Bool) {
        if toSyslog { openlog("ksmfs", LOG_PID, LOG_DAEMON) }
        var fd: Int32 = 2
        if let file {
            fd = open(file, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            if fd < 0 { fd = 2 }
        }
        let target = fd
        LoggingSystem.bootstrap { label in
            var h: LogHandler = toSyslog ? SyslogHandler() : FileLogHandler(fd: target)
            h.logLevel = level
            return h
        }
    }
}

struct FileLogHandler: LogHandler {
    let fd: Int32
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let level = event.level, message = event.message
        var t = time(nil)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        var buf = [CChar](repeating: 0, count: 32)
        strftime(&buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tmv)
        var bytes = Array("\(String(decodingCString: buf)) \(level) ksmfs[\(getpid())]: \(message)\n".utf8)
        _ = Glibc.write(fd, &bytes, bytes.count)
    }
}

struct SyslogHandler: LogHandler {
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let message = event.message
        let priority: Int32
        switch event.level {
        case .trace, .debug: priority = LOG_DEBUG
        case .info, .notice: priority = LOG_INFO
        case .warning: priority = LOG_WARNING
        case .error: priority = LOG_ERR
        case .critical: priority = LOG_CRIT
        }
        let text = "\(message)"
        text.withCString { msg in withVaList([msg]) { vsyslog(priority, "%s", $0) } }
    }
}

extension String {
    /// The text of a NUL-terminated C buffer (up to the first NUL).
    init(decodingCString buffer: [CChar]) {
        self = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
