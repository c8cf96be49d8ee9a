// The reserve for the kernel's dirty data and the handle encoding behind write admission.
import XCTest
@testable import KSMFS

final class CapacityTests: XCTestCase {
    func testDirtyLimitIsASixteenthOfTheMountBetween1And64MiB() {
        XCTAssertEqual(CapacityReserve.dirtyLimit(forCapacity: 8 << 20), 1 << 20)
        XCTAssertEqual(CapacityReserve.dirtyLimit(forCapacity: 256 << 20), 16 << 20)
        XCTAssertEqual(CapacityReserve.dirtyLimit(forCapacity: 12 << 30), 64 << 20)
    }

    func testReserveIsTwiceTheDirtyLimitPlus2MiBAtMostAQuarterOfTheMount() {
        XCTAssertEqual(CapacityReserve(capacityBytes: 1 << 30, dirtyLimitBytes: 64 << 20).blocks, (130 << 20) / 4096)
        XCTAssertEqual(CapacityReserve(capacityBytes: 64 << 20, dirtyLimitBytes: 4 << 20).blocks, (10 << 20) / 4096)
        XCTAssertEqual(CapacityReserve(capacityBytes: 8 << 20, dirtyLimitBytes: 1 << 20).blocks, (2 << 20) / 4096)
        XCTAssertEqual(CapacityReserve(capacityBytes: 64 << 20, dirtyLimitBytes: 48 << 20).blocks, (16 << 20) / 4096,
                       "a kernel limit that cannot be lowered is capped at a quarter of the mount")
    }

    func testFileHandlesCarryWhetherTheyWriteThroughTheCache() {
        let cached = FileHandle(writable: true, direct: false)
        XCTAssertTrue(cached.cachedWriter)
        XCTAssertFalse(FileHandle(writable: true, direct: true).cachedWriter)
        XCTAssertFalse(FileHandle(writable: false, direct: false).cachedWriter)
        XCTAssertFalse(FileHandle(raw: 3).cachedWriter, "a /ksm handle is not a regular file's")
        XCTAssertTrue(FileHandle(raw: cached.raw).writable)
    }
}
