import Foundation
import Testing
@testable import HNDWire

/// A fresh, short-named temporary run directory (ipc paths must stay under ~107 bytes); the
/// caller removes it.
func makeRunDirectory() throws -> String {
    var template = Array("/tmp/hndwire-XXXXXX".utf8CString)
    guard let path = mkdtemp(&template) else { throw WireError.invalidArgument("mkdtemp failed") }
    return String(cString: path)
}

/// A lock-protected box for handing results out of a thread.
final class Box<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    var value: Value {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}

/// Runs `body` on a new thread and returns a semaphore signalled when it ends.
func startThread(_ body: @escaping @Sendable () -> Void) -> DispatchSemaphore {
    let done = DispatchSemaphore(value: 0)
    let thread = Thread {
        body()
        done.signal()
    }
    thread.start()
    return done
}

@Suite(.serialized) struct SocketTests {
    @Test func endpointsLiveInTheRunDirectory() {
        let endpoints = Endpoints(runDirectory: "/var/run/hndd/")
        #expect(endpoints == Endpoints(ingest: "ipc:///var/run/hndd/ingest.sock",
                                       publish: "ipc:///var/run/hndd/publish.sock",
                                       control: "ipc:///var/run/hndd/control.sock"))
        let relative = Endpoints(runDirectory: "runs/a")
        let cwd = FileManager.default.currentDirectoryPath
        #expect(relative.ingest == "ipc://\(cwd)/runs/a/ingest.sock")
    }

    @Test func tooLongIPCPathIsAClearError() throws {
        let context = try ZMQContext()
        let socket = try ZMQSocket(context, type: .pull)
        let directory = "/tmp/" + String(repeating: "d", count: 120)
        let endpoint = Endpoints(runDirectory: directory).ingest
        #expect(throws: WireError.endpointPathTooLong(endpoint: endpoint, limit: Endpoints.maximumIPCPathLength)) {
            try socket.bind(endpoint)
        }
        let error = WireError.endpointPathTooLong(endpoint: endpoint, limit: 107)
        #expect(error.description.contains("shorter run directory"))
    }

    @Test func bindFailureNamesTheEndpoint() throws {
        let context = try ZMQContext()
        let socket = try ZMQSocket(context, type: .pull)
        let error = #expect(throws: WireError.self) { try socket.bind("ipc:///nonexistent-dir-hndd/x.sock") }
        #expect(error?.description.contains("zmq_bind(ipc:///nonexistent-dir-hndd/x.sock)") == true)
    }

    @Test func optionsRoundTrip() throws {
        let context = try ZMQContext()
        let socket = try ZMQSocket(context, type: .pull)
        try socket.setLinger(milliseconds: 250)
        try socket.setReceiveHighWaterMark(7)
        try socket.setSendHighWaterMark(3)
        try socket.setMaxMessageSize(bytes: 64 << 20)
        try socket.setReceiveTimeout(milliseconds: 40)
        try socket.setSendTimeout(milliseconds: 60)
        #expect(try socket.linger == 250)
        #expect(try socket.receiveHighWaterMark == 7)
        #expect(try socket.sendHighWaterMark == 3)
        #expect(try socket.maxMessageSize == 64 << 20)
        #expect(try socket.receiveTimeout == 40)
        #expect(try socket.sendTimeout == 60)
    }

    @Test func receiveTimesOutWithNil() throws {
        let directory = try makeRunDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let context = try ZMQContext()
        let pull = try ZMQSocket(context, type: .pull)
        try pull.bind(Endpoints(runDirectory: directory).ingest)
        try pull.setReceiveTimeout(milliseconds: 50)
        let start = Date()
        #expect(try pull.receive() == nil)
        #expect(Date().timeIntervalSince(start) >= 0.04)
        #expect(try pull.receive(dontWait: true) == nil)
    }

    /// Batches of each dtype pushed over ipc:// arrive with every field and value intact.
    @Test func batchesRoundTripOverIPC() throws {
        let directory = try makeRunDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let endpoints = Endpoints(runDirectory: directory)
        let context = try ZMQContext()
        let pull = try ZMQSocket(context, type: .pull)
        try pull.bind(endpoints.ingest)
        try pull.setReceiveTimeout(milliseconds: 5000)
        let push = try ZMQSocket(context, type: .push)
        try push.setLinger(milliseconds: 1000)
        try push.connect(endpoints.ingest)

        let values: [Float] = (0..<48).map { (index: Int) -> Float in Float(index) / 8 - 3 }
        let dtypes: [Hndd_DType] = [.float32, .float16, .bfloat16]
        for (index, dtype) in dtypes.enumerated() {
            let frames = try BatchEncoder.encode(
                run: "run-\(index)", layer: "features.\(index)", step: Int64(100 + index), imageIDs: [9, 2, 7, 1],
                units: 3, height: 2, width: 2, dtype: dtype, values: values, rank: index)
            #expect(try push.send(frames))
        }
        var output: [Float] = []
        let decoder = BatchDecoder()
        for (index, dtype) in dtypes.enumerated() {
            let message = try #require(try pull.receive())
            #expect(message.frameCount == 2)
            let batch = try decoder.decode(message, into: &output)
            #expect(batch.run == "run-\(index)")
            #expect(batch.layer == "features.\(index)")
            #expect(batch.step == Int64(100 + index))
            #expect(batch.imageIDs == [9, 2, 7, 1])
            #expect(batch.units == 3 && batch.height == 2 && batch.width == 2)
            #expect(batch.dtype == dtype)
            #expect(batch.rank == index)
            #expect(output == values, "eighths are exact in every dtype")
        }
    }

    @Test func zeroCopyMessagesAndFrameLimits() throws {
        let directory = try makeRunDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let endpoint = Endpoints(runDirectory: directory).ingest
        let context = try ZMQContext()
        let pull = try ZMQSocket(context, type: .pull)
        try pull.bind(endpoint)
        try pull.setReceiveTimeout(milliseconds: 5000)
        let push = try ZMQSocket(context, type: .push)
        try push.connect(endpoint)

        // Messages are moved into libzmq by send and left empty.
        let frames = try (0..<20).map { index throws(WireError) in try ZMQMessage(copying: [UInt8(index), 0xEE]) }
        #expect(try push.send(frames))
        #expect(frames.allSatisfy { $0.count == 0 })

        let message = try #require(try pull.receive(maxFrames: 16))
        #expect(message.frameCount == 20)
        #expect(message.frames.count == 16)
        #expect(message.frames.map { $0.bytes } == (0..<16).map { [UInt8($0), 0xEE] })
        #expect(message.frames.last?.hasMore == true)
        var output: [Float] = []
        #expect(throws: BatchRejection.frameCount(received: 20)) { try BatchDecoder().decode(message, into: &output) }

        // A frame filled in place.
        let frame = try ZMQMessage(count: 3)
        frame.withUnsafeMutableBytes { $0.copyBytes(from: [1, 2, 3]) }
        #expect(try push.send([frame]))
        #expect(try pull.receive()?.frames.first?.bytes == [1, 2, 3])
    }

    /// libzmq drops a peer that sends a frame over ZMQ_MAXMSGSIZE; the frame never arrives and
    /// later messages from the reconnected peer do.
    @Test func oversizedFramesNeverArrive() throws {
        let directory = try makeRunDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let endpoint = Endpoints(runDirectory: directory).ingest
        let context = try ZMQContext()
        let pull = try ZMQSocket(context, type: .pull)
        try pull.setMaxMessageSize(bytes: 1000)
        try pull.bind(endpoint)
        try pull.setReceiveTimeout(milliseconds: 100)
        let push = try ZMQSocket(context, type: .push)
        try push.connect(endpoint)
        try push.setSendTimeout(milliseconds: 1000)

        #expect(try push.send([[UInt8](repeating: 1, count: 5000)]))
        var smallReceived = 0
        for attempt in 0..<50 where smallReceived == 0 {
            try push.send([[UInt8](repeating: 2, count: 10)], dontWait: true)
            while let message = try pull.receive() {
                #expect(message.byteCount <= 1000, "attempt \(attempt)")
                if message.frames.first?.bytes == [UInt8](repeating: 2, count: 10) { smallReceived += 1 }
            }
        }
        #expect(smallReceived > 0)
    }

    /// A subscription to "layer1\0" must not receive layer10's snapshots.
    @Test func publishTopicsDoNotMatchByPrefix() throws {
        let directory = try makeRunDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let endpoint = Endpoints(runDirectory: directory).publish
        let context = try ZMQContext()
        let publisher = try ZMQSocket(context, type: .pub)
        try publisher.bind(endpoint)
        let subscriber = try ZMQSocket(context, type: .sub)
        try subscriber.subscribe(PublishTopic.topic(forLayer: "layer1"))
        try subscriber.setReceiveTimeout(milliseconds: 20)
        try subscriber.connect(endpoint)

        func snapshot(_ layer: String, step: Int64) -> Hndd_Snapshot {
            var snapshot = Hndd_Snapshot()
            snapshot.protocolVersion = 1
            snapshot.layer = layer
            snapshot.step = step
            snapshot.units = 2
            snapshot.threshold = [0.5, 1.5]
            snapshot.region = [-1, 0]
            snapshot.netdissectConcept = [-1, 3]
            snapshot.taxonomy.subgroups = ["female", "male"]
            snapshot.globalProb = [0.1, 0.9, 0.5, 0.5]
            snapshot.globalBiased = [false, true, false, false]
            return snapshot
        }
        // PUB drops messages until the subscription has propagated: publish until one arrives.
        var received: [Hndd_Snapshot] = []
        var step: Int64 = 0
        while received.isEmpty && step < 250 {
            step += 1
            try publisher.send(SnapshotPublication.encode(snapshot("layer10", step: step)))
            try publisher.send(SnapshotPublication.encode(snapshot("layer1", step: step)))
            while let message = try subscriber.receive() {
                received.append(try SnapshotPublication.decode(message))
            }
        }
        #expect(!received.isEmpty)
        #expect(received.allSatisfy { $0.layer == "layer1" })
        #expect(received.first?.globalProb == [0.1, 0.9, 0.5, 0.5])
        #expect(received.first?.globalBiased == [false, true, false, false])
    }

    @Test func publicationChecksTopicAndShapes() throws {
        var snapshot = Hndd_Snapshot()
        snapshot.protocolVersion = 1
        snapshot.layer = "conv"
        snapshot.units = 2
        snapshot.threshold = [1, 2]
        snapshot.region = [0, 0]
        snapshot.netdissectConcept = [0, 0]
        snapshot.taxonomy.concepts = ["left_eye"]
        snapshot.iou = [0.1, 0.2]
        snapshot.localProb = [1, 1]
        snapshot.localPaired = [true, true]
        snapshot.topImagesPerUnit = 1
        snapshot.topImages = [4, 5]
        try snapshot.validate()

        var broken = snapshot
        broken.iou = [0.1]
        let error = #expect(throws: WireError.self) { try broken.validate() }
        #expect(error?.description.contains("iou has 1 values, expected 2") == true)

        let frames = try SnapshotPublication.encode(snapshot)
        #expect(frames[0] == Array("conv".utf8) + [0])
        let wrongTopic = try ZMQMultipart(frames: [ZMQMessage(copying: Array("other".utf8) + [0]), ZMQMessage(copying: frames[1])])
        #expect(throws: WireError.self) { try SnapshotPublication.decode(wrongTopic) }
        let unterminated = try ZMQMultipart(frames: [ZMQMessage(copying: Array("conv".utf8)), ZMQMessage(copying: frames[1])])
        #expect(throws: WireError.self) { try SnapshotPublication.decode(unterminated) }
        let good = try ZMQMultipart(frames: [ZMQMessage(copying: frames[0]), ZMQMessage(copying: frames[1])])
        #expect(try SnapshotPublication.decode(good) == snapshot)
    }

    @Test func controlRequestAndReplyOverREQREP() throws {
        let directory = try makeRunDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let endpoint = Endpoints(runDirectory: directory).control
        let context = try ZMQContext()
        let server = try ZMQSocket(context, type: .rep)
        try server.bind(endpoint)
        try server.setReceiveTimeout(milliseconds: 5000)
        let client = try ZMQSocket(context, type: .req)
        try client.connect(endpoint)
        try client.setReceiveTimeout(milliseconds: 5000)

        var request = Hndd_ControlRequest()
        request.protocolVersion = 1
        request.requestID = 77
        request.snapshot.layer = "layer3"
        try client.send([WireCodec.serialize(request)])

        let received = try #require(try server.receive())
        let parsed = try WireCodec.deserialize(Hndd_ControlRequest.self, from: received.frames[0])
        guard case let .snapshot(snapshotRequest)? = parsed.request else {
            Issue.record("expected a snapshot request, got \(String(describing: parsed.request))")
            return
        }
        #expect(snapshotRequest.layer == "layer3")
        var reply = Hndd_ControlReply()
        reply.protocolVersion = 1
        reply.requestID = parsed.requestID
        reply.error.message = "no layer 'layer3' has been seen"
        try server.send([WireCodec.serialize(reply)])

        let answer = try #require(try client.receive())
        let parsedReply = try WireCodec.deserialize(Hndd_ControlReply.self, from: answer.frames[0])
        #expect(parsedReply.requestID == 77)
        #expect(parsedReply.error.message == "no layer 'layer3' has been seen")

        let garbage = try ZMQMessage(copying: [0xFF, 0xFF, 0x01])
        let error = #expect(throws: WireError.self) { try WireCodec.deserialize(Hndd_ControlRequest.self, from: garbage) }
        #expect(error?.description.contains("hndd.ControlRequest") == true)
    }

    @Test func pollReportsWhichSocketIsReadable() throws {
        let directory = try makeRunDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let context = try ZMQContext()
        let first = try ZMQSocket(context, type: .pull)
        let second = try ZMQSocket(context, type: .pull)
        try first.bind("ipc://\(directory)/first.sock")
        try second.bind("ipc://\(directory)/second.sock")
        #expect(try ZMQPoll.readable([first, second], timeoutMilliseconds: 0) == [false, false])
        let push = try ZMQSocket(context, type: .push)
        try push.connect("ipc://\(directory)/second.sock")
        try push.send([[1]])
        #expect(try ZMQPoll.readable([first, second], timeoutMilliseconds: 5000) == [false, true])
        let events = try ZMQPoll.wait([(push, .writable), (second, [.readable, .writable])], timeoutMilliseconds: 0)
        #expect(events == [.writable, .readable])
    }

    /// Shutting the context down wakes a thread blocked in receive with a clear error.
    @Test func contextShutdownUnblocksAReceivingThread() throws {
        let directory = try makeRunDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let context = try ZMQContext()
        let outcome = Box<String>("still waiting")
        let started = DispatchSemaphore(value: 0)
        let endpoint = Endpoints(runDirectory: directory).ingest
        let done = startThread {
            do {
                let pull = try ZMQSocket(context, type: .pull)
                try pull.bind(endpoint)
                started.signal()
                _ = try pull.receive()
                outcome.value = "received"
            } catch {
                outcome.value = "\(error)"
            }
        }
        started.wait()
        Thread.sleep(forTimeInterval: 0.05)
        context.shutdown()
        #expect(done.wait(timeout: .now() + 5) == .success)
        #expect(outcome.value == WireError.contextTerminated(operation: "zmq_msg_recv(frame 0)").description)
    }
}

