// The kernel's reference figures (KSM-SPEC §3) reproduced by the engine, and the behaviours
// of cmp_and_merge_page: two-visit rule, stable-first merging, zero pages, copy-on-write
// isolation with counters updated at once, unmerging, per-file opt-out.
import XCTest
@testable import KSM

final class EngineReferenceTests: XCTestCase {
    func testDup16Over65536PagesEndsAt256SharedAnd65280Sharing() {
        let h = EngineHarness()
        let f = h.newFile()
        for i in 0..<65_536 { h.write(f, page: i, page(UInt64(i % 16))) }
        h.converge()
        let fig = h.figures
        XCTAssertEqual(fig.shared, 256)
        XCTAssertEqual(fig.sharing, 65_280)
        XCTAssertEqual(fig.unshared, 0)
        XCTAssertEqual(fig.chains, 16)
        XCTAssertEqual(fig.dups, 256)
        XCTAssertEqual(h.arena.used, 256, "only the shared blocks remain")
        h.engine.checkInvariants()
    }

    func testHalfUniquePatternKeepsUniquePagesUnshared() {
        // smart_scan off: every unique page is re-inserted each pass, as the reference measured.
        let h = EngineHarness { $0.smartScan = false }
        let f = h.newFile()
        for i in 0..<65_536 {
            h.write(f, page: i, i % 2 == 0 ? page(1_000_000 + UInt64(i)) : page(UInt64((i / 2) % 256)))
        }
        h.converge()
        let fig = h.figures
        XCTAssertEqual(fig.shared, 256)
        XCTAssertEqual(fig.sharing, 32_512)
        XCTAssertEqual(fig.unshared, 32_768)
        h.engine.checkInvariants()
    }

    func testMaxPageSharing4With21IdenticalPages() {
        let h = EngineHarness { $0.maxPageSharing = 4 }
        let f = h.newFile()
        for i in 0..<21 { h.write(f, page: i, page(7)) }
        h.converge()
        let fig = h.figures
        XCTAssertEqual(fig.shared, 5)
        XCTAssertEqual(fig.sharing, 15)
        XCTAssertEqual(fig.unshared, 1)
        XCTAssertEqual(fig.chains, 1)
        XCTAssertEqual(fig.dups, 5)
        h.engine.checkInvariants()
    }

    func testTenATwoThreeBWithMaxPageSharing2() {
        let h = EngineHarness { $0.maxPageSharing = 2 }
        let f = h.newFile()
        for i in 0..<10 { h.write(f, page: i, page(0xA)) }
        for i in 10..<13 { h.write(f, page: i, page(0xB)) }
        h.converge()
        let fig = h.figures
        XCTAssertEqual(fig.shared, 6)
        XCTAssertEqual(fig.sharing, 6)
        XCTAssertEqual(fig.unshared, 1)
        XCTAssertEqual(fig.chains, 1)
        XCTAssertEqual(fig.dups, 5)
        h.engine.checkInvariants()
    }

    func testNoPageMergesBeforeItsSecondVisit() {
        let h = EngineHarness()
        let f = h.newFile()
        for i in 0..<4 { h.write(f, page: i, page(3)) }
        h.engine.scanPasses(1)
        XCTAssertEqual(h.engine.stats.pagesSharing, 0, "first pass only records checksums")
        XCTAssertEqual(h.engine.stats.pagesVolatile, 4)
        h.engine.scanPasses(1)
        XCTAssertEqual(h.engine.stats.pagesShared, 1)
        XCTAssertEqual(h.engine.stats.pagesSharing, 3, "the stable block takes the rest in the same pass")
    }

