"""Run an exported ONNX file in onnxruntime, optionally against a parity fixture's Ultralytics fused output.

    pip install onnxruntime onnx safetensors numpy
    python scripts/check_onnx_ort.py out/best_fused.onnx [--fixture crates/deploy/tests/fixtures/mobileone_nc3_96x128]
"""

import argparse

import numpy as np
import onnx
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("onnx")
    ap.add_argument("--fixture")
    a = ap.parse_args()
    m = onnx.load(a.onnx)
    onnx.checker.check_model(m, full_check=True)
    inp = m.graph.input[0].type.tensor_type.shape.dim
    h, w = inp[2].dim_value, inp[3].dim_value
    sess = ort.InferenceSession(a.onnx, providers=["CPUExecutionProvider"])
    if a.fixture:
        from safetensors.numpy import load_file

        x = load_file(f"{a.fixture}/input.safetensors")["images"]
        exp = load_file(f"{a.fixture}/expected.safetensors")["fused_output"]
        y = sess.run(None, {"images": x})[0]
        box, score = np.abs(y[:, :4] - exp[:, :4]).max(), np.abs(y[:, 4:] - exp[:, 4:]).max()
        tol = 2e-5 * np.abs(exp[:, :4]).max() + 1e-3
        print(f"onnxruntime vs Ultralytics fused output: boxes {box:.3e} (tol {tol:.3e}), scores {score:.3e} (tol 1e-4)")
        assert box <= tol and score <= 1e-4, "out of tolerance"
    for b in (1, 4):
        y = sess.run(None, {"images": np.random.rand(b, 3, h, w).astype(np.float32)})[0]
        print(f"batch {b}: output0 {y.shape}")


if __name__ == "__main__":
    main()
