// The /ksm control-file parser against the kernel. The tables below were measured on
// /sys/kernel/mm/ksm (Linux 6.18, x86_64): one write(2) of exactly these bytes per case, then a
// read back; rows marked "model only" are `run` values that must never reach the kernel.
// Leaves out context-dependent errors (EBUSY, the advisor's lock): those belong to the engine.

import XCTest
@testable import KSMFS
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What one write does: sets a value, fails with an errno, or (0 bytes) nothing.
private enum Expect: Equatable {
    case set(ControlWrite)
    case fail(Int32)
    case noop
}

private typealias Row = (input: [UInt8], expect: Expect)

/// The UTF-8 bytes of `s` ("\0" is a NUL byte).
private func b(_ s: String) -> [UInt8] { Array(s.utf8) }

/// `count` copies of the one-byte string `s`.
private func r(_ s: String, _ count: Int) -> [UInt8] { Array(repeating: s.utf8.first!, count: count) }

private func outcome(_ name: String, _ input: [UInt8]) -> Expect {
    switch ControlParser.parse(file: name, bytes: input) {
    case .success(nil): return .noop
    case .success(let write?): return .set(write)
    case .failure(let error): return .fail(error.errno)
    }
}

private func show(_ input: [UInt8]) -> String {
    let head = input.prefix(24).map { c -> String in
        switch c {
        case 0x0A: return "\\n"
        case 0x0D: return "\\r"
        case 0x09: return "\\t"
        case 0x00: return "\\0"
        case 0x20..<0x7F: return String(UnicodeScalar(c))
        default: return "\\x" + String(c, radix: 16)
        }
    }.joined()
    return "\"" + head + (input.count > 24 ? "…\" (\(input.count) bytes)" : "\"")
}

final class ControlParserTests: XCTestCase {
    private static let numberFiles = [
        "run", "pages_to_scan", "sleep_millisecs", "max_page_sharing", "merge_across_nodes",
        "stable_node_chains_prune_millisecs", "advisor_max_cpu", "advisor_min_pages_to_scan",
        "advisor_max_pages_to_scan", "advisor_target_scan_time",
    ]
    private static let counters = [
        "full_scans", "general_profit", "ksm_zero_pages", "pages_scanned", "pages_shared",
        "pages_sharing", "pages_skipped", "pages_unshared", "pages_volatile",
        "stable_node_chains", "stable_node_dups",
    ]

    private func check(_ name: String, _ rows: [Row], line: UInt = #line) {
        for row in rows {
            XCTAssertEqual(outcome(name, row.input), row.expect, "\(name) <- \(show(row.input))", line: line)
        }
    }

    // MARK: Kernel-measured tables, one test per file (1169 cases)

    func testEveryNumberFileRejectsTheseWithEINVAL() {
        for name in Self.numberFiles {
            check(name, Self.rejectedByEveryNumberFile.map { ($0, .fail(EINVAL)) })
        }
    }

    func testRun() { check("run", Self.run) }
    func testPagesToScan() { check("pages_to_scan", Self.pagesToScan) }
    func testSleepMillisecs() { check("sleep_millisecs", Self.sleepMillisecs) }
    func testMaxPageSharing() { check("max_page_sharing", Self.maxPageSharing) }
    func testMergeAcrossNodes() { check("merge_across_nodes", Self.mergeAcrossNodes) }
    func testStableNodeChainsPruneMillisecs() {
        check("stable_node_chains_prune_millisecs", Self.stableNodeChainsPruneMillisecs)
    }
    func testAdvisorMaxCPU() { check("advisor_max_cpu", Self.advisorMaxCPU) }
    func testAdvisorMinPagesToScan() { check("advisor_min_pages_to_scan", Self.advisorMinPagesToScan) }
    func testAdvisorMaxPagesToScan() { check("advisor_max_pages_to_scan", Self.advisorMaxPagesToScan) }
    func testAdvisorTargetScanTime() { check("advisor_target_scan_time", Self.advisorTargetScanTime) }

    func testUseZeroPages() {
        check("use_zero_pages", Self.booleans.map { ($0.input, $0.on.map { .set(.useZeroPages($0)) } ?? .fail(EINVAL)) })
    }

    func testSmartScan() {
        check("smart_scan", Self.booleans.map { ($0.input, $0.on.map { .set(.smartScan($0)) } ?? .fail(EINVAL)) })
    }

    func testAdvisorMode() {
        check("advisor_mode", Self.advisorModes.map {
            ($0.input, $0.scanTime.map { .set(.advisorMode(scanTime: $0)) } ?? .fail(EINVAL))
        })
    }

    // MARK: Rules that hold for every file

    func testValueEndsAtTheFirstNUL() {
        XCTAssertEqual(outcome("sleep_millisecs", b("5\0junk")), .set(.sleepMillisecs(5)))
        XCTAssertEqual(outcome("sleep_millisecs", b("5\n\0\n\n")), .set(.sleepMillisecs(5)))
        XCTAssertEqual(outcome("sleep_millisecs", b("\05")), .fail(EINVAL))
        XCTAssertEqual(outcome("max_page_sharing", b("300\0-")), .set(.maxPageSharing(300)))
        XCTAssertEqual(outcome("advisor_mode", b("none\0junk")), .set(.advisorMode(scanTime: false)))
        XCTAssertEqual(outcome("use_zero_pages", b("o\0n")), .fail(EINVAL))
        XCTAssertEqual(outcome("smart_scan", b("1\0")), .set(.smartScan(true)))
    }

    func testOnlyTheFirst4096BytesOfAWriteAreParsed() {
        XCTAssertEqual(ControlParser.maxWriteSize, 4096)
        XCTAssertEqual(outcome("pages_to_scan", r("0", 4095) + b("7")), .set(.pagesToScan(7)))
        XCTAssertEqual(outcome("pages_to_scan", r("0", 4095) + b("7x")), .set(.pagesToScan(7)))
        XCTAssertEqual(outcome("pages_to_scan", r("0", 4094) + b("7x")), .fail(EINVAL))
        XCTAssertEqual(outcome("pages_to_scan", r("0", 4096) + b("99")), .set(.pagesToScan(0)))
        XCTAssertEqual(outcome("advisor_mode", b("none") + r("\0", 5000)), .set(.advisorMode(scanTime: false)))
        XCTAssertEqual(outcome("advisor_mode", b("scan-time") + r("\n", 4087)), .fail(EINVAL))
        XCTAssertEqual(outcome("smart_scan", b("0") + r("x", 100_000)), .set(.smartScan(false)))
    }

    func testZeroByteWriteToAnyTunableIsANoOp() {
        for entry in ControlParser.files where entry.isTunable {
            XCTAssertEqual(outcome(entry.name, []), .noop, entry.name)
        }
    }

    func testCountersAreReadOnlyEvenForEmptyWrites() {
        for name in Self.counters {
            XCTAssertEqual(outcome(name, b("0")), .fail(EACCES), name)
            XCTAssertEqual(outcome(name, []), .fail(EACCES), name)
        }
    }

