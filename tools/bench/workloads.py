"""The bench's multi-layer and real-map workloads (issue 18), beside bench.py's synthetic layers.

A workload is a probe pass: a sequence of ``(layer, image_ids, maps)`` messages, in the order a
trainer sends them (`cycled`: one layer, bench.py's synthetic pool of batches repeated).

  three-layers   512×7×7, 1,024×14×14 and 2,048×7×7 of one probe pass, interleaved as
                 `hndd_client.torch.watch` sends them: for each probe batch of images, one message
                 per layer, in the order the layers were named, every message of the same images.
  real           a torchvision ResNet-50 (random initialisation, fixed seed: no weights can be
                 downloaded here) run once on real faces (CelebA aligned images and UTKFace crops,
                 resized to 224×224), its layer4.2.conv1 (512×7×7) cached under .test-cache/ and
                 tiled to the pass size: image k of the pass is real image k mod n, so each real
                 image appears images/n times under distinct ids (repeats make the maps non-i.i.d.).

    python3 tools/bench/workloads.py --build-real        # compute (or find) the cached real maps
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[2]

#: The three layers of the multi-layer pass, in the order the trainer names them to `watch`.
THREE_LAYERS = ("512x7x7", "1024x14x14", "2048x7x7")
#: `watch`'s probe batch (its ``batch_size`` default): every layer's message holds this many images.
WATCH_BATCH = 64

#: Where the real faces are (docs/performance.md, "Workloads"); HNDD_REAL_FACES overrides.
REAL_FACES = Path(os.environ.get("HNDD_REAL_FACES", REPO.parent / "shared" / "data" / "real-faces"))
REAL_CACHE = REPO / ".test-cache" / "bench-real"
REAL_LAYER, REAL_SIZE = "layer4.2.conv1", 224
#: Real images used by default: 35,632 = 4,454 × 8, so the paper's pass is eight whole repeats
#: (about 15 minutes of CPU once; --real-images 2227 gives sixteen repeats for half of that).
REAL_IMAGES = 4454


def cycled(layer: str, pool: list[np.ndarray], images: int) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """One layer's pass from a pool of distinct batches, cycled with fresh ids 0..images-1."""
    batch = pool[0].shape[0]
    for k, start in enumerate(range(0, images, batch)):
        ids = np.arange(start, min(start + batch, images))
        yield layer, ids, pool[k % len(pool)][:ids.size]


def interleaved(pools: dict[str, list[np.ndarray]], images: int) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """`watch`'s order for the layers of `pools` (dict order): probe batch by probe batch, one
    message per layer, each of the same image ids; batch k of a layer is its pool's k mod len."""
    batch = next(iter(pools.values()))[0].shape[0]
    for k, start in enumerate(range(0, images, batch)):
        ids = np.arange(start, min(start + batch, images))
        for layer, pool in pools.items():
            yield layer, ids, pool[k % len(pool)][:ids.size]


def tiled(layer: str, maps: np.ndarray, images: int, batch: int) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """`maps` [n, C, h, w] repeated to `images` ids: id i carries map i mod n. Batches of at most
    `batch` never straddle a repeat, so each is a view of `maps` (no copy in the sender)."""
    n = maps.shape[0]
    for first in range(0, images, n):
        for start in range(0, min(n, images - first), batch):
            count = min(batch, n - start, images - first - start)
            yield layer, np.arange(first + start, first + start + count), maps[start:start + count]


def real_face_files(root: Path, count: int) -> list[Path]:
    """`count` photos, CelebA and UTKFace alternating (each sorted by name), so both halves of
    the dictionary (global and local images) get both kinds."""
    celeba = sorted((root / "celeba" / "img_align_celeba").glob("*.jpg"))
    utkface = sorted((root / "utkface" / "UTKFace").glob("*.jpg"))
    if len(celeba) + len(utkface) < count:
        sys.exit(f"bench: {root} holds {len(celeba) + len(utkface)} faces, fewer than the {count} asked for")
    files = [f for pair in zip(celeba, utkface) for f in pair]
    rest = celeba[len(utkface):] + utkface[len(celeba):]
    return (files + rest)[:count]


