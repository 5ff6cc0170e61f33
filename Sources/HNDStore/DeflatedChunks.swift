import CHDF5
import Dispatch
import Foundation

/// A chunked byte dataset read through HDF5's direct chunk access and inflated on every core.
/// HDF5 decompresses on one thread, and the paper's dictionary holds 1.5 GB of mask bits: their
/// inflating was most of its loading time. Only for datasets whose filters are deflate and shuffle
/// (a no-op on bytes) and whose missing chunks read as zeros; anything else is read by HDF5.
struct DeflatedChunks: @unchecked Sendable { // workers read its geometry; HDF5 is called on one thread
    let name: String
    let shape: [Int]
    let chunk: [Int]
    private let dataset: HDF5Handle
    /// Index of the deflate filter in the pipeline (a chunk's filter mask says whether it was applied).
    private let deflateFilter: Int?
    private var chunkBytes: Int { chunk.reduce(1, *) }
    /// A chunk's worth of scratch per worker, kept from read to read.
    private let scratch = Scratch(count: ProcessInfo.processInfo.activeProcessorCount)

    /// Nil when the dataset is not a chunked byte dataset with only these filters and fill value 0.
    init?(_ file: HDF5File, _ name: String) {
        guard let dataset = try? file.openDataset(name), (try? file.elementSize(of: name)) == 1,
              let chunk = try? file.chunkShape(of: name) else { return nil }
        let properties = HDF5Handle(H5Dget_create_plist(dataset.id), H5Pclose)
        var deflate: Int?
        for index in 0..<max(0, Int(H5Pget_nfilters(properties.id))) {
            var flags: UInt32 = 0, values = 0, config: UInt32 = 0
            var parameters = [UInt32](repeating: 0, count: 8), filterName = [CChar](repeating: 0, count: 64)
            let filter = H5Pget_filter2(properties.id, UInt32(index), &flags, &values, &parameters, 64, &filterName, &config)
            if filter == H5Z_FILTER_DEFLATE { deflate = index } else if filter != H5Z_FILTER_SHUFFLE { return nil }
        }
        var defined = H5D_FILL_VALUE_ERROR, fill: UInt8 = 0
        guard H5Pfill_value_defined(properties.id, &defined) >= 0, defined != H5D_FILL_VALUE_UNDEFINED,
              defined == H5D_FILL_VALUE_DEFAULT || (H5Pget_fill_value(properties.id, chdf5_native_uint8(), &fill) >= 0 && fill == 0)
        else { return nil }
        self.name = name
        self.shape = HDF5File.shape(of: dataset)
        self.chunk = chunk
        self.dataset = dataset
        deflateFilter = deflate
    }

    /// The stored chunks of some rows, read raw: chunk k, at `offsets[k]`, is bytes
    /// `raw[from ..< from + bytes]`, deflated or not.
    struct RawChunks {
        var offsets: [[Int]] = []
        var stored: [(from: Int, bytes: Int, deflated: Bool)] = []
        var raw: [UInt8] = []
    }

    /// Every stored chunk of rows [start, start + count), read raw, one after another (HDF5 is not
    /// thread-safe); missing chunks are left out.
    func readRaw(start: Int, count: Int, file: HDF5File) throws(StoreError) -> RawChunks {
        var chunks = RawChunks()
        for offset in chunkOffsets(start: start, count: count) {
            var coordinates = offset.map { hsize_t($0) }, bytes: hsize_t = 0, address: haddr_t = 0, mask: UInt32 = 0
            guard H5Dget_chunk_info_by_coord(dataset.id, &coordinates, &mask, &address, &bytes) >= 0 else {
                throw file.error(name, "chunk at \(offset) cannot be located")
            }
            guard address != haddr_t.max, bytes > 0 else { continue } // never written: zeros
            let from = chunks.raw.count
            chunks.raw += repeatElement(0, count: Int(bytes))
            var filterMask: UInt32 = 0
            let status = chunks.raw.withUnsafeMutableBytes {
                H5Dread_chunk(dataset.id, chdf5_p_default(), &coordinates, &filterMask, $0.baseAddress! + from)
            }
            guard status >= 0 else { throw file.error(name, "chunk at \(offset) cannot be read") }
            chunks.offsets.append(offset)
            chunks.stored.append((from, Int(bytes), deflateFilter.map { filterMask & (1 << UInt32($0)) == 0 } ?? false))
        }
        return chunks
    }