@Suite struct ThroughputTests {
    /// Full-size batches of the paper's layer (256 images × 512 × 7 × 7 float32, 25.7 MB) pushed
    /// over ipc:// by another thread arrive complete, in order, byte for byte. Prints the rate.
    @Test func largeBatchesArriveIntact() throws {
        let directory = try makeRunDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let endpoint = Endpoints(runDirectory: directory).ingest
        let context = try ZMQContext()
        let pull = try ZMQSocket(context, type: .pull)
        try pull.setReceiveHighWaterMark(4)
        try pull.setMaxMessageSize(bytes: 64 << 20)
        try pull.setReceiveTimeout(milliseconds: 20_000)
        try pull.bind(endpoint)

        let imageCount = 256, units = 512, side = 7, batchCount = 24
        let valuesPerBatch = imageCount * units * side * side
        var pattern = [Float](repeating: 0, count: valuesPerBatch)
        for index in stride(from: 0, to: valuesPerBatch, by: 997) { pattern[index] = Float(index % 1013) - 500 }
        let tensor: [UInt8] = pattern.withUnsafeBytes { Array($0) }  // little-endian host
        let sendFailure = Box<String?>(nil)
        let sent = startThread {
            do {
                let push = try ZMQSocket(context, type: .push)
                try push.setSendHighWaterMark(2)
                try push.connect(endpoint)
                for step in 0..<batchCount {
                    var header = Hndd_BatchHeader()
                    header.protocolVersion = WireProtocol.version
                    header.run = "bench"
                    header.layer = "layer4"
                    header.step = Int64(step)
                    header.imageIds = (0..<Int64(imageCount)).map { $0 + Int64(step * imageCount) }
                    header.dtype = .float32
                    header.units = UInt32(units)
                    header.height = UInt32(side)
                    header.width = UInt32(side)
                    try push.send([WireCodec.serialize(header), tensor])
                }
            } catch {
                sendFailure.value = "\(error)"
            }
        }

        var output: [Float] = []
        let decoder = BatchDecoder()
        var start: Date?
        var decodeSeconds = 0.0
        for step in 0..<batchCount {
            let message = try #require(try pull.receive(), "batch \(step) did not arrive")
            let decodeStart = Date()
            let batch = try decoder.decode(message, into: &output)
            if start != nil { decodeSeconds += Date().timeIntervalSince(decodeStart) }
            #expect(batch.step == Int64(step))
            #expect(batch.imageIDs.first == Int64(step * imageCount))
            let identical = output.withUnsafeBytes { received in
                pattern.withUnsafeBytes { memcmp(received.baseAddress!, $0.baseAddress!, $0.count) == 0 }
            }
            #expect(identical, "batch \(step) values differ")
            if start == nil { start = Date() }  // time from the first batch on: excludes connecting
        }
        let seconds = Date().timeIntervalSince(start!)
        #expect(sent.wait(timeout: .now() + 30) == .success)
        #expect(sendFailure.value == nil)
        let megabytes = Double((batchCount - 1) * tensor.count) / 1e6
        print("HNDWire ipc:// throughput: \(batchCount - 1) batches of 256×512×7×7 float32 in "
              + "\(String(format: "%.3f", seconds)) s = \(String(format: "%.0f", megabytes / seconds)) MB/s, "
              + "\(String(format: "%.1f", Double(batchCount - 1) / seconds)) batches/s (received, decoded and compared); "
              + "decoding took \(String(format: "%.1f", 1000 * decodeSeconds / Double(batchCount - 1))) ms a batch")
    }
}