    func testUnknownNamesDoNotExist() {
        for name in ["", "RUN", "run\n", " run", "ksm/run", "/run", "runs", "pages_volatile_",
                     "advisor", "max_page_sharing ", "zero_pages"] {
            XCTAssertEqual(outcome(name, b("0")), .fail(ENOENT), show(b(name)))
            XCTAssertEqual(outcome(name, []), .fail(ENOENT), show(b(name)))
        }
    }

    func testParsesAWindowOfALargerBuffer() {
        let buffer = b("xx123\nyy")
        buffer.withUnsafeBytes { raw in
            let window = UnsafeRawBufferPointer(rebasing: raw[2..<6])
            XCTAssertEqual(ControlParser.parse(file: "sleep_millisecs", bytes: window), .success(.sleepMillisecs(123)))
            let empty = UnsafeRawBufferPointer(rebasing: raw[3..<3])
            XCTAssertEqual(ControlParser.parse(file: "sleep_millisecs", bytes: empty), .success(nil))
        }
    }

    func testEveryTunableAcceptsWhatItReadsBack() {
        XCTAssertEqual(outcome("run", ControlParser.format(unsigned: 0)), .set(.run(0)))
        XCTAssertEqual(outcome("pages_to_scan", ControlParser.format(unsigned: 100)), .set(.pagesToScan(100)))
        XCTAssertEqual(outcome("sleep_millisecs", ControlParser.format(unsigned: 20)), .set(.sleepMillisecs(20)))
        XCTAssertEqual(outcome("max_page_sharing", ControlParser.format(unsigned: 256)), .set(.maxPageSharing(256)))
        XCTAssertEqual(outcome("merge_across_nodes", ControlParser.format(unsigned: 1)), .set(.mergeAcrossNodes(true)))
        XCTAssertEqual(outcome("use_zero_pages", ControlParser.format(unsigned: 0)), .set(.useZeroPages(false)))
        XCTAssertEqual(outcome("stable_node_chains_prune_millisecs", ControlParser.format(unsigned: 2000)),
                       .set(.stableNodeChainsPruneMillisecs(2000)))
        XCTAssertEqual(outcome("smart_scan", ControlParser.format(unsigned: 1)), .set(.smartScan(true)))
        XCTAssertEqual(outcome("advisor_max_cpu", ControlParser.format(unsigned: 70)), .set(.advisorMaxCPU(70)))
        XCTAssertEqual(outcome("advisor_min_pages_to_scan", ControlParser.format(unsigned: 500)),
                       .set(.advisorMinPagesToScan(500)))
        XCTAssertEqual(outcome("advisor_max_pages_to_scan", ControlParser.format(unsigned: .max)),
                       .set(.advisorMaxPagesToScan(.max)))
        XCTAssertEqual(outcome("advisor_target_scan_time", ControlParser.format(unsigned: 200)),
                       .set(.advisorTargetScanTime(200)))
        // The mode reads back bracketed, which is not a word the file accepts.
        XCTAssertEqual(outcome("advisor_mode", ControlParser.formatAdvisorMode(scanTime: false)), .fail(EINVAL))
    }

    // MARK: The file list

