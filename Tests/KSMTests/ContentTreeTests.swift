// ContentTree specification: red-black rules, content order, node-id recycling and payloads,
// checked after every operation against a small arena whose page contents the tests control.
// Pages share almost all bytes, so memcmp must read deep: many differ only in their last byte.
// Randomized runs use the seeded TestRandom (TestSupport.swift) and are reproducible.

import XCTest
@testable import KSM

/// 4096 pages of 4 KiB. Page content encodes a 16-bit key: byte 0 = key >> 8, byte 4095 =
/// key & 0xFF, every other byte 0xA5, so content order equals key order. Blocks 0 ..< 4000
/// hold distinct keys in scrambled order; blocks 4000 ..< 4096 copy the content of blocks 0 ..< 96.
private final class TestArena {
    static let pages = 4096
    static let pageSize = 4096
    static let distinct = 4000
    let base: UnsafeMutableRawPointer

    init() {
        base = .allocate(byteCount: Self.pages * Self.pageSize, alignment: Self.pageSize)
        base.initializeMemory(as: UInt8.self, repeating: 0xA5, count: Self.pages * Self.pageSize)
        for block in 0 ..< Self.pages {
            let key = Self.key(ofBlock: block < Self.distinct ? block : block - Self.distinct)
            (base + block * Self.pageSize).storeBytes(of: UInt8(key >> 8), as: UInt8.self)
            (base + block * Self.pageSize + Self.pageSize - 1).storeBytes(of: UInt8(key & 0xFF), as: UInt8.self)
        }
    }
    deinit { base.deallocate() }

    /// An odd multiplier permutes 0 ..< 4096, so blocks 0 ..< 4000 get distinct keys.
    static func key(ofBlock block: Int) -> Int { (block &* 2_654_435_761) & 0xFFF }

    func page(_ block: Int) -> UnsafeRawPointer { UnsafeRawPointer(base + block * Self.pageSize) }

    func key(ofContent block: Int) -> Int {
        let p = page(block)
        return Int(p.load(as: UInt8.self)) << 8 | Int(p.load(fromByteOffset: Self.pageSize - 1, as: UInt8.self))
    }

    func makeTree(initialCapacity: Int = 4) -> ContentTree {
        ContentTree(arenaBase: UnsafeRawPointer(base), pageSize: Self.pageSize, initialCapacity: initialCapacity)
    }
}

final class ContentTreeTests: XCTestCase {
    // Made per test and dropped after it: XCTest on Linux keeps every test case instance until
    // the process exits, so a stored 16 MiB arena per test method would pile up (218 MB over
    // the suite, what LeakSanitizer reported).
    private var testArena: TestArena?
    private var arena: TestArena { testArena! }
    override class func setUp() { LeakCheckAtEnd.register() }
    override func setUp() { testArena = TestArena() }
    override func tearDown() { testArena = nil }

    /// Keys of the tree's blocks in iteration order.
    private func inOrderKeys(_ tree: ContentTree) -> [Int] {
        var keys: [Int] = []
        var n = tree.first()
        while n != 0 {
            keys.append(arena.key(ofContent: Int(tree.block(n))))
            n = tree.next(n)
        }
        return keys
    }

    private func insertAll(_ blocks: [Int], into tree: ContentTree) -> [Int: UInt32] {
        var nodeOf: [Int: UInt32] = [:]
        for (i, block) in blocks.enumerated() {
            let (node, inserted) = tree.findOrInsert(arena.page(block), block: UInt32(block),
                                                     a: UInt32(block), b: ~UInt32(block), c: UInt32(i))
            XCTAssertTrue(inserted)
            nodeOf[block] = node
            tree.checkInvariants()
            XCTAssertEqual(tree.count, i + 1)
        }
        return nodeOf
    }

    private func blocksSortedByContent() -> [Int] {
        (0 ..< TestArena.distinct).sorted { TestArena.key(ofBlock: $0) < TestArena.key(ofBlock: $1) }
    }

    // MARK: Scenarios

    func testNodeIs40Bytes() {
        XCTAssertEqual(MemoryLayout<ContentTree.Node>.stride, 40, "32 bytes of links and payload, 8 of content prefix")
    }

