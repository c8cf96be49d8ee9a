// A file's pages: page index -> block id, two levels (chunks of 512 entries allocated on
// first write) so a 64 GiB sparse file costs a few hundred KiB. Beside each chunk of block
// ids sits, once the scanner visits it, a chunk of scan items (the kernel's rmap_items).
// The first chunk starts small and grows with the file (2, 4, ... 512 entries), so a small
// file costs bytes, not the 8 KiB of a full chunk pair. It grows only in `set` of a page past
// its end, under the file's exclusive lock; no item pointer is held across such a `set`.
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
    /// Chunks below this index live in one flat directory (the first 8 GiB of a file); the
    /// rest in sparse groups of as many chunks, found by binary search, so that a page at any
    /// offset up to 8 EiB costs one chunk and one group, not a directory spanning the file.
    static let groupShift = 12
    static let groupChunks = 1 << groupShift
    static let groupMask = groupChunks - 1

    struct Group {
        let index: Int
        let blocks: UnsafeMutablePointer<UnsafeMutablePointer<UInt32>?>
        let items: UnsafeMutablePointer<UnsafeMutablePointer<ScanItem>?>
    }

    private(set) var blocks: UnsafeMutablePointer<UnsafeMutablePointer<UInt32>?>?
    private(set) var items: UnsafeMutablePointer<UnsafeMutablePointer<ScanItem>?>?
    private(set) var chunkCapacity = 0
    /// Entries allocated in chunk 0's arrays (0 while it has none).
    private(set) var firstChunkPages = 0
    /// Groups of chunks past the flat directory, sorted by index.
    private var groups: [Group] = []
    /// Non-hole pages (for st_blocks).
    public private(set) var dataPages = 0

    public init() {}

    /// Frees the map itself (the caller releases the blocks first).
    mutating func deallocate() {
        firstChunkPages = 0
        for c in 0..<chunkCapacity {
            blocks?[c]?.deallocate()
            items?[c]?.deallocate()
        }
        blocks?.deallocate()
        items?.deallocate()
        blocks = nil
        items = nil
        chunkCapacity = 0
        for g in groups { PageMap.free(g) }
        groups = []
        dataPages = 0
    }

    private static func free(_ g: Group) {
        for i in 0..<groupChunks {
            g.blocks[i]?.deallocate()
            g.items[i]?.deallocate()
        }
        g.blocks.deallocate()
        g.items.deallocate()
    }

    /// One past the last chunk that could hold pages (the scanner's upper bound).
    public var chunkCount: Int {
        if let last = groups.last { return (last.index + 1) << PageMap.groupShift }
        return chunkCapacity
    }

    /// One past the last page that could be data: the bound of a walk over every page.
    public var pageLimit: Int { chunkCount << PageMap.chunkShift }

    /// Position of the first group with index ≥ `g`.
    private func groupPosition(atLeast g: Int) -> Int {
        var lo = 0, hi = groups.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if groups[mid].index < g { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    private func group(_ g: Int) -> Group? {
        let i = groupPosition(atLeast: g)
        return i < groups.count && groups[i].index == g ? groups[i] : nil
    }

    /// The block array of chunk `c`, if any.
    @inline(__always) func chunkBlocks(_ c: Int) -> UnsafeMutablePointer<UInt32>? {
        if c < chunkCapacity { return blocks![c] }
        if c < PageMap.groupChunks || groups.isEmpty { return nil }
        return group(c >> PageMap.groupShift)?.blocks[c & PageMap.groupMask]
    }

    /// The item array of chunk `c`, if any.
    @inline(__always) func chunkItems(_ c: Int) -> UnsafeMutablePointer<ScanItem>? {
        if c < chunkCapacity { return items![c] }
        if c < PageMap.groupChunks || groups.isEmpty { return nil }
        return group(c >> PageMap.groupShift)?.items[c & PageMap.groupMask]
    }

    /// The directory slots of chunk `c` (created when missing).
    private mutating func slots(_ c: Int) -> (UnsafeMutablePointer<UnsafeMutablePointer<UInt32>?>, UnsafeMutablePointer<UnsafeMutablePointer<ScanItem>?>) {
        if c < PageMap.groupChunks {
            if c >= chunkCapacity {
                var n = max(1, chunkCapacity)
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
            return (blocks! + c, items! + c)
        }
        let g = c >> PageMap.groupShift
        let i = groupPosition(atLeast: g)
        if i == groups.count || groups[i].index != g {
            let b = UnsafeMutablePointer<UnsafeMutablePointer<UInt32>?>.allocate(capacity: PageMap.groupChunks)
            let it = UnsafeMutablePointer<UnsafeMutablePointer<ScanItem>?>.allocate(capacity: PageMap.groupChunks)
            b.initialize(repeating: nil, count: PageMap.groupChunks)
            it.initialize(repeating: nil, count: PageMap.groupChunks)
            groups.insert(Group(index: g, blocks: b, items: it), at: i)
        }
        return (groups[i].blocks + (c & PageMap.groupMask), groups[i].items + (c & PageMap.groupMask))
    }

    /// Entries the arrays of chunk `c` have.
    @inline(__always) func pages(inChunk c: Int) -> Int { c == 0 ? firstChunkPages : PageMap.chunkPages }

    @inline(__always) public func block(_ page: Int) -> UInt32 {
        guard let chunk = chunkBlocks(page >> PageMap.chunkShift) else { return BlockArena.hole }
        if page < PageMap.chunkPages && page >= firstChunkPages { return BlockArena.hole }
        return chunk[page & PageMap.chunkMask]
    }

    /// Whether chunk `c` has any block array (pages may exist in it).
    @inline(__always) func hasChunk(_ c: Int) -> Bool { chunkBlocks(c) != nil }

    /// Sets page `page` to `id` and returns the previous id (the caller owns both references).
    @discardableResult
    public mutating func set(_ page: Int, _ id: UInt32) -> UInt32 {
        let c = page >> PageMap.chunkShift
        if id == BlockArena.hole && (!hasChunk(c) || (c == 0 && page >= firstChunkPages)) { return BlockArena.hole }
        let slot = ensureChunk(c, holding: page & PageMap.chunkMask) + (page & PageMap.chunkMask)
        let old = slot.pointee
        slot.pointee = id
        if old == BlockArena.hole && id != BlockArena.hole { dataPages += 1 }
        if old != BlockArena.hole && id == BlockArena.hole { dataPages -= 1 }
        return old
    }

    /// The block array of chunk `c`, created or (chunk 0) grown so that it holds entry `i`.
    @discardableResult
    private mutating func ensureChunk(_ c: Int, holding i: Int) -> UnsafeMutablePointer<UInt32> {
        if let chunk = chunkBlocks(c), c != 0 || i < firstChunkPages { return chunk }
        let (b, it) = slots(c)
        var n = PageMap.chunkPages
        if c == 0 {
            n = max(2, firstChunkPages)
            while n <= i { n *= 2 }
        }
        let have = c == 0 ? firstChunkPages : 0
        let chunk = UnsafeMutablePointer<UInt32>.allocate(capacity: n)
        if let old = b.pointee { chunk.moveInitialize(from: old, count: have); old.deallocate() }
        (chunk + have).initialize(repeating: BlockArena.hole, count: n - have)
        b.pointee = chunk
        if let oldItems = it.pointee {
            let items = UnsafeMutablePointer<ScanItem>.allocate(capacity: n)
            items.moveInitialize(from: oldItems, count: have)
            (items + have).initialize(repeating: ScanItem(), count: n - have)
            oldItems.deallocate()
            it.pointee = items
        }
        if c == 0 { firstChunkPages = n }
        return chunk
    }

    /// The scan item of `page`, creating the chunk's item array on first use (scanner only).
    @inline(__always) mutating func item(_ page: Int) -> UnsafeMutablePointer<ScanItem> {
        let c = page >> PageMap.chunkShift
        ensureChunk(c, holding: page & PageMap.chunkMask)  // (the page has data: nothing grows)
        if let chunk = chunkItems(c) { return chunk + (page & PageMap.chunkMask) }
        let (_, i) = slots(c)
        let n = pages(inChunk: c)
        let chunk = UnsafeMutablePointer<ScanItem>.allocate(capacity: n)
        chunk.initialize(repeating: ScanItem(), count: n)
        i.pointee = chunk
        return chunk + (page & PageMap.chunkMask)
    }

    /// The scan item of `page` if one exists.
    @inline(__always) func existingItem(_ page: Int) -> UnsafeMutablePointer<ScanItem>? {
        guard let chunk = chunkItems(page >> PageMap.chunkShift) else { return nil }
        if page < PageMap.chunkPages && page >= firstChunkPages { return nil }
        let p = chunk + (page & PageMap.chunkMask)
        return p.pointee.rawState == 0 ? nil : p
    }

    /// The first chunk ≥ `c` that has a block array, or nil.
    private func nextChunk(from c: Int) -> Int? {
        var c = max(0, c)
        while c < chunkCapacity {
            if blocks![c] != nil { return c }
            c += 1
        }
        let start = max(c, PageMap.groupChunks)
        var i = groupPosition(atLeast: start >> PageMap.groupShift)
        while i < groups.count {
            let g = groups[i]
            let base = g.index << PageMap.groupShift
            var k = start > base ? start - base : 0
            while k < PageMap.groupChunks {
                if g.blocks[k] != nil { return base + k }
                k += 1
            }
            i += 1
        }
        return nil
    }

    /// First page index ≥ `from` and < `limit` that is not a hole, or nil.
    public func nextData(from: Int, limit: Int) -> Int? {
        var p = max(0, from)
        while p < limit {
            guard let c = nextChunk(from: p >> PageMap.chunkShift) else { return nil }
            p = max(p, c << PageMap.chunkShift)
            if p >= limit { return nil }
            let chunk = chunkBlocks(c)!
            let end = min(limit, (c + 1) << PageMap.chunkShift)
            let filled = min(end, (c << PageMap.chunkShift) + pages(inChunk: c))
            while p < filled {
                if chunk[p & PageMap.chunkMask] != BlockArena.hole { return p }
                p += 1
            }
            p = max(p, end)
        }
        return nil
    }

    /// First page index ≥ `from` and < `limit` that is a hole, or nil.
    public func nextHole(from: Int, limit: Int) -> Int? {
        var p = max(0, from)
        while p < limit {
            let c = p >> PageMap.chunkShift
            guard let chunk = chunkBlocks(c) else { return p }
            let end = min(limit, (c + 1) << PageMap.chunkShift)
            while p < end {
                if p & PageMap.chunkMask >= pages(inChunk: c) { return p }
                if chunk[p & PageMap.chunkMask] == BlockArena.hole { return p }
                p += 1
            }
        }
        return nil
    }

    /// Drops chunk arrays that hold no page and no item at or past `firstPage`'s chunk boundary
    /// (and groups left empty).
    mutating func trim(fromPage firstPage: Int) {
        let firstChunk = (firstPage + PageMap.chunkMask) >> PageMap.chunkShift
        func drop(_ b: UnsafeMutablePointer<UnsafeMutablePointer<UInt32>?>, _ it: UnsafeMutablePointer<UnsafeMutablePointer<ScanItem>?>,
                  entries: Int = PageMap.chunkPages) -> Bool {
            guard let chunk = b.pointee else { return false }
            for i in 0..<entries where chunk[i] != BlockArena.hole { return false }
            if let items = it.pointee {
                for i in 0..<entries where items[i].rawState != 0 { return false }
                items.deallocate()
                it.pointee = nil
            }
            chunk.deallocate()
            b.pointee = nil
            return true
        }
        var c = firstChunk
        while c < chunkCapacity {
            if drop(blocks! + c, items! + c, entries: pages(inChunk: c)) && c == 0 { firstChunkPages = 0 }
            c += 1
        }
        var kept: [Group] = []
        for g in groups {
            let base = g.index << PageMap.groupShift
            if base + PageMap.groupMask >= firstChunk {
                for k in max(0, firstChunk - base)..<PageMap.groupChunks { _ = drop(g.blocks + k, g.items + k) }
            }
            if (0..<PageMap.groupChunks).allSatisfy({ g.blocks[$0] == nil && g.items[$0] == nil }) {
                PageMap.free(g)
            } else {
                kept.append(g)
            }
        }
        groups = kept
    }
}
