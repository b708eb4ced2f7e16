import ArgumentParser
import TLSTapLoader

/// `tlstap check`: what this kernel and host allow, and what tlstap would trace.
struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Report the kernel features and TLS libraries tlstap can use here."
    )

    @Option(
        name: [.short, .customLong("pid")],
        help: "Also list what tlstap would attach to for this process, and the TLS there it cannot probe.")
    var pid: Int32?

    @Flag(
        help: ArgumentHelp(
            "With -p: print only where the probes go, one per line: FILE OFFSET COOKIE ENTRY-PROGRAM RETURN-PROGRAM.",
            discussion: "For tools that attach to the same places (bench/'s floor and bare consumer)."))
    var attachPlan = false

    func validate() throws {
        if attachPlan && pid == nil { throw ValidationError("--attach-plan needs -p PID") }
    }

    func run() throws {
        if attachPlan, let pid {
            for attachment in try AttachPlan.make(for: TraceFilters(pids: [pid])).attachments {
                for line in ProbeLayout.attachPlanLines(for: attachment.library) { print(line) }
            }
            return
        }
        let check = HostCheck.run()
        var report = "Kernel and host:\n"
        for feature in check.features {
            let name = feature.name.padding(toLength: 16)
            report += "  \(feature.available ? "yes" : "no ")  \(name) \(feature.detail)\n"
        }
        let costs = KernelFeatures.current.costs
        if !costs.isEmpty {
            report += "What this kernel's missing features cost:\n"
            for cost in costs { report += "  \(cost)\n" }
        }
        report += "TLS libraries for host-wide tracing:\n"
        if check.libraries.isEmpty { report += "  none found in the dynamic loader's cache\n" }
        for library in check.libraries { report += "  \(library.library.name)  \(library.path)  (\(library.reason))\n" }
        if let pid {
            report += "Process \(pid):\n"
            let plan = try AttachPlan.make(for: TraceFilters(pids: [pid]))
            if plan.attachments.isEmpty {
                report += "  maps no TLS library tlstap knows (libssl, libgnutls, libnspr4, or one linked in)\n"
            }
            for attachment in plan.attachments {
                report +=
                    "  \(attachment.library.library.name)  \(attachment.library.path)  (\(attachment.library.reason))\n"
                for point in ProbeLayout.probePoints(for: attachment.library) { report += "      \(point)\n" }
            }
            let unprobable = UnprobableTLS.findings(in: pid, probed: Set(plan.attachments.map(\.library.path)))
            for finding in unprobable {
                report += "  cannot probe  \(finding.stack)  \(finding.path)  (TLS through it is not captured)\n"
            }
        }
        report +=
            check.canTrace && Privileges.missingForTracing().isEmpty
            ? "tlstap can trace TLS on this host.\n"
            : "tlstap cannot trace here: see the lines marked no above, and run as root.\n"
        print(report, terminator: "")
        if !check.canTrace { throw ExitCode(1) }
    }
}

extension String {
    func padding(toLength length: Int) -> String {
        count >= length ? self : self + String(repeating: " ", count: length - count)
    }
}
