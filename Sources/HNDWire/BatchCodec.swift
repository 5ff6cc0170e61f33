import Foundation
import SwiftProtobuf

/// An accepted ingest batch: the header's facts, with the tensor converted to `Float` in the
/// buffer the caller passed to ``BatchDecoder/decode(_:into:)``.
public struct DecodedBatch: Sendable, Equatable {
    public var run: String
    public var layer: String
    public var step: Int64
    /// Dictionary row of each image, in tensor order.
    public var imageIDs: [Int64]
    /// C, h, w.
    public var units: Int
    public var height: Int
    public var width: Int
    /// The element type the tensor had on the wire.
    public var dtype: Hndd_DType
    /// The sender's data-parallel rank, if it gave one.
    public var rank: Int?
    public var sender: String

    public var imageCount: Int { imageIDs.count }
    /// C·h·w: values per image; image i's maps are values[i*valuesPerImage ..< (i+1)*valuesPerImage].
    public var valuesPerImage: Int { units * height * width }
    public var valueCount: Int { imageCount * valuesPerImage }
}

/// An ingest message whose header `BatchDecoder.check` decoded and validated against its tensor
/// frame; only the decoder makes one, so holding one means the tensor's size is the header's.
public struct CheckedBatch {
    public let message: ZMQMultipart
    public let header: DecodedBatch
    fileprivate init(message: ZMQMultipart, header: DecodedBatch) { self.message = message; self.header = header }
}

/// Validates ingest messages and converts their tensors to `Float`.
///
/// Checks, in order: frame count, header protobuf, protocol version, dtype, names, shape, tensor
/// size. Any failure throws a ``BatchRejection`` before the output buffer is touched. Values are
/// not checked for NaN or infinity here (the engine does).
public struct BatchDecoder: Sendable {
    /// Largest tensor accepted, in values; a header may claim at most this many. The ZeroMQ
    /// max message size bounds the real frame; this bounds what the header can make us allocate.
    public var maximumValueCount: Int

    public init(maximumValueCount: Int = 1 << 31) {
        self.maximumValueCount = maximumValueCount
    }

    /// Decodes a received multipart message (header frame, tensor frame).
    /// - Parameter values: reused output buffer; resized to the batch's value count (its capacity
    ///   is kept, so same-sized batches cost no allocation). Unchanged when the batch is rejected.
    public func decode(_ message: ZMQMultipart, into values: inout [Float]) throws(BatchRejection) -> DecodedBatch {
        let (header, tensorFrame) = try frames(of: message)
        return try header.withUnsafeBytes { (header) throws(BatchRejection) -> DecodedBatch in
            try tensorFrame.withUnsafeBytes { (tensor) throws(BatchRejection) -> DecodedBatch in
                try decode(header: header, tensor: tensor, into: &values)
            }
        }
    }

    /// The header of a received multipart message, validated against its tensor frame's size,
    /// without touching the tensor: what a router needs to know (the layer) before a worker
    /// decodes the whole batch.
    public func header(of message: ZMQMultipart) throws(BatchRejection) -> DecodedBatch {
        let (headerFrame, tensorFrame) = try frames(of: message)
        return try headerFrame.withUnsafeBytes { (header) throws(BatchRejection) -> DecodedBatch in
            try decodeHeader(header, tensorByteCount: tensorFrame.count)
        }
    }

    /// The header and tensor frames of an ingest message, or why it has not exactly two.
    private func frames(of message: ZMQMultipart) throws(BatchRejection) -> (header: ZMQMessage, tensor: ZMQMessage) {
        guard message.frameCount == 2, message.frames.count == 2 else {
            throw .frameCount(received: message.frameCount)
        }
        return (message.frames[0], message.frames[1])
    }

    /// A received message with its header checked (`header(of:)`): the header parsed once, where
    /// the message is first looked at, and handed on with it to whoever decodes its tensor.
    public func check(_ message: ZMQMultipart) throws(BatchRejection) -> CheckedBatch {
        CheckedBatch(message: message, header: try header(of: message))
    }