    func testAPageChangedBetweenVisitsWaitsOnePassAsOnTheKernel() {
        let h = EngineHarness()
        let a = h.newFile(), b = h.newFile()
        h.write(a, page: 0, page(1)); h.write(b, page: 0, page(2))
        h.engine.scanPasses(1)
        h.write(a, page: 0, page(2))            // a now equals b, but changed since its visit
        h.engine.scanPasses(1)
        XCTAssertEqual(h.engine.stats.pagesSharing, 0, "a changed page is volatile for one pass")
        h.engine.scanPasses(1)
        XCTAssertEqual(h.engine.stats.pagesSharing, 1)
        XCTAssertEqual(h.read(a, page: 0), page(2))
        h.engine.checkInvariants()
    }

    func testAnIdenticalRewriteLeavesThePageSettled() {
        let h = EngineHarness()
        let a = h.newFile(), b = h.newFile()
        h.write(a, page: 0, page(7)); h.write(b, page: 0, page(7))
        h.engine.scanPasses(1)
        h.write(a, page: 0, page(7)); h.write(b, page: 0, page(7))   // same bytes: same checksum
        h.engine.scanPasses(1)
        XCTAssertEqual(h.engine.stats.pagesSharing, 1)
        XCTAssertEqual(h.engine.checksumsComputed, 0, "nothing changed, so nothing was hashed")
        h.engine.checkInvariants()
    }

    func testAPageChangedAndChangedBackSinceItsLastChecksumIsNotVolatile() {
        let h = EngineHarness()
        let a = h.newFile(), c = h.newFile()
        h.write(a, page: 0, page(1)); h.write(c, page: 0, page(3))
        h.engine.scanPasses(1)
        h.write(a, page: 0, page(3))
        h.engine.scanPasses(1)                  // a is hashed (volatile), c waits in the unstable tree
        XCTAssertEqual(h.engine.checksumsComputed, 1)
        XCTAssertEqual(h.engine.stats.pagesSharing, 0)
        h.write(a, page: 0, page(4)); h.write(a, page: 0, page(3))
        h.engine.scanPasses(1)                  // same checksum as at its last visit: it merges
        XCTAssertEqual(h.engine.checksumsComputed, 2)
        XCTAssertEqual(h.engine.stats.pagesSharing, 1)
        h.engine.checkInvariants()
    }

    func testSettledPagesAreNeverHashedAgain() {
        let h = EngineHarness()
        let f = h.newFile()
        for i in 0..<64 { h.write(f, page: i, page(UInt64(i % 8 == 0 ? 1000 + i : i % 4))) }
        h.converge()
        let sharing = h.engine.stats.pagesSharing
        XCTAssertGreaterThan(sharing, 0)
        h.engine.scanPasses(5)
        XCTAssertEqual(h.engine.checksumsComputed, 0)
        h.write(f, page: 0, page(77))           // a unique page changes
        h.engine.scanPasses(1)
        XCTAssertEqual(h.engine.checksumsComputed, 1, "only the changed page is hashed")
        XCTAssertEqual(h.engine.stats.pagesSharing, sharing)
        h.engine.checkInvariants()
    }

    func testCopyOnWriteIsolatesFilesAndCountsAtOnce() {
        let h = EngineHarness()
        let a = h.newFile(), b = h.newFile()
        h.write(a, page: 0, page(5)); h.write(b, page: 0, page(5)); h.write(b, page: 1, page(5))
        h.converge()
        XCTAssertEqual(h.figures.shared, 1)
        XCTAssertEqual(h.figures.sharing, 2)
        XCTAssertEqual(h.arena.used, 1)
        var changed = page(5); changed[100] ^= 0xFF
        h.write(a, page: 0, changed)
        XCTAssertEqual(h.read(a, page: 0), changed)
        XCTAssertEqual(h.read(b, page: 0), page(5))
        XCTAssertEqual(h.read(b, page: 1), page(5))
        XCTAssertEqual(h.engine.stats.pagesSharing, 1, "the break is counted at once")
        XCTAssertEqual(h.engine.stats.cowBreaks, 1)
        h.engine.checkInvariants()
    }

