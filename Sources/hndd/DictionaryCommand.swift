import ArgumentParser
import HNDEngine
import HNDStore

struct DictionaryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dictionary", abstract: "Work with Face Dictionary files.", subcommands: [Check.self])

    struct Check: HNDDCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a dictionary against docs/1-dictionary.md and print images per concept.")
        @Argument(help: "Face Dictionary file.") var path: String

        func execute() async throws {
            let dictionary = try DictionaryFile.load(path)
            print(DictionaryReport(DictionaryIndex(dictionary)).text(source: path))
        }
    }
}
