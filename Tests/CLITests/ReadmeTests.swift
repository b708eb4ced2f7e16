import Foundation
import Testing

/// What README.md shows is what the package builds.
@Suite struct ReadmeTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// The example program in "tlstap as a library" is `Examples/capture/main.swift`, to the byte.
    @Test func theLibraryExampleIsTheOneThatIsBuilt() throws {
        let readme = try String(contentsOf: Self.root.appendingPathComponent("README.md"), encoding: .utf8)
        let source = try String(
            contentsOf: Self.root.appendingPathComponent("Examples/capture/main.swift"), encoding: .utf8)
        let section = try #require(readme.range(of: "## tlstap as a library"))
        let start = try #require(readme[section.upperBound...].range(of: "```swift\n"))
        let end = try #require(readme[start.upperBound...].range(of: "```\n"))
        #expect(String(readme[start.upperBound..<end.lowerBound]) == source)
        #expect(source.split(separator: "\n").filter { !$0.hasPrefix("//") && !$0.isEmpty }.count <= 15)
    }
}