    func testZeroPagesMapToTheZeroBlock() {
        let h = EngineHarness { $0.useZeroPages = true }
        let f = h.newFile()
        let zero = [UInt8](repeating: 0, count: 4096)
        for i in 0..<8 { h.write(f, page: i, zero) }
        h.converge()
        XCTAssertEqual(h.engine.stats.zeroPages, 8)
        XCTAssertEqual(h.engine.stats.pagesSharing, 0)
        XCTAssertEqual(h.arena.used, 0, "zero pages cost no block")
        h.write(f, page: 3, page(1))
        XCTAssertEqual(h.engine.stats.zeroPages, 7, "a write drops ksm_zero_pages at once")
        XCTAssertEqual(h.read(f, page: 2), zero)
        h.engine.checkInvariants()
    }

    func testUnmergeAllRestoresPrivateCopiesAndResets() {
        let h = EngineHarness()
        let f = h.newFile()
        for i in 0..<64 { h.write(f, page: i, page(UInt64(i % 4))) }
        h.converge()
        XCTAssertEqual(h.arena.used, 4)
        XCTAssertTrue(h.engine.unmergeAll())
        XCTAssertEqual(h.arena.used, 64)
        XCTAssertEqual(h.engine.stats.fullScans, 0)
        XCTAssertEqual(h.engine.stats.pagesShared + h.engine.stats.pagesSharing + h.engine.stats.items, 0)
        for i in 0..<64 { XCTAssertEqual(h.read(f, page: i), page(UInt64(i % 4))) }
        h.engine.checkInvariants()
    }

    func testUnmergeThatDoesNotFitFailsWithoutLosingData() {
        let h = EngineHarness(capacityBlocks: 10)
        let f = h.newFile()
        for i in 0..<10 { h.write(f, page: i, page(1)) }
        h.converge()
        XCTAssertEqual(h.arena.used, 1)
        h.arena.failAllocations = true
        XCTAssertFalse(h.engine.unmergeAll())
        h.arena.failAllocations = false
        for i in 0..<10 { XCTAssertEqual(h.read(f, page: i), page(1)) }
        h.engine.checkInvariants()
    }

    func testOptingAFileOutUnmergesOnlyItsPages() {
        let h = EngineHarness()
        let a = h.newFile(), b = h.newFile()
        for i in 0..<4 { h.write(a, page: i, page(9)); h.write(b, page: i, page(9)) }
        h.converge()
        XCTAssertEqual(h.engine.stats.pagesSharing, 7)
        XCTAssertTrue(h.engine.setMergeable(a, false))
        XCTAssertEqual(a.ksmFigures.merging, 0)
        XCTAssertEqual(h.engine.stats.pagesSharing, 3)
        h.converge()
        XCTAssertEqual(h.engine.stats.pagesSharing, 3, "an opted-out file stays unmerged")
        for i in 0..<4 { XCTAssertEqual(h.read(a, page: i), page(9)) }
        h.engine.checkInvariants()
    }

    func testPagesOfDifferentOwnersDoNotMergeUnlessAllowed() {
        let h = EngineHarness()
        let a = h.newFile(owner: 1000), b = h.newFile(owner: 2000)
        h.write(a, page: 0, page(4)); h.write(b, page: 0, page(4))
        h.converge()
        XCTAssertEqual(h.engine.stats.pagesSharing, 0)
        h.engine.updateTunables { $0.mergeAcrossOwners = true }
        h.converge()
        XCTAssertEqual(h.engine.stats.pagesSharing, 1)
        h.engine.checkInvariants()
    }

    func testSmartScanSkipsOldUnmergedPages() {
        let h = EngineHarness()
        let f = h.newFile()
        for i in 0..<100 { h.write(f, page: i, page(50_000 + UInt64(i))) }
        h.engine.scanPasses(10)
        XCTAssertGreaterThan(h.engine.stats.pagesSkipped, 0)
        let skipped = h.engine.stats.pagesSkipped
        h.engine.updateTunables { $0.smartScan = false }
        h.engine.scanPasses(3)
        XCTAssertEqual(h.engine.stats.pagesSkipped, skipped)
    }
}
