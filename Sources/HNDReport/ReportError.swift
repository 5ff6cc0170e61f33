/// A report that cannot be made, said in words the user can act on.
public struct ReportError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
