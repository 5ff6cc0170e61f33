import CZMQ

/// The malloc heap's own figures (glibc's `mallinfo2`), where received messages live — libzmq
/// mallocs each one (`ZMQContext.keepLargeMessagesInTheHeap`) — beside the engine's arrays:
/// bytes in use (those in separate mappings included), bytes free but kept by the heap (resident
/// once touched, until trimmed), and of the bytes in use those in separate mappings (blocks above
/// the mapping threshold: the maxima). All zero where the C library is not glibc.
public struct ProcessHeap: Sendable, Equatable {
    public var inUse = 0, free = 0, mapped = 0

    public static func now() -> ProcessHeap {
        var heap = ProcessHeap()
        var inUse = 0, free = 0, mapped = 0
        hndd_heap_figures(&inUse, &free, &mapped)
        heap.inUse = inUse; heap.free = free; heap.mapped = mapped
        return heap
    }

    /// Gives the heap's free pages back to the system (glibc's `malloc_trim`), in every arena:
    /// what a finished pass's freed arrays and a burst of messages leave behind. Returns whether
    /// any memory was released.
    @discardableResult
    public static func trim() -> Bool { hndd_heap_trim() != 0 }
}