    func testFilesAreTheKernels24InLsOrder() {
        let names = ControlParser.files.map(\.name)
        XCTAssertEqual(names, [
            "advisor_max_cpu", "advisor_max_pages_to_scan", "advisor_min_pages_to_scan",
            "advisor_mode", "advisor_target_scan_time", "full_scans", "general_profit",
            "ksm_zero_pages", "max_page_sharing", "merge_across_nodes", "pages_scanned",
            "pages_shared", "pages_sharing", "pages_skipped", "pages_to_scan", "pages_unshared",
            "pages_volatile", "run", "sleep_millisecs", "smart_scan", "stable_node_chains",
            "stable_node_chains_prune_millisecs", "stable_node_dups", "use_zero_pages",
        ])
        XCTAssertEqual(names, names.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) })
        XCTAssertEqual(Set(names.filter { name in Self.counters.contains(name) }).count, 11)
        for entry in ControlParser.files {
            XCTAssertEqual(entry.isTunable, !Self.counters.contains(entry.name), entry.name)
            XCTAssertEqual(entry.mode, entry.isTunable ? 0o644 : 0o444, entry.name)
        }
        XCTAssertEqual(ControlParser.files.filter(\.isTunable).count, 13)
        XCTAssertEqual(names.filter { ControlParser.isSigned(file: $0) },
                       ["general_profit", "ksm_zero_pages", "pages_volatile"])
    }

    // MARK: Reading

    func testFormatUnsignedIsPercentLuNewline() {
        XCTAssertEqual(ControlParser.format(unsigned: 0), b("0\n"))
        XCTAssertEqual(ControlParser.format(unsigned: 7), b("7\n"))
        XCTAssertEqual(ControlParser.format(unsigned: 100), b("100\n"))
        XCTAssertEqual(ControlParser.format(unsigned: 30000), b("30000\n"))
        XCTAssertEqual(ControlParser.format(unsigned: 4_294_967_295), b("4294967295\n"))
        XCTAssertEqual(ControlParser.format(unsigned: .max), b("18446744073709551615\n"))
    }

    func testFormatSignedIsPercentLdNewline() {
        XCTAssertEqual(ControlParser.format(signed: 0), b("0\n"))
        XCTAssertEqual(ControlParser.format(signed: 4096), b("4096\n"))
        XCTAssertEqual(ControlParser.format(signed: -1), b("-1\n"))
        XCTAssertEqual(ControlParser.format(signed: -64), b("-64\n"))
        XCTAssertEqual(ControlParser.format(signed: .max), b("9223372036854775807\n"))
        XCTAssertEqual(ControlParser.format(signed: .min), b("-9223372036854775808\n"))
    }

    func testFormatAdvisorModeBracketsTheCurrentOne() {
        XCTAssertEqual(ControlParser.formatAdvisorMode(scanTime: false), b("[none] scan-time\n"))
        XCTAssertEqual(ControlParser.formatAdvisorMode(scanTime: true), b("none [scan-time]\n"))
    }

    func testSliceReturnsTheRestOfTheTextFromTheOffset() {
        let text = b("12345\n")  // kernel: pread on sleep_millisecs holding 12345
        XCTAssertEqual(Array(ControlParser.slice(text, offset: 0, size: 4096)), b("12345\n"))
        XCTAssertEqual(Array(ControlParser.slice(text, offset: 2, size: 4096)), b("345\n"))
        XCTAssertEqual(Array(ControlParser.slice(text, offset: 1, size: 2)), b("23"))
        XCTAssertEqual(Array(ControlParser.slice(text, offset: 5, size: 4096)), b("\n"))
        XCTAssertEqual(Array(ControlParser.slice(text, offset: 6, size: 4096)), [])
        XCTAssertEqual(Array(ControlParser.slice(text, offset: 100, size: 4096)), [])
        XCTAssertEqual(Array(ControlParser.slice(text, offset: 0, size: 0)), [])
        XCTAssertEqual(Array(ControlParser.slice(text, offset: 3, size: .max)), b("45\n"))
        XCTAssertEqual(Array(ControlParser.slice(text, offset: .max, size: .max)), [])
        XCTAssertEqual(Array(ControlParser.slice(text, offset: -1, size: 10)), [])
        XCTAssertEqual(Array(ControlParser.slice([], offset: 0, size: 10)), [])
    }

    // MARK: Tables

    /// Rejected with EINVAL by all ten numeric files (kernel-measured on each of them).
    private static let rejectedByEveryNumberFile: [[UInt8]] = [
        b("\n"),
        b("\n\n"),
        b(" 5"),
        b("5 "),
        b("\t5"),
        b("5\t"),
        b(" 5\n"),
        b("5\n\n"),
        b("5\r\n"),
        b("5\r"),
        b("\r5"),
        b("\n5"),
        b("5\n5"),
        b("5 5"),
        b("-1"),
        b("-0"),
        b("-5"),
        b("-"),
        b("+"),
        b("++5"),
        b("+-5"),
        b("-+5"),
        b("+\n"),
        b("-\n"),
        b("0x10"),
        b("0X10"),
        b("0b1"),
        b("0o7"),
        b("1e3"),
        b("5.0"),
        b("5."),
        b(".5"),
        b("abc"),
        b("5abc"),
        b("a"),
        b("f"),
        b("A"),
        b("5_000"),
        b("5,000"),
        [0xd9, 0xa5],
        [0xff, 0x35],
        b("\u{0}5"),
        b("\0"),
        b("+\u{0}5"),
        b("-2147483648"),
        r("0", 4094) + b("7x"),
    ]

    private static let run: [Row] = [
        (b("5"), .fail(EINVAL)),
        (b("5\n"), .fail(EINVAL)),
        (b("+5"), .fail(EINVAL)),
        (b("+5\n"), .fail(EINVAL)),
        (b("007"), .fail(EINVAL)),
        (b("007\n"), .fail(EINVAL)),
        (b("+007"), .fail(EINVAL)),
        (b("0"), .set(.run(0))),
        (b("0\n"), .set(.run(0))),
        (b("00"), .set(.run(0))),
        (b("+0"), .set(.run(0))),
        (b("010"), .fail(EINVAL)),
        (b("5\0junk"), .fail(EINVAL)),
        (b("5\0"), .fail(EINVAL)),
        (b("5\n\0junk"), .fail(EINVAL)),
        (b("5\0\n\n"), .fail(EINVAL)),
        (b("12\u{0}3"), .fail(EINVAL)),
        (b("65535"), .fail(EINVAL)),
        (b("2147483647"), .fail(EINVAL)),
        (b("2147483648"), .fail(EINVAL)),
        (b("4294967295"), .fail(EINVAL)),
        (b("4294967295\n"), .fail(EINVAL)),
        (b("4294967296"), .fail(EINVAL)),
        (b("4294967301"), .fail(EINVAL)),
        (b("9223372036854775807"), .fail(EINVAL)),
        (b("9223372036854775808"), .fail(EINVAL)),
        (b("18446744073709551615"), .fail(EINVAL)),
        (b("18446744073709551615\n"), .fail(EINVAL)),
        (b("18446744073709551616"), .fail(EINVAL)),
        (b("18446744073709551617"), .fail(EINVAL)),
        (b("99999999999999999999999999"), .fail(EINVAL)),
        (b("18446744073709551616abc"), .fail(EINVAL)),
        (b("18446744073709551616\n\n"), .fail(EINVAL)),
        (b("-2147483649"), .fail(EINVAL)),
        (b("-9223372036854775808"), .fail(EINVAL)),
        (b("-9223372036854775809"), .fail(EINVAL)),
        (b("-18446744073709551616"), .fail(EINVAL)),
        (b("-99999999999999999999abc"), .fail(EINVAL)),
        (r("0", 40) + b("18446744073709551615"), .fail(EINVAL)),
        (r("0", 40) + b("4294967295"), .fail(EINVAL)),
        (r("0", 4095) + b("7"), .fail(EINVAL)),
        (r("0", 4094) + b("7\n"), .fail(EINVAL)),
        (r("0", 4095) + b("7x"), .fail(EINVAL)),
        (r("0", 4095) + b("7\n\n\n"), .fail(EINVAL)),
        (r("0", 4096) + r("x", 4096), .set(.run(0))),
        (r("0", 4095) + b("\n"), .set(.run(0))),
        (b("7") + r("\0", 4096), .fail(EINVAL)),
        (r("0", 4096) + b("\0"), .set(.run(0))),
        (r("8", 4096) + b("\n"), .fail(EINVAL)),
        (b("000"), .set(.run(0))),
        (b("1"), .set(.run(1))),  // model only: never written to the kernel's run
        (b("2"), .set(.run(2))),  // model only: never written to the kernel's run
        (b("1\n"), .set(.run(1))),  // model only: never written to the kernel's run
        (b("+2"), .set(.run(2))),  // model only: never written to the kernel's run
        (b("02"), .set(.run(2))),  // model only: never written to the kernel's run
        (b("3"), .fail(EINVAL)),
        (b("4"), .fail(EINVAL)),
        (b("8"), .fail(EINVAL)),
        (b("255"), .fail(EINVAL)),
        (b("256"), .fail(EINVAL)),
        (b("4294967298"), .fail(EINVAL)),
        (b("1 "), .fail(EINVAL)),
        (b("2x"), .fail(EINVAL)),
        (b("x"), .fail(EINVAL)),
        (b("0x1"), .fail(EINVAL)),
    ]

    private static let pagesToScan: [Row] = [
        (b("5"), .set(.pagesToScan(5))),
        (b("5\n"), .set(.pagesToScan(5))),
        (b("+5"), .set(.pagesToScan(5))),
        (b("+5\n"), .set(.pagesToScan(5))),
        (b("007"), .set(.pagesToScan(7))),
        (b("007\n"), .set(.pagesToScan(7))),
        (b("+007"), .set(.pagesToScan(7))),
        (b("0"), .set(.pagesToScan(0))),
        (b("0\n"), .set(.pagesToScan(0))),
        (b("00"), .set(.pagesToScan(0))),
        (b("+0"), .set(.pagesToScan(0))),
        (b("010"), .set(.pagesToScan(10))),
        (b("5\0junk"), .set(.pagesToScan(5))),
        (b("5\0"), .set(.pagesToScan(5))),
        (b("5\n\0junk"), .set(.pagesToScan(5))),
        (b("5\0\n\n"), .set(.pagesToScan(5))),
        (b("12\u{0}3"), .set(.pagesToScan(12))),
        (b("65535"), .set(.pagesToScan(65535))),
        (b("2147483647"), .set(.pagesToScan(2147483647))),
        (b("2147483648"), .set(.pagesToScan(2147483648))),
        (b("4294967295"), .set(.pagesToScan(4294967295))),
        (b("4294967295\n"), .set(.pagesToScan(4294967295))),
        (b("4294967296"), .fail(EINVAL)),
        (b("4294967301"), .fail(EINVAL)),
        (b("9223372036854775807"), .fail(EINVAL)),
        (b("9223372036854775808"), .fail(EINVAL)),
        (b("18446744073709551615"), .fail(EINVAL)),
        (b("18446744073709551615\n"), .fail(EINVAL)),
        (b("18446744073709551616"), .fail(EINVAL)),
        (b("18446744073709551617"), .fail(EINVAL)),
        (b("99999999999999999999999999"), .fail(EINVAL)),
        (b("18446744073709551616abc"), .fail(EINVAL)),
        (b("18446744073709551616\n\n"), .fail(EINVAL)),
        (b("-2147483649"), .fail(EINVAL)),
        (b("-9223372036854775808"), .fail(EINVAL)),
        (b("-9223372036854775809"), .fail(EINVAL)),
        (b("-18446744073709551616"), .fail(EINVAL)),
        (b("-99999999999999999999abc"), .fail(EINVAL)),
        (r("0", 40) + b("18446744073709551615"), .fail(EINVAL)),
        (r("0", 40) + b("4294967295"), .set(.pagesToScan(4294967295))),
        (r("0", 4095) + b("7"), .set(.pagesToScan(7))),
        (r("0", 4094) + b("7\n"), .set(.pagesToScan(7))),
        (r("0", 4095) + b("7x"), .set(.pagesToScan(7))),
        (r("0", 4095) + b("7\n\n\n"), .set(.pagesToScan(7))),
        (r("0", 4096) + r("x", 4096), .set(.pagesToScan(0))),
        (r("0", 4095) + b("\n"), .set(.pagesToScan(0))),
        (b("7") + r("\0", 4096), .set(.pagesToScan(7))),
        (r("0", 4096) + b("\0"), .set(.pagesToScan(0))),
        (r("8", 4096) + b("\n"), .fail(EINVAL)),
        (b("1"), .set(.pagesToScan(1))),
    ]

    private static let sleepMillisecs: [Row] = [
        (b("5"), .set(.sleepMillisecs(5))),
        (b("5\n"), .set(.sleepMillisecs(5))),
        (b("+5"), .set(.sleepMillisecs(5))),
        (b("+5\n"), .set(.sleepMillisecs(5))),
        (b("007"), .set(.sleepMillisecs(7))),
        (b("007\n"), .set(.sleepMillisecs(7))),
        (b("+007"), .set(.sleepMillisecs(7))),
        (b("0"), .set(.sleepMillisecs(0))),
        (b("0\n"), .set(.sleepMillisecs(0))),
        (b("00"), .set(.sleepMillisecs(0))),
        (b("+0"), .set(.sleepMillisecs(0))),
        (b("010"), .set(.sleepMillisecs(10))),
        (b("5\0junk"), .set(.sleepMillisecs(5))),
        (b("5\0"), .set(.sleepMillisecs(5))),
        (b("5\n\0junk"), .set(.sleepMillisecs(5))),
        (b("5\0\n\n"), .set(.sleepMillisecs(5))),
        (b("12\u{0}3"), .set(.sleepMillisecs(12))),
        (b("65535"), .set(.sleepMillisecs(65535))),
        (b("2147483647"), .set(.sleepMillisecs(2147483647))),
        (b("2147483648"), .set(.sleepMillisecs(2147483648))),
        (b("4294967295"), .set(.sleepMillisecs(4294967295))),
        (b("4294967295\n"), .set(.sleepMillisecs(4294967295))),
        (b("4294967296"), .fail(EINVAL)),
        (b("4294967301"), .fail(EINVAL)),
        (b("9223372036854775807"), .fail(EINVAL)),
        (b("9223372036854775808"), .fail(EINVAL)),
        (b("18446744073709551615"), .fail(EINVAL)),
        (b("18446744073709551615\n"), .fail(EINVAL)),
        (b("18446744073709551616"), .fail(EINVAL)),
        (b("18446744073709551617"), .fail(EINVAL)),
        (b("99999999999999999999999999"), .fail(EINVAL)),
        (b("18446744073709551616abc"), .fail(EINVAL)),
        (b("18446744073709551616\n\n"), .fail(EINVAL)),
        (b("-2147483649"), .fail(EINVAL)),
        (b("-9223372036854775808"), .fail(EINVAL)),
        (b("-9223372036854775809"), .fail(EINVAL)),
        (b("-18446744073709551616"), .fail(EINVAL)),
        (b("-99999999999999999999abc"), .fail(EINVAL)),
        (r("0", 40) + b("18446744073709551615"), .fail(EINVAL)),
        (r("0", 40) + b("4294967295"), .set(.sleepMillisecs(4294967295))),
        (r("0", 4095) + b("7"), .set(.sleepMillisecs(7))),
        (r("0", 4094) + b("7\n"), .set(.sleepMillisecs(7))),
        (r("0", 4095) + b("7x"), .set(.sleepMillisecs(7))),
        (r("0", 4095) + b("7\n\n\n"), .set(.sleepMillisecs(7))),
        (r("0", 4096) + r("x", 4096), .set(.sleepMillisecs(0))),
        (r("0", 4095) + b("\n"), .set(.sleepMillisecs(0))),
        (b("7") + r("\0", 4096), .set(.sleepMillisecs(7))),
        (r("0", 4096) + b("\0"), .set(.sleepMillisecs(0))),
        (r("8", 4096) + b("\n"), .fail(EINVAL)),
    ]

    private static let maxPageSharing: [Row] = [
        (b("5"), .set(.maxPageSharing(5))),
        (b("5\n"), .set(.maxPageSharing(5))),
        (b("+5"), .set(.maxPageSharing(5))),
        (b("+5\n"), .set(.maxPageSharing(5))),
        (b("007"), .set(.maxPageSharing(7))),
        (b("007\n"), .set(.maxPageSharing(7))),
        (b("+007"), .set(.maxPageSharing(7))),
        (b("0"), .fail(EINVAL)),
        (b("0\n"), .fail(EINVAL)),
        (b("00"), .fail(EINVAL)),
        (b("+0"), .fail(EINVAL)),
        (b("010"), .set(.maxPageSharing(10))),
        (b("5\0junk"), .set(.maxPageSharing(5))),
        (b("5\0"), .set(.maxPageSharing(5))),
        (b("5\n\0junk"), .set(.maxPageSharing(5))),
        (b("5\0\n\n"), .set(.maxPageSharing(5))),
        (b("12\u{0}3"), .set(.maxPageSharing(12))),
        (b("65535"), .set(.maxPageSharing(65535))),
        (b("2147483647"), .set(.maxPageSharing(2147483647))),
        (b("2147483648"), .fail(ERANGE)),
        (b("4294967295"), .fail(ERANGE)),
        (b("4294967295\n"), .fail(ERANGE)),
        (b("4294967296"), .fail(ERANGE)),
        (b("4294967301"), .fail(ERANGE)),
        (b("9223372036854775807"), .fail(ERANGE)),
        (b("9223372036854775808"), .fail(ERANGE)),
        (b("18446744073709551615"), .fail(ERANGE)),
        (b("18446744073709551615\n"), .fail(ERANGE)),
        (b("18446744073709551616"), .fail(ERANGE)),
        (b("18446744073709551617"), .fail(ERANGE)),
        (b("99999999999999999999999999"), .fail(ERANGE)),
        (b("18446744073709551616abc"), .fail(ERANGE)),
        (b("18446744073709551616\n\n"), .fail(ERANGE)),
        (b("-2147483649"), .fail(ERANGE)),
        (b("-9223372036854775808"), .fail(ERANGE)),
        (b("-9223372036854775809"), .fail(ERANGE)),
        (b("-18446744073709551616"), .fail(ERANGE)),
        (b("-99999999999999999999abc"), .fail(ERANGE)),
        (r("0", 40) + b("18446744073709551615"), .fail(ERANGE)),
        (r("0", 40) + b("4294967295"), .fail(ERANGE)),
        (r("0", 4095) + b("7"), .set(.maxPageSharing(7))),
        (r("0", 4094) + b("7\n"), .set(.maxPageSharing(7))),
        (r("0", 4095) + b("7x"), .set(.maxPageSharing(7))),
        (r("0", 4095) + b("7\n\n\n"), .set(.maxPageSharing(7))),
        (r("0", 4096) + r("x", 4096), .fail(EINVAL)),
        (r("0", 4095) + b("\n"), .fail(EINVAL)),
        (b("7") + r("\0", 4096), .set(.maxPageSharing(7))),
        (r("0", 4096) + b("\0"), .fail(EINVAL)),
        (r("8", 4096) + b("\n"), .fail(ERANGE)),
        (b("1"), .fail(EINVAL)),
        (b("2"), .set(.maxPageSharing(2))),
        (b("+2"), .set(.maxPageSharing(2))),
        (b("02"), .set(.maxPageSharing(2))),
        (b("3"), .set(.maxPageSharing(3))),
        (b("256"), .set(.maxPageSharing(256))),
        (b("-2"), .fail(EINVAL)),
        (b("2\n"), .set(.maxPageSharing(2))),
        (b("01"), .fail(EINVAL)),
    ]

    private static let mergeAcrossNodes: [Row] = [
        (b("5"), .fail(EINVAL)),
        (b("5\n"), .fail(EINVAL)),
        (b("+5"), .fail(EINVAL)),
        (b("+5\n"), .fail(EINVAL)),
        (b("007"), .fail(EINVAL)),
        (b("007\n"), .fail(EINVAL)),
        (b("+007"), .fail(EINVAL)),
        (b("0"), .set(.mergeAcrossNodes(false))),
        (b("0\n"), .set(.mergeAcrossNodes(false))),
        (b("00"), .set(.mergeAcrossNodes(false))),
        (b("+0"), .set(.mergeAcrossNodes(false))),
        (b("010"), .fail(EINVAL)),
        (b("5\0junk"), .fail(EINVAL)),
        (b("5\0"), .fail(EINVAL)),
        (b("5\n\0junk"), .fail(EINVAL)),
        (b("5\0\n\n"), .fail(EINVAL)),
        (b("12\u{0}3"), .fail(EINVAL)),
        (b("65535"), .fail(EINVAL)),
        (b("2147483647"), .fail(EINVAL)),
        (b("2147483648"), .fail(EINVAL)),
        (b("4294967295"), .fail(EINVAL)),
        (b("4294967295\n"), .fail(EINVAL)),
        (b("4294967296"), .fail(EINVAL)),
        (b("4294967301"), .fail(EINVAL)),
        (b("9223372036854775807"), .fail(EINVAL)),
        (b("9223372036854775808"), .fail(EINVAL)),
        (b("18446744073709551615"), .fail(EINVAL)),
        (b("18446744073709551615\n"), .fail(EINVAL)),
        (b("18446744073709551616"), .fail(ERANGE)),
        (b("18446744073709551617"), .fail(ERANGE)),
        (b("99999999999999999999999999"), .fail(ERANGE)),
        (b("18446744073709551616abc"), .fail(ERANGE)),
        (b("18446744073709551616\n\n"), .fail(ERANGE)),
        (b("-2147483649"), .fail(EINVAL)),
        (b("-9223372036854775808"), .fail(EINVAL)),
        (b("-9223372036854775809"), .fail(EINVAL)),
        (b("-18446744073709551616"), .fail(EINVAL)),
        (b("-99999999999999999999abc"), .fail(EINVAL)),
        (r("0", 40) + b("18446744073709551615"), .fail(EINVAL)),
        (r("0", 40) + b("4294967295"), .fail(EINVAL)),
        (r("0", 4095) + b("7"), .fail(EINVAL)),
        (r("0", 4094) + b("7\n"), .fail(EINVAL)),
        (r("0", 4095) + b("7x"), .fail(EINVAL)),
        (r("0", 4095) + b("7\n\n\n"), .fail(EINVAL)),
        (r("0", 4096) + r("x", 4096), .set(.mergeAcrossNodes(false))),
        (r("0", 4095) + b("\n"), .set(.mergeAcrossNodes(false))),
        (b("7") + r("\0", 4096), .fail(EINVAL)),
        (r("0", 4096) + b("\0"), .set(.mergeAcrossNodes(false))),
        (r("8", 4096) + b("\n"), .fail(ERANGE)),
        (b("1"), .set(.mergeAcrossNodes(true))),
        (b("2"), .fail(EINVAL)),
        (b("1\n"), .set(.mergeAcrossNodes(true))),
        (b("3"), .fail(EINVAL)),
        (b("255"), .fail(EINVAL)),
        (b("01"), .set(.mergeAcrossNodes(true))),
        (b("+1"), .set(.mergeAcrossNodes(true))),
        (b("y"), .fail(EINVAL)),
        (b("n"), .fail(EINVAL)),
        (b("on"), .fail(EINVAL)),
        (b("true"), .fail(EINVAL)),
    ]

    private static let stableNodeChainsPruneMillisecs: [Row] = [
        (b("5"), .set(.stableNodeChainsPruneMillisecs(5))),
        (b("5\n"), .set(.stableNodeChainsPruneMillisecs(5))),
        (b("+5"), .set(.stableNodeChainsPruneMillisecs(5))),
        (b("+5\n"), .set(.stableNodeChainsPruneMillisecs(5))),
        (b("007"), .set(.stableNodeChainsPruneMillisecs(7))),
        (b("007\n"), .set(.stableNodeChainsPruneMillisecs(7))),
        (b("+007"), .set(.stableNodeChainsPruneMillisecs(7))),
        (b("0"), .set(.stableNodeChainsPruneMillisecs(0))),
        (b("0\n"), .set(.stableNodeChainsPruneMillisecs(0))),
        (b("00"), .set(.stableNodeChainsPruneMillisecs(0))),
        (b("+0"), .set(.stableNodeChainsPruneMillisecs(0))),
        (b("010"), .set(.stableNodeChainsPruneMillisecs(10))),
        (b("5\0junk"), .set(.stableNodeChainsPruneMillisecs(5))),
        (b("5\0"), .set(.stableNodeChainsPruneMillisecs(5))),
        (b("5\n\0junk"), .set(.stableNodeChainsPruneMillisecs(5))),
        (b("5\0\n\n"), .set(.stableNodeChainsPruneMillisecs(5))),
        (b("12\u{0}3"), .set(.stableNodeChainsPruneMillisecs(12))),
        (b("65535"), .set(.stableNodeChainsPruneMillisecs(65535))),
        (b("2147483647"), .set(.stableNodeChainsPruneMillisecs(2147483647))),
        (b("2147483648"), .set(.stableNodeChainsPruneMillisecs(2147483648))),
        (b("4294967295"), .set(.stableNodeChainsPruneMillisecs(4294967295))),
        (b("4294967295\n"), .set(.stableNodeChainsPruneMillisecs(4294967295))),
        (b("4294967296"), .fail(EINVAL)),
        (b("4294967301"), .fail(EINVAL)),
        (b("9223372036854775807"), .fail(EINVAL)),
        (b("9223372036854775808"), .fail(EINVAL)),
        (b("18446744073709551615"), .fail(EINVAL)),
        (b("18446744073709551615\n"), .fail(EINVAL)),
        (b("18446744073709551616"), .fail(EINVAL)),
        (b("18446744073709551617"), .fail(EINVAL)),
        (b("99999999999999999999999999"), .fail(EINVAL)),
        (b("18446744073709551616abc"), .fail(EINVAL)),
        (b("18446744073709551616\n\n"), .fail(EINVAL)),
        (b("-2147483649"), .fail(EINVAL)),
        (b("-9223372036854775808"), .fail(EINVAL)),
        (b("-9223372036854775809"), .fail(EINVAL)),
        (b("-18446744073709551616"), .fail(EINVAL)),
        (b("-99999999999999999999abc"), .fail(EINVAL)),
        (r("0", 40) + b("18446744073709551615"), .fail(EINVAL)),
        (r("0", 40) + b("4294967295"), .set(.stableNodeChainsPruneMillisecs(4294967295))),
        (r("0", 4095) + b("7"), .set(.stableNodeChainsPruneMillisecs(7))),
        (r("0", 4094) + b("7\n"), .set(.stableNodeChainsPruneMillisecs(7))),
        (r("0", 4095) + b("7x"), .set(.stableNodeChainsPruneMillisecs(7))),
        (r("0", 4095) + b("7\n\n\n"), .set(.stableNodeChainsPruneMillisecs(7))),
        (r("0", 4096) + r("x", 4096), .set(.stableNodeChainsPruneMillisecs(0))),
        (r("0", 4095) + b("\n"), .set(.stableNodeChainsPruneMillisecs(0))),
        (b("7") + r("\0", 4096), .set(.stableNodeChainsPruneMillisecs(7))),
        (r("0", 4096) + b("\0"), .set(.stableNodeChainsPruneMillisecs(0))),
        (r("8", 4096) + b("\n"), .fail(EINVAL)),
    ]

    private static let advisorMaxCPU: [Row] = [
        (b("5"), .set(.advisorMaxCPU(5))),
        (b("5\n"), .set(.advisorMaxCPU(5))),
        (b("+5"), .set(.advisorMaxCPU(5))),
        (b("+5\n"), .set(.advisorMaxCPU(5))),
        (b("007"), .set(.advisorMaxCPU(7))),
        (b("007\n"), .set(.advisorMaxCPU(7))),
        (b("+007"), .set(.advisorMaxCPU(7))),
        (b("0"), .set(.advisorMaxCPU(0))),
        (b("0\n"), .set(.advisorMaxCPU(0))),
        (b("00"), .set(.advisorMaxCPU(0))),
        (b("+0"), .set(.advisorMaxCPU(0))),
        (b("010"), .set(.advisorMaxCPU(10))),
        (b("5\0junk"), .set(.advisorMaxCPU(5))),
        (b("5\0"), .set(.advisorMaxCPU(5))),
        (b("5\n\0junk"), .set(.advisorMaxCPU(5))),
        (b("5\0\n\n"), .set(.advisorMaxCPU(5))),
        (b("12\u{0}3"), .set(.advisorMaxCPU(12))),
        (b("65535"), .set(.advisorMaxCPU(65535))),
        (b("2147483647"), .set(.advisorMaxCPU(2147483647))),
        (b("2147483648"), .set(.advisorMaxCPU(2147483648))),
        (b("4294967295"), .set(.advisorMaxCPU(4294967295))),
        (b("4294967295\n"), .set(.advisorMaxCPU(4294967295))),
        (b("4294967296"), .set(.advisorMaxCPU(0))),
        (b("4294967301"), .set(.advisorMaxCPU(5))),
        (b("9223372036854775807"), .set(.advisorMaxCPU(4294967295))),
        (b("9223372036854775808"), .set(.advisorMaxCPU(0))),
        (b("18446744073709551615"), .set(.advisorMaxCPU(4294967295))),
        (b("18446744073709551615\n"), .set(.advisorMaxCPU(4294967295))),
        (b("18446744073709551616"), .fail(EINVAL)),
        (b("18446744073709551617"), .fail(EINVAL)),
        (b("99999999999999999999999999"), .fail(EINVAL)),
        (b("18446744073709551616abc"), .fail(EINVAL)),
        (b("18446744073709551616\n\n"), .fail(EINVAL)),
        (b("-2147483649"), .fail(EINVAL)),
        (b("-9223372036854775808"), .fail(EINVAL)),
        (b("-9223372036854775809"), .fail(EINVAL)),
        (b("-18446744073709551616"), .fail(EINVAL)),
        (b("-99999999999999999999abc"), .fail(EINVAL)),
        (r("0", 40) + b("18446744073709551615"), .set(.advisorMaxCPU(4294967295))),
        (r("0", 40) + b("4294967295"), .set(.advisorMaxCPU(4294967295))),
        (r("0", 4095) + b("7"), .set(.advisorMaxCPU(7))),
        (r("0", 4094) + b("7\n"), .set(.advisorMaxCPU(7))),
        (r("0", 4095) + b("7x"), .set(.advisorMaxCPU(7))),
        (r("0", 4095) + b("7\n\n\n"), .set(.advisorMaxCPU(7))),
        (r("0", 4096) + r("x", 4096), .set(.advisorMaxCPU(0))),
        (r("0", 4095) + b("\n"), .set(.advisorMaxCPU(0))),
        (b("7") + r("\0", 4096), .set(.advisorMaxCPU(7))),
        (r("0", 4096) + b("\0"), .set(.advisorMaxCPU(0))),
        (r("8", 4096) + b("\n"), .fail(EINVAL)),
        (b("100"), .set(.advisorMaxCPU(100))),
        (b("101"), .set(.advisorMaxCPU(101))),
        (b("4294967297"), .set(.advisorMaxCPU(1))),
    ]

    private static let advisorMinPagesToScan: [Row] = [
        (b("5"), .set(.advisorMinPagesToScan(5))),
        (b("5\n"), .set(.advisorMinPagesToScan(5))),
        (b("+5"), .set(.advisorMinPagesToScan(5))),
        (b("+5\n"), .set(.advisorMinPagesToScan(5))),
        (b("007"), .set(.advisorMinPagesToScan(7))),
        (b("007\n"), .set(.advisorMinPagesToScan(7))),
        (b("+007"), .set(.advisorMinPagesToScan(7))),
        (b("0"), .set(.advisorMinPagesToScan(0))),
        (b("0\n"), .set(.advisorMinPagesToScan(0))),
        (b("00"), .set(.advisorMinPagesToScan(0))),
        (b("+0"), .set(.advisorMinPagesToScan(0))),
        (b("010"), .set(.advisorMinPagesToScan(10))),
        (b("5\0junk"), .set(.advisorMinPagesToScan(5))),
        (b("5\0"), .set(.advisorMinPagesToScan(5))),
        (b("5\n\0junk"), .set(.advisorMinPagesToScan(5))),
        (b("5\0\n\n"), .set(.advisorMinPagesToScan(5))),
        (b("12\u{0}3"), .set(.advisorMinPagesToScan(12))),
        (b("65535"), .set(.advisorMinPagesToScan(65535))),
        (b("2147483647"), .set(.advisorMinPagesToScan(2147483647))),
        (b("2147483648"), .set(.advisorMinPagesToScan(2147483648))),
        (b("4294967295"), .set(.advisorMinPagesToScan(4294967295))),
        (b("4294967295\n"), .set(.advisorMinPagesToScan(4294967295))),
        (b("4294967296"), .set(.advisorMinPagesToScan(4294967296))),
        (b("4294967301"), .set(.advisorMinPagesToScan(4294967301))),
        (b("9223372036854775807"), .set(.advisorMinPagesToScan(9223372036854775807))),
        (b("9223372036854775808"), .set(.advisorMinPagesToScan(9223372036854775808))),
        (b("18446744073709551615"), .set(.advisorMinPagesToScan(18446744073709551615))),
        (b("18446744073709551615\n"), .set(.advisorMinPagesToScan(18446744073709551615))),
        (b("18446744073709551616"), .fail(EINVAL)),
        (b("18446744073709551617"), .fail(EINVAL)),
        (b("99999999999999999999999999"), .fail(EINVAL)),
        (b("18446744073709551616abc"), .fail(EINVAL)),
        (b("18446744073709551616\n\n"), .fail(EINVAL)),
        (b("-2147483649"), .fail(EINVAL)),
        (b("-9223372036854775808"), .fail(EINVAL)),
        (b("-9223372036854775809"), .fail(EINVAL)),
        (b("-18446744073709551616"), .fail(EINVAL)),
        (b("-99999999999999999999abc"), .fail(EINVAL)),
        (r("0", 40) + b("18446744073709551615"), .set(.advisorMinPagesToScan(18446744073709551615))),
        (r("0", 40) + b("4294967295"), .set(.advisorMinPagesToScan(4294967295))),
        (r("0", 4095) + b("7"), .set(.advisorMinPagesToScan(7))),
        (r("0", 4094) + b("7\n"), .set(.advisorMinPagesToScan(7))),
        (r("0", 4095) + b("7x"), .set(.advisorMinPagesToScan(7))),
        (r("0", 4095) + b("7\n\n\n"), .set(.advisorMinPagesToScan(7))),
        (r("0", 4096) + r("x", 4096), .set(.advisorMinPagesToScan(0))),
        (r("0", 4095) + b("\n"), .set(.advisorMinPagesToScan(0))),
        (b("7") + r("\0", 4096), .set(.advisorMinPagesToScan(7))),
        (r("0", 4096) + b("\0"), .set(.advisorMinPagesToScan(0))),
        (r("8", 4096) + b("\n"), .fail(EINVAL)),
    ]

    private static let advisorMaxPagesToScan: [Row] = [
        (b("5"), .set(.advisorMaxPagesToScan(5))),
        (b("5\n"), .set(.advisorMaxPagesToScan(5))),
        (b("+5"), .set(.advisorMaxPagesToScan(5))),
        (b("+5\n"), .set(.advisorMaxPagesToScan(5))),
        (b("007"), .set(.advisorMaxPagesToScan(7))),
        (b("007\n"), .set(.advisorMaxPagesToScan(7))),
        (b("+007"), .set(.advisorMaxPagesToScan(7))),
        (b("0"), .set(.advisorMaxPagesToScan(0))),
        (b("0\n"), .set(.advisorMaxPagesToScan(0))),
        (b("00"), .set(.advisorMaxPagesToScan(0))),
        (b("+0"), .set(.advisorMaxPagesToScan(0))),
        (b("010"), .set(.advisorMaxPagesToScan(10))),
        (b("5\0junk"), .set(.advisorMaxPagesToScan(5))),
        (b("5\0"), .set(.advisorMaxPagesToScan(5))),
        (b("5\n\0junk"), .set(.advisorMaxPagesToScan(5))),
        (b("5\0\n\n"), .set(.advisorMaxPagesToScan(5))),
        (b("12\u{0}3"), .set(.advisorMaxPagesToScan(12))),
        (b("65535"), .set(.advisorMaxPagesToScan(65535))),
        (b("2147483647"), .set(.advisorMaxPagesToScan(2147483647))),
        (b("2147483648"), .set(.advisorMaxPagesToScan(2147483648))),
        (b("4294967295"), .set(.advisorMaxPagesToScan(4294967295))),
        (b("4294967295\n"), .set(.advisorMaxPagesToScan(4294967295))),
        (b("4294967296"), .set(.advisorMaxPagesToScan(4294967296))),
        (b("4294967301"), .set(.advisorMaxPagesToScan(4294967301))),
        (b("9223372036854775807"), .set(.advisorMaxPagesToScan(9223372036854775807))),
        (b("9223372036854775808"), .set(.advisorMaxPagesToScan(9223372036854775808))),
        (b("18446744073709551615"), .set(.advisorMaxPagesToScan(18446744073709551615))),
        (b("18446744073709551615\n"), .set(.advisorMaxPagesToScan(18446744073709551615))),
        (b("18446744073709551616"), .fail(EINVAL)),
        (b("18446744073709551617"), .fail(EINVAL)),
        (b("99999999999999999999999999"), .fail(EINVAL)),
        (b("18446744073709551616abc"), .fail(EINVAL)),
        (b("18446744073709551616\n\n"), .fail(EINVAL)),
        (b("-2147483649"), .fail(EINVAL)),
        (b("-9223372036854775808"), .fail(EINVAL)),
        (b("-9223372036854775809"), .fail(EINVAL)),
        (b("-18446744073709551616"), .fail(EINVAL)),
        (b("-99999999999999999999abc"), .fail(EINVAL)),
        (r("0", 40) + b("18446744073709551615"), .set(.advisorMaxPagesToScan(18446744073709551615))),
        (r("0", 40) + b("4294967295"), .set(.advisorMaxPagesToScan(4294967295))),
        (r("0", 4095) + b("7"), .set(.advisorMaxPagesToScan(7))),
        (r("0", 4094) + b("7\n"), .set(.advisorMaxPagesToScan(7))),
        (r("0", 4095) + b("7x"), .set(.advisorMaxPagesToScan(7))),
        (r("0", 4095) + b("7\n\n\n"), .set(.advisorMaxPagesToScan(7))),
        (r("0", 4096) + r("x", 4096), .set(.advisorMaxPagesToScan(0))),
        (r("0", 4095) + b("\n"), .set(.advisorMaxPagesToScan(0))),
        (b("7") + r("\0", 4096), .set(.advisorMaxPagesToScan(7))),
        (r("0", 4096) + b("\0"), .set(.advisorMaxPagesToScan(0))),
        (r("8", 4096) + b("\n"), .fail(EINVAL)),
    ]

    private static let advisorTargetScanTime: [Row] = [
        (b("5"), .set(.advisorTargetScanTime(5))),
        (b("5\n"), .set(.advisorTargetScanTime(5))),
        (b("+5"), .set(.advisorTargetScanTime(5))),
        (b("+5\n"), .set(.advisorTargetScanTime(5))),
        (b("007"), .set(.advisorTargetScanTime(7))),
        (b("007\n"), .set(.advisorTargetScanTime(7))),
        (b("+007"), .set(.advisorTargetScanTime(7))),
        (b("0"), .fail(EINVAL)),
        (b("0\n"), .fail(EINVAL)),
        (b("00"), .fail(EINVAL)),
        (b("+0"), .fail(EINVAL)),
        (b("010"), .set(.advisorTargetScanTime(10))),
        (b("5\0junk"), .set(.advisorTargetScanTime(5))),
        (b("5\0"), .set(.advisorTargetScanTime(5))),
        (b("5\n\0junk"), .set(.advisorTargetScanTime(5))),
        (b("5\0\n\n"), .set(.advisorTargetScanTime(5))),
        (b("12\u{0}3"), .set(.advisorTargetScanTime(12))),
        (b("65535"), .set(.advisorTargetScanTime(65535))),
        (b("2147483647"), .set(.advisorTargetScanTime(2147483647))),
        (b("2147483648"), .set(.advisorTargetScanTime(2147483648))),
        (b("4294967295"), .set(.advisorTargetScanTime(4294967295))),
        (b("4294967295\n"), .set(.advisorTargetScanTime(4294967295))),
        (b("4294967296"), .set(.advisorTargetScanTime(4294967296))),
        (b("4294967301"), .set(.advisorTargetScanTime(4294967301))),
        (b("9223372036854775807"), .set(.advisorTargetScanTime(9223372036854775807))),
        (b("9223372036854775808"), .set(.advisorTargetScanTime(9223372036854775808))),
        (b("18446744073709551615"), .set(.advisorTargetScanTime(18446744073709551615))),
        (b("18446744073709551615\n"), .set(.advisorTargetScanTime(18446744073709551615))),
        (b("18446744073709551616"), .fail(EINVAL)),
        (b("18446744073709551617"), .fail(EINVAL)),
        (b("99999999999999999999999999"), .fail(EINVAL)),
        (b("18446744073709551616abc"), .fail(EINVAL)),
        (b("18446744073709551616\n\n"), .fail(EINVAL)),
        (b("-2147483649"), .fail(EINVAL)),
        (b("-9223372036854775808"), .fail(EINVAL)),
        (b("-9223372036854775809"), .fail(EINVAL)),
        (b("-18446744073709551616"), .fail(EINVAL)),
        (b("-99999999999999999999abc"), .fail(EINVAL)),
        (r("0", 40) + b("18446744073709551615"), .set(.advisorTargetScanTime(18446744073709551615))),
        (r("0", 40) + b("4294967295"), .set(.advisorTargetScanTime(4294967295))),
        (r("0", 4095) + b("7"), .set(.advisorTargetScanTime(7))),
        (r("0", 4094) + b("7\n"), .set(.advisorTargetScanTime(7))),
        (r("0", 4095) + b("7x"), .set(.advisorTargetScanTime(7))),
        (r("0", 4095) + b("7\n\n\n"), .set(.advisorTargetScanTime(7))),
        (r("0", 4096) + r("x", 4096), .fail(EINVAL)),
        (r("0", 4095) + b("\n"), .fail(EINVAL)),
        (b("7") + r("\0", 4096), .set(.advisorTargetScanTime(7))),
        (r("0", 4096) + b("\0"), .fail(EINVAL)),
        (r("8", 4096) + b("\n"), .fail(EINVAL)),
        (b("1"), .set(.advisorTargetScanTime(1))),
        (b("2"), .set(.advisorTargetScanTime(2))),
    ]

    /// use_zero_pages and smart_scan (kstrtobool): nil = EINVAL.
    private static let booleans: [(input: [UInt8], on: Bool?)] = [
        (b("1"), true),
        (b("0"), false),
        (b("1\n"), true),
        (b("0\n"), false),
        (b("y"), true),
        (b("Y"), true),
        (b("yes"), true),
        (b("n"), false),
        (b("N"), false),
        (b("no"), false),
        (b("t"), true),
        (b("T"), true),
        (b("true"), true),
        (b("f"), false),
        (b("F"), false),
        (b("false"), false),
        (b("on"), true),
        (b("ON"), true),
        (b("On"), true),
        (b("oN"), true),
        (b("off"), false),
        (b("OFF"), false),
        (b("Off"), false),
        (b("of"), false),
        (b("oF"), false),
        (b("Of"), false),
        (b("OF"), false),
        (b("on\n"), true),
        (b("of\n"), false),
        (b("onion"), true),
        (b("oft"), false),
        (b("o"), nil),
        (b("O"), nil),
        (b("o\n"), nil),
        (b("oz"), nil),
        (b("ox"), nil),
        (b("o1"), nil),
        (b("o n"), nil),
        (b("o\0n"), nil),
        (b("10"), true),
        (b("1abc"), true),
        (b("11"), true),
        (b("01"), false),
        (b("0junk"), false),
        (b("00"), false),
        (b("y\n\n"), true),
        (b("1 "), true),
        (b("1\r\n"), true),
        (b("e"), true),
        (b("E"), true),
        (b("enable"), true),
        (b("d"), false),
        (b("D"), false),
        (b("disable"), false),
        (b("2"), nil),
        (b("9"), nil),
        (b("x"), nil),
        (b("z"), nil),
        (b("-1"), nil),
        (b("+1"), nil),
        (b("-0"), nil),
        (b(" 1"), nil),
        (b("\t1"), nil),
        (b("\n"), nil),
        (b("\n1"), nil),
        (b("\u{0}1"), nil),
        (b("1\0"), true),
        (b("\0"), nil),
        (b("0x1"), false),
        (b("Yes"), true),
        (b("No"), false),
        (b("0") + r("x", 4200), false),
        (b("o") + r("n", 4200), true),
    ]

    /// advisor_mode (sysfs_streq): nil = EINVAL.
    private static let advisorModes: [(input: [UInt8], scanTime: Bool?)] = [
        (b("none"), false),
        (b("none\n"), false),
        (b("scan-time"), true),
        (b("scan-time\n"), true),
        (b("none\n\n"), nil),
        (b("scan-time\n\n"), nil),
        (b("None"), nil),
        (b("NONE"), nil),
        (b("Scan-time"), nil),
        (b(" none"), nil),
        (b("none "), nil),
        (b("\tnone"), nil),
        (b("none\t"), nil),
        (b("none\r\n"), nil),
        (b("scan_time"), nil),
        (b("scan"), nil),
        (b("scantime"), nil),
        (b("scan-time-"), nil),
        (b("non"), nil),
        (b("nonex"), nil),
        (b("[none]"), nil),
        (b("[none] scan-time"), nil),
        (b("none\0junk"), false),
        (b("scan-time\0"), true),
        (b("scan-time\n\0x"), true),
        (b("\n"), nil),
        (b("\0none"), nil),
        (b("0"), nil),
        (b("1"), nil),
        (b("none\nx"), nil),
        (b("none") + r("\0", 4200), false),
    ]
}
