// <mnt>/ksm/metrics: every counter and tunable, plus what the kernel does not show (pass
// progress, scanner CPU, daemon RSS, arena use, logical size), in the Prometheus text
// exposition format, for a node-exporter textfile collector or a scraper. `ksmfs status`
// reads this one file.
import FUSE
import Glibc
import KSM

extension ControlPlane {
    /// What the daemon costs the machine in bytes: its resident memory other than shared
    /// memory (/proc/self/status: VmRSS - RssShmem), plus the arena's pages, which belong to
    /// its memfd (in memory, or in swap) and are mapped only now and then.
    static func residentBytes(arena: BlockArena) -> Int64 {
        guard let f = fopen("/proc/self/status", "r") else { return 0 }
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 256)
        var rss: Int64 = 0, shmem: Int64 = 0
        while fgets(&line, 256, f) != nil {
            let text = line.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            let kib = Int64(text.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "0") ?? 0
            if text.hasPrefix("VmRSS:") { rss = kib } else if text.hasPrefix("RssShmem:") { shmem = kib }
        }
        return max(0, rss - shmem) * 1024 + Int64(arena.memfdBytes)
    }

    public func metrics(mountpoint: String) -> [UInt8] {
        var out = ""
        let label = "{mountpoint=\"\(mountpoint.replacingBackslashesAndQuotes())\"}"
        func metric(_ name: String, _ type: String, _ help: String, _ value: String) {
            out += "# HELP ksmfs_\(name) \(help)\n# TYPE ksmfs_\(name) \(type)\nksmfs_\(name)\(label) \(value)\n"
        }
        let counters: [(String, String, String)] = [
            ("full_scans", "counter", "Completed passes over all mergeable pages."),
            ("pages_scanned", "counter", "Pages the scanner has handled."),
            ("pages_skipped", "counter", "Pages smart scan skipped."),
            ("cow_ksm", "counter", "Copy-on-write breaks of shared pages by writes."),
            ("pages_shared", "gauge", "Shared blocks in use."),
            ("pages_sharing", "gauge", "Pages merged beyond the first of each shared block (pages saved)."),
            ("pages_unshared", "gauge", "Pages in the unstable tree."),
            ("pages_volatile", "gauge", "Pages changing too fast to merge."),
            ("ksm_zero_pages", "gauge", "Pages mapped to the zero block."),
            ("stable_node_chains", "gauge", "Contents needing several shared blocks (max_page_sharing)."),
            ("stable_node_dups", "gauge", "Shared blocks inside chains."),
            ("general_profit", "gauge", "Bytes saved minus scan metadata."),
        ]
        for (name, type, help) in counters {
            metric(name, type, help, String(decoding: read(name).dropLast(), as: UTF8.self))
        }
        let t = engine.tunables
        let tunables: [(String, String)] = [
            ("run", "0 stop, 1 run, 2 unmerge."), ("pages_to_scan", "Pages per batch."),
            ("sleep_millisecs", "Sleep between batches."), ("max_page_sharing", "Most pages per shared block."),
            ("use_zero_pages", "Zero pages map to the zero block."), ("smart_scan", "Smart scan on."),
            ("merge_across_owners", "Files of different owners may merge."),
            ("drop_merged_page_cache", "Merged pages of files nobody has open leave the kernel's page cache."),
            ("stable_node_chains_prune_millisecs", "Chain prune interval."),
            ("advisor_max_cpu", "Advisor CPU cap, percent."), ("advisor_target_scan_time", "Advisor target pass time, seconds."),
            ("advisor_min_pages_to_scan", "Advisor floor."), ("advisor_max_pages_to_scan", "Advisor ceiling."),
        ]
        for (name, help) in tunables {
            metric("tunable_\(name)", "gauge", help, String(decoding: read(name).dropLast(), as: UTF8.self))
        }
        metric("tunable_advisor_scan_time", "gauge", "1 when advisor_mode is scan-time.", t.advisorScanTime ? "1" : "0")
        let progress = engine.passProgress
        metric("pass_pages_done", "gauge", "Pages handled in the current pass.", String(progress.done))
        metric("pass_pages_total", "gauge", "Pages of mergeable files (one pass).", String(progress.total))
        metric("last_pass_seconds", "gauge", "Wall time of the last full pass.", String(engine.lastPassSeconds))
        metric("scanner_cpu_seconds_total", "counter", "CPU time used by the scanner thread.",
               String(Double(engine.stats.scannerCPUNanos) / 1e9))
        metric("merged_pages_total", "counter", "Pages merged since mount.", String(engine.stats.mergedTotal))
        metric("scan_items", "gauge", "Scan items (the kernel's rmap_items; items on the zero block excluded, as the kernel frees them).", String(engine.stats.rmapItems))
        metric("scan_item_bytes", "gauge", "Metadata bytes per scan item.", String(KSMEngine.bytesPerItem))
        metric("logical_bytes", "gauge", "Bytes of file data (holes excluded), before merging.",
               String(engine.logicalPages * Int64(BlockArena.pageSize)))
        metric("physical_bytes", "gauge", "Bytes of blocks in use after merging.",
               String(Int64(engine.arena.used) * Int64(BlockArena.pageSize)))
        metric("capacity_bytes", "gauge", "Capacity (size=).", String(Int64(engine.arena.capacity) * Int64(BlockArena.pageSize)))
        metric("daemon_resident_bytes", "gauge", "Memory of the ksmfs daemon: its own resident memory plus the arena's pages.", String(ControlPlane.residentBytes(arena: engine.arena)))
        metric("page_cache_pages_dropped_total", "counter", "Pages of merged files dropped from the kernel's page cache.", String(pageCacheDropped()))
        if let pc = pageCache() {
            if let problem = pc.problem {
                out += "# ksmfs_page_cache_bytes: not measured: \(problem)\n"
            } else {
                metric("page_cache_bytes", "gauge", "Page cache the kernel holds in the files' own caches (cachestat of each file, measured at most every \(Int(PageCacheProbe.interval)) s; shared page cache not included).", String(Int64(pc.pages) * Int64(BlockArena.pageSize)))
                metric("page_cache_files_probed", "gauge", "Files measured (the largest \(PageCacheProbe.maxFiles) of those the kernel holds).", String(pc.filesProbed))
                metric("page_cache_files_held", "gauge", "Files with data the kernel holds.", String(pc.candidates))
                metric("page_cache_measured_timestamp_seconds", "gauge", "When it was measured (Unix time).", String(pc.finishedAtUnix))
                metric("page_cache_probe_seconds", "gauge", "Time the measurement took.", String(pc.seconds))
                metric("page_cache_probe_requests_total", "counter", "Requests the measurements caused (not in ksmfs_fuse_requests_total).", String(RequestStats.ownRequests))
            }
        }
        let shared = sharedCache()
        metric("share_immutable", "gauge", "1 when identical immutable files share one page cache (-o share_immutable, and the kernel allows it).", shared == nil ? "0" : "1")
        if let s = shared {
            metric("shared_groups", "gauge", "Contents held by two or more immutable files that share one page cache.", String(s.groups))
            metric("shared_group_files", "gauge", "Files in those groups.", String(s.members))
            metric("shared_cache_bytes", "gauge", "Bytes of the shared page cache now (one copy per content in use, in shared memory).", String(s.backedBytes))
            metric("shared_opens", "gauge", "Opens served from the shared page cache now.", String(s.opens))
            metric("shared_cache_saved_bytes", "gauge", "Page cache the files in use would hold on their own, beyond the one shared copy.", String(s.savedBytes))
            metric("shared_opens_total", "counter", "Opens served from the shared page cache since mount.", String(s.opensTotal))
            metric("shared_cache_fills_total", "counter", "Times a content was copied into the shared page cache (a first open while none of its files was in use).", String(s.fillsTotal))
        }
        requestMetrics(RequestStats.now(), mountpointLabel: "mountpoint=\"\(mountpoint.replacingBackslashesAndQuotes())\"", into: &out)
        let advice = engine.lastAdvice
        metric("advisor_last_pages_to_scan", "gauge", "The advisor's last pages_to_scan.", String(advice.pagesToScan))
        metric("advisor_last_cpu_percent", "gauge", "Scanner CPU percent the advisor last saw.", String(advice.cpuPercent))
        return Array(out.utf8)
    }
}