    /// Lends a checked batch's values to `body` as `Float`: in place, without a copy, when the
    /// tensor is float32 and aligned (the common case: ZeroMQ's buffers are malloc'd); otherwise
    /// converted into `scratch`. The values are valid during `body` only. Nothing is left to
    /// refuse: `check` validated the header against the tensor's size.
    public func withDecoded<R>(_ checked: CheckedBatch, scratch: inout [Float],
                               _ body: (DecodedBatch, UnsafeBufferPointer<Float>) -> R) -> R {
        let batch = checked.header
        return checked.message.frames[1].withUnsafeBytes { tensor in
            #if _endian(little)
            if batch.dtype == .float32, let base = tensor.baseAddress, Int(bitPattern: base) % MemoryLayout<Float>.alignment == 0 {
                return body(batch, UnsafeBufferPointer(start: base.assumingMemoryBound(to: Float.self), count: batch.valueCount))
            }
            #endif
            resize(&scratch, to: batch.valueCount)
            scratch.withUnsafeMutableBufferPointer { TensorConversion.decode(tensor, dtype: batch.dtype, into: $0) }
            return scratch.withUnsafeBufferPointer { body(batch, $0) }
        }
    }

    /// Decodes a batch given as its two frames' bytes.
    public func decode(
        header: UnsafeRawBufferPointer, tensor: UnsafeRawBufferPointer, into values: inout [Float]
    ) throws(BatchRejection) -> DecodedBatch {
        let batch = try decodeHeader(header, tensorByteCount: tensor.count)
        resize(&values, to: batch.valueCount)
        values.withUnsafeMutableBufferPointer { output in
            TensorConversion.decode(tensor, dtype: batch.dtype, into: output)
        }
        return batch
    }

    /// Validates a header frame against the size of the tensor frame that came with it, without
    /// converting the tensor (for callers that convert elsewhere, with ``TensorConversion``).
    public func decodeHeader(_ bytes: UnsafeRawBufferPointer, tensorByteCount: Int) throws(BatchRejection) -> DecodedBatch {
        let header: Hndd_BatchHeader
        do {
            // Wraps the frame without copying it; the Data does not outlive this call.
            let data = bytes.isEmpty ? Data()
                : Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: bytes.baseAddress!),
                       count: bytes.count, deallocator: .none)
            header = try Hndd_BatchHeader(serializedBytes: data)
        } catch {
            throw .malformedHeader(detail: Self.describe(error))
        }
        guard header.protocolVersion == WireProtocol.version else {
            throw .unsupportedVersion(header.protocolVersion)
        }
        guard let elementSize = TensorConversion.elementSize(of: header.dtype) else {
            throw .unknownDType(rawValue: header.dtype.rawValue)
        }
        guard !header.run.isEmpty else { throw .invalidName(field: "run", detail: "is empty") }
        guard !header.layer.isEmpty else { throw .invalidName(field: "layer", detail: "is empty") }
        guard !header.layer.utf8.contains(0) else {
            throw .invalidName(field: "layer", detail: "contains a 0x00 byte, which ends publish topics")
        }
        let imageCount = header.imageIds.count
        guard imageCount > 0 else { throw .invalidShape(detail: "no image_ids: a batch has at least one image") }
        guard header.units > 0, header.height > 0, header.width > 0 else {
            throw .invalidShape(detail: "units × height × width = \(header.units) × \(header.height) × "
                + "\(header.width) has a zero dimension")
        }
        let shapeText = "\(imageCount) × \(header.units) × \(header.height) × \(header.width)"
        var valueCount = imageCount
        for dimension in [header.units, header.height, header.width] {
            let (product, overflow) = valueCount.multipliedReportingOverflow(by: Int(dimension))
            guard !overflow, product <= maximumValueCount else {
                throw .invalidShape(detail: "\(shapeText) values exceed the limit of \(maximumValueCount)")
            }
            valueCount = product
        }
        let (expectedBytes, overflow) = valueCount.multipliedReportingOverflow(by: elementSize)
        guard !overflow else { throw .invalidShape(detail: "\(shapeText) values are too many to address") }
        guard expectedBytes == tensorByteCount else {
            throw .sizeMismatch(expectedBytes: expectedBytes, receivedBytes: tensorByteCount)
        }
        return DecodedBatch(
            run: header.run, layer: header.layer, step: header.step, imageIDs: header.imageIds,
            units: Int(header.units), height: Int(header.height), width: Int(header.width),
            dtype: header.dtype, rank: header.hasRank ? Int(header.rank) : nil, sender: header.sender)
    }

    /// Sets `values.count` to `count`, reusing its storage. (Filling through `Array(repeating:)`
    /// rather than a generic sequence keeps this a memset even in debug builds.)
    private func resize(_ values: inout [Float], to count: Int) {
        if values.count > count {
            values.removeLast(values.count - count)
        } else if values.count < count {
            if values.capacity < count {
                values = [Float](repeating: 0, count: count)
            } else {
                values.append(contentsOf: [Float](repeating: 0, count: count - values.count))
            }
        }
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case BinaryDecodingError.truncated: return "truncated"
        case BinaryDecodingError.malformedProtobuf: return "not a protobuf message"
        case BinaryDecodingError.invalidUTF8: return "a string field is not valid UTF-8"
        default: return String(describing: error)
        }
    }
}

