// ContentTree: the red-black tree behind both KSM trees, stable and unstable. Like mm/ksm.c's
// rbtrees it is ordered by the bytes of the pages (memcmp of whole 4 KiB blocks in the arena),
// not by any id. Nodes live in one growable pool linked by 32-bit ids, so the scanner's lookups,
// inserts and removals allocate nothing and touch no ARC; the engine keeps the ids it is given.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A red-black tree of arena blocks ordered by their contents.
///
/// - Keys: each node names a block id; its content is `arenaBase + block * pageSize`, compared
///   with `memcmp` over the full page. Contents in the tree must be distinct, and must not change
///   while the block is in the tree if the order is to be trusted (the unstable tree tolerates
///   changes the way the kernel's does: lookups stay finite, results may be wrong, and the engine
///   verifies bytes before merging and resets the tree every pass).
/// - Node ids: `UInt32`, 0 means "none". An id stays valid until `remove` or `removeAll`;
///   after that it may be handed out again for another node.
/// - Payload: three words `a`, `b`, `c` per node that the tree never interprets.
///
/// Thread safety: none. Only the scanner thread may touch a `ContentTree`.
public final class ContentTree {
    /// One pool slot. 29 bytes of fields, 32-byte stride. Slot 0 is the nil node: black, all
    /// links 0, never written after `init`.
    struct Node {
        var left: UInt32
        var right: UInt32
        var parent: UInt32       // for a node on the free list: unused (0)
        var block: UInt32        // the key: a block id in the arena
        var a: UInt32
        var b: UInt32
        var c: UInt32
        var color: UInt8         // red, black, or free (on the free list, linked through `left`)
        /// The content's first 8 bytes, big-endian: comparing it orders as memcmp does, and
        /// most comparisons end here without touching the page (a cache miss per tree level).
        var prefix: UInt64 = 0
    }

    @inline(__always)
    static func prefix(_ page: UnsafeRawPointer) -> UInt64 {
        UInt64(bigEndian: page.loadUnaligned(as: UInt64.self))
    }

    static let red: UInt8 = 0
    static let black: UInt8 = 1
    static let onFreeList: UInt8 = 2

    /// Largest pool size: every `UInt32` is an id (0 reserved), capped by what `Int` can address.
    private static let poolLimit: Int =
        Int(exactly: UInt64(UInt32.max) + 1) ?? Int.max / MemoryLayout<Node>.stride

    private let arenaBase: UnsafeRawPointer
    private let pageSize: Int
    private var pool: UnsafeMutablePointer<Node>
    /// Slots allocated in `pool`.
    public private(set) var capacity: Int
    /// Ids `1 ..< highWater` have been handed out at least once (since the last `removeAll`).
    private(set) var highWater: Int = 1
    private var freeHead: UInt32 = 0
    private var root: UInt32 = 0

    /// Nodes in the tree.
    public private(set) var count: Int = 0
    public var isEmpty: Bool { count == 0 }

    /// - Parameters:
    ///   - arenaBase: start of the block arena; block `k` is at `arenaBase + k * pageSize`.
    ///   - initialCapacity: pool slots to allocate up front (grows by doubling).
    public init(arenaBase: UnsafeRawPointer, pageSize: Int = 4096, initialCapacity: Int = 64) {
        precondition(pageSize > 0, "ContentTree: pageSize must be positive, got \(pageSize)")
        self.arenaBase = arenaBase
        self.pageSize = pageSize
        let slots = min(max(initialCapacity, 2), Self.poolLimit)
        guard let raw = malloc(slots * MemoryLayout<Node>.stride) else {
            preconditionFailure("ContentTree: cannot allocate a node pool of \(slots) nodes")
        }
        pool = raw.bindMemory(to: Node.self, capacity: slots)
        capacity = slots
        pool.initialize(to: Node(left: 0, right: 0, parent: 0, block: 0, a: 0, b: 0, c: 0, color: Self.black))
    }

    deinit { free(pool) }