    /// Reads rows [start, start + count) of the first axis into `out` (resized to count rows,
    /// row-major); `start` is a multiple of the chunk's first dimension. Returns, per row, whether
    /// no chunk of it is stored: the row is then zeros, known without looking.
    func read(start: Int, count: Int, into out: inout [UInt8], file: HDF5File) throws(StoreError) -> [Bool] {
        precondition(start % chunk[0] == 0)
        let chunks = try readRaw(start: start, count: count, file: file)
        if out.count != count * rowBytes { out = [UInt8](repeating: 0, count: count * rowBytes) }
        var unstored = [Bool](repeating: true, count: count)
        for offset in chunks.offsets {
            for row in (offset[0] - start)..<min(count, offset[0] - start + chunk[0]) { unstored[row] = false }
        }
        // Zeros where no chunk will be placed: rows without a stored chunk, and all of them when
        // some chunk is placed only in part (then the rest of its rows may be missing).
        let partial = chunks.offsets.contains { !isWhole(at: $0, start: start, count: count) }
        let corrupt = out.withUnsafeMutableBytes { out in
            for (row, missing) in unstored.enumerated() where missing || partial {
                (out.baseAddress! + row * rowBytes).initializeMemory(as: UInt8.self, repeating: 0, count: rowBytes)
            }
            return inflate(chunks, start: start, count: count, into: out)
        }
        if let k = corrupt {
            throw file.error(name, "chunk at \(chunks.offsets[k]) is corrupt (it does not inflate to \(chunkBytes) bytes)")
        }
        return unstored
    }

    /// Inflates and places every chunk on every core: straight into `out` where a chunk lies whole
    /// inside it, else through a scratch chunk of the worker's own. Returns the first corrupt one.
    private func inflate(_ chunks: RawChunks, start: Int, count: Int, into out: UnsafeMutableRawBufferPointer) -> Int? {
        let stored = chunks.stored, offsets = chunks.offsets
        let slices = min(stored.count, scratch.count), chunkBytes = chunkBytes, rowBytes = rowBytes
        var corrupt = [Bool](repeating: false, count: stored.count)
        chunks.raw.withUnsafeBytes { raw in
        corrupt.withUnsafeMutableBufferPointer { corrupt in
            let raw = UnsafeSendable(raw), out = UnsafeSendable(out), corrupt = UnsafeSendable(corrupt), scratch = UnsafeSendable(scratch)
            DispatchQueue.concurrentPerform(iterations: slices) { slice in
                for k in (slice * stored.count / slices)..<((slice + 1) * stored.count / slices) {
                    let whole = isWhole(at: offsets[k], start: start, count: count)
                    let target = whole ? out.value.baseAddress! + (offsets[k][0] - start) * rowBytes : scratch.value.buffer(slice, bytes: chunkBytes)
                    let source = raw.value.baseAddress! + stored[k].from
                    if stored[k].deflated {
                        guard Self.inflate(source, count: stored[k].bytes, into: target, count: chunkBytes) else {
                            corrupt.value[k] = true
                            continue
                        }
                    } else {
                        guard stored[k].bytes == chunkBytes else { corrupt.value[k] = true; continue }
                        target.copyMemory(from: source, byteCount: chunkBytes)
                    }
                    if !whole { place(UnsafeRawPointer(target), at: offsets[k], start: start, count: count, into: out.value) }
                }
            }
        }}
        return corrupt.firstIndex(of: true)
    }

    /// Inflates a zlib stream (RFC 1950, as HDF5's deflate filter writes it) of `count` bytes into
    /// exactly `outCount` bytes and checks its Adler-32. zlib would check it too, but its
    /// checksum was a third of the time of loading the paper's masks; here runs of zero bytes — most
    /// of a mask array — are folded into it without a pass over them. False when corrupt.
    static func inflate(_ source: UnsafeRawPointer, count: Int, into out: UnsafeMutableRawPointer, count outCount: Int) -> Bool {
        let bytes = source.assumingMemoryBound(to: UInt8.self)
        // The header: deflate, a window of at most 32 KiB, no preset dictionary, a valid check.
        guard count >= 6, bytes[0] & 0x0F == 8, bytes[0] >> 4 <= 7, bytes[1] & 0x20 == 0,
              (UInt32(bytes[0]) << 8 | UInt32(bytes[1])) % 31 == 0 else { return false }
        var stream = z_stream()
        guard inflateInit2_(&stream, -MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return false }
        defer { inflateEnd(&stream) }
        stream.next_in = UnsafeMutablePointer(mutating: bytes + 2)
        stream.avail_in = uInt(count - 6)
        stream.next_out = out.assumingMemoryBound(to: Bytef.self)
        stream.avail_out = uInt(outCount)
        guard CHDF5.inflate(&stream, Z_FINISH) == Z_STREAM_END, Int(stream.total_out) == outCount, stream.avail_in == 0 else {
            return false
        }
        let stated = (4..<8).reduce(UInt32(0)) { $0 << 8 | UInt32(bytes[count - 8 + $1]) }
        return adler32(UnsafeRawPointer(out), count: outCount) == stated
    }

