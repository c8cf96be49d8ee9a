// The block arena and page maps: allocation, refcounts, the zero block, holes, and blocks
// really returned to the OS (checked with mincore, not trusted from a counter).
import Glibc
import XCTest
@testable import KSM

final class BlockArenaTests: XCTestCase {
    private func resident(_ arena: BlockArena, _ id: UInt32) -> Bool {
        var vec: UInt8 = 0
        XCTAssertEqual(mincore(arena.pointer(id), 4096, &vec), 0)
        return vec & 1 == 1
    }

    func testAllocationStartsZeroFilledWithRefcountOne() throws {
        let arena = BlockArena(capacityBlocks: 16)
        var ids = [UInt32](repeating: 0, count: 4)
        try ids.withUnsafeMutableBufferPointer { try arena.allocate(4, into: $0.baseAddress!) }
        XCTAssertEqual(Set(ids).count, 4)
        for id in ids {
            XCTAssertGreaterThanOrEqual(id, 2, "ids 0 and 1 are the hole and the zero block")
            XCTAssertEqual(arena.refcount(id), 1)
            XCTAssertEqual(ksmIsZero(arena, id), true)
        }
        XCTAssertEqual(arena.used, 4)
    }

    func testNewDataStopsShortOfTheReserveAndWritebackMayUseIt() throws {
        let arena = BlockArena(capacityBlocks: 16)
        arena.setReserve(4)
        XCTAssertEqual(arena.available, 12)
        XCTAssertEqual(arena.free, 16)
        var ids = [UInt32](repeating: 0, count: 16)
        try ids.withUnsafeMutableBufferPointer { try arena.allocate(12, into: $0.baseAddress!) }
        XCTAssertEqual(arena.available, 0)
        XCTAssertThrowsError(try ids.withUnsafeMutableBufferPointer { try arena.allocate(1, into: $0.baseAddress! + 12) })
        try ids.withUnsafeMutableBufferPointer { try arena.allocate(4, into: $0.baseAddress! + 12, fromReserve: true) }
        XCTAssertEqual(arena.free, 0)
        XCTAssertThrowsError(try ids.withUnsafeMutableBufferPointer { try arena.allocate(1, into: $0.baseAddress!, fromReserve: true) })
        arena.setReserve(100)
        XCTAssertEqual(arena.reserve, 8, "the reserve is at most half the capacity")
    }

    func testInjectedFailuresRefuseEveryNthAllocationAndPopulate() throws {
        let arena = BlockArena(capacityBlocks: 64)
        try arena.faults.configure("allocate:3,populate:2")
        var ids = [UInt32](repeating: 0, count: 8)
        var refused = 0
        for i in 0..<6 {
            do { try ids.withUnsafeMutableBufferPointer { try arena.allocate(1, into: $0.baseAddress! + i) } } catch { refused += 1 }
        }
        XCTAssertEqual(refused, 2)
        XCTAssertEqual(arena.used, 4)
        XCTAssertFalse(ids.withUnsafeBufferPointer { arena.populate($0.baseAddress!, count: 1) } && ids.withUnsafeBufferPointer { arena.populate($0.baseAddress!, count: 1) })
        XCTAssertThrowsError(try arena.faults.configure("allocate:x"))
        XCTAssertThrowsError(try arena.faults.configure("mmap:3"))
    }

    func testCapacityIsAllOrNothing() throws {
        let arena = BlockArena(capacityBlocks: 3)
        var ids = [UInt32](repeating: 0, count: 4)
        XCTAssertThrowsError(try ids.withUnsafeMutableBufferPointer { try arena.allocate(4, into: $0.baseAddress!) })
        XCTAssertEqual(arena.used, 0, "a failed allocation takes nothing")
        try ids.withUnsafeMutableBufferPointer { try arena.allocate(3, into: $0.baseAddress!) }
        XCTAssertNil(arena.allocateOne())
        arena.release(ids[0])
        XCTAssertNotNil(arena.allocateOne(), "a freed block is usable again")
    }

    func testLastReleaseReturnsTheBlockToTheOS() throws {
        let arena = BlockArena(capacityBlocks: 64)
        let id = try XCTUnwrap(arena.allocateOne())
        arena.pointer(id).storeBytes(of: 0xDEAD_BEEF, as: UInt32.self)
        XCTAssertTrue(resident(arena, id))
        arena.retain(id)
        arena.release(id)
        arena.flush()
        XCTAssertTrue(resident(arena, id), "one reference left: still there")
        arena.release(id)
        arena.flush()
        XCTAssertFalse(resident(arena, id), "freed blocks must leave RSS")
        let again = try XCTUnwrap(arena.allocateOne())
        XCTAssertTrue(ksmIsZero(arena, again), "a reused block starts zero-filled")
    }

    /// Whether this process maps the page at `p` now (/proc/self/pagemap bit 63).
    private func mapped(_ p: UnsafeMutableRawPointer) -> Bool {
        let fd = open("/proc/self/pagemap", O_RDONLY)
        defer { close(fd) }
        var entry: UInt64 = 0
        XCTAssertEqual(pread(fd, &entry, 8, off_t(Int(bitPattern: p) / 4096 * 8)), 8)
        return entry >> 63 == 1
    }