    /// When set, nodes of equal content are further ordered by payload word `c` (the
    /// unstable tree keys pages by (content, owner) when owners must not merge). Change it only
    /// while the tree is empty.
    public var orderEqualContentByC = false

    /// memcmp of the contents, then (if enabled) the `c` words.
    @inline(__always)
    private func compare(_ page: UnsafeRawPointer, _ c: UInt32, _ node: UInt32) -> Int32 {
        let mine = ContentTree.prefix(page), theirs = pool[node].prefix
        if mine != theirs { return mine < theirs ? -1 : 1 }
        let r = memcmp(page + 8, content(pool[node].block) + 8, pageSize - 8)
        if r != 0 || !orderEqualContentByC { return r }
        let other = pool[node].c
        return c == other ? 0 : (c < other ? -1 : 1)
    }

    /// The node whose content (and `c`, when ordering by it) equals `page`'s.
    public func search(_ page: UnsafeRawPointer, c: UInt32) -> UInt32 {
        var cur = root
        while cur != 0 {
            let r = compare(page, c, cur)
            if r == 0 { return cur }
            cur = r < 0 ? pool[cur].left : pool[cur].right
        }
        return 0
    }

    // MARK: Lookup

    /// The node whose block content equals `page` (one page of `pageSize` bytes), or 0.
    public func search(_ page: UnsafeRawPointer) -> UInt32 {
        var cur = root
        let mine = ContentTree.prefix(page)
        while cur != 0 {
            let theirs = pool[cur].prefix
            let r: Int32 = mine != theirs ? (mine < theirs ? -1 : 1)
                : memcmp(page + 8, content(pool[cur].block) + 8, pageSize - 8)
            if r == 0 { return cur }
            cur = r < 0 ? pool[cur].left : pool[cur].right
        }
        return 0
    }

    /// One descent: returns the node whose content equals `page` untouched (`inserted == false`),
    /// or inserts a new node with key `block` (whose content must be `page`'s) and rebalances.
    public func findOrInsert(
        _ page: UnsafeRawPointer, block: UInt32, a: UInt32, b: UInt32, c: UInt32
    ) -> (node: UInt32, inserted: Bool) {
        return link(page, block: block, a: a, b: b, c: c, stopOnEqual: true)
    }

    /// Inserts `block` knowing its content is not in the tree (asserted in debug builds only).
    public func insert(block: UInt32, a: UInt32, b: UInt32, c: UInt32) -> UInt32 {
        return link(content(block), block: block, a: a, b: b, c: c, stopOnEqual: false).node
    }

    // MARK: Removal

    /// Unlinks `node`, rebalances, and returns its id to the free list.
    public func remove(_ node: UInt32) {
        precondition(isLive(node), "ContentTree.remove: node \(node) is not in the tree")
        let z = node
        let x: UInt32
        let xParent: UInt32
        var removedColor = pool[z].color
        if pool[z].left == 0 {
            x = pool[z].right
            xParent = pool[z].parent
            transplant(z, x)
        } else if pool[z].right == 0 {
            x = pool[z].left
            xParent = pool[z].parent
            transplant(z, x)
        } else {
            // Two children: the in-order successor y takes z's place and color.
            var y = pool[z].right
            while pool[y].left != 0 { y = pool[y].left }
            removedColor = pool[y].color
            x = pool[y].right
            if pool[y].parent == z {
                xParent = y
            } else {
                xParent = pool[y].parent
                transplant(y, x)
                pool[y].right = pool[z].right
                pool[pool[y].right].parent = y
            }
            transplant(z, y)
            pool[y].left = pool[z].left
            pool[pool[y].left].parent = y
            pool[y].color = pool[z].color
        }
        if removedColor == Self.black { removeFixup(x, xParent) }
        pool[z] = Node(left: freeHead, right: 0, parent: 0, block: 0, a: 0, b: 0, c: 0, color: Self.onFreeList)
        freeHead = z
        count -= 1
    }

    /// Empties the tree in O(1), keeping the pool memory. Every node id becomes invalid.
    public func removeAll() {
        root = 0
        count = 0
        freeHead = 0
        highWater = 1
    }

