// LeakSanitizer for the unit tests (`make sanitize`), checked at the end of the run rather than
// at exit. swift-corelibs-xctest keeps every test case instance, its run record and its name
// until the process exits, reachable from XCTest's own frames while tests run but not after:
// an at-exit check reports all of it (and whatever a test case holds) as leaked. Checked from
// testBundleDidFinish, while XCTest still holds them, only memory nothing can reach counts.
// In a build without AddressSanitizer the check is absent and this does nothing.
import Foundation
import XCTest

final class LeakCheckAtEnd: NSObject, XCTestObservation {
    nonisolated(unsafe) private static var registered = false

    /// Registers once (from the first test class that runs it).
    static func register() {
        guard !registered else { return }
        registered = true
        XCTestObservationCenter.shared.addTestObserver(LeakCheckAtEnd())
    }

    func testBundleDidFinish(_ testBundle: Bundle) {
        guard let symbol = dlsym(nil, "__lsan_do_recoverable_leak_check") else { return }
        let check = unsafeBitCast(symbol, to: (@convention(c) () -> Int32).self)
        if check() != 0 {
            FileHandle.standardError.write("LeakSanitizer: memory leaked during the unit tests (report above)\n".data(using: .utf8)!)
            exit(1)
        }
    }
}
