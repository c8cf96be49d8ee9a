// Model-based randomized test of the engine: 100,000+ random steps (duplicate and unique
// page writes, partial writes, truncates, holes, copies, deletes, scan batches, run=2,
// tunable changes, opt-out) over several files; every file must equal a plain byte model
// after every step, and the whole engine's invariants hold. Reproducible by seed.
import Glibc
import XCTest
@testable import KSM

final class EngineModelTests: XCTestCase {
    private let maxPages = 12

    private func same(_ f: MergeableFile, _ model: [UInt8], _ h: EngineHarness, _ context: @autoclosure () -> String) {
        XCTAssertEqual(f.size, Int64(model.count), "size differs: \(context())")
        var got = [UInt8](repeating: 0xEE, count: model.count)
        let n = got.withUnsafeMutableBytes { f.read(into: $0, at: 0) }
        XCTAssertEqual(n, model.count, context())
        let equal = got.withUnsafeBytes { g in model.withUnsafeBytes { m in model.isEmpty || memcmp(g.baseAddress!, m.baseAddress!, model.count) == 0 } }
        if !equal { XCTFail("content differs from the model: \(context())") }
    }

    func testRandomStepsMatchAPlainModel() {
        let seed: UInt64 = 0x6B73_6D66_7321
        var rng = TestRandom(seed: seed)
        let h = EngineHarness(capacityBlocks: 4096) { $0.maxPageSharing = 3 }
        var models: [[UInt8]] = []
        for _ in 0..<5 { h.newFile(); models.append([]) }
        let pool = (0..<6).map { page(UInt64($0)) }
        let zero = [UInt8](repeating: 0, count: 4096)
        let steps = 100_000
        var merges: Int64 = 0
        for step in 0..<steps {
            let fi = rng.below(h.files.count)
            let f = h.files[fi]
            let op = rng.below(100)
            switch op {
            case 0..<30:     // whole page, mostly duplicates
                let p = rng.below(maxPages)
                let r = rng.below(10)
                let bytes = r < 6 ? pool[rng.below(pool.count)] : r < 8 ? zero : page(1_000 + UInt64(step))
                h.write(f, page: p, bytes)
                let end = (p + 1) * 4096
                if models[fi].count < end { models[fi] += [UInt8](repeating: 0, count: end - models[fi].count) }
                models[fi].replaceSubrange(p * 4096..<end, with: bytes)
            case 30..<40:    // partial write across pages
                let off = rng.below(maxPages * 4096 - 1)
                let len = 1 + rng.below(min(6000, maxPages * 4096 - off))
                let bytes = (0..<len).map { UInt8(truncatingIfNeeded: $0 &+ step) }
                _ = bytes.withUnsafeBytes { try! f.write($0, at: Int64(off)) }
                if models[fi].count < off + len { models[fi] += [UInt8](repeating: 0, count: off + len - models[fi].count) }
                models[fi].replaceSubrange(off..<off + len, with: bytes)
            case 40..<46:    // truncate
                let size = rng.below(maxPages * 4096 + 1)
                try! f.truncate(to: Int64(size))
                if size < models[fi].count { models[fi].removeLast(models[fi].count - size) }
                else { models[fi] += [UInt8](repeating: 0, count: size - models[fi].count) }
            case 46..<49:    // punch a hole
                let off = rng.below(maxPages * 4096)
                let len = 1 + rng.below(3 * 4096)
                try! f.punchHole(offset: Int64(off), length: Int64(len))
                let end = min(models[fi].count, off + len)
                if off < end { models[fi].replaceSubrange(off..<end, with: [UInt8](repeating: 0, count: end - off)) }
            case 49..<52:    // copy_file_range between files (often page-aligned: shares blocks)
                let ti = rng.below(h.files.count)
                let aligned = rng.below(2) == 0
                let so = aligned ? rng.below(maxPages / 2) * 4096 : rng.below(maxPages * 2048)
                let dOff = aligned ? rng.below(maxPages / 2) * 4096 : rng.below(maxPages * 2048)
                let len = rng.below(maxPages / 2 * 4096)
                let n = try! MergeableFile.copyRange(from: f, at: Int64(so), to: h.files[ti], at: Int64(dOff), length: len)
                let src = so < models[fi].count ? Array(models[fi][so..<min(models[fi].count, so + len)]) : []
                XCTAssertEqual(n, src.count)
                if !src.isEmpty {
                    if models[ti].count < dOff + n { models[ti] += [UInt8](repeating: 0, count: dOff + n - models[ti].count) }
                    models[ti].replaceSubrange(dOff..<dOff + n, with: src)
                }
                same(h.files[ti], models[ti], h, "step \(step) copy target")
            case 52..<54:    // delete and create anew
                h.engine.unregister(f)
                f.releaseAll()
                let g = MergeableFile(arena: h.arena, stats: h.engine.stats)
                h.engine.register(g, mergeable: true)
                h.files[fi] = g
                models[fi] = []
            case 54..<90:    // a scan batch
                h.engine.scan(pages: 1 + rng.below(200))
            case 90..<91:    // run=2
                XCTAssertTrue(h.engine.unmergeAll())
            case 91..<93:    // max_page_sharing, when no shared block exists
                let v = 2 + rng.below(4)
                h.engine.betweenBatches {
                    if !h.engine.hasSharedBlocksLocked() { h.engine.updateTunablesQuietly { $0.maxPageSharing = v } }
                }
            case 93..<95:
                h.engine.updateTunables { $0.useZeroPages.toggle() }
            case 95..<97:
                h.engine.updateTunables { $0.smartScan.toggle() }
            default:         // opt a file out or back in
                XCTAssertTrue(h.engine.setMergeable(f, rng.below(3) != 0))
            }
            same(h.files[fi], models[fi], h, "step \(step) op \(op) seed \(seed)")
            if step % 500 == 0 || getenv("KSM_MODEL_EVERY_STEP") != nil {
                if getenv("KSM_MODEL_EVERY_STEP") != nil { print("step", step, "op", op) }
                for (i, g) in h.files.enumerated() { same(g, models[i], h, "step \(step) full check") }
                h.engine.checkInvariants()
            }
            merges = max(merges, h.engine.stats.pagesSharing)
        }
        for (i, g) in h.files.enumerated() { same(g, models[i], h, "final") }
        h.engine.checkInvariants()
        XCTAssertGreaterThan(h.engine.stats.mergedTotal, 1000, "the run must actually merge pages")
        XCTAssertGreaterThan(h.engine.stats.cowBreaks, 100, "and break them by writes")
        XCTAssertGreaterThan(merges, 5)
    }
}