/// Builds ingest messages: used by tests and tools; the trainer side is the Python client.
public enum BatchEncoder {
    /// The two frames of a batch: a serialized header and the tensor in `dtype`.
    /// - Parameter values: N × C × h × w floats in C order, N = imageIDs.count.
    public static func encode(
        run: String, layer: String, step: Int64, imageIDs: [Int64],
        units: Int, height: Int, width: Int, dtype: Hndd_DType = .float32,
        values: [Float], rank: Int? = nil, sender: String = ""
    ) throws(WireError) -> [[UInt8]] {
        guard let elementSize = TensorConversion.elementSize(of: dtype) else {
            throw .invalidArgument("dtype \(dtype) cannot be encoded")
        }
        guard units > 0, height > 0, width > 0, units <= UInt32.max, height <= UInt32.max, width <= UInt32.max else {
            throw .invalidArgument("shape \(units) × \(height) × \(width) must be positive and fit 32 bits")
        }
        guard values.count == imageIDs.count * units * height * width else {
            throw .invalidArgument("\(values.count) values do not fill \(imageIDs.count) images × \(units) × "
                + "\(height) × \(width)")
        }
        var header = Hndd_BatchHeader()
        header.protocolVersion = WireProtocol.version
        header.run = run
        header.layer = layer
        header.step = step
        header.imageIds = imageIDs
        header.dtype = dtype
        header.units = UInt32(units)
        header.height = UInt32(height)
        header.width = UInt32(width)
        if let rank { header.rank = UInt32(rank) }
        header.sender = sender
        var tensor = [UInt8](repeating: 0, count: values.count * elementSize)
        values.withUnsafeBufferPointer { input in
            tensor.withUnsafeMutableBytes { output in
                TensorConversion.encode(input, dtype: dtype, into: output)
            }
        }
        return [try WireCodec.serialize(header), tensor]
    }
}

// MARK: - Other messages

/// Serializing and parsing protocol messages with ``WireError``s.
public enum WireCodec {
    /// Serializes any protocol message.
    public static func serialize(_ message: some SwiftProtobuf.Message) throws(WireError) -> [UInt8] {
        do {
            return try message.serializedBytes()
        } catch {
            throw .invalidArgument("cannot serialize \(type(of: message)): \(error)")
        }
    }

    /// Parses a protocol message from a frame, mapping protobuf errors to ``WireError``.
    public static func deserialize<M: SwiftProtobuf.Message>(_ type: M.Type, from frame: ZMQMessage) throws(WireError) -> M {
        try frame.withUnsafeBytes { (bytes) throws(WireError) -> M in try deserialize(type, from: bytes) }
    }

