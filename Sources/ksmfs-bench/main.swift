// ksmfs-bench: benchmarks that print ratios measured side by side in one run.
//   io       ksmfs vs tmpfs and a minimal C libfuse filesystem: sequential I/O, mmap reads,
//            small-file metadata (needs root)
//   engine   the KSM engine alone: pages per scanner CPU-second per phase, vs the kernel's figures
//   latency  FUSE write latency to unshared pages, scanner idle vs running (needs root)
//   compare  the kernel's KSM vs ksmfs on the same content: convergence, CPU, counters, memory (needs root)
//   memory   what N copies of a file cost the machine: tmpfs, the kernel's KSM, ksmfs (needs root)
import ArgumentParser
import CReferenceFS

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ksmfs-bench",
        abstract: "Benchmarks for ksmfs, printed as ratios measured in one run.",
        subcommands: [IO.self, Tree.self, Engine.self, Latency.self, Compare.self, Memory.self, AnonHold.self, PageUserCommand.self, ReferenceFS.self])

    struct IO: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "ksmfs vs tmpfs and a minimal C libfuse filesystem: sequential I/O, mmap, small files.")
        @Option(help: "File size in MiB.") var mib = 1024
        @Option(help: "Repetitions.") var repetitions = 3
        @Option(help: "Small files for create/stat/unlink.") var files = 10_000
        @Option(help: "More ksmfs mount options, comma separated (e.g. share_immutable).") var ksmfsOptions = ""
        func run() { IOBench(fileBytes: mib << 20, repetitions: repetitions, smallFiles: files, ksmfsOptions: ksmfsOptions).run() }
    }

    struct ReferenceFS: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "reference-fs", abstract: "Helper of io: serves the minimal C filesystem.", shouldDisplay: false)
        @Argument var mountpoint: String
        func run() throws {
            let rc = reffs_run(mountpoint)
            if rc != 0 { throw ExitCode(rc) }
        }
    }

    struct Engine: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The KSM engine alone: pages per CPU-second per phase.")
        @Option(help: "Page counts, comma separated.") var pages = "65536,262144"
        @Option(help: "Repetitions.") var repetitions = 3
        func run() {
            EngineBench(sizes: pages.split(separator: ",").compactMap { Int($0) }, repetitions: repetitions).run()
        }
    }

    struct Latency: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write latency to unshared pages, scanner idle vs running.")
        @Option(help: "Writes per phase.") var samples = 3000
        func run() { LatencyBench(samples: samples).run() }
    }
}

Bench.main()