    // MARK: Node access

    /// True if `node` is currently in the tree.
    public func isLive(_ node: UInt32) -> Bool {
        return node != 0 && Int(node) < highWater && pool[node].color != Self.onFreeList
    }

    public func block(_ node: UInt32) -> UInt32 { assertLive(node); return pool[node].block }
    /// Re-keys `node` to another block; the caller guarantees both blocks have equal content.
    public func setBlock(_ node: UInt32, _ block: UInt32) { assertLive(node); pool[node].block = block }
    public func a(_ node: UInt32) -> UInt32 { assertLive(node); return pool[node].a }
    public func setA(_ node: UInt32, _ value: UInt32) { assertLive(node); pool[node].a = value }
    public func b(_ node: UInt32) -> UInt32 { assertLive(node); return pool[node].b }
    public func setB(_ node: UInt32, _ value: UInt32) { assertLive(node); pool[node].b = value }
    public func c(_ node: UInt32) -> UInt32 { assertLive(node); return pool[node].c }
    public func setC(_ node: UInt32, _ value: UInt32) { assertLive(node); pool[node].c = value }

    // MARK: In-order iteration (no allocation)

    /// The node with the smallest content, or 0 if the tree is empty.
    public func first() -> UInt32 {
        var cur = root
        if cur == 0 { return 0 }
        while pool[cur].left != 0 { cur = pool[cur].left }
        return cur
    }

    /// The node after `node` in content order, or 0 after the last one.
    /// Removing `node` invalidates it: take `next` first.
    public func next(_ node: UInt32) -> UInt32 {
        assertLive(node)
        var cur = pool[node].right
        if cur != 0 {
            while pool[cur].left != 0 { cur = pool[cur].left }
            return cur
        }
        cur = node
        var up = pool[cur].parent
        while up != 0 && pool[up].right == cur {
            cur = up
            up = pool[up].parent
        }
        return up
    }

    // MARK: Invariants

    /// Stops with a message if any red-black, linkage, ordering or pool rule is broken.
    /// Pass `checkOrder: false` for a tree whose block contents may have changed in place.
    public func checkInvariants(checkOrder: Bool = true) {
        let nilNode = pool[0]
        precondition(nilNode.left == 0 && nilNode.right == 0 && nilNode.parent == 0
                     && nilNode.color == Self.black, "ContentTree: nil node 0 was written to")
        precondition(highWater >= 1 && highWater <= capacity,
                     "ContentTree: high-water mark \(highWater) outside pool of \(capacity)")
        if root != 0 {
            precondition(Int(root) < highWater, "ContentTree: root id \(root) was never allocated")
            precondition(pool[root].parent == 0, "ContentTree: root \(root) has parent \(pool[root].parent)")
            precondition(pool[root].color == Self.black, "ContentTree: root \(root) is red")
        }
        var reached = 0
        var previous: UInt32 = 0
        _ = checkSubtree(root, reached: &reached, previous: &previous, checkOrder: checkOrder)
        precondition(reached == count, "ContentTree: count is \(count) but \(reached) nodes are reachable")

        var freeCount = 0
        var f = freeHead
        while f != 0 {
            precondition(Int(f) < highWater, "ContentTree: free-list id \(f) was never allocated")
            precondition(pool[f].color == Self.onFreeList, "ContentTree: node \(f) is on the free list and in the tree")
            freeCount += 1
            precondition(freeCount < highWater, "ContentTree: free list has a cycle")
            f = pool[f].left
        }
        precondition(count + freeCount == highWater - 1,
                     "ContentTree: \(highWater - 1) ids handed out but \(count) live + \(freeCount) free")
    }