    func testEmptyTreeHasNoNodesAndFindsNothing() {
        let tree = arena.makeTree()
        tree.checkInvariants()
        XCTAssertEqual(tree.count, 0)
        XCTAssertTrue(tree.isEmpty)
        XCTAssertEqual(tree.first(), 0)
        XCTAssertEqual(tree.search(arena.page(0)), 0)
        XCTAssertFalse(tree.isLive(0))
        XCTAssertFalse(tree.isLive(1))
    }

    func testInserting4000AscendingContentsThenRemovingKeepsInvariants() {
        let tree = arena.makeTree()
        let blocks = blocksSortedByContent()
        let nodeOf = insertAll(blocks, into: tree)
        XCTAssertEqual(tree.count, 4000)
        XCTAssertEqual(inOrderKeys(tree), blocks.map(TestArena.key(ofBlock:)))
        for (i, block) in blocks.enumerated() {
            tree.remove(nodeOf[block]!)
            tree.checkInvariants()
            XCTAssertEqual(tree.count, 3999 - i)
        }
        XCTAssertTrue(tree.isEmpty)
    }

    func testInserting4000DescendingContentsThenRemovingKeepsInvariants() {
        let tree = arena.makeTree()
        let blocks = Array(blocksSortedByContent().reversed())
        let nodeOf = insertAll(blocks, into: tree)
        XCTAssertEqual(tree.count, 4000)
        XCTAssertEqual(inOrderKeys(tree), blocks.reversed().map(TestArena.key(ofBlock:)))
        for (i, block) in blocks.reversed().enumerated() {
            tree.remove(nodeOf[block]!)
            tree.checkInvariants()
            XCTAssertEqual(tree.count, 3999 - i)
        }
    }

    func testInserting4000RandomContentsThenRemovingInRandomOrderKeepsInvariants() {
        var rng = TestRandom(seed: 42)
        let tree = arena.makeTree()
        var blocks = Array(0 ..< TestArena.distinct)
        rng.shuffle(&blocks)
        let nodeOf = insertAll(blocks, into: tree)
        XCTAssertEqual(tree.count, 4000)
        XCTAssertEqual(inOrderKeys(tree), blocks.map(TestArena.key(ofBlock:)).sorted())
        rng.shuffle(&blocks)
        for (i, block) in blocks.enumerated() {
            tree.remove(nodeOf[block]!)
            tree.checkInvariants()
            XCTAssertEqual(tree.count, 3999 - i)
        }
    }

    func testPlainInsertOrdersLikeFindOrInsert() {
        var rng = TestRandom(seed: 7)
        let tree = arena.makeTree()
        var blocks = Array(0 ..< TestArena.distinct)
        rng.shuffle(&blocks)
        for block in blocks {
            let node = tree.insert(block: UInt32(block), a: 1, b: 2, c: 3)
            XCTAssertEqual(tree.block(node), UInt32(block))
        }
        tree.checkInvariants()
        XCTAssertEqual(inOrderKeys(tree), blocks.map(TestArena.key(ofBlock:)).sorted())
    }

    func testFindOrInsertReturnsExistingNodeForEqualContentInAnotherBlock() {
        let tree = arena.makeTree()
        var nodeOf: [Int: UInt32] = [:]
        for block in 0 ..< 200 {
            nodeOf[block] = tree.findOrInsert(arena.page(block), block: UInt32(block), a: 11, b: 22, c: 33).node
        }
        let before = inOrderKeys(tree)
        for twin in TestArena.distinct ..< TestArena.pages {   // same content as block twin - 4000
            let original = twin - TestArena.distinct
            let (node, inserted) = tree.findOrInsert(arena.page(twin), block: UInt32(twin), a: 99, b: 99, c: 99)
            XCTAssertFalse(inserted)
            XCTAssertEqual(node, nodeOf[original])
            XCTAssertEqual(tree.block(node), UInt32(original), "existing node must be returned untouched")
            XCTAssertEqual(tree.a(node), 11)
            XCTAssertEqual(tree.b(node), 22)
            XCTAssertEqual(tree.c(node), 33)
            XCTAssertEqual(tree.search(arena.page(twin)), nodeOf[original])
        }
        XCTAssertEqual(tree.count, 200)
        XCTAssertEqual(inOrderKeys(tree), before)
        tree.checkInvariants()
    }