    /// Parses a protocol message from bytes, mapping protobuf errors to ``WireError``.
    public static func deserialize<M: SwiftProtobuf.Message>(
        _ type: M.Type, from bytes: UnsafeRawBufferPointer
    ) throws(WireError) -> M {
        do {
            return try M(serializedBytes: Array(bytes))
        } catch {
            throw .malformedMessage(type: M.protoMessageName, detail: BatchDecoder.describe(error))
        }
    }
}

/// Publishing snapshots: frames [topic, Snapshot].
public enum SnapshotPublication {
    /// The two frames that publish `snapshot` under its layer's topic.
    public static func encode(_ snapshot: Hndd_Snapshot) throws(WireError) -> [[UInt8]] {
        [PublishTopic.topic(forLayer: snapshot.layer), try WireCodec.serialize(snapshot)]
    }

    /// Parses a received publication, checking that the topic names the snapshot's layer and that
    /// the snapshot's arrays fit its shape.
    public static func decode(_ message: ZMQMultipart) throws(WireError) -> Hndd_Snapshot {
        guard message.frameCount == 2, message.frames.count == 2 else {
            throw .protocolViolation("a publication has 2 frames (topic, snapshot) but this one had \(message.frameCount)")
        }
        let layer = try message.frames[0].withUnsafeBytes { (bytes) throws(WireError) in
            try PublishTopic.layer(fromTopic: bytes)
        }
        let snapshot = try WireCodec.deserialize(Hndd_Snapshot.self, from: message.frames[1])
        guard snapshot.layer == layer else {
            throw .protocolViolation("snapshot of layer '\(snapshot.layer)' published under topic '\(layer)'")
        }
        try snapshot.validate()
        return snapshot
    }
}

extension Hndd_Snapshot {
    /// Checks the protocol version and that each flattened array has the length its shape
    /// implies (C, C·G, C·L, C·k with G and L from the taxonomy).
    public func validate() throws(WireError) {
        guard protocolVersion == WireProtocol.version else {
            throw .protocolViolation("snapshot has protocol_version \(protocolVersion), expected \(WireProtocol.version)")
        }
        let unitCount = Int(units)
        let subgroupCount = taxonomy.subgroups.count, conceptCount = taxonomy.concepts.count
        let expected: [(String, Int, Int)] = [
            ("threshold", threshold.count, unitCount),
            ("global_prob", globalProb.count, unitCount * subgroupCount),
            ("global_biased", globalBiased.count, unitCount * subgroupCount),
            ("iou", iou.count, unitCount * conceptCount),
            ("region", region.count, unitCount),
            ("local_prob", localProb.count, unitCount * conceptCount),
            ("local_paired", localPaired.count, unitCount * conceptCount),
            ("netdissect_concept", netdissectConcept.count, unitCount),
            ("top_images", topImages.count, unitCount * Int(topImagesPerUnit)),
        ]
        // The significance arrays are empty when the snapshot skipped the tests (a partial pass).
        let significance: [(String, Int, Int)] = [
            ("global_p", globalP.count, unitCount * subgroupCount),
            ("global_significant", globalSignificant.count, unitCount * subgroupCount),
            ("local_p", localP.count, unitCount * conceptCount),
            ("local_significant", localSignificant.count, unitCount * conceptCount),
        ]
        let tested = significance.contains { $0.1 > 0 }
        // So are the change-test arrays when the layer has no baseline pass yet.
        let change: [(String, Int, Int)] = [
            ("global_change_p", globalChangeP.count, unitCount * subgroupCount),
            ("global_beyond_untrained", globalBeyondUntrained.count, unitCount * subgroupCount),
        ]
        let changeTested = change.contains { $0.1 > 0 }
        for (field, actual, wanted) in expected + (tested ? significance : []) + (changeTested ? change : []) where actual != wanted {
            throw .protocolViolation("snapshot of layer '\(layer)': \(field) has \(actual) values, expected \(wanted) "
                + "for \(unitCount) units, \(subgroupCount) subgroups, \(conceptCount) concepts, k = \(topImagesPerUnit)")
        }
    }
}