    func testBlocksLiveInAMemfdTheDaemonUnmapsWithoutLosingThem() throws {
        let arena = BlockArena(capacityBlocks: 256)
        XCTAssertGreaterThanOrEqual(arena.memfd, 0, "the blocks should live in a memfd")
        var ids = [UInt32](repeating: 0, count: 64)
        try ids.withUnsafeMutableBufferPointer { try arena.allocate(64, into: $0.baseAddress!) }
        XCTAssertTrue(ids.withUnsafeBufferPointer { arena.populate($0.baseAddress!, count: 64) })
        for (i, id) in ids.enumerated() { arena.pointer(id).storeBytes(of: UInt64(i) &* 0x9E37_79B9_7F4A_7C15 | 1, as: UInt64.self) }
        XCTAssertGreaterThanOrEqual(arena.memfdBytes, 64 * 4096)
        XCTAssertTrue(mapped(arena.pointer(ids[0])))
        arena.unmapResident()
        XCTAssertFalse(mapped(arena.pointer(ids[0])), "unmapResident should drop the page-table entry")
        XCTAssertGreaterThanOrEqual(arena.memfdBytes, 64 * 4096, "unmapping must not free anything")
        for (i, id) in ids.enumerated() {
            XCTAssertEqual(arena.pointer(id).load(as: UInt64.self), UInt64(i) &* 0x9E37_79B9_7F4A_7C15 | 1, "block \(i) lost")
        }
        // the background thread does the same once more than `unmapAbove` bytes are mapped
        arena.unmapAbove = 0
        arena.startUnmapping(everyMillis: 5)
        defer { arena.stopUnmapping() }
        var gone = false
        for _ in 0..<400 where !gone { usleep(5000); gone = !mapped(arena.pointer(ids[0])) }
        XCTAssertTrue(gone, "the unmapping thread did not unmap a touched block")
        let before = arena.memfdBytes
        for id in ids { arena.release(id) }
        arena.flush()
        XCTAssertLessThanOrEqual(arena.memfdBytes, before - 64 * 4096, "freed blocks must leave the memfd")
    }

    func testHolesAndTheZeroBlockCostNothing() {
        let arena = BlockArena(capacityBlocks: 64)
        XCTAssertFalse(resident(arena, BlockArena.zero), "never written, never resident")
        XCTAssertEqual(arena.refcount(BlockArena.hole), 0)
        arena.retain(BlockArena.zero)
        arena.release(BlockArena.zero)
        XCTAssertEqual(arena.used, 0, "the zero block is not counted")
        XCTAssertTrue(ksmIsZero(arena, BlockArena.zero))
    }

    func testSparsePageMapCostsOnlyTouchedChunks() throws {
        let h = EngineHarness(capacityBlocks: 64)
        let f = h.newFile()
        h.write(f, page: 0, page(1))
        h.write(f, page: 16 << 20, page(2))      // 64 GiB into the file
        XCTAssertEqual(f.size, Int64((16 << 20) + 1) * 4096)
        XCTAssertEqual(f.dataPages, 2)
        XCTAssertEqual(h.arena.used, 2)
        XCTAssertEqual(f.seek(from: 4096, data: true), Int64(16 << 20) * 4096)
        XCTAssertEqual(f.seek(from: 0, data: false), 4096)
        XCTAssertEqual(h.read(f, page: 5), [UInt8](repeating: 0, count: 4096), "holes read as zeros")
    }

    func testTruncateReleasesBlocksAndZeroesTheTail() throws {
        let h = EngineHarness(capacityBlocks: 64)
        let f = h.newFile()
        for i in 0..<8 { h.write(f, page: i, page(UInt64(i))) }
        XCTAssertEqual(h.arena.used, 8)
        try f.truncate(to: 4096 + 100)
        XCTAssertEqual(h.arena.used, 2)
        try f.truncate(to: 8192)
        let p1 = h.read(f, page: 1)
        XCTAssertEqual(Array(p1.prefix(100)), Array(page(1).prefix(100)))
        XCTAssertEqual(Array(p1.dropFirst(100)), [UInt8](repeating: 0, count: 3996))
    }

    func testCopyRangeSharesWholePagesCopyOnWrite() throws {
        let h = EngineHarness(capacityBlocks: 64)
        let a = h.newFile(), b = h.newFile()
        for i in 0..<4 { h.write(a, page: i, page(UInt64(i))) }
        XCTAssertEqual(try MergeableFile.copyRange(from: a, at: 0, to: b, at: 0, length: 4 * 4096), 4 * 4096)
        XCTAssertEqual(h.arena.used, 4, "a copy costs no memory until written")
        h.write(b, page: 2, page(99))
        XCTAssertEqual(h.arena.used, 5)
        XCTAssertEqual(h.read(a, page: 2), page(2), "the source never sees the copy's write")
        XCTAssertEqual(h.read(b, page: 2), page(99))
    }

    func testWriteFailsWholeWhenSpaceRunsOut() throws {
        let h = EngineHarness(capacityBlocks: 4)
        let f = h.newFile()
        let big = [UInt8](repeating: 1, count: 5 * 4096)
        XCTAssertThrowsError(try big.withUnsafeBytes { try f.write($0, at: 0) }) { XCTAssertEqual($0 as? FileError, .noSpace) }
        XCTAssertEqual(f.size, 0)
        XCTAssertEqual(h.arena.used, 0)
    }
}

func ksmIsZero(_ arena: BlockArena, _ id: UInt32) -> Bool {
    let p = arena.pointer(id).assumingMemoryBound(to: UInt8.self)
    for i in 0..<4096 where p[i] != 0 { return false }
    return true
}
