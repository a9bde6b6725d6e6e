"""Reference outputs of an INT8 model's QDQ ONNX (`deploy export --int8 --format safetensors,onnx`), run by ONNX
Runtime (and OpenVINO when installed), on letterboxed val tiles, so `cargo test` can hold our engine's INT8
convolutions to an independent evaluation of the same quantized graph.

    deploy export --weights crates/deploy/tests/fixtures/trained_mobileone/weights.safetensors --int8 \
        --data datasets/trees/data.yaml --imgsz 320 --format safetensors,onnx --out /var/tmp/q8
    python scripts/make_int8_fixture.py /var/tmp/q8/weights_int8 crates/deploy/tests/fixtures/int8_trained

Copies the INT8 safetensors, and writes input.safetensors (the letterboxed tiles as uint8 NCHW, letterboxed by
Ultralytics' LetterBox, no scale-up issues at 400 -> 320), expected.safetensors (ONNX Runtime's `output0`
with every graph optimization, and with none, and OpenVINO's when available) and layers.safetensors (each quantized
convolution's input as ONNX Runtime's QuantizeLinear computes it on the first tile, by weight key).
"""

import shutil
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from safetensors.numpy import save_file

ROOT = Path(__file__).resolve().parent.parent
TILES = ["2018_SJER_3_252000_4107000_image_477.jpg", "2019_YELL_2_541000_4977000_image_crop2_r2_c1.jpg"]


def letterboxed(path, size):
    import cv2
    from ultralytics.data.augment import LetterBox

    img = cv2.imread(str(path))
    lb = LetterBox((size, size), auto=False, stride=32)(image=img)
    return lb[:, :, ::-1].transpose(2, 0, 1).copy()  # BGR HWC -> RGB CHW


def main():
    stem, out = Path(sys.argv[1]), Path(sys.argv[2])
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 320
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(f"{stem}.safetensors", out / "weights_int8.safetensors")
    val = ROOT / "datasets/trees/images/val"
    names = [n for n in TILES if (val / n).exists()] or sorted(p.name for p in val.iterdir())[:2]
    x8 = np.stack([letterboxed(val / n, size) for n in names]).astype(np.uint8)
    x = x8.astype(np.float32) / 255.0
    expected = {}
    for level, opt in (("all", ort.GraphOptimizationLevel.ORT_ENABLE_ALL), ("none", ort.GraphOptimizationLevel.ORT_DISABLE_ALL)):
        so = ort.SessionOptions()
        so.graph_optimization_level = opt
        sess = ort.InferenceSession(f"{stem}.onnx", so, providers=["CPUExecutionProvider"])
        expected[f"ort_{level}"] = sess.run(None, {"images": x})[0].astype(np.float32)
    try:
        import openvino as ov

        compiled = ov.Core().compile_model(f"{stem}.onnx", "CPU")
        expected["openvino"] = compiled(x)[0].astype(np.float32)
    except ImportError:
        pass
    for k, v in expected.items():
        d = np.abs(v - expected["ort_none"])
        print(f"{k}: shape {v.shape}, max |diff| to ort_none: boxes {d[:, :4].max():.4g}, scores {d[:, 4:].max():.4g}")
    save_file({"images": x8}, str(out / "input.safetensors"), metadata={"files": ",".join(names)})
    save_file(expected, str(out / "expected.safetensors"))
    # Each quantized layer's input as ONNX Runtime quantizes it (QuantizeLinear outputs `<key>.input_q`), first
    # image only: the per-layer reference.
    import onnx

    m = onnx.load(f"{stem}.onnx")
    names_q = [o for n in m.graph.node for o in n.output if o.endswith(".input_q")]
    for n in names_q:
        m.graph.output.append(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.UINT8, None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    got = sess.run(names_q, {"images": x[:1]})
    layers = {n[: -len(".input_q")]: np.ascontiguousarray(v) for n, v in zip(names_q, got)}
    print(f"{len(layers)} quantized layer inputs, {sum(v.size for v in layers.values()) / 1e6:.2f} MB")
    save_file(layers, str(out / "layers.safetensors"))


if __name__ == "__main__":
    main()
