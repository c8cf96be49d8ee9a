// The ksmfs command: `ksmfs [SOURCE] MOUNTPOINT [-o ...]` mounts (the default subcommand, as
// mount.fuse3 calls it), `ksmfs status` shows what the engine is doing.
import ArgumentParser
import Glibc

struct KSMFSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ksmfs",
        abstract: "An in-memory filesystem that merges identical pages, tuned like the kernel's KSM.",
        // One line per paragraph (argument-parser wraps them to the terminal); table rows are
        // kept under 80 columns so that they are never wrapped.
        discussion: """
        Files live in memory page by page. Identical pages of any files are merged into one \
        shared block by a scanner driven through <mountpoint>/ksm/ (echo 1 > ksm/run; \
        cat ksm/pages_sharing).

          ksmfs MOUNTPOINT [-f] [-d] [-o opt,...]   mount (-f foreground, -d debug)
          ksmfs status [PATH] [--watch] [--json]    what the engine is doing

        """ + mountOptionsHelp,
        version: "ksmfs 0.1.0",
        subcommands: [MountCommand.self, StatusCommand.self],
        defaultSubcommand: MountCommand.self
    )
}

func writeStderr(_ s: String) {
    var bytes = Array(s.utf8)
    _ = Glibc.write(2, &bytes, bytes.count)
}

// Errors are one line on stderr starting "ksmfs:", exit code 1 (as coreutils), not
// argument-parser's error-plus-usage block; help and --version print as usual.
if CommandLine.arguments.count == 1 {
    writeStderr("ksmfs: missing mountpoint (ksmfs MOUNTPOINT [-o opt,...]; see ksmfs --help)\n")
    Glibc.exit(1)
}
do {
    var command = try KSMFSCommand.parseAsRoot()
    try command.run()
} catch let code as ExitCode {
    Glibc.exit(code.rawValue)      // a subcommand chose its code and said why
} catch {
    if KSMFSCommand.exitCode(for: error).isSuccess { KSMFSCommand.exit(withError: error) }
    let text = KSMFSCommand.message(for: error)
    let first = text.split(separator: "\n").first.map(String.init) ?? "invalid command line"
    writeStderr("ksmfs: \(first.hasPrefix("Error: ") ? String(first.dropFirst(7)) : first) (see ksmfs --help)\n")
    Glibc.exit(1)
}