extension ControlPlane {
    /// Requests per operation (a counter) and their latency (a histogram), labelled by `op`.
    func requestMetrics(_ stats: RequestStats, mountpointLabel: String, into out: inout String) {
        out += "# HELP ksmfs_fuse_requests_total Requests from the kernel, by operation.\n"
        out += "# TYPE ksmfs_fuse_requests_total counter\n"
        for op in stats.operations {
            out += "ksmfs_fuse_requests_total{\(mountpointLabel),op=\"\(op.name)\"} \(op.count)\n"
        }
        out += "# HELP ksmfs_fuse_request_seconds Time from reading a request to writing its reply, by operation.\n"
        out += "# TYPE ksmfs_fuse_request_seconds histogram\n"
        for op in stats.operations where op.answered > 0 {
            let labels = "\(mountpointLabel),op=\"\(op.name)\""
            var cumulative: UInt64 = 0
            for (b, bound) in RequestStats.bucketBounds.enumerated() {
                cumulative += op.buckets[b]
                out += "ksmfs_fuse_request_seconds_bucket{\(labels),le=\"\(bound)\"} \(cumulative)\n"
            }
            out += "ksmfs_fuse_request_seconds_bucket{\(labels),le=\"+Inf\"} \(op.answered)\n"
            out += "ksmfs_fuse_request_seconds_sum{\(labels)} \(op.seconds)\n"
            out += "ksmfs_fuse_request_seconds_count{\(labels)} \(op.answered)\n"
        }
    }
}

extension String {
    public func replacingBackslashesAndQuotes() -> String {
        var s = ""
        for c in self {
            switch c {
            case "\\": s += "\\\\"
            case "\"": s += "\\\""
            case "\n": s += "\\n"
            default: s.append(c)
            }
        }
        return s
    }

}
