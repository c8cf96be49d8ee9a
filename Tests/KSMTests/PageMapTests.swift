// The page map against a plain dictionary model, with pages near the start (flat directory)
// and anywhere up to 2^51 (sparse groups): set, block, nextData, nextHole, trim, items; and
// the first chunk, which starts small and grows with the file, keeping blocks and items.
import XCTest
@testable import KSM

final class PageMapTests: XCTestCase {
    func testRandomPagesUpTo8EiBMatchADictionaryModel() {
        var map = PageMap()
        defer { map.deallocate() }
        var model: [Int: UInt32] = [:]
        var rng = TestRandom(seed: 51)
        let lastPage = (1 << 51) - 1
        func randomPage() -> Int {
            switch rng.below(4) {
            case 0: return rng.below(4096 * 512)                       // flat directory
            case 1: return (1 << 21) + rng.below(1 << 22)              // first groups
            case 2: return lastPage - rng.below(2048)                  // the very end
            default: return Int(rng.next() % UInt64(lastPage + 1))     // anywhere
            }
        }
        for step in 0..<20_000 {
            let p = randomPage()
            if rng.below(4) == 0 {
                XCTAssertEqual(map.set(p, BlockArena.hole), model[p] ?? BlockArena.hole)
                model[p] = nil
            } else {
                let id = UInt32(2 + rng.below(1000))
                XCTAssertEqual(map.set(p, id), model[p] ?? BlockArena.hole)
                model[p] = id
            }
            if step % 500 == 0 {
                let sorted = model.keys.sorted()
                XCTAssertEqual(map.dataPages, sorted.count)
                var from = 0, i = 0
                while let d = map.nextData(from: from, limit: lastPage + 1) {
                    XCTAssertEqual(d, sorted[i]); XCTAssertEqual(map.block(d), model[d])
                    i += 1; from = d + 1
                }
                XCTAssertEqual(i, sorted.count, "nextData visits every page once")
                if let q = sorted.randomElement(using: &rng) {
                    XCTAssertEqual(map.nextHole(from: q, limit: lastPage + 1), (q...).first { model[$0] == nil })
                }
            }
        }
        // Items live beside the blocks, far out too.
        let far = lastPage - 7
        map.set(far, 9)
        map.item(far).pointee.state = .visited
        XCTAssertNotNil(map.existingItem(far))
        map.item(far).pointee = ScanItem()
        // Truncating to 1 MiB drops everything past it, groups included.
        for p in model.keys where p >= 256 { map.set(p, BlockArena.hole) }
        map.set(far, BlockArena.hole)
        map.trim(fromPage: 256)
        XCTAssertLessThanOrEqual(map.chunkCount, PageMap.groupChunks, "no far group is left")
        XCTAssertNil(map.nextData(from: 256, limit: lastPage + 1))
    }
}

extension PageMapTests {
    func testTheFirstChunkStartsSmallAndGrowsKeepingBlocksAndItems() {
        var map = PageMap()
        defer { map.deallocate() }
        map.set(0, 10)
        map.set(1, 11)
        XCTAssertEqual(map.firstChunkPages, 2, "a two-page file holds 2 entries, not 512")
        map.item(1).pointee.state = .visited
        map.item(1).pointee.checksum = 0xABCD
        XCTAssertEqual(map.block(2), BlockArena.hole)
        XCTAssertNil(map.existingItem(3))
        map.set(3, 16)
        XCTAssertEqual(map.firstChunkPages, 4)
        XCTAssertEqual(map.existingItem(1)?.pointee.checksum, 0xABCD, "items move with the blocks")
        map.set(3, BlockArena.hole)
        XCTAssertEqual(map.block(100), BlockArena.hole, "past the first chunk's entries: a hole")
        XCTAssertNil(map.existingItem(100))
        XCTAssertEqual(map.set(100, BlockArena.hole), BlockArena.hole, "clearing a page past them allocates nothing")
        XCTAssertEqual(map.firstChunkPages, 4)
        XCTAssertEqual(map.nextHole(from: 0, limit: 1000), 2)
        XCTAssertEqual(map.nextData(from: 2, limit: 1000), nil)
        map.set(100, 12)
        XCTAssertEqual(map.firstChunkPages, 128)
        XCTAssertEqual([map.block(0), map.block(1), map.block(2), map.block(100)], [10, 11, BlockArena.hole, 12])
        XCTAssertEqual(map.existingItem(1)?.pointee.checksum, 0xABCD, "items move with the blocks")
        XCTAssertNil(map.existingItem(100))
        XCTAssertEqual(map.nextData(from: 2, limit: 1000), 100)
        XCTAssertEqual(map.nextData(from: 101, limit: 1000), nil)
        map.set(511, 13)
        map.set(512, 14)
        XCTAssertEqual(map.firstChunkPages, 512)
        XCTAssertEqual(map.nextData(from: 101, limit: 1000), 511)
        XCTAssertEqual(map.nextData(from: 512, limit: 1000), 512)
        XCTAssertEqual(map.dataPages, 5)
        for p in [0, 1, 100, 511, 512] { map.set(p, BlockArena.hole) }
        map.item(1).pointee = ScanItem()
        map.trim(fromPage: 0)
        XCTAssertEqual(map.firstChunkPages, 0, "an emptied file gives its first chunk back")
        map.set(3, 15)
        XCTAssertEqual(map.firstChunkPages, 4)
        XCTAssertEqual(map.block(3), 15)
    }
}

extension TestRandom: RandomNumberGenerator {}
