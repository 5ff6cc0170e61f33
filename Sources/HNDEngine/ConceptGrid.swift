import Dispatch

/// The concept masks of a chunk of images, compact enough to stay in cache while every unit walks
/// them: per pixel a 16-bit id of the *combination* of concepts covering it (few per image, since
/// only overlapping ellipses make new ones), and per image a table from id to concept bits.
struct ConceptGrid {
    let pixelsPerImage: Int
    let capacity: Int
    private(set) var ids: [UInt16]
    /// Per image: combination id → concept bits; id 0 is "no concept".
    private(set) var tables: [[UInt64]]

    init(capacity: Int, size: Int) {
        self.capacity = capacity
        pixelsPerImage = size * size
        ids = [UInt16](repeating: 0, count: capacity * size * size)
        tables = [[UInt64]](repeating: [0], count: capacity)
    }

    /// Rasterises `images` (dictionary rows), in parallel, into slots 0..<images.count.
    mutating func fill(images: ArraySlice<Int32>, dictionary: FaceDictionary) {
        precondition(images.count <= capacity)
        let s2 = pixelsPerImage
        let first = images.startIndex
        ids.withUnsafeMutableBufferPointer { ids in
            tables.withUnsafeMutableBufferPointer { tables in
                let ids = UnsafeSendable(ids.baseAddress!), tables = UnsafeSendable(tables.baseAddress!)
                DispatchQueue.concurrentPerform(iterations: images.count) { i in
                    let table = Self.rasterize(image: Int(images[first + i]), dictionary: dictionary, into: ids.value + i * s2, pixels: s2)
                    (tables.value + i).pointee = table
                }
            }
        }
    }

    private static func rasterize(image: Int, dictionary: FaceDictionary, into out: UnsafeMutablePointer<UInt16>, pixels: Int) -> [UInt64] {
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: pixels) { grid in
            grid.initialize(repeating: 0)
            dictionary.rasterizeConcepts(image: image, into: grid)
            var table: [UInt64] = [0]
            var lastMask: UInt64 = 0, lastID: UInt16 = 0
            for p in 0..<pixels {
                let m = grid[p]
                if m != lastMask {
                    lastMask = m
                    // Linear search: an image has few distinct combinations.
                    let id = table.firstIndex(of: m) ?? { table.append(m); return table.count - 1 }()
                    precondition(id <= Int(UInt16.max), "more than 65,535 concept combinations on image \(image)")
                    lastID = UInt16(id)
                }
                out[p] = lastID
            }
            return table
        }
    }
}
