import Foundation
import HNDEngine

/// A checkpoint being written: the file a streaming `ByteWriter` hands its bytes to. Keeps the
/// first write error and reports it when closed, so the writer itself need not throw.
final class CheckpointFile: ByteSink {
    let path: String
    private var descriptor: Int32
    private var failure: StateError?

    init(creating path: String) throws(StateError) {
        self.path = path
        descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw StateError("cannot write checkpoint \(path): \(String(cString: strerror(errno)))") }
    }

    deinit { if descriptor >= 0 { close(descriptor) } }

    func write(_ bytes: UnsafeRawBufferPointer) {
        var done = 0
        while failure == nil, done < bytes.count {
            let n = Foundation.write(descriptor, bytes.baseAddress! + done, bytes.count - done)
            if n < 0, errno == EINTR { continue }
            if n <= 0 { fail("cannot write checkpoint \(path)") } else { done += n }
        }
    }

    func overwrite(at offset: Int, with bytes: UnsafeRawBufferPointer) {
        guard failure == nil else { return }
        if pwrite(descriptor, bytes.baseAddress!, bytes.count, off_t(offset)) != bytes.count {
            fail("cannot write checkpoint \(path) at byte \(offset)")
        }
    }

    /// Syncs and closes the file; throws the first error of any write.
    func syncAndClose() throws(StateError) {
        if failure == nil, fsync(descriptor) != 0 { fail("cannot sync checkpoint \(path)") }
        close(descriptor)
        descriptor = -1
        if let failure { throw failure }
    }

    private func fail(_ what: String) {
        if failure == nil { failure = StateError("\(what): \(String(cString: strerror(errno)))") }
    }
}
