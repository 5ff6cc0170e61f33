"""tools/bench/workloads.py: the bench's passes — one layer cycled, three layers interleaved as
`hndd_client.torch.watch` sends them (checked against watch itself), real maps tiled — the
real-face selection and the real-map cache (its key per layer, one forward pass for every layer
it lacks: a stand-in forward without torch). Fast: tiny shapes; the ResNet-50 part runs on one face."""
import inspect
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import workloads  # noqa: E402


def pool_of(shape, batches, batch, seed):
    rng = np.random.default_rng(seed)
    return [rng.random((batch, *shape), dtype=np.float32) for _ in range(batches)]


def test_cycled_covers_every_id_once_and_cycles_the_pool():
    pool = pool_of((2, 3, 3), 3, 4, 0)
    messages = list(workloads.cycled("L", pool, 14))
    assert [m[1].tolist() for m in messages] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13]]
    assert all(layer == "L" for layer, _, _ in messages)
    assert np.array_equal(messages[3][2], pool[0][:2])  # batch 3 is pool batch 0, cut to the pass
    assert np.array_equal(messages[1][2], pool[1])


def test_interleaved_order_is_watchs_order(tmp_path):
    """watch, driving a model whose three watched modules output the pools' batches, sends exactly
    the (layer, ids, shape) sequence `interleaved` yields — layers in the order they were named."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    from hndd_client.synth import generate_dictionary
    from hndd_client.torch import watch

    images, batch = 10, 4
    shapes = {"late": (8, 2, 2), "early": (2, 4, 4), "middle": (4, 3, 3)}  # named out of forward order
    pools = {name: pool_of(shape, 1, batch, k) for k, (name, shape) in enumerate(shapes.items())}

    class Emit(torch.nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def forward(self, x):
            count = x.shape[0]
            return torch.from_numpy(pools[self.name][0][:count].copy())

    class Three(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.early, self.middle, self.late = Emit("early"), Emit("middle"), Emit("late")

        def forward(self, x):
            return [self.early(x), self.middle(x), self.late(x)]

    sent = []
    client = types.SimpleNamespace(stats=types.SimpleNamespace(sent_batches=0, queued_bytes=0),
                                   send=lambda layer, step, ids, a: sent.append((layer, ids.tolist(), tuple(a.shape))))
    path = tmp_path / "D.h5"
    generate_dictionary(str(path), images=images, size=32, seed=1, mask_size=16)
    watcher = watch(Three(), list(shapes), str(path), every=1, client=client, batch_size=batch, dtype=None)
    watcher.step(0)
    expected = [(layer, ids.tolist(), tuple(maps.shape)) for layer, ids, maps in workloads.interleaved(pools, images)]
    assert sent == expected
    assert [s[0] for s in sent[:3]] == ["late", "early", "middle"]
    assert len(sent) == 3 * 3 and sent[-1][1] == [8, 9]


def test_watch_batch_is_watchs_default():
    pytest.importorskip("torch", reason="PyTorch is not installed")
    from hndd_client.torch import watch
    assert inspect.signature(watch).parameters["batch_size"].default == workloads.WATCH_BATCH


def test_three_layers_are_the_issues_shapes():
    assert workloads.THREE_LAYERS == ("512x7x7", "1024x14x14", "2048x7x7")


@pytest.mark.parametrize("images,n,batch", [(35632, 2227, 256), (35632, 4454, 256), (20, 6, 4), (10, 4, 8)])
def test_tiled_ids_are_distinct_and_carry_map_i_mod_n(images, n, batch):
    maps = np.arange(n * 2 * 1 * 1, dtype=np.float32).reshape(n, 2, 1, 1)
    messages = list(workloads.tiled("L", maps, images, batch))
    ids = np.concatenate([m[1] for m in messages])
    assert np.array_equal(ids, np.arange(images))  # every id once, in order
    for _, batch_ids, batch_maps in messages:
        assert batch_ids.size <= batch
        assert np.array_equal(batch_maps, maps[batch_ids % n])
        assert np.shares_memory(batch_maps, maps)  # a view: no straddling a repeat, no copy
    if (images, n, batch) == (35632, 2227, 256):
        assert len(messages) == 16 * 9  # 8 full batches and one of 179 per repeat
    if (images, n, batch) == (35632, 4454, 256):
        assert len(messages) == 8 * 18  # 17 full batches and one of 102 per repeat


def test_real_face_files_alternate_the_two_datasets(tmp_path):
    celeba, utk = tmp_path / "celeba" / "img_align_celeba", tmp_path / "utkface" / "UTKFace"
    celeba.mkdir(parents=True), utk.mkdir(parents=True)
    for i in range(3):
        (celeba / f"{i:06d}.jpg").touch()
    for i in range(5):
        (utk / f"{i}_0_0_0.jpg.chip.jpg").touch()
    files = workloads.real_face_files(tmp_path, 7)
    assert [f.parent.name for f in files] == ["img_align_celeba", "UTKFace"] * 3 + ["UTKFace"]
    with pytest.raises(SystemExit):
        workloads.real_face_files(tmp_path, 9)


def test_real_workloads_are_the_papers_layer_and_resnet50s_two_big_outputs():
    assert {name: (spec.module, spec.shape) for name, spec in workloads.REAL_WORKLOADS.items()} == {
        "real": ("layer4.2.conv1", (512, 7, 7)),
        "real-2048x7x7": ("layer4", (2048, 7, 7)),
        "real-1024x14x14": ("layer3", (1024, 14, 14))}
    assert workloads.REAL_LAYER == "layer4.2.conv1"
    assert workloads.REAL_SHAPES["layer3"] == (1024, 14, 14)


VERSIONS = {"torch": "2.15.0", "torchvision": "0.29.2"}


def test_real_cache_key_changes_with_the_layer_and_the_seed_only_where_they_differ(tmp_path):
    folder = {m: workloads.real_cache_folder(workloads.real_settings(7, m, VERSIONS), tmp_path)
              for m in workloads.REAL_SHAPES}
    assert len(set(folder.values())) == 3
    assert folder["layer3"].name.startswith("resnet50-layer3-seed7-")
    assert folder["layer4"].name.startswith("resnet50-layer4-seed7-")
    assert folder["layer3"] == workloads.real_cache_folder(workloads.real_settings(7, "layer3", dict(VERSIONS)), tmp_path)
    assert folder["layer3"] != workloads.real_cache_folder(workloads.real_settings(8, "layer3", VERSIONS), tmp_path)
    other_torch = {**VERSIONS, "torch": "2.16.0"}
    assert folder["layer3"] != workloads.real_cache_folder(workloads.real_settings(7, "layer3", other_torch), tmp_path)


def test_real_settings_keep_the_keys_of_the_papers_layer_cache():
    """The settings of before the big layers, with the layer as a field: the `real` cache stays valid."""
    assert workloads.real_settings(7, "layer4.2.conv1", VERSIONS) == {
        "model": "torchvision resnet50, random init (weights=None)", "seed": 7, "layer": "layer4.2.conv1",
        "size": 224, "resize": "bilinear to 224x224, ImageNet mean/std", "order": "real_face_files",
        "torch": "2.15.0", "torchvision": "0.29.2"}


def test_chunk_sizes_cut_the_cache_in_256s():
    assert workloads.chunk_sizes(4454) == [256] * 17 + [102]
    assert workloads.chunk_sizes(2227) == [256] * 8 + [179]
    assert workloads.chunk_sizes(512) == [256, 256]


def fake_faces(root, count):
    for sub, name in (("celeba/img_align_celeba", "{:06d}.jpg"), ("utkface/UTKFace", "{}_0_0_0.jpg.chip.jpg")):
        (root / sub).mkdir(parents=True)
        for i in range(count):
            (root / sub / name.format(i)).touch()


def fake_forward(calls):
    """compute_real_maps without torch: map value = 1000 × file index + channel, one call per pass."""
    def compute(files, seed, threads, modules, batch=32):
        calls.append((len(files), tuple(modules)))
        index = np.array([int(f.name.split("_")[0].split(".")[0]) for f in files], np.float32)
        return {m: np.broadcast_to((1000 * index[:, None] + np.arange(workloads.REAL_SHAPES[m][0]))[:, :, None, None],
                                   (len(files), *workloads.REAL_SHAPES[m])).copy() for m in modules}
    return compute


def test_building_computes_each_missing_chunk_once_for_every_layer_lacking_it(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(workloads, "torch_versions", lambda: VERSIONS)
    monkeypatch.setattr(workloads, "compute_real_maps", fake_forward(calls))
    monkeypatch.setattr(workloads, "REAL_CHUNK", 4)
    faces, cache = tmp_path / "faces", tmp_path / "cache"
    fake_faces(faces, 10)
    folders = workloads.build_real_maps(["layer4.2.conv1"], 6, 7, faces, cache=cache)
    assert calls == [(4, ("layer4.2.conv1",)), (2, ("layer4.2.conv1",))]
    calls.clear()
    # Two more layers and more faces: one forward pass a chunk for the layers lacking it.
    folders = workloads.build_real_maps(["layer4.2.conv1", "layer4", "layer3"], 10, 7, faces, cache=cache)
    assert calls == [(4, ("layer4", "layer3")), (4, ("layer4.2.conv1", "layer4", "layer3")),
                     (2, ("layer4.2.conv1", "layer4", "layer3"))]
    calls.clear()
    assert workloads.build_real_maps(["layer3"], 10, 7, faces, cache=cache) == {"layer3": folders["layer3"]}
    assert calls == []  # all cached
    maps = workloads.load_real_maps(folders["layer3"], 10, (1024, 14, 14))
    assert maps.shape == (10, 1024, 14, 14) and maps.dtype == np.float32
    # Faces alternate CelebA 0, UTKFace 0, CelebA 1, …: face j is file index j // 2.
    assert maps[:, 5, 3, 3].tolist() == [1000 * (j // 2) + 5 for j in range(10)]
    assert json.loads((folders["layer3"] / "settings.json").read_text())["layer"] == "layer3"


def test_real_maps_builds_the_along_layers_in_the_same_pass(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(workloads, "torch_versions", lambda: VERSIONS)
    monkeypatch.setattr(workloads, "compute_real_maps", fake_forward(calls))
    fake_faces(tmp_path / "faces", 2)
    maps = workloads.real_maps("layer4", 3, 7, tmp_path / "faces", along=["layer3", "layer4"], cache=tmp_path / "cache")
    assert maps.shape == (3, 2048, 7, 7)
    assert calls == [(3, ("layer4", "layer3"))]


@pytest.mark.parametrize("name,batch,messages_a_repeat,last", [("real-2048x7x7", 64, 70, 38),
                                                               ("real-1024x14x14", 32, 140, 6)])
def test_big_real_layers_tile_4454_faces_to_the_papers_pass(name, batch, messages_a_repeat, last):
    """The pass of the big layers: 35,632 ids, eight repeats of 4,454 faces, in the bench's batches
    (a broadcast stands for the maps: 3.6 GB at 1,024×14×14)."""
    bench = pytest.importorskip("bench", reason="bench.py's dependencies (h5py, zmq) are not installed")
    shape = workloads.REAL_WORKLOADS[name].shape
    assert bench.batch_size(*shape) == batch
    assert bench.PASSES[name] is bench.run_real
    maps = np.broadcast_to(np.float32(0), (4454, *shape))
    messages = list(workloads.tiled(workloads.REAL_WORKLOADS[name].module, maps, 35632, batch))
    assert len(messages) == 8 * messages_a_repeat
    assert {m[0] for m in messages} == {workloads.REAL_WORKLOADS[name].module}
    assert messages[0][2].shape == (batch, *shape) and messages[messages_a_repeat - 1][2].shape == (last, *shape)
    assert messages[messages_a_repeat][1][0] == 4454 and messages[-1][1][-1] == 35631


def test_every_real_workload_is_named_in_the_help_and_the_docs():
    bench = pytest.importorskip("bench", reason="bench.py's dependencies (h5py, zmq) are not installed")
    performance = (Path(__file__).resolve().parents[3] / "docs" / "performance.md").read_text()
    workloads_section = performance.split("## Workloads", 1)[1].split("\n## ", 1)[0]
    for name, spec in workloads.REAL_WORKLOADS.items():
        assert f"`{name}`" in workloads_section, name
        assert f"`{spec.module}`" in workloads_section, spec.module
        assert name in workloads.__doc__ and spec.module in workloads.__doc__, name
        assert name in bench.__doc__ and spec.module in bench.__doc__, name


def test_real_maps_of_the_three_layers_come_from_one_seeded_pass():
    pytest.importorskip("torchvision", reason="torchvision is not installed")
    if not workloads.REAL_FACES.is_dir():
        pytest.skip(f"real faces absent: {workloads.REAL_FACES}")
    files = workloads.real_face_files(workloads.REAL_FACES, 1)
    modules = list(workloads.REAL_SHAPES)
    together = workloads.compute_real_maps(files, seed=7, threads=1, modules=modules)
    alone = workloads.compute_real_maps(files, seed=7, threads=1)
    assert list(alone) == ["layer4.2.conv1"]
    for module, maps in together.items():
        assert maps.shape == (1, *workloads.REAL_SHAPES[module]) and maps.dtype == np.float32
        assert np.isfinite(maps).all() and (maps > 0).any()
    # The seed fixes the random initialisation; capturing more layers does not change one's values.
    assert np.array_equal(together["layer4.2.conv1"], alone["layer4.2.conv1"])
    conv = together["layer4.2.conv1"]
    assert (conv < 0).any()  # a conv's output, before its BatchNorm and ReLU
    assert (together["layer4"] >= 0).all() and (together["layer3"] >= 0).all()  # the blocks end in a ReLU


def test_snapshot_costs_reads_each_layers_line_of_the_serve_log():
    bench = pytest.importorskip("bench", reason="bench.py's dependencies (h5py, zmq) are not installed")
    log = ("2026-12-02T03:44:08+0000 info hndd: images=4096/4096 interpretable=48/512 pass=run bench, layer "
           "bench512x7x7, step 1 snapshot_s=0.285 [HNDDaemon] pass complete\n"
           "2026-12-02T03:44:20+0000 info hndd: images=4096/4096 interpretable=121/1024 pass=run bench, layer "
           "layer4.2.conv1, step 1 snapshot_s=1.760 [HNDDaemon] pass complete\n")
    assert bench.snapshot_costs(log) == {"bench512x7x7": "0.285", "layer4.2.conv1": "1.760"}


def test_pass_costs_reads_each_step_and_its_cpu_seconds():
    bench = pytest.importorskip("bench", reason="bench.py's dependencies (h5py, zmq) are not installed")
    log = ("2026-12-02T13:57:08+0000 info hndd: images=35632/35632 interpretable=48/512 pass=run bench, layer "
           "bench512x7x7, step 1 snapshot_cpu_s=1.840 snapshot_s=0.972 [HNDDaemon] pass complete\n"
           "2026-12-02T13:57:20+0000 info hndd: images=35632/35632 interpretable=51/512 pass=run bench, layer "
           "bench512x7x7, step 2 snapshot_cpu_s=2.021 snapshot_s=1.061 [HNDDaemon] pass complete\n"
           # With the memory figures among the metadata (sorted by key, as swift-log writes them).
           "2026-12-02T17:20:00+0000 info hndd: candidates=4000 candidates_mb=12.5 images=35632/35632 pass=run bench, layer "
           "bench512x7x7, step 3 queue_batches=0 queue_mb=0.0 rss_mb=880.0 snapshot_cpu_s=0.900 snapshot_s=0.480 "
           "topk_mb=74.6 [HNDDaemon] pass complete\n"
           # With the snapshot's phases.
           "2026-12-03T08:20:00+0000 info hndd: candidates=9 candidates_mb=0.1 count_s=0.300 images=35632/35632 "
           "pass=run bench, layer bench512x7x7, step 4 sets_s=0.010 snapshot_s=0.500 tests_s=0.020 "
           "thresholds_s=0.040 units_s=0.100 [HNDDaemon] pass complete\n"
           "2026-12-02T17:20:00+0000 info hndd: MB=45.1 baseline=run bench, layer bench512x7x7 kept_MB=45.1 "
           "seconds=0.120 [HNDDaemon] baseline weights built\n")
    assert bench.pass_costs(log) == {("bench512x7x7", 1): {"snapshot_s": 0.972, "snapshot_cpu_s": 1.84},
                                     ("bench512x7x7", 2): {"snapshot_s": 1.061, "snapshot_cpu_s": 2.021},
                                     ("bench512x7x7", 3): {"snapshot_s": 0.48, "snapshot_cpu_s": 0.9,
                                                           "candidates": 4000.0, "candidates_mb": 12.5},
                                     ("bench512x7x7", 4): {"snapshot_s": 0.5, "candidates": 9.0, "candidates_mb": 0.1,
                                                           "phases": {"sets": 0.01, "thresholds": 0.04, "count": 0.3,
                                                                      "units": 0.1, "tests": 0.02}}}
    assert bench.snapshot_phases("layer4: snapshot phases: sets_s=0.001 thresholds_s=0.020 count_s=0.700 "
                                 "units_s=0.200 tests_s=0.010") == {"sets": 0.001, "thresholds": 0.02, "count": 0.7,
                                                                    "units": 0.2, "tests": 0.01}
    assert bench.snapshot_costs(log) == {"bench512x7x7": "0.500"}  # the last written pass of each layer


def test_complete_times_waits_per_step_and_names_the_missing_layers():
    bench = pytest.importorskip("bench", reason="bench.py's dependencies (h5py, zmq) are not installed")
    times = bench.CompleteTimes()
    times.arrived("a", 1)
    times.arrived("b", 2)
    assert times.wait_for(["a"], 1, 0.01) == []
    assert times.wait_for(["a", "b"], 2, 0.01) == ["a"]
    assert set(times.of_step(2)) == {"b"}


def test_cpu_description_names_the_model_and_the_vector_flags_present():
    bench = pytest.importorskip("bench", reason="bench.py's dependencies (h5py, zmq) are not installed")
    cpuinfo = ("processor\t: 0\nmodel name\t: AMD EPYC 9B45\nflags\t\t: fpu sse2 avx2 fma f16c avx512f avx512bw "
               "avx512vl avx512_bf16 avx_vnni\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 9B45\n")
    d = bench.cpu_description(cpuinfo)
    assert d["cpu_model"] == "AMD EPYC 9B45"
    assert d["cpu_vector_flags"] == ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_bf16"]
    assert bench.cpu_description("")["cpu_model"] == "unknown"


def test_finish_prints_the_load_and_writes_the_json(tmp_path, capsys):
    bench = pytest.importorskip("bench", reason="bench.py's dependencies (h5py, zmq) are not installed")
    out = tmp_path / "r.json"
    assert bench.finish({"real": {"images": 3}}, types.SimpleNamespace(json=str(out))) == 0
    printed = capsys.readouterr().out
    assert "load average at the end: " in printed and "machine: " in printed
    written = json.loads(out.read_text())
    assert written["real"] == {"images": 3}
    assert set(written["machine"]) == {"cpu_model", "cpu_vector_flags", "cores", "load_average_at_end", "date_utc"}


def test_memory_profile_reads_the_daemons_memory_lines():
    profile = pytest.importorskip("memory_profile", reason="memory_profile.py's dependencies (h5py, zmq) are not installed")
    log = ("2026-12-02T16:30:00+0000 debug hndd: baseline_mb=0.0 candidate_stores_mb=10.5,11.0 candidates=4000 "
           "heap_free_mb=3.2 heap_used_mb=120.0 hwm_mb=900.0 maxima_mb=291.9 open_passes=1 queue_batches=2 queue_mb=51.4 "
           "rss_mb=880.0 topk_mb=74.6 [HNDDaemon] memory\n"
           "2026-12-02T16:30:01+0000 info hndd: candidates_mb=21.5 images=35632/35632 pass=run bench, layer b, step 1 "
           "rss_mb=870.0 snapshot_s=2.5 [HNDDaemon] pass complete\n")
    lines = profile.memory_lines(log)
    assert len(lines) == 1 and lines[0]["rss_mb"] == "880.0" and lines[0]["candidate_stores_mb"] == "10.5,11.0"
    assert profile.breakdown(lines[0]) == ("rss_mb 880.0, hwm_mb 900.0, maxima_mb 291.9, topk_mb 74.6, candidates 4000, "
                                           "queue_mb 51.4, queue_batches 2, heap_used_mb 120.0, heap_free_mb 3.2, "
                                           "baseline_mb 0.0, per store [10.5,11.0] MB")
    assert profile.written_pass_line(log)["candidates_mb"] == "21.5"
