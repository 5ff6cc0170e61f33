import Foundation
import HNDWire
import Logging

/// Received batches waiting to be applied, bounded in bytes: one budget for the whole daemon,
/// however many layer workers they wait for. The receiver thread pushes, the engine thread pops
/// and hands each message to its layer's worker, and the worker releases its bytes when it takes
/// it in hand; so the budget covers the messages waiting here and in the workers' inboxes (what
/// the daemon holds beyond it: one message over it, and the batch in hand of each busy worker).
final class IngestQueue: @unchecked Sendable {
    private let condition = NSCondition()
    private var messages = ClearingFIFO<ZMQMultipart>()
    /// Popped and not yet released: in a worker's inbox.
    private var inFlight = 0
    /// Of the messages waiting here and in flight.
    private var bytes = 0
    private var receiverFinished = false
    let budgetBytes: Int

    init(budgetBytes: Int) { self.budgetBytes = budgetBytes }

    /// Messages waiting here or in a worker's inbox, and their bytes.
    var depth: (messages: Int, bytes: Int) {
        condition.lock(); defer { condition.unlock() }
        return (messages.count + inFlight, bytes)
    }

    func markReceiverFinished() {
        condition.lock(); receiverFinished = true; condition.broadcast(); condition.unlock()
    }

    /// Blocks until the receiver thread has ended: no message will be pushed after this returns.
    func waitUntilReceiverFinished() {
        condition.lock(); defer { condition.unlock() }
        while !receiverFinished { condition.wait() }
    }

    /// Waits until the queue is under its budget (one message may overshoot it).
    func waitForRoom(timeout: Double) -> Bool {
        condition.lock(); defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: timeout)
        while bytes >= budgetBytes {
            if !condition.wait(until: deadline) { return false }
        }
        return true
    }

    func push(_ message: ZMQMultipart) {
        condition.lock()
        messages.append(message)
        bytes += message.byteCount
        condition.broadcast()
        condition.unlock()
    }

    func pop(timeout: Double) -> ZMQMultipart? {
        condition.lock(); defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: timeout)
        while messages.isEmpty {
            if timeout <= 0 || !condition.wait(until: deadline) { return nil }
        }
        inFlight += 1
        return messages.popFirst()
    }

    /// A popped message of `byteCount` bytes waits no more (a worker took it in hand, or it was
    /// refused): its bytes leave the budget.
    func release(byteCount: Int) {
        condition.lock()
        inFlight -= 1
        bytes -= byteCount
        condition.broadcast()
        condition.unlock()
    }
}

/// The receiver thread: moves messages from the ingest socket into the queue, pausing while the
/// queue is full, until cancelled. It owns the socket; no other thread touches it.
final class IngestReceiver: @unchecked Sendable {
    private let socket: ZMQSocket
    private let queue: IngestQueue
    private let logger: Logger
    private let cancelled = StopFlag()

    /// Takes the socket, which must have a receive timeout: that bounds how long `cancel` takes.
    init(socket: ZMQSocket, queue: IngestQueue, logger: Logger) {
        self.socket = socket
        self.queue = queue
        self.logger = logger
    }

    func start() {
        let thread = Thread { [self] in receive() }
        thread.name = "hndd-ingest"
        thread.start()
    }

    /// Stops receiving; the thread ends within one receive timeout (or one wait for room).
    func cancel() { cancelled.set() }

    /// Cancels and blocks until the thread has ended.
    func cancelAndWait() {
        cancel()
        queue.waitUntilReceiverFinished()
    }

    private func receive() {
        defer { queue.markReceiverFinished() }
        while !cancelled.isSet {
            guard queue.waitForRoom(timeout: 0.1) else { continue }
            do {
                if let message = try socket.receive(maxFrames: 3) { queue.push(message) }
            } catch {
                if cancelled.isSet { return }
                logger.error("ingest socket: \(error)")
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
    }
}

/// Set once, read from any thread.
final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    func set() { lock.lock(); value = true; lock.unlock() }
}
