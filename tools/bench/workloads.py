"""The bench's multi-layer and real-map workloads (issue 18), beside bench.py's synthetic layers.

A workload is a probe pass: a sequence of ``(layer, image_ids, maps)`` messages, in the order a
trainer sends them (`cycled`: one layer, bench.py's synthetic pool of batches repeated).

  three-layers   512×7×7, 1,024×14×14 and 2,048×7×7 of one probe pass, interleaved as
                 `hndd_client.torch.watch` sends them: for each probe batch of images, one message
                 per layer, in the order the layers were named, every message of the same images.
  real           a torchvision ResNet-50 (random initialisation, fixed seed: no weights can be
                 downloaded here) run once on real faces (CelebA aligned images and UTKFace crops,
                 resized to 224×224), its layer4.2.conv1 (512×7×7, the paper's layer) cached under
                 .test-cache/ and tiled to the pass size: image k of the pass is real image k mod n,
                 so each real image appears images/n times under distinct ids (repeats make the maps
                 non-i.i.d.).
  real-2048x7x7  the same network and faces, the output of layer4 (2,048×7×7, ResNet-50's block 4
                 output, after its last ReLU), cached and tiled the same way.
  real-1024x14x14
                 the same, the output of layer3 (1,024×14×14, after its last ReLU).

`REAL_WORKLOADS` is the one list of these layers. Building computes every layer asked for that the
cache lacks in one forward pass per chunk of faces, stopped once the last of them has run.

    python3 tools/bench/workloads.py --build-real        # compute (or find) the cached maps of all three
    python3 tools/bench/workloads.py --build-real --workload real-1024x14x14
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
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
REAL_SIZE = 224
#: Real images used by default: 35,632 = 4,454 × 8, so the paper's pass is eight whole repeats
#: (about 15 minutes of CPU once; --real-images 2227 gives sixteen repeats for half of that).
REAL_IMAGES = 4454


@dataclass(frozen=True)
class RealLayer:
    """A real-map workload: the ResNet-50 module (a `named_modules` name) whose output it sends,
    and that output's shape at 224 px; the module's name is also the layer the daemon is sent."""
    module: str
    shape: tuple[int, int, int]


#: The real-map workloads by their --workload name: the paper's layer and the issue's two big
#: shapes (docs/performance.md, "Workloads").
REAL_WORKLOADS = {
    "real": RealLayer("layer4.2.conv1", (512, 7, 7)),
    "real-2048x7x7": RealLayer("layer4", (2048, 7, 7)),
    "real-1024x14x14": RealLayer("layer3", (1024, 14, 14)),
}
#: The paper's layer, the `real` workload's module.
REAL_LAYER = REAL_WORKLOADS["real"].module
#: A module's output shape, by module name.
REAL_SHAPES = {spec.module: spec.shape for spec in REAL_WORKLOADS.values()}


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


def torch_versions() -> dict:
    """The versions that fix the maps' values, part of the cache key."""
    import torch
    import torchvision
    return {"torch": torch.__version__, "torchvision": torchvision.__version__}


def real_settings(seed: int, module: str, versions: dict) -> dict:
    """Everything the cached maps of `module` depend on: their cache key (the same keys for every
    layer, so that the `real` workload's cache of before the big layers is still found)."""
    return {"model": "torchvision resnet50, random init (weights=None)", "seed": seed, "layer": module,
            "size": REAL_SIZE, "resize": "bilinear to 224x224, ImageNet mean/std", "order": "real_face_files",
            **versions}


def real_cache_folder(settings: dict, cache: Path = REAL_CACHE) -> Path:
    """One folder per layer and settings: the key is a hash of the settings, the layer among them."""
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return cache / f"resnet50-{settings['layer']}-seed{settings['seed']}-{key}"


#: Real maps are computed and cached in chunks of this many images: an interrupted build keeps
#: what it did, and a bigger --real-images reuses the smaller one's (the file order is a prefix).
REAL_CHUNK = 256


def chunk_sizes(count: int) -> list[int]:
    """The images of each chunk of a cache of `count` images (the last one may be short)."""
    return [min(REAL_CHUNK, count - start) for start in range(0, count, REAL_CHUNK)]


def chunk_path(folder: Path, k: int) -> Path:
    return folder / f"chunk-{k:04d}.npy"


def chunk_cached(path: Path, images: int) -> bool:
    """A chunk is short only when it was the last of a smaller count: then it is computed again."""
    return path.exists() and np.load(path, mmap_mode="r").shape[0] >= images