def real_settings(seed: int) -> dict:
    import torch
    import torchvision
    return {"model": "torchvision resnet50, random init (weights=None)", "seed": seed, "layer": REAL_LAYER,
            "size": REAL_SIZE, "resize": "bilinear to 224x224, ImageNet mean/std", "order": "real_face_files",
            "torch": torch.__version__, "torchvision": torchvision.__version__}


#: Real maps are computed and cached in chunks of this many images: an interrupted build keeps
#: what it did, and a bigger --real-images reuses the smaller one's (the file order is a prefix).
REAL_CHUNK = 256


def real_maps(count: int = REAL_IMAGES, seed: int = 7, root: Path = REAL_FACES, threads: int = 2) -> np.ndarray:
    """ResNet-50's layer4.2.conv1 on the first `count` real faces, float32 [count, 512, 7, 7]:
    from the cache when it holds them under these settings, else computed (about 0.2 s of CPU an
    image) and cached, chunk by chunk."""
    settings = real_settings(seed)
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    folder = REAL_CACHE / f"resnet50-{REAL_LAYER}-seed{seed}-{key}"
    chunks = [folder / f"chunk-{k:04d}.npy" for k in range(-(-count // REAL_CHUNK))]
    # A chunk is short only when it was the last of a smaller count: then it is computed again.
    wanted = [min(REAL_CHUNK, count - k * REAL_CHUNK) for k in range(len(chunks))]
    missing = [k for k, path in enumerate(chunks) if not path.exists() or np.load(path, mmap_mode="r").shape[0] < wanted[k]]
    if missing:
        if not root.is_dir():
            sys.exit(f"bench: real faces not found at {root} (set HNDD_REAL_FACES)")
        files = real_face_files(root, count)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "settings.json").write_text(json.dumps(settings, indent=2))
        for k in missing:
            maps = compute_real_maps(files[k * REAL_CHUNK:(k + 1) * REAL_CHUNK], seed, threads)
            partial = chunks[k].with_suffix(".writing.npy")
            np.save(partial, maps)
            partial.rename(chunks[k])
            print(f"real maps: chunk {k + 1}/{len(chunks)} cached ({maps.shape[0]} images)", flush=True)
    return np.concatenate([np.load(path) for path in chunks])[:count]


def compute_real_maps(files: Sequence[Path], seed: int, threads: int, batch: int = 32) -> np.ndarray:
    """The forward pass, stopped once layer4.2.conv1 has run (as `watch` does, stop_early)."""
    import torch
    import torchvision
    from PIL import Image
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = torchvision.models.resnet50(weights=None).eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    module = dict(model.named_modules())[REAL_LAYER]
    captured = {}

    class Done(Exception):
        pass

    def hook(_module, _inputs, output):
        captured["maps"] = output.detach().clone()
        raise Done

    module.register_forward_hook(hook)
    out = np.empty((len(files), 512, 7, 7), np.float32)
    with torch.no_grad():
        for start in range(0, len(files), batch):
            chunk = files[start:start + batch]
            pixels = np.stack([np.asarray(Image.open(f).convert("RGB").resize((REAL_SIZE, REAL_SIZE), Image.BILINEAR))
                               for f in chunk])
            x = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255 - mean) / std
            try:
                model(x)
            except Done:
                pass
            out[start:start + len(chunk)] = captured["maps"].numpy()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-real", action="store_true", help="compute (or find) the cached real maps")
    parser.add_argument("--real-images", type=int, default=REAL_IMAGES)
    parser.add_argument("--seed", type=int, default=7, help="the model's initialisation (default 7, as bench.py)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.build_real:
        maps = real_maps(args.real_images, args.seed, threads=args.threads)
        print(f"real maps: {maps.shape}, min {maps.min():.3g}, max {maps.max():.3g}, "
              f"{(maps > 0).mean():.1%} positive")
    return 0


if __name__ == "__main__":
    sys.exit(main())
