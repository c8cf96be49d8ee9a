// A file's pages: page index -> block id, two levels (chunks of 512 entries allocated on
// first write) so a 64 GiB sparse file costs a few hundred KiB. Beside each chunk of block
// ids sits, once the scanner visits it, a chunk of scan items (the kernel's rmap_items).
// Not thread-safe: the owning `MergeableFile`'s lock guards it.

/// What the scanner knows of one (file, page index): the kernel's rmap_item, 12 bytes.
public struct ScanItem {
    public enum State: UInt8 {
        /// Never visited (no item exists).
        case absent = 0
        /// Visited, in no tree (volatile or skipped this pass).
        case visited = 1
        /// In the unstable tree of pass `seq`.
        case unstable = 2
        /// Attached to a shared block (the page maps it); `node` is its stable-tree node.
        case stable = 3
        /// Points at the zero block (use_zero_pages).
        case zero = 4
    }
    /// XXH64 (low 32 bits) of the page's bytes at the scanner's last checksum step, valid
    /// when `hashed`.
    public var checksum: UInt32 = 0
    public var node: UInt32 = 0
    /// The state in the low bits, `changedFlag` and `hashedFlag` above it.
    public var rawState: UInt8 = 0
    public var age: UInt8 = 0
    public var skip: UInt8 = 0
    public var seq: UInt8 = 0

    static let stateMask: UInt8 = 0x07
    /// The page's bytes changed since the scanner's last checksum step (set by the write path).
    static let changedFlag: UInt8 = 0x40
    /// `checksum` holds the hash of the bytes at that step.
    static let hashedFlag: UInt8 = 0x80

    @inline(__always) public var state: State {
        get { State(rawValue: rawState & ScanItem.stateMask) ?? .absent }
        set { rawState = (rawState & ~ScanItem.stateMask) | newValue.rawValue }
    }

    @inline(__always) public var changed: Bool {
        get { rawState & ScanItem.changedFlag != 0 }
        set { rawState = newValue ? rawState | ScanItem.changedFlag : rawState & ~ScanItem.changedFlag }
    }

    @inline(__always) public var hashed: Bool {
        get { rawState & ScanItem.hashedFlag != 0 }
        set { rawState = newValue ? rawState | ScanItem.hashedFlag : rawState & ~ScanItem.hashedFlag }
    }
}

public struct PageMap {
    public static let chunkShift = 9
    public static let chunkPages = 1 << chunkShift
    static let chunkMask = chunkPages - 1

    private(set) var blocks: UnsafeMutablePointer<UnsafeMutablePointer<UInt32>?>?
    private(set) var items: UnsafeMutablePointer<UnsafeMutablePointer<ScanItem>?>?
    private(set) var chunkCapacity = 0
    /// Non-hole pages (for st_blocks).
    public private(set) var dataPages = 0

    public init() {}

    /// Frees the map itself (the caller releases the blocks first).
    mutating func deallocate() {
        for c in 0..<chunkCapacity {
            blocks?[c]?.deallocate()
            items?[c]?.deallocate()
        }
        blocks?.deallocate()
        items?.deallocate()
        blocks = nil
        items = nil
        chunkCapacity = 0
        dataPages = 0
    }

    /// Number of chunks that could hold pages (the scanner's upper bound).
    public var chunkCount: Int { chunkCapacity }

    @inline(__always) public func block(_ page: Int) -> UInt32 {
        let c = page >> PageMap.chunkShift
        guard c < chunkCapacity, let chunk = blocks![c] else { return BlockArena.hole }
        return chunk[page & PageMap.chunkMask]
    }

    /// Whether chunk `c` has any block array (pages may exist in it).
    @inline(__always) func hasChunk(_ c: Int) -> Bool { c < chunkCapacity && blocks![c] != nil }

    /// Sets page `page` to `id` and returns the previous id (the caller owns both references).
    @discardableResult
    public mutating func set(_ page: Int, _ id: UInt32) -> UInt32 {
        let c = page >> PageMap.chunkShift
        if id == BlockArena.hole && !hasChunk(c) { return BlockArena.hole }
        ensureChunk(c)
        let slot = blocks![c]! + (page & PageMap.chunkMask)
        let old = slot.pointee
        slot.pointee = id
        if old == BlockArena.hole && id != BlockArena.hole { dataPages += 1 }
        if old != BlockArena.hole && id == BlockArena.hole { dataPages -= 1 }
        return old
    }

