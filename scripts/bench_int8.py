"""INT8 next to float32 for the same trained weights, in one run: accuracy and latency of ours and the peers.

    python scripts/bench_int8.py --weights runs/train/train/weights/best.safetensors \
        --data datasets/trees/data.yaml --deploy target/release/deploy --yolo target/release/yolo \
        [--val-imgsz 320] [--imgsz 640] [--batch 1,8] [--rounds 3] [--iters 10] [--threads 2]

1. Ours: `deploy export --int8` (calibrated on the data's train images at --val-imgsz), `yolo val` of the float
   and the INT8 file at --val-imgsz, and `deploy bench --weights INT8` (the engine in float and in INT8, the
   latter also with every map float32: what the u8 maps between INT8 layers gain).
2. Ultralytics (needs `pip install ultralytics nncf openvino onnxruntime`): the same weights loaded into its
   DetectionModel (MobileOneBlock registered as scripts/mobileone.py does), reparameterized, then its own
   exports: ONNX, OpenVINO float32, and OpenVINO INT8 (`int8=True`, NNCF, calibrated on the same train
   images: `split=train`); ONNX Runtime INT8 is `quantize_static` (QDQ, per-channel weights) of that ONNX on
   the same images. mAP of its OpenVINO float and INT8 models from its own `val` at --val-imgsz.
3. Latency at --imgsz, each engine in its own process with --threads threads, in rounds (ours, ORT float, ORT
   INT8, OpenVINO float, OpenVINO INT8, ours, ...): the median of the round medians. OpenVINO computes a float32
   model in bfloat16 by default where the CPU has AVX512_BF16 or AMX; "OpenVINO float32 (f32 hint)" holds it to
   float32 (INFERENCE_PRECISION_HINT=f32).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_peers  # noqa: E402


def run(cmd, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} exited {p.returncode}:\n{p.stderr[-3000:]}")
    return p.stdout, p.stderr


def val_ours(yolo, weights, data, imgsz):
    out, _ = run([yolo, "val", "--weights", weights, "--data", data, "--imgsz", str(imgsz), "--json"])
    d = json.loads(out)
    return d["mAP50-95"], d["mAP50"]


def ultralytics_model(weights, tmp):
    """Our safetensors in Ultralytics' DetectionModel, reparameterized, saved as a checkpoint YOLO() loads."""
    import copy

    import mobileone
    import torch
    import yaml
    from safetensors import safe_open

    mobileone.register()
    from ultralytics.nn.tasks import DetectionModel

    with safe_open(weights, "pt") as f:
        meta = f.metadata()
        sd = {k: f.get_tensor(k).float() for k in f.keys()}
    cfg = yaml.safe_load(meta["yaml"])
    cfg["scale"] = meta.get("scale") or cfg.get("scale")
    nc = int(meta["nc"])
    model = DetectionModel(copy.deepcopy(cfg), ch=3, nc=nc, verbose=False)
    if meta.get("fused") == "true":
        raise SystemExit(f"{weights}: give the trained (unfused) weights; Ultralytics' side reparameterizes them")
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise SystemExit(f"{weights}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model = mobileone.reparameterize_all(model.eval())
    model.names = {i: n for i, n in enumerate(json.loads(meta.get("names", "[]")) or range(nc))}
    model.args = {"imgsz": 640, "task": "detect"}
    pt = Path(tmp) / "model.pt"
    torch.save({"model": model, "train_args": {"task": "detect"}}, pt)
    return str(pt)


def ultralytics_exports(pt, data, imgsz, val_imgsz, tmp):
    import numpy as np
    from ultralytics import YOLO

    # mAP of Ultralytics' OpenVINO models at the validation size, first: the latency exports below reuse the
    # folder names.
    acc = {}
    for name, kw in (("OpenVINO float32", {}), ("OpenVINO INT8", {"int8": True, "data": data, "split": "train"})):
        path = YOLO(pt).export(format="openvino", imgsz=val_imgsz, **kw)
        m = YOLO(path, task="detect").val(data=data, imgsz=val_imgsz, batch=1, rect=False, verbose=False, plots=False)
        acc[name] = (float(m.box.map), float(m.box.map50))
    out = {}
    onnx = YOLO(pt).export(format="onnx", imgsz=imgsz, dynamic=True, simplify=True, opset=17)
    out["onnx"] = onnx
    out["ov_fp32"] = YOLO(pt).export(format="openvino", imgsz=imgsz, dynamic=True)
    out["ov_int8"] = YOLO(pt).export(format="openvino", imgsz=imgsz, int8=True, data=data, split="train", dynamic=True)
    # ONNX Runtime's static quantization of the same ONNX on the same (letterboxed) train images.
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from ultralytics.data.augment import LetterBox
    import cv2
    import yaml

    d = yaml.safe_load(Path(data).read_text())
    root = Path(data).parent / d.get("path", ".")
    files = sorted((root / d["train"]).glob("*.jpg")) + sorted((root / d["train"]).glob("*.png"))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(files)

        def get_next(self):
            f = next(self.it, None)
            if f is None:
                return None
            img = LetterBox((imgsz, imgsz), auto=False)(image=cv2.imread(str(f)))
            x = img[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
            return {"images": np.ascontiguousarray(x)}

    ort_int8 = str(Path(tmp) / "ort_int8.onnx")
    quantize_static(onnx, ort_int8, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    out["ort_int8"] = ort_int8
    return out, acc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True, help="our float safetensors (trained)")
    ap.add_argument("--data", required=True)
    ap.add_argument("--deploy", required=True)
    ap.add_argument("--yolo", required=True)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--val-imgsz", type=int, default=320)
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--int8-args", default="", help="extra arguments for deploy export --int8")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-int8-")
    run([a.deploy, "export", "--weights", a.weights, "--int8", "--data", a.data, "--imgsz", str(a.val_imgsz),
         "--out", tmp] + a.int8_args.split())
    int8 = str(Path(tmp) / (Path(a.weights).stem + "_int8.safetensors"))
    sizes = {"float32 (fused)": None, "INT8": os.path.getsize(int8)}
    run([a.deploy, "export", "--weights", a.weights, "--format", "safetensors", "--imgsz", str(a.val_imgsz),
         "--out", tmp])
    fused = str(Path(tmp) / (Path(a.weights).stem + "_fused.safetensors"))
    sizes["float32 (fused)"] = os.path.getsize(fused)
    acc = {"ours float32": val_ours(a.yolo, a.weights, a.data, a.val_imgsz),
           "ours INT8": val_ours(a.yolo, int8, a.data, a.val_imgsz)}
    pt = ultralytics_model(a.weights, tmp)
    paths, peer_acc = ultralytics_exports(pt, a.data, a.imgsz, a.val_imgsz, tmp)
    acc.update(peer_acc)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), RAYON_NUM_THREADS=str(a.threads))
    me = [sys.executable, str(HERE / "bench_peers.py")]
    ov_xml = lambda d: str(next(Path(d).glob("*.xml")))  # noqa: E731
    peers = {"ONNX Runtime float32": ("ort", paths["onnx"]), "ONNX Runtime INT8": ("ort", paths["ort_int8"]),
             "OpenVINO float32": ("openvino", ov_xml(paths["ov_fp32"])),
             "OpenVINO float32 (f32 hint)": ("openvino-f32", ov_xml(paths["ov_fp32"])),
             "OpenVINO INT8": ("openvino", ov_xml(paths["ov_int8"]))}
    rows = []
    for b in [int(x) for x in a.batch.split(",")]:
        samples = {}
        for _ in range(a.rounds):
            out, _ = run([a.deploy, "bench", "--weights", int8, "--imgsz", str(a.imgsz), "--batch", str(b),
                          "--burn", "false", "--iters", str(a.iters), "--warmup", str(a.warmup), "--json"], env)
            for r in json.loads(out.strip().splitlines()[-1]):
                name = {"engine fused": "ours float32", "engine int8": "ours INT8",
                        "int8 f32 maps": "ours INT8 (f32 maps)"}[r["variant"]]
                samples.setdefault(name, []).append(r["median_ms"])
            for name, (kind, model) in peers.items():
                peer_env = env
                if kind == "openvino-f32":
                    kind, peer_env = "openvino", dict(env, YOLO_OV_PRECISION="f32")
                out, _ = run(me + ["--worker", kind, "--model", model, "--batch", str(b), "--imgsz", str(a.imgsz),
                                   "--threads", str(a.threads), "--iters", str(a.iters), "--warmup",
                                   str(a.warmup)], peer_env)
                samples.setdefault(name, []).append(json.loads(out.strip().splitlines()[-1])["median_ms"])
        rows.append((b, {k: statistics.median(v) for k, v in samples.items()}))
    print()
    print(f"accuracy at {a.val_imgsz} ({a.data}, val split):")
    print("| model | mAP50-95 | mAP50 |")
    print("|---|---:|---:|")
    for k, (m, m50) in acc.items():
        print(f"| {k} | {m:.4f} | {m50:.4f} |")
    print()
    print(f"file sizes: INT8 {sizes['INT8'] / 1e6:.2f} MB, float32 fused {sizes['float32 (fused)'] / 1e6:.2f} MB "
          f"({sizes['INT8'] / sizes['float32 (fused)']:.2f}x)")
    print()
    print(f"latency at {a.imgsz}x{a.imgsz}, {a.threads} threads, median of {a.rounds} rounds x {a.iters} runs:")
    names = ["ours float32", "ours INT8", "ours INT8 (f32 maps)"] + list(peers)
    print("| batch | " + " | ".join(f"{n} (ms)" for n in names) + " | ours INT8 / ours float32 | ours INT8 / OpenVINO INT8 |")
    print("|---:|" + "---:|" * (len(names) + 2))
    for b, m in rows:
        cells = " | ".join(f"{m[n]:.1f}" for n in names)
        print(f"| {b} | {cells} | {m['ours INT8'] / m['ours float32']:.2f}x | "
              f"{m['ours INT8'] / m['OpenVINO INT8']:.2f}x |")
    _ = bench_peers  # the workers run from its file


if __name__ == "__main__":
    main()
