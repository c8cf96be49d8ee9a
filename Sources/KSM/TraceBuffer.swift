// Engine events for <mnt>/ksm/trace, named after the kernel's KSM tracepoints
// (ksm_start_scan, ksm_stop_scan, ksm_enter, ksm_exit, ksm_merge_one_page,
// ksm_merge_with_ksm_page, ksm_remove_ksm_page, ksm_advisor). Nothing is formatted or stored
// unless a reader is attached: the scanner pays one atomic load per event site otherwise.
import CKSMSupport
import Glibc

public final class TraceBuffer: @unchecked Sendable {
    static let capacity = 65_536

    private let mutex = Mutex()
    private let readersCell: UnsafeMutablePointer<UInt32>
    private var lines: [String] = []
    private var head = 0            // index of the oldest line in `lines`
    private var firstSeq: UInt64 = 0  // sequence number of lines[head]
    private var nextSeq: UInt64 = 0
    private var cursors: [UInt64: UInt64] = [:]   // reader id -> next sequence to read
    private var nextReader: UInt64 = 1
    private let epoch: timespec

    init() {
        readersCell = .allocate(capacity: 1)
        readersCell.initialize(to: 0)
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        epoch = t
    }
    deinit { readersCell.deallocate() }

    /// Whether anyone reads the trace (the only check on the hot path).
    @inline(__always) public var enabled: Bool { ksm_atomic_load32(readersCell) != 0 }

    /// Adds an event line (call only when `enabled`; the line gets a timestamp).
    public func emit(_ event: String, _ fields: String) {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        let us = (Int64(t.tv_sec) - Int64(epoch.tv_sec)) * 1_000_000 + (Int64(t.tv_nsec) - Int64(epoch.tv_nsec)) / 1000
        let line = "\(us / 1_000_000).\(String(us % 1_000_000).leftPadded(6)) \(event): \(fields)\n"
        mutex.withLock {
            if lines.count < TraceBuffer.capacity {
                lines.append(line)
            } else {
                lines[head] = line
                head = (head + 1) % TraceBuffer.capacity
                firstSeq += 1
            }
            nextSeq += 1
            mutex.broadcast()
        }
    }

    /// Attaches a reader: it sees events from now on. Returns its id.
    public func attach() -> UInt64 {
        mutex.withLock {
            let id = nextReader
            nextReader += 1
            cursors[id] = nextSeq
            _ = ksm_atomic_add32(readersCell, 1)
            return id
        }
    }

    public func detach(_ id: UInt64) {
        mutex.withLock {
            if cursors.removeValue(forKey: id) != nil { _ = ksm_atomic_sub32(readersCell, 1) }
            if cursors.isEmpty { lines.removeAll(); head = 0; firstSeq = nextSeq }
        }
    }

    /// Up to `max` bytes of whole lines for reader `id`, waiting at most `timeoutMs` for the
    /// first one; empty if none came. Lines lost to the ring's overflow are reported once.
    public func read(_ id: UInt64, max: Int, timeoutMs: Int) -> [UInt8] {
        mutex.lock()
        defer { mutex.unlock() }
        guard var cursor = cursors[id] else { return [] }
        if cursor == nextSeq && timeoutMs > 0 { mutex.wait(nanoseconds: UInt64(timeoutMs) * 1_000_000) }
        var out: [UInt8] = []
        if cursor < firstSeq {
            out += Array("# \(firstSeq - cursor) events lost (reader too slow)\n".utf8)
            cursor = firstSeq
        }
        while cursor < nextSeq {
            let idx = (head + Int(cursor - firstSeq)) % TraceBuffer.capacity
            let bytes = Array(lines[idx].utf8)
            if !out.isEmpty && out.count + bytes.count > max { break }
            out += bytes
            cursor += 1
        }
        cursors[id] = cursor
        return out
    }
}

extension String {
    func leftPadded(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}