    private mutating func ensureChunk(_ c: Int) {
        if c >= chunkCapacity {
            var n = max(4, chunkCapacity)
            while n <= c { n *= 2 }
            let nb = UnsafeMutablePointer<UnsafeMutablePointer<UInt32>?>.allocate(capacity: n)
            let ni = UnsafeMutablePointer<UnsafeMutablePointer<ScanItem>?>.allocate(capacity: n)
            nb.initialize(repeating: nil, count: n)
            ni.initialize(repeating: nil, count: n)
            if let blocks, let items {
                nb.update(from: blocks, count: chunkCapacity)
                ni.update(from: items, count: chunkCapacity)
                blocks.deallocate()
                items.deallocate()
            }
            blocks = nb
            items = ni
            chunkCapacity = n
        }
        if blocks![c] == nil {
            let chunk = UnsafeMutablePointer<UInt32>.allocate(capacity: PageMap.chunkPages)
            chunk.initialize(repeating: BlockArena.hole, count: PageMap.chunkPages)
            blocks![c] = chunk
        }
    }

    /// The scan item of `page`, creating the chunk's item array on first use (scanner only).
    @inline(__always) mutating func item(_ page: Int) -> UnsafeMutablePointer<ScanItem> {
        let c = page >> PageMap.chunkShift
        ensureChunk(c)
        if items![c] == nil {
            let chunk = UnsafeMutablePointer<ScanItem>.allocate(capacity: PageMap.chunkPages)
            chunk.initialize(repeating: ScanItem(), count: PageMap.chunkPages)
            items![c] = chunk
        }
        return items![c]! + (page & PageMap.chunkMask)
    }

    /// The scan item of `page` if one exists.
    @inline(__always) func existingItem(_ page: Int) -> UnsafeMutablePointer<ScanItem>? {
        let c = page >> PageMap.chunkShift
        guard c < chunkCapacity, let chunk = items![c] else { return nil }
        let p = chunk + (page & PageMap.chunkMask)
        return p.pointee.rawState == 0 ? nil : p
    }

    /// First page index ≥ `from` and < `limit` that is not a hole, or nil.
    public func nextData(from: Int, limit: Int) -> Int? {
        var p = max(0, from)
        while p < limit {
            let c = p >> PageMap.chunkShift
            if c >= chunkCapacity { return nil }
            guard let chunk = blocks![c] else { p = (c + 1) << PageMap.chunkShift; continue }
            let end = min(limit, (c + 1) << PageMap.chunkShift)
            while p < end {
                if chunk[p & PageMap.chunkMask] != BlockArena.hole { return p }
                p += 1
            }
        }
        return nil
    }

    /// First page index ≥ `from` and < `limit` that is a hole, or nil.
    public func nextHole(from: Int, limit: Int) -> Int? {
        var p = max(0, from)
        while p < limit {
            let c = p >> PageMap.chunkShift
            guard c < chunkCapacity, let chunk = blocks![c] else { return p }
            let end = min(limit, (c + 1) << PageMap.chunkShift)
            while p < end {
                if chunk[p & PageMap.chunkMask] == BlockArena.hole { return p }
                p += 1
            }
        }
        return nil
    }

    /// Drops chunk arrays that hold no page and no item at or past `firstPage`'s chunk boundary.
    mutating func trim(fromPage firstPage: Int) {
        let firstChunk = (firstPage + PageMap.chunkMask) >> PageMap.chunkShift
        var c = firstChunk
        while c < chunkCapacity {
            if let chunk = blocks![c] {
                var empty = true
                for i in 0..<PageMap.chunkPages where chunk[i] != BlockArena.hole { empty = false; break }
                if empty, items![c].map({ it in (0..<PageMap.chunkPages).allSatisfy { it[$0].rawState == 0 } }) ?? true {
                    chunk.deallocate()
                    blocks![c] = nil
                    items![c]?.deallocate()
                    items![c] = nil
                }
            }
            c += 1
        }
    }
}