def build_real_maps(modules: Sequence[str], count: int = REAL_IMAGES, seed: int = 7, root: Path = REAL_FACES,
                    threads: int = 2, cache: Path = REAL_CACHE) -> dict[str, Path]:
    """The cache folder of each of `modules` (names of `REAL_SHAPES`) holding its maps of the first
    `count` real faces. A chunk missing for some of the modules is computed for all of those in one
    forward pass (about 0.2 s of CPU an image), so building the three layers costs one pass, not three."""
    versions = torch_versions()
    folders = {m: real_cache_folder(real_settings(seed, m, versions), cache) for m in modules}
    sizes = chunk_sizes(count)
    missing = {k: [m for m in modules if not chunk_cached(chunk_path(folders[m], k), n)] for k, n in enumerate(sizes)}
    missing = {k: ms for k, ms in missing.items() if ms}
    if missing:
        if not root.is_dir():
            sys.exit(f"bench: real faces not found at {root} (set HNDD_REAL_FACES)")
        files = real_face_files(root, count)
        for m in {m for ms in missing.values() for m in ms}:
            folders[m].mkdir(parents=True, exist_ok=True)
            (folders[m] / "settings.json").write_text(json.dumps(real_settings(seed, m, versions), indent=2))
    for k, ms in missing.items():
        started = time.perf_counter()
        maps = compute_real_maps(files[k * REAL_CHUNK:(k + 1) * REAL_CHUNK], seed, threads, ms)
        for m in ms:
            partial = chunk_path(folders[m], k).with_suffix(".writing.npy")
            np.save(partial, maps[m])
            partial.rename(chunk_path(folders[m], k))
        print(f"real maps: chunk {k + 1}/{len(sizes)} of {', '.join(ms)} cached ({sizes[k]} images, "
              f"{time.perf_counter() - started:.0f} s)", flush=True)
    return folders


def load_real_maps(folder: Path, count: int, shape: tuple[int, int, int]) -> np.ndarray:
    """The first `count` cached maps of a folder, float32 [count, *shape], read chunk by chunk into
    one array (no second copy of the whole: 3.6 GB at 1,024×14×14 for 4,454 faces)."""
    out = np.empty((count, *shape), np.float32)
    for k, n in enumerate(chunk_sizes(count)):
        out[k * REAL_CHUNK:k * REAL_CHUNK + n] = np.load(chunk_path(folder, k), mmap_mode="r")[:n]
    return out


def real_maps(module: str = REAL_LAYER, count: int = REAL_IMAGES, seed: int = 7, root: Path = REAL_FACES,
              threads: int = 2, along: Sequence[str] = (), cache: Path = REAL_CACHE) -> np.ndarray:
    """ResNet-50's `module` on the first `count` real faces, float32 [count, *REAL_SHAPES[module]]:
    from the cache, built first where it lacks them — together with the modules `along` (the other
    real workloads of the same bench run), so that one forward pass serves them all."""
    modules = [m for m in REAL_SHAPES if m == module or m in along]
    folders = build_real_maps(modules, count, seed, root, threads, cache)
    return load_real_maps(folders[module], count, REAL_SHAPES[module])


def compute_real_maps(files: Sequence[Path], seed: int, threads: int, modules: Sequence[str] = (REAL_LAYER,),
                      batch: int = 32) -> dict[str, np.ndarray]:
    """The forward pass on `files`, each of `modules`' output captured by a hook, stopped once the
    last of them has run (as `watch` does, stop_early): module → float32 [len(files), *shape]."""
    import torch
    import torchvision
    from PIL import Image
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = torchvision.models.resnet50(weights=None).eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    named = dict(model.named_modules())
    captured: dict[str, torch.Tensor] = {}

    class Done(Exception):
        pass

    def hook_for(name):
        def hook(_module, _inputs, output):
            captured[name] = output.detach().clone()
            if len(captured) == len(modules):
                raise Done
        return hook

    for name in modules:
        named[name].register_forward_hook(hook_for(name))
    out = {name: np.empty((len(files), *REAL_SHAPES[name]), np.float32) for name in modules}
    with torch.no_grad():
        for start in range(0, len(files), batch):
            chunk = files[start:start + batch]
            pixels = np.stack([np.asarray(Image.open(f).convert("RGB").resize((REAL_SIZE, REAL_SIZE), Image.BILINEAR))
                               for f in chunk])
            x = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255 - mean) / std
            captured.clear()
            try:
                model(x)
            except Done:
                pass
            for name in modules:
                out[name][start:start + len(chunk)] = captured[name].numpy()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-real", action="store_true", help="compute (or find) the cached real maps")
    parser.add_argument("--workload", action="append", choices=sorted(REAL_WORKLOADS),
                        help="with --build-real: the real workloads to build (default: all, in one forward pass)")
    parser.add_argument("--real-images", type=int, default=REAL_IMAGES)
    parser.add_argument("--seed", type=int, default=7, help="the model's initialisation (default 7, as bench.py)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.build_real:
        modules = [REAL_WORKLOADS[name].module for name in args.workload or REAL_WORKLOADS]
        folders = build_real_maps([m for m in REAL_SHAPES if m in modules], args.real_images, args.seed,
                                  threads=args.threads)
        for module, folder in folders.items():
            maps = load_real_maps(folder, args.real_images, REAL_SHAPES[module])
            print(f"real maps of {module}: {maps.shape}, min {maps.min():.3g}, max {maps.max():.3g}, "
                  f"{(maps > 0).mean():.1%} positive; {folder}")
            del maps
    return 0


if __name__ == "__main__":
    sys.exit(main())