    func testSetBlockToEqualContentKeepsTheTreeSearchable() {
        let tree = arena.makeTree()
        for block in 0 ..< 96 { _ = tree.insert(block: UInt32(block), a: 0, b: 0, c: 0) }
        for block in 0 ..< 96 {
            let node = tree.search(arena.page(block))
            tree.setBlock(node, UInt32(block + TestArena.distinct))
        }
        tree.checkInvariants()
        for block in 0 ..< 96 {
            let node = tree.search(arena.page(block))
            XCTAssertEqual(tree.block(node), UInt32(block + TestArena.distinct))
        }
    }

    func testSearchFindsEveryInsertedContentAndNoneOfTheRemoved() {
        var rng = TestRandom(seed: 3)
        let tree = arena.makeTree()
        var blocks = Array(0 ..< TestArena.distinct)
        rng.shuffle(&blocks)
        var nodeOf: [Int: UInt32] = [:]
        for block in blocks { nodeOf[block] = tree.insert(block: UInt32(block), a: 0, b: 0, c: 0) }
        tree.checkInvariants()
        let removed = Set(blocks.prefix(1500))
        for block in blocks.prefix(1500) { tree.remove(nodeOf[block]!) }
        tree.checkInvariants()
        XCTAssertEqual(tree.count, 2500)
        for block in 0 ..< TestArena.distinct {
            let found = tree.search(arena.page(block))
            if removed.contains(block) {
                XCTAssertEqual(found, 0, "removed block \(block) still found")
            } else {
                XCTAssertEqual(found, nodeOf[block]!, "block \(block) not found")
            }
        }
        // Twins of removed blocks are absent too; twins of live blocks find the original.
        for twin in TestArena.distinct ..< TestArena.pages {
            let original = twin - TestArena.distinct
            XCTAssertEqual(tree.search(arena.page(twin)), removed.contains(original) ? 0 : nodeOf[original]!)
        }
    }

    func testRandomMixOf100000InsertsAndRemovesMatchesSetModel() {
        let seed: UInt64 = 0x6B73_6D66_73   // "ksmfs"
        var rng = TestRandom(seed: seed)
        let tree = arena.makeTree()
        var model = Set<Int>()                       // keys (contents) in the tree
        var nodeOf = [UInt32](repeating: 0, count: TestArena.distinct)
        for step in 0 ..< 100_000 {
            // Bias towards a ~2/3-full tree with a slowly moving working set.
            let block = rng.below(TestArena.distinct)
            let key = TestArena.key(ofBlock: block)
            if model.contains(key) {
                XCTAssertEqual(tree.search(arena.page(block)), nodeOf[block], "seed \(seed) step \(step)")
                if rng.below(3) == 0 { continue }
                tree.remove(nodeOf[block])
                XCTAssertFalse(tree.isLive(nodeOf[block]), "seed \(seed) step \(step)")
                model.remove(key)
                nodeOf[block] = 0
            } else {
                XCTAssertEqual(tree.search(arena.page(block)), 0, "seed \(seed) step \(step)")
                if step & 1 == 0 {
                    let (node, inserted) = tree.findOrInsert(arena.page(block), block: UInt32(block),
                                                             a: UInt32(block), b: 0, c: 0)
                    XCTAssertTrue(inserted, "seed \(seed) step \(step)")
                    nodeOf[block] = node
                } else {
                    nodeOf[block] = tree.insert(block: UInt32(block), a: UInt32(block), b: 0, c: 0)
                }
                model.insert(key)
            }
            XCTAssertEqual(tree.count, model.count, "seed \(seed) step \(step)")
            if step < 5_000 || step % 1_000 == 0 { tree.checkInvariants() }
        }
        tree.checkInvariants()
        XCTAssertEqual(inOrderKeys(tree), model.sorted())
    }