    /// zlib's Adler-32 of `count` bytes. A run of n zero bytes leaves its sum a unchanged and adds
    /// n·a to b: zero blocks of 64 bytes cost a test, not a pass of the checksum.
    static func adler32(_ data: UnsafeRawPointer, count: Int) -> UInt32 {
        let modulus: UInt64 = 65521
        var checksum = CHDF5.adler32(0, nil, 0)
        var zeros = 0, run = 0 // pending zero bytes; start of the pending non-zero bytes
        func flushZeros() {
            guard zeros > 0 else { return }
            let a = UInt64(checksum & 0xFFFF), b = UInt64(checksum >> 16)
            checksum = uLong(((b + UInt64(zeros) % modulus * a) % modulus) << 16 | a)
            zeros = 0
        }
        func flushBytes(upTo end: Int) {
            guard end > run else { return }
            checksum = CHDF5.adler32(checksum, data.assumingMemoryBound(to: Bytef.self) + run, uInt(end - run))
        }
        var block = 0
        while block + 64 <= count {
            var any: UInt64 = 0
            for word in 0..<8 { any |= data.loadUnaligned(fromByteOffset: block + 8 * word, as: UInt64.self) }
            if any == 0 {
                flushBytes(upTo: block)
                zeros += 64
                run = block + 64
            } else if zeros > 0 {
                flushZeros()
                run = block
            }
            block += 64
        }
        flushBytes(upTo: block)
        flushZeros()
        run = block
        flushBytes(upTo: count)
        return UInt32(checksum)
    }

    /// Bytes of one row of the first axis.
    private var rowBytes: Int { shape.dropFirst().reduce(1, *) }

    /// Whether the chunk at `offset` spans every other axis whole and lies inside the rows read:
    /// it is then a contiguous part of them.
    private func isWhole(at offset: [Int], start: Int, count: Int) -> Bool {
        offset[0] + chunk[0] <= start + count && (1..<shape.count).allSatisfy { chunk[$0] == shape[$0] }
    }

    /// The offsets of the chunks covering rows [start, start + count), over every other axis.
    func chunkOffsets(start: Int, count: Int) -> [[Int]] {
        var offsets: [[Int]] = [[]]
        for axis in shape.indices {
            let from = axis == 0 ? start : 0, end = axis == 0 ? start + count : shape[axis]
            offsets = offsets.flatMap { prefix in stride(from: from, to: end, by: chunk[axis]).map { prefix + [$0] } }
        }
        return offsets
    }

    /// Copies the part of a chunk at `offset` inside the dataset (and the rows read) into `out`.
    func place(_ chunkData: UnsafeRawPointer, at offset: [Int], start: Int, count: Int, into out: UnsafeMutableRawBufferPointer) {
        let rank = shape.count
        // Extent of the chunk inside the rows read, per axis; rows of the last axis are copied whole.
        var extent = (0..<rank).map { min(chunk[$0], shape[$0] - offset[$0]) }
        extent[0] = min(extent[0], start + count - offset[0])
        let outShape = [count] + shape.dropFirst()
        var index = [Int](repeating: 0, count: max(rank - 1, 0))
        while true {
            var from = 0, to = 0
            for axis in 0..<rank {
                let i = axis < rank - 1 ? index[axis] : 0
                from = from * chunk[axis] + i
                to = to * outShape[axis] + (axis == 0 ? offset[0] - start : offset[axis]) + i
            }
            (out.baseAddress! + to).copyMemory(from: chunkData + from, byteCount: extent[rank - 1])
            // The next row of the chunk's extent (an odometer over all axes but the last).
            var axis = rank - 2
            while axis >= 0 {
                index[axis] += 1
                if index[axis] < extent[axis] { break }
                index[axis] = 0
                axis -= 1
            }
            if axis < 0 { return }
        }
    }
}

/// Buffers reused from call to call: allocating megabytes per chunk would fault fresh pages in.
final class Scratch: @unchecked Sendable { // each worker uses only its own buffer
    private var buffers: [UnsafeMutableRawPointer?]
    private var sizes: [Int]
    var count: Int { buffers.count }

    init(count: Int) {
        buffers = [UnsafeMutableRawPointer?](repeating: nil, count: max(1, count))
        sizes = [Int](repeating: 0, count: max(1, count))
    }

    func buffer(_ i: Int, bytes: Int) -> UnsafeMutableRawPointer {
        if sizes[i] < bytes {
            buffers[i]?.deallocate()
            buffers[i] = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
            sizes[i] = bytes
        }
        return buffers[i]!
    }

    deinit { buffers.forEach { $0?.deallocate() } }
}

/// Carries a pointer into `concurrentPerform`, whose iterations touch disjoint parts of it.
struct UnsafeSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
