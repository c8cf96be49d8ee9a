// How much page cache the kernel holds for ksmfs's files, measured: FUSE gives each inode its
// own page cache, which ksmfs cannot see from inside. A thread of its own (it serves no request
// and holds no lock a request needs: its opens come back to the daemon as OPEN requests) opens
// each file the kernel knows by its FUSE handle and asks cachestat(2). It runs when the metrics
// are read, at most every `interval` seconds, and the read waits for it (up to `waitLimit`):
// its descriptors are open on the mount, and `cat ksm/metrics; umount` must not find them
// still open (EBUSY). The metrics show its last result and its age.
// Its opens are invisible otherwise: they keep no mount busy and never start a shared page
// cache (ImmutableSharing.swift).
import FUSE
import Glibc
import KSM
import Synchronization

final class PageCacheProbe: @unchecked Sendable {
    struct Result {
        /// Pages cached for the files probed.
        var pages = 0
        var filesProbed = 0
        /// Files the kernel holds (with data): all are probed unless there are more than `maxFiles`.
        var candidates = 0
        var seconds = 0.0
        var finishedAtUnix = 0.0
        /// Why nothing could be measured (e.g. not root).
        var problem: String?
    }

    /// The largest files first when the kernel holds more than this many (an open and a close
    /// each, about 50 µs of the daemon's time: 0.1 s a probe at most).
    static let maxFiles = 2_000
    static let interval = 30.0
    /// How long a metrics read waits for a probe it started (the probe's opens are served by
    /// other worker threads; past this, the read answers with the previous result).
    static let waitLimit = 2.0

    private let lock = Mutex()
    private var last: Result?
    private var running = false
    private var startedAt = -Double.infinity

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// The last result (nil before the first), starting a new probe if it is due.
    func sample(_ fs: MemoryFileSystem) -> Result? {
        let start = lock.withLock { () -> Bool in
            guard !running, PageCacheProbe.now() - startedAt >= PageCacheProbe.interval else { return false }
            running = true
            startedAt = PageCacheProbe.now()
            return true
        }
        if start { spawn(fs) }
        return lock.withLock {
            let deadline = PageCacheProbe.now() + PageCacheProbe.waitLimit
            while start && running {
                let left = deadline - PageCacheProbe.now()
                if left <= 0 { break }
                lock.wait(nanoseconds: UInt64(left * 1e9))
            }
            return last
        }
    }

    private final class Context { let probe: PageCacheProbe; let fs: MemoryFileSystem
        init(_ p: PageCacheProbe, _ f: MemoryFileSystem) { probe = p; fs = f } }

    private func spawn(_ fs: MemoryFileSystem) {
        var thread = pthread_t()
        let ctx = Unmanaged.passRetained(Context(self, fs)).toOpaque()
        let rc = pthread_create(&thread, nil, { arg in
            let ctx = Unmanaged<Context>.fromOpaque(arg!).takeRetainedValue()
            ctx.probe.run(ctx.fs)
            return nil
        }, ctx)
        if rc == 0 { pthread_detach(thread) } else {
            Unmanaged<Context>.fromOpaque(ctx).release()
            lock.withLock { running = false; lock.broadcast() }
        }
    }

    private func run(_ fs: MemoryFileSystem) {
        // Its requests are told by their pid (a thread id in FUSE): counted apart, and opened
        // as the probe's (MemoryFileSystem.isProbe).
        RequestStats.countAsOwn(thread: KernelCache.threadID())
        defer { RequestStats.countAsOwn(thread: 0) }
        let t0 = PageCacheProbe.now()
        var r = Result()
        var files = fs.filesKernelHolds()
        r.candidates = files.count
        if files.count > PageCacheProbe.maxFiles {
            files.sort { $0.pages > $1.pages }
            files.removeLast(files.count - PageCacheProbe.maxFiles)
        }
        // Any file of the mount names it to open_by_handle_at (an O_PATH descriptor is refused
        // here); a /ksm file's open keeps nothing busy.
        let mountFD = open(fs.options.mountpoint + "/ksm/run", O_RDONLY | O_CLOEXEC)
        if mountFD < 0 {
            r.problem = "cannot open the mountpoint: \(String(cString: strerror(errno)))"
        } else {
            for f in files {
                switch KernelCache.cachedPages(mountFD: mountFD, ino: f.ino) {
                case .success(let n): r.pages += n; r.filesProbed += 1
                case .failure(let e) where e.rawValue == EPERM:
                    r.problem = "opening files by handle needs CAP_DAC_READ_SEARCH (a daemon run as root)"
                case .failure: continue   // gone meanwhile, or open elsewhere in a way that refuses it
                }
                if r.problem != nil { break }
            }
            close(mountFD)
        }
        r.seconds = PageCacheProbe.now() - t0
        var wall = timespec()
        clock_gettime(CLOCK_REALTIME, &wall)
        r.finishedAtUnix = Double(wall.tv_sec) + Double(wall.tv_nsec / 1_000_000) / 1000
        lock.withLock { last = r; running = false; lock.broadcast() }
    }
}

extension MemoryFileSystem {
    /// Regular files with data that the kernel holds (a lookup reference), and their pages.
    func filesKernelHolds() -> [(ino: UInt64, pages: Int)] {
        // Collected under the table's lock, measured outside it (creates wait for that lock).
        let held = inodesKernelHolds()
        var out: [(ino: UInt64, pages: Int)] = []
        out.reserveCapacity(held.count)
        for inode in held {
            guard let f = inode.file else { continue }
            let pages = f.dataPages
            if pages > 0 { out.append((inode.ino, pages)) }
        }
        return out
    }

    /// Whether request `r` comes from the page-cache probe.
    func isProbe(_ r: Request) -> Bool { RequestStats.isOwn(pid: r.pid) }
}
