// Directory entries against a model: random adds, removes and renames-over while several
// readers walk the directory in small steps, as getdents does across calls. Each reader must
// see every name present for its whole walk exactly once, no name that stayed twice, and only names that
// existed at some time during the walk; tombstones never pile up, however long a reader
// stays open (they used to, while any handle was open).
import FUSE
@testable import KSMFS
import XCTest

final class DirectoryTests: XCTestCase {
    private struct Reader {
        var position: Int64 = 0
        var seen: [Name: Int] = [:]
        var presentAtStart: Set<Name>
        var removedDuring: Set<Name> = []
        var everPresent: Set<Name>
    }

    func testReadersSeeStableEntriesOnceWhileTheDirectoryChurns() {
        var rng = Rng(s: 0x5EED_D1)
        let dir = Directory(parent: 1)
        var model: [Name: Inode] = [:]
        var nextIno: UInt64 = 2
        var readers: [Reader] = []
        var maxSlots = 0
        for step in 0..<200_000 {
            switch rng.below(100) {
            case 0..<45:
                let name = Name("f\(rng.below(5_000))")
                if model[name] == nil {
                    let inode = Inode(ino: nextIno, mode: S_IFREG | 0o644, uid: 0, gid: 0, kind: .special)
                    nextIno += 1
                    dir.insert(name, inode)
                    model[name] = inode
                    for r in readers.indices { readers[r].everPresent.insert(name) }
                }
            case 45..<90:
                let name = Name("f\(rng.below(5_000))")
                if model[name] != nil {
                    XCTAssertTrue(dir.remove(name) === model.removeValue(forKey: name))
                    for r in readers.indices { readers[r].removedDuring.insert(name) }
                }
            case 90..<93:
                let name = Name("f\(rng.below(5_000))")
                if model[name] != nil {
                    let inode = Inode(ino: nextIno, mode: S_IFREG | 0o644, uid: 0, gid: 0, kind: .special)
                    nextIno += 1
                    dir.replace(name, with: inode)
                    model[name] = inode
                }
            case 93..<95:
                if readers.count < 4 {
                    let names = Set(model.keys)
                    readers.append(Reader(presentAtStart: names, everPresent: names))
                }
            default:
                guard !readers.isEmpty else { break }
                let r = rng.below(readers.count)
                var budget = 1 + rng.below(64)
                var finished = true
                dir.forEach(from: readers[r].position) { seq, name, inode in
                    if budget == 0 { finished = false; return false }
                    budget -= 1
                    readers[r].seen[name, default: 0] += 1
                    readers[r].position = seq + 1
                    XCTAssertTrue(model[name] === inode, "step \(step): \(name) listed with a stale inode")
                    return true
                }
                if finished {
                    let rd = readers.remove(at: r)
                    // A name removed and added again during the walk is a new entry: POSIX leaves
                    // open whether it is listed, so it may be listed twice.
                    let twice = rd.seen.filter { $0.value > 1 && !rd.removedDuring.contains($0.key) }.map(\.key)
                    XCTAssertTrue(twice.isEmpty, "step \(step): listed twice: \(twice.prefix(5))")
                    let stable = rd.presentAtStart.subtracting(rd.removedDuring)
                    let missing = stable.subtracting(rd.seen.keys)
                    XCTAssertTrue(missing.isEmpty, "step \(step): \(missing.count) names present throughout were not listed")
                    let foreign = Set(rd.seen.keys).subtracting(rd.everPresent)
                    XCTAssertTrue(foreign.isEmpty, "step \(step): listed names that never existed: \(foreign.prefix(5))")
                }
            }
            XCTAssertEqual(dir.count, model.count)
            maxSlots = max(maxSlots, dir.storedSlots)
            XCTAssertLessThanOrEqual(dir.storedSlots, 2 * dir.count + 34, "step \(step): tombstones pile up")
            if step % 10_000 == 0 {
                for (name, inode) in model { XCTAssertTrue(dir.lookup(name) === inode) }
            }
        }
        XCTAssertGreaterThan(maxSlots, 1_000)
    }

    func testEmptyingALargeDirectoryGivesBackItsStorage() {
        let dir = Directory(parent: 1)
        let inode = Inode(ino: 2, mode: S_IFREG | 0o644, uid: 0, gid: 0, kind: .special)
        for i in 0..<100_000 { dir.insert(Name("file-\(i)"), inode) }
        var position: Int64 = 0
        dir.forEach { seq, _, _ in position = seq; return seq < 10 }   // a reader stopped early
        for i in 0..<100_000 { dir.remove(Name("file-\(i)")) }
        XCTAssertEqual(dir.count, 0)
        XCTAssertLessThanOrEqual(dir.storedSlots, 33)
        XCTAssertLessThanOrEqual(dir.slotCapacity, 256, "an emptied directory keeps its 100,000-slot array")
        dir.insert(Name("late"), inode)
        var after: [Name] = []
        dir.forEach(from: position + 1) { _, name, _ in after.append(name); return true }
        XCTAssertEqual(after, [Name("late")])
    }
}
