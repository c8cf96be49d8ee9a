// Injected failures for the arena, so tests can drive what a starved machine does: every Nth
// block allocation refused (as if full), every Nth MADV_POPULATE_WRITE failing with ENOMEM (as
// if the memory cgroup had nothing left), every Nth MADV_DONTNEED failing (pages then zeroed by
// hand). Set from the daemon's KSMFS_FAULTS environment variable, e.g.
// `KSMFS_FAULTS=allocate:7,populate:5,release:3`; off (all zero) otherwise.
import Synchronization

public final class ArenaFaults: Sendable {
    private let allocateEvery = Atomic<Int>(0), populateEvery = Atomic<Int>(0), releaseEvery = Atomic<Int>(0)
    private let allocations = Atomic<Int>(0), populates = Atomic<Int>(0), releases = Atomic<Int>(0)
    /// Failures injected so far.
    public let injected = Atomic<Int>(0)

    public init() {}

    public struct Invalid: Error, CustomStringConvertible { public let description: String }

    /// Parses "allocate:N,populate:N,release:N" (any subset; N >= 1; 0 turns one off).
    public func configure(_ spec: String) throws(Invalid) {
        for item in spec.split(separator: ",") {
            let kv = item.split(separator: ":")
            guard kv.count == 2, let n = Int(kv[1]), n >= 0 else { throw Invalid(description: "bad KSMFS_FAULTS item '\(item)' (want allocate:N, populate:N or release:N)") }
            switch kv[0] {
            case "allocate": allocateEvery.store(n, ordering: .relaxed)
            case "populate": populateEvery.store(n, ordering: .relaxed)
            case "release": releaseEvery.store(n, ordering: .relaxed)
            default: throw Invalid(description: "unknown KSMFS_FAULTS item '\(kv[0])' (allocate, populate, release)")
            }
        }
    }

    @inline(__always) private func due(_ every: borrowing Atomic<Int>, _ count: borrowing Atomic<Int>) -> Bool {
        let n = every.load(ordering: .relaxed)
        guard n > 0 else { return false }
        guard count.wrappingAdd(1, ordering: .relaxed).newValue % n == 0 else { return false }
        injected.add(1, ordering: .relaxed)
        return true
    }

    @inline(__always) func allocationFails() -> Bool { due(allocateEvery, allocations) }
    @inline(__always) func populateFails() -> Bool { due(populateEvery, populates) }
    @inline(__always) func releaseFails() -> Bool { due(releaseEvery, releases) }
}