    /// Checks one subtree and returns its black height (nil leaves count as 1).
    private func checkSubtree(_ n: UInt32, reached: inout Int, previous: inout UInt32, checkOrder: Bool) -> Int {
        if n == 0 { return 1 }
        precondition(Int(n) < highWater, "ContentTree: link to id \(n), which was never allocated")
        reached += 1
        precondition(reached <= count, "ContentTree: more than count (\(count)) nodes reachable: a cycle or shared child")
        let node = pool[n]
        precondition(node.color == Self.red || node.color == Self.black,
                     "ContentTree: node \(n) is reachable from the root but marked free")
        checkChild(node.left, of: n)
        checkChild(node.right, of: n)
        let leftHeight = checkSubtree(node.left, reached: &reached, previous: &previous, checkOrder: checkOrder)
        if checkOrder && previous != 0 {
            let p = pool[previous].block
            precondition(compare(content(p), pool[previous].c, n) < 0,
                         "ContentTree: in-order contents not strictly increasing: block \(p) (node \(previous)) is not < block \(node.block) (node \(n))")
        }
        previous = n
        let rightHeight = checkSubtree(node.right, reached: &reached, previous: &previous, checkOrder: checkOrder)
        precondition(leftHeight == rightHeight,
                     "ContentTree: black heights under node \(n) differ: left \(leftHeight), right \(rightHeight)")
        return leftHeight + (node.color == Self.black ? 1 : 0)
    }

    private func checkChild(_ child: UInt32, of n: UInt32) {
        if child == 0 { return }
        precondition(Int(child) < highWater, "ContentTree: link to id \(child), which was never allocated")
        precondition(pool[child].parent == n,
                     "ContentTree: node \(child) is a child of \(n) but its parent link is \(pool[child].parent)")
        precondition(!(isRed(n) && isRed(child)), "ContentTree: red node \(n) has red child \(child)")
    }

    // MARK: Internals

    @inline(__always)
    private func content(_ block: UInt32) -> UnsafeRawPointer {
        return arenaBase + Int(block) * pageSize
    }

    @inline(__always)
    private func assertLive(_ node: UInt32) {
        assert(isLive(node), "ContentTree: node \(node) is not in the tree")
    }

    @inline(__always)
    private func isRed(_ n: UInt32) -> Bool { pool[n].color == Self.red }

    /// The single descent shared by `findOrInsert` and `insert`.
    @inline(__always)
    private func link(
        _ page: UnsafeRawPointer, block: UInt32, a: UInt32, b: UInt32, c: UInt32, stopOnEqual: Bool
    ) -> (node: UInt32, inserted: Bool) {
        var parent: UInt32 = 0
        var cur = root
        var goLeft = false
        while cur != 0 {
            let r = compare(page, c, cur)
            if r == 0 {
                if stopOnEqual { return (cur, false) }
                assertionFailure("ContentTree.insert: content of block \(block) is already in the tree (node \(cur))")
            }
            parent = cur
            goLeft = r < 0
            cur = goLeft ? pool[cur].left : pool[cur].right
        }
        let n = allocate()   // may move the pool; nothing above holds a pointer into it
        pool[n] = Node(left: 0, right: 0, parent: parent, block: block, a: a, b: b, c: c, color: Self.red,
                       prefix: ContentTree.prefix(page))
        if parent == 0 {
            root = n
        } else if goLeft {
            pool[parent].left = n
        } else {
            pool[parent].right = n
        }
        count += 1
        insertFixup(n)
        return (n, true)
    }

    /// Pops the free list, or hands out the next never-used id (growing the pool if full).
    @inline(__always)
    private func allocate() -> UInt32 {
        if freeHead != 0 {
            let id = freeHead
            freeHead = pool[id].left
            return id
        }
        if highWater == capacity { grow() }
        let id = UInt32(truncatingIfNeeded: highWater)   // highWater < capacity <= 2^32
        highWater += 1
        return id
    }

    private func grow() {
        guard capacity < Self.poolLimit else {
            preconditionFailure("ContentTree: node pool exhausted: 32-bit node ids allow at most \(UInt32.max) nodes")
        }
        let newCapacity = capacity <= Self.poolLimit / 2 ? capacity * 2 : Self.poolLimit
        guard let raw = realloc(pool, newCapacity * MemoryLayout<Node>.stride) else {
            preconditionFailure("ContentTree: out of memory growing the node pool to \(newCapacity) nodes")
        }
        pool = raw.bindMemory(to: Node.self, capacity: newCapacity)
        capacity = newCapacity
    }

