import ArgumentParser

struct Subscribe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Not built yet.")
    func run() async throws { throw UserError("`subscribe` is not built yet") }
}
