import Foundation

/// The raw row files: rows are written at their place (a torn append left by a crash is
/// overwritten by the next one, and never read: the index names only committed rows), and
/// synced before the index that commits them.
enum RowFiles {
    /// Writes `bytes` at `offset` of the file (created when missing), cutting it there first:
    /// whatever a torn append left past the committed rows goes.
    static func write(_ bytes: [UInt8], at offset: Int, to path: String) throws(StoreError) {
        let fd = open(path, O_WRONLY | O_CREAT, 0o644)
        guard fd >= 0 else { throw failure(path, "cannot be opened for writing") }
        defer { close(fd) }
        guard ftruncate(fd, off_t(offset)) == 0 else { throw failure(path, "cannot be cut to \(offset) bytes") }
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress! + done, bytes.count - done, off_t(offset + done)) }
            guard n > 0 else { throw failure(path, "cannot be written at byte \(offset + done)") }
            done += n
        }
        guard fdatasync(fd) == 0 else { throw failure(path, "cannot be synced") }
    }

    /// Cuts a row file to its committed bytes (after a crash), creating it when missing.
    static func cut(_ path: String, to size: Int) throws(StoreError) {
        let fd = open(path, O_WRONLY | O_CREAT, 0o644)
        guard fd >= 0 else { throw failure(path, "cannot be opened for writing") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw failure(path, "cannot be examined") }
        guard Int(info.st_size) >= size else {
            throw StoreError(file: path, object: "", message: "holds \(info.st_size) bytes, but the index commits \(size): the row file was truncated or replaced")
        }
        if Int(info.st_size) > size, ftruncate(fd, off_t(size)) != 0 { throw failure(path, "cannot be cut to \(size) bytes") }
    }

    static func makeDirectory(_ path: String) throws(StoreError) {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw StoreError(file: path, object: "", message: "cannot create the row directory: \(error.localizedDescription)")
        }
    }

    @discardableResult
    static func sync(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return fsync(fd) == 0
    }

    private static func failure(_ path: String, _ what: String) -> StoreError {
        StoreError(file: path, object: "", message: "row file \(what): \(String(cString: strerror(errno)))")
    }
}
