// Small lock handles over pthreads, fenced so the unsafe storage never escapes. The engine
// and the filesystem use these directly; none of them is re-entrant: never take one you hold.
import Glibc

/// A reader-writer lock (`pthread_rwlock_t`), writer-preferring.
public final class ReadWriteLock: @unchecked Sendable {
    private let raw: UnsafeMutablePointer<pthread_rwlock_t>

    public init() {
        raw = .allocate(capacity: 1)
        var attr = pthread_rwlockattr_t()
        pthread_rwlockattr_init(&attr)
        pthread_rwlockattr_setkind_np(&attr, Int32(PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP))
        pthread_rwlock_init(raw, &attr)
        pthread_rwlockattr_destroy(&attr)
    }
    deinit { pthread_rwlock_destroy(raw); raw.deallocate() }

    @inline(__always) public func lockShared() { pthread_rwlock_rdlock(raw) }
    @inline(__always) public func lockExclusive() { pthread_rwlock_wrlock(raw) }
    @inline(__always) public func unlock() { pthread_rwlock_unlock(raw) }

    @inline(__always) public func withShared<R>(_ body: () throws -> R) rethrows -> R {
        lockShared(); defer { unlock() }
        return try body()
    }
    @inline(__always) public func withExclusive<R>(_ body: () throws -> R) rethrows -> R {
        lockExclusive(); defer { unlock() }
        return try body()
    }
}

/// A plain mutex (`pthread_mutex_t`), with a condition variable for waiting on it unless
/// made with `waitable: false` (an inode's lock: one per file, so no condition variable).
public final class Mutex: @unchecked Sendable {
    private let raw: UnsafeMutablePointer<pthread_mutex_t>
    private let cond: UnsafeMutablePointer<pthread_cond_t>?

    public init(waitable: Bool = true) {
        raw = .allocate(capacity: 1)
        pthread_mutex_init(raw, nil)
        guard waitable else { cond = nil; return }
        let c = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(c, &attr)
        pthread_condattr_destroy(&attr)
        cond = c
    }
    deinit {
        if let cond { pthread_cond_destroy(cond); cond.deallocate() }
        pthread_mutex_destroy(raw); raw.deallocate()
    }

    @inline(__always) public func lock() { pthread_mutex_lock(raw) }
    @inline(__always) public func unlock() { pthread_mutex_unlock(raw) }
    @inline(__always) public func withLock<R>(_ body: () throws -> R) rethrows -> R {
        lock(); defer { unlock() }
        return try body()
    }

    /// Waits (lock held) until signalled or `nanoseconds` pass; nil waits without limit.
    public func wait(nanoseconds: UInt64?) {
        guard let cond else { preconditionFailure("wait on a Mutex made with waitable: false") }
        guard let ns = nanoseconds else { pthread_cond_wait(cond, raw); return }
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let total = UInt64(now.tv_nsec) &+ ns % 1_000_000_000
        var deadline = timespec()
        let secs = ns / 1_000_000_000 + total / 1_000_000_000
        deadline.tv_sec = now.tv_sec &+ Int(min(secs, UInt64(Int32.max)))
        deadline.tv_nsec = Int(total % 1_000_000_000)
        pthread_cond_timedwait(cond, raw, &deadline)
    }
    public func broadcast() {
        guard let cond else { preconditionFailure("broadcast on a Mutex made with waitable: false") }
        pthread_cond_broadcast(cond)
    }
}