    /// Puts `v` where `u` hangs from its parent (or at the root). `v` may be 0.
    @inline(__always)
    private func transplant(_ u: UInt32, _ v: UInt32) {
        let up = pool[u].parent
        if up == 0 {
            root = v
        } else if pool[up].left == u {
            pool[up].left = v
        } else {
            pool[up].right = v
        }
        if v != 0 { pool[v].parent = up }
    }

    /// The child of `n` on side `right` (false: left).
    @inline(__always)
    private func child(_ n: UInt32, _ right: Bool) -> UInt32 { right ? pool[n].right : pool[n].left }

    @inline(__always)
    private func setChild(_ n: UInt32, _ right: Bool, _ c: UInt32) {
        if right { pool[n].right = c } else { pool[n].left = c }
    }

    /// Rotates `x` down to side `right` (false: a left rotation); its child on the other side
    /// takes its place.
    private func rotate(_ x: UInt32, down right: Bool) {
        let y = child(x, !right)
        let inner = child(y, right)
        setChild(x, !right, inner)
        if inner != 0 { pool[inner].parent = x }
        transplant(x, y)
        setChild(y, right, x)
        pool[x].parent = y
    }

    /// Resolves a red-red pair starting at a newly inserted red node (both mirror cases at once:
    /// `side` is the side of its grandparent on which the parent hangs).
    private func insertFixup(_ inserted: UInt32) {
        var z = inserted
        while true {
            let p = pool[z].parent
            guard p != 0, isRed(p) else { break }
            let g = pool[p].parent   // p is red, so it is not the root: g != 0
            let side = pool[g].right == p
            let uncle = child(g, !side)
            if isRed(uncle) {        // recolor and move the problem two levels up
                pool[p].color = Self.black
                pool[uncle].color = Self.black
                pool[g].color = Self.red
                z = g
                continue
            }
            if z == child(p, !side) { // inner grandchild: make it outer first
                rotate(p, down: side)
                z = p
            }
            pool[pool[z].parent].color = Self.black
            pool[g].color = Self.red
            rotate(g, down: !side)
        }
        pool[root].color = Self.black
    }

    /// Restores the black height after a black node left the path through `x` (which may be
    /// the nil id 0, hence the explicit `parent`). `side` is the side of `parent` where `x` is.
    private func removeFixup(_ start: UInt32, _ startParent: UInt32) {
        var x = start
        var parent = startParent
        while x != root && !isRed(x) {
            let side = pool[parent].left != x
            var w = child(parent, !side)   // non-nil: that side is one black taller
            if isRed(w) {
                pool[w].color = Self.black
                pool[parent].color = Self.red
                rotate(parent, down: side)
                w = child(parent, !side)
            }
            if !isRed(pool[w].left) && !isRed(pool[w].right) {
                pool[w].color = Self.red
                x = parent
                parent = pool[x].parent
                continue
            }
            if !isRed(child(w, !side)) {   // near nephew red, far black: rotate it outwards
                pool[child(w, side)].color = Self.black
                pool[w].color = Self.red
                rotate(w, down: !side)
                w = child(parent, !side)
            }
            pool[w].color = pool[parent].color
            pool[parent].color = Self.black
            pool[child(w, !side)].color = Self.black
            rotate(parent, down: side)
            x = root
        }
        if x != 0 { pool[x].color = Self.black }
    }
}

/// Node ids index the pool directly: `pool[id]` with a `UInt32`, no conversion noise.
private extension UnsafeMutablePointer where Pointee == ContentTree.Node {
    subscript(id: UInt32) -> ContentTree.Node {
        @inline(__always) unsafeAddress { UnsafePointer(self + Int(id)) }
        @inline(__always) nonmutating unsafeMutableAddress { self + Int(id) }
    }
}
