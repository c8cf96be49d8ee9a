// Helpers for engine tests: a deterministic PRNG, page patterns, and an engine with files
// driven step by step (no FUSE, no scanner thread).
import Glibc
@testable import KSM

struct TestRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func shuffle(_ a: inout [Int]) {
        var i = a.count - 1
        while i > 0 { a.swapAt(i, below(i + 1)); i -= 1 }
    }
}

/// A 4 KiB page whose bytes are all derived from `tag` (distinct tags, distinct pages).
func page(_ tag: UInt64) -> [UInt8] {
    var rng = TestRandom(seed: tag &* 0x1000_0000_01B3 &+ 7)
    var out = [UInt8](repeating: 0, count: 4096)
    var i = 0
    while i < 4096 {
        var v = rng.next()
        for _ in 0..<8 { out[i] = UInt8(truncatingIfNeeded: v); v >>= 8; i += 1 }
    }
    return out
}

final class EngineHarness {
    let arena: BlockArena
    let engine: KSMEngine
    var files: [MergeableFile] = []

    init(capacityBlocks: Int = 1 << 18, configure: (inout Tunables) -> Void = { _ in }) {
        arena = BlockArena(capacityBlocks: capacityBlocks)
        engine = KSMEngine(arena: arena)
        engine.updateTunables { t in
            t.run = 1
            t.pagesToScan = 10_000
            t.sleepMillisecs = 0
            configure(&t)
        }
    }

    @discardableResult
    func newFile(owner: UInt32 = 0) -> MergeableFile {
        let f = MergeableFile(arena: arena, stats: engine.stats)
        f.owner = owner
        engine.register(f, mergeable: true)
        files.append(f)
        return f
    }

    func write(_ f: MergeableFile, page index: Int, _ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { try! f.write($0, at: Int64(index) * 4096) }
    }

    func read(_ f: MergeableFile, page index: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0xAA, count: 4096)
        let n = out.withUnsafeMutableBytes { f.read(into: $0, at: Int64(index) * 4096) }
        return Array(out.prefix(n))
    }

    /// Full passes until the counters stop changing (at most `limit` passes).
    func converge(limit: Int = 20) {
        var last: (Int64, Int64, Int64) = (-1, -1, -1)
        for _ in 0..<limit {
            engine.scanPasses(1)
            let now = (engine.stats.pagesShared, engine.stats.pagesSharing, engine.stats.pagesUnshared)
            if now == last { return }
            last = now
        }
    }

    var figures: (shared: Int64, sharing: Int64, unshared: Int64, chains: Int64, dups: Int64) {
        let s = engine.stats
        return (s.pagesShared, s.pagesSharing, s.pagesUnshared, s.stableNodeChains, s.stableNodeDups)
    }
}