    func testRemoveAllThenReuseKeepsPoolAndRestartsIDs() {
        let tree = arena.makeTree()
        for block in 0 ..< 1000 { _ = tree.insert(block: UInt32(block), a: 0, b: 0, c: 0) }
        let capacity = tree.capacity
        tree.removeAll()
        tree.checkInvariants()
        XCTAssertEqual(tree.count, 0)
        XCTAssertTrue(tree.isEmpty)
        XCTAssertEqual(tree.first(), 0)
        XCTAssertEqual(tree.capacity, capacity, "removeAll keeps the pool")
        for block in 0 ..< 1000 { XCTAssertEqual(tree.search(arena.page(block)), 0) }
        XCTAssertFalse(tree.isLive(1))

        var rng = TestRandom(seed: 11)
        var blocks = Array(0 ..< TestArena.distinct)
        rng.shuffle(&blocks)
        let nodeOf = insertAll(Array(blocks.prefix(1000)), into: tree)
        XCTAssertEqual(tree.capacity, capacity, "1000 nodes fit the old pool")
        XCTAssertTrue(nodeOf.values.allSatisfy { $0 >= 1 && $0 <= 1000 }, "ids restart at 1")
        XCTAssertEqual(inOrderKeys(tree), blocks.prefix(1000).map(TestArena.key(ofBlock:)).sorted())
    }

    func testNodeIDsAreRecycledSoPoolDoesNotGrowPastPeakLiveCount() {
        var rng = TestRandom(seed: 99)
        let tree = arena.makeTree(initialCapacity: 2)
        var live: [Int] = []                          // blocks in the tree
        var nodeOf = [UInt32](repeating: 0, count: TestArena.distinct)
        var absent = Array(0 ..< TestArena.distinct)
        var peak = 0
        for _ in 0 ..< 50_000 {
            let grow = live.count < 300 ? rng.below(4) != 0 : rng.below(2) == 0
            if grow && !absent.isEmpty {
                let block = absent.swapRemoveRandom(&rng)
                nodeOf[block] = tree.insert(block: UInt32(block), a: 0, b: 0, c: 0)
                live.append(block)
            } else if !live.isEmpty {
                let block = live.swapRemoveRandom(&rng)
                tree.remove(nodeOf[block])
                absent.append(block)
            }
            peak = max(peak, live.count)
            XCTAssertLessThanOrEqual(tree.highWater - 1, peak)
        }
        tree.checkInvariants()
        XCTAssertEqual(tree.highWater - 1, peak, "ids handed out == peak live nodes")
        XCTAssertLessThanOrEqual(tree.capacity, 2 * (peak + 1), "pool doubles only up to the peak")
    }

    func testPayloadWordsSurviveRotations() {
        var rng = TestRandom(seed: 2024)
        let tree = arena.makeTree()
        var nodeOf = [UInt32](repeating: 0, count: TestArena.distinct)
        for step in 0 ..< 30_000 {
            let block = rng.below(TestArena.distinct)
            if nodeOf[block] != 0 {
                tree.remove(nodeOf[block])
                nodeOf[block] = 0
            } else {
                let b = UInt32(block)
                nodeOf[block] = tree.insert(block: b, a: b, b: ~b, c: b &* 0x9E37_79B9)
            }
            if step % 5_000 == 0 { tree.checkInvariants() }
        }
        tree.checkInvariants()
        var n = tree.first()
        var seen = 0
        while n != 0 {
            let block = tree.block(n)
            XCTAssertEqual(tree.a(n), block)
            XCTAssertEqual(tree.b(n), ~block)
            XCTAssertEqual(tree.c(n), block &* 0x9E37_79B9)
            XCTAssertEqual(nodeOf[Int(block)], n)
            seen += 1
            n = tree.next(n)
        }
        XCTAssertEqual(seen, tree.count)
        XCTAssertEqual(seen, nodeOf.filter { $0 != 0 }.count)
        // Setters write only their own word.
        let first = tree.first()
        let block = tree.block(first)
        tree.setA(first, 1); tree.setB(first, 2); tree.setC(first, 3)
        XCTAssertEqual([tree.block(first), tree.a(first), tree.b(first), tree.c(first)], [block, 1, 2, 3])
        tree.checkInvariants()
    }
}

private extension Array where Element == Int {
    mutating func swapRemoveRandom(_ rng: inout TestRandom) -> Int {
        let i = rng.below(count)
        swapAt(i, count - 1)
        return removeLast()
    }
}
