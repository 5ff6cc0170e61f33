import CZMQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A ZeroMQ context: owns libzmq's I/O threads. Thread-safe, unlike sockets. Every socket keeps
/// its context alive, so the context is terminated only after its last socket has closed.
public final class ZMQContext: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer

    /// - Parameter ioThreads: libzmq I/O threads; one moves about a gigabyte per second.
    public init(ioThreads: Int32 = 1) throws(WireError) {
        guard let handle = zmq_ctx_new() else {
            throw zmqError("zmq_ctx_new")
        }
        if zmq_ctx_set(handle, ZMQ_IO_THREADS, ioThreads) != 0 {
            let error = zmqError("zmq_ctx_set(ZMQ_IO_THREADS, \(ioThreads))")
            zmq_ctx_term(handle)
            throw error
        }
        self.handle = handle
    }

    /// Makes every blocking call on this context's sockets, in any thread, fail at once with
    /// ``WireError/contextTerminated(operation:)``: the way to stop a thread waiting in receive.
    public func shutdown() {
        zmq_ctx_shutdown(handle)
    }

    deinit {
        // Only reached once every socket is closed (they retain the context), so this waits at
        // most for their linger periods.
        while zmq_ctx_term(handle) != 0 && zmq_errno() == EINTR {}
    }

    /// libzmq's version as (major, minor, patch).
    public static var libraryVersion: (major: Int, minor: Int, patch: Int) {
        var major: Int32 = 0, minor: Int32 = 0, patch: Int32 = 0
        zmq_version(&major, &minor, &patch)
        return (Int(major), Int(minor), Int(patch))
    }
}

/// The error for a failed libzmq call, read from libzmq's thread-local errno.
func zmqError(_ operation: String) -> WireError {
    let code = zmq_errno()
    if code == ETERM {
        return .contextTerminated(operation: operation)
    }
    return .zmq(operation: operation, code: code, message: String(cString: zmq_strerror(code)))
}

extension ZMQContext {
    /// Makes received messages of tens of megabytes reuse heap pages instead of a fresh mapping
    /// each (see `hndd_keep_large_allocations_in_heap`): measured, page faults took a fifth of
    /// the daemon's time. Process-wide; call once, before receiving.
    public static func keepLargeMessagesInTheHeap() {
        hndd_keep_large_allocations_in_heap()
    }
}
