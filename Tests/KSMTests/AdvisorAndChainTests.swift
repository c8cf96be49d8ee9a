// The scan-time advisor's integer formula (KSM-SPEC §4.6) on fixed inputs, and stable-node
// chains: pruning drops stale dups and a chain of one dup collapses back.
import XCTest
@testable import KSM

final class AdvisorAndChainTests: XCTestCase {
    private func advise(_ h: EngineHarness, pages: UInt32, elapsedMs: UInt64, cpuMs: UInt64) -> UInt32 {
        h.engine.updateTunables { $0.pagesToScan = pages; $0.advisorScanTime = true }
        h.engine.current = h.engine.tunables
        h.engine.runAdvisor(elapsedMs: elapsedMs, cpuMs: cpuMs)
        return h.engine.tunables.pagesToScan
    }

    func testAdvisorFirstStepFollowsTheFormula() {
        // st=10, cpu=10%, factor=2000, change=ewma(0,100)=30: p=500*100/2000*30/100=7,
        // per_cpu=50, floor 50*10=500, cap 30000 -> 500.
        let h = EngineHarness()
        XCTAssertEqual(advise(h, pages: 500, elapsedMs: 10_000, cpuMs: 1_000), 500)
    }

    func testAdvisorRaisesTheRateWhenPassesAreSlowAndCPUIsCheap() {
        // A pass of 400 s at 1% CPU against a 200 s target: st=400, cpu=1, factor=50,
        // change=ewma(0,100)=30: p=20000*100/50*30/100=12000; per_cpu=20000: cap 1.4e6,
        // floor 200000, then advisor_max_pages_to_scan 30000.
        let h = EngineHarness()
        XCTAssertEqual(advise(h, pages: 20_000, elapsedMs: 400_000, cpuMs: 4_000), 30_000)
    }

    func testAdvisorSmoothsChangeOverSteps() {
        let h = EngineHarness { $0.advisorMaxPagesToScan = 1 << 40 }
        _ = advise(h, pages: 1000, elapsedMs: 100_000, cpuMs: 100_000)   // st=100, change 30
        XCTAssertEqual(h.engine.advisorPrevChange, 30)
        _ = advise(h, pages: 1000, elapsedMs: 200_000, cpuMs: 100_000)   // change = (70*30 + 30*200)/100
        XCTAssertEqual(h.engine.advisorPrevChange, 81)
        XCTAssertEqual(h.engine.advisorLast, 200)
    }

    func testChainDupsThatNoPageMapsArePrunedAndTheChainCollapses() {
        let h = EngineHarness { $0.maxPageSharing = 2; $0.stableNodeChainsPruneMillisecs = 0 }
        let f = h.newFile()
        for i in 0..<6 { h.write(f, page: i, page(42)) }
        h.converge()
        XCTAssertEqual(h.figures.chains, 1)
        XCTAssertEqual(h.figures.dups, 3)
        // Rewrite four pages: two dups lose every page and go stale.
        for i in 0..<4 { h.write(f, page: i, page(1_000 + UInt64(i))) }
        h.engine.scanPasses(1)   // the end-of-pass sweep drops the stale dups
        XCTAssertEqual(h.figures.chains, 0, "a chain of one dup is no chain")
        XCTAssertEqual(h.figures.dups, 0)
        XCTAssertEqual(h.figures.shared, 1)
        XCTAssertEqual(h.figures.sharing, 1)
        h.engine.checkInvariants()
    }
}
