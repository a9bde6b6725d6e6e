"""Inference latency of the same model YAML in PyTorch, ONNX Runtime, OpenVINO and ours, measured in one run.

    python scripts/bench_peers.py configs/yolov8-mobileone.yaml [MORE.yaml ...] --scale n --imgsz 640 \
        --batch 1,8 [--ours target/release/deploy] [--threads 2] [--iters 20] [--rounds 3] [--json OUT]

The model is built by the real Ultralytics package from the YAML (MobileOneBlock registered as in
scripts/mobileone.py), reparameterized and fused (`reparameterize_all`), exported to ONNX (opset 17,
dynamic batch); PyTorch runs the fused module, ONNX Runtime the ONNX file with every graph optimization,
OpenVINO (the CPU runtime Ultralytics recommends) the same ONNX file reshaped to the batch, compiled for the
CPU with the LATENCY hint and `--threads` inference threads, held to float32; on a CPU where OpenVINO computes
float32 models in bfloat16 by default (AVX512_BF16, AMX) its default is timed too, in its own column.
Ours is `deploy bench --burn false` on the same YAML (random weights: latency does not depend on them).
Each engine runs in its own process, `--threads` threads each, in rounds (ours, PyTorch, ORT, ours, ...),
so drift hits all alike; a figure is the median of the per-round medians. Peak memory is each process'
maximum resident set. `--unfused` adds PyTorch's unfused model and burn's unfused/fused models (for the
fusion speed-up). Without `--ours` only the peers are measured.
"""

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build(config, scale, nc):
    sys.path.insert(0, str(HERE))
    import mobileone
    import torch
    import yaml

    mobileone.register()
    from ultralytics.nn.tasks import DetectionModel

    d = yaml.safe_load(Path(config).read_text())
    d["scale"] = scale
    if nc is not None:
        d["nc"] = nc
    torch.manual_seed(0)
    model = DetectionModel(copy.deepcopy(d), ch=3, nc=d["nc"], verbose=False).eval()
    fused = mobileone.reparameterize_all(copy.deepcopy(model)).eval()
    return model, fused


def output_module():
    """A wrapper returning only the (B, 4 + nc, A) tensor; defined at module level so torch.save can pickle it."""
    import torch

    global Out

    class Out(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            y = self.m(x)
            return y[0] if isinstance(y, (tuple, list)) else y

    Out.__qualname__ = "Out"
    return Out


def export(config, scale, nc, imgsz, tmp):
    import torch

    model, fused = build(config, scale, nc)
    Out = output_module()
    paths = {}
    for name, m in (("fused", fused), ("unfused", model)):
        p = Path(tmp) / f"{name}.pt"
        torch.save(Out(m), p)
        paths[name] = str(p)
    x = torch.rand(1, 3, imgsz, imgsz)
    onnx_path = Path(tmp) / "fused.onnx"
    torch.onnx.export(
        Out(fused),
        (x,),
        str(onnx_path),
        opset_version=17,
        input_names=["images"],
        output_names=["output0"],
        dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}},
        dynamo=False,
    )
    paths["onnx"] = str(onnx_path)
    return paths


def worker(a):
    """Runs in a child process: times one engine and prints JSON."""
    import numpy as np

    x = np.random.default_rng(0).random((a.batch, 3, a.imgsz, a.imgsz), dtype=np.float32)
    if a.worker == "ort":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = a.threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])

        def run():
            sess.run(None, {"images": x})

    elif a.worker in ("openvino", "openvino-bf16"):
        import openvino as ov

        core = ov.Core()
        m = core.read_model(a.model)
        # The first input, whatever its name (Ultralytics' OpenVINO IR calls it `x`).
        m.reshape({m.inputs[0].any_name: list(x.shape)})
        # OpenVINO computes a float32 model in bfloat16 by default on CPUs with AVX512_BF16 or AMX (its
        # INFERENCE_PRECISION_HINT): the "openvino" worker holds it to float32, "openvino-bf16" keeps its default.
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": a.threads}
        if a.worker == "openvino":
            config["INFERENCE_PRECISION_HINT"] = "f32"
        compiled = core.compile_model(m, "CPU", config)
        req = compiled.create_infer_request()

        def run():
            req.infer({0: x})

    else:
        import torch

        sys.path.insert(0, str(HERE))
        import mobileone

        mobileone.register()
        torch.set_num_threads(a.threads)
        output_module()
        m = torch.load(a.model, weights_only=False).eval()
        xt = torch.from_numpy(x)

        def run():
            with torch.inference_mode():
                m(xt)

    for _ in range(a.warmup):
        run()
    t = []
    for _ in range(a.iters):
        t0 = time.perf_counter()
        run()
        t.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({"median_ms": statistics.median(t)}))


def timed(cmd, env=None):
    """Runs a command; returns (stdout, stderr, peak RSS in MiB of that process)."""
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, env=env, text=True)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read(), fe.read()
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {p.returncode}:\n{err[-3000:]}")
    return out, err, ru.ru_maxrss / 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("config", nargs="*")
    ap.add_argument("--scale", default="n")
    ap.add_argument("--nc", type=int, default=None)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ours", default=None, help="path to our deploy binary")
    ap.add_argument("--unfused", action="store_true")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--worker", choices=["torch", "ort", "openvino", "openvino-bf16", "prepare"], default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--model", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker == "prepare":
        import onnxruntime
        import openvino
        import torch

        paths = export(a.config[0], a.scale, a.nc, a.imgsz, a.out)
        paths["versions"] = (f"PyTorch {torch.__version__}, ONNX Runtime {onnxruntime.__version__}, "
                             f"OpenVINO {openvino.__version__}")
        core = openvino.Core()
        paths["ov_bf16"] = core.get_property("CPU", "INFERENCE_PRECISION_HINT") == openvino.Type.bf16
        print(json.dumps(paths))
        return
    if a.worker:
        a.batch = int(a.batch)
        return worker(a)
    if not a.config:
        ap.error("CONFIG is required")
    tables = []
    for config in a.config:
        tables.append(bench_config(a, config))
    print()
    print(f"{a.imgsz}x{a.imgsz}, {a.threads} threads, median of {a.rounds} rounds x {a.iters} runs, each engine in its "
          f"own process in turn; {tables[0]['versions']}")
    print()
    bf16 = any(t["ov_bf16"] for t in tables)
    if bf16:
        print("OpenVINO computes float32 models in bfloat16 by default on this CPU: 'OpenVINO' is held to float32 "
              "(INFERENCE_PRECISION_HINT f32), 'OpenVINO bf16' is its default; the best peer is the best float32 one.")
        print()
    extra = (" OpenVINO bf16 (ms) |", " ours / OpenVINO bf16 |") if bf16 else ("", "")
    print(f"| model | batch | ours (ms) | PyTorch (ms) | ONNX Runtime (ms) | OpenVINO (ms) |{extra[0]} "
          f"ours / best peer |{extra[1]}")
    print("|---|---:|---:|---:|---:|---:|" + ("---:|" * (3 if bf16 else 1)))
    for t in tables:
        for r in t["results"]:
            m = r["median_ms"]
            o = m.get("engine fused", float("nan"))
            best = min(m["torch"], m["ort"], m["openvino"])
            line = (f"| {t['model']} | {r['batch']} | {o:.1f} | {m['torch']:.1f} | {m['ort']:.1f} "
                    f"| {m['openvino']:.1f} |")
            if bf16:
                line += f" {m['openvino-bf16']:.1f} |"
            line += f" {o / best:.2f}x |"
            if bf16:
                line += f" {o / m['openvino-bf16']:.2f}x |"
            print(line)
    if a.json:
        Path(a.json).write_text(json.dumps(tables, indent=2) + "\n")


def bench_config(a, config):
    """Every engine on one YAML, batch by batch; prints its detailed tables and returns the results."""
    batches = [int(b) for b in a.batch.split(",")]
    tmp = tempfile.mkdtemp(prefix="bench-peers-")
    me = [sys.executable, str(Path(__file__).resolve())]
    # The parent stays small (no torch): a child's peak RSS starts from its parent's at fork.
    prep = me + ["--worker", "prepare", config, "--scale", a.scale, "--imgsz", str(a.imgsz), "--out", tmp]
    if a.nc is not None:
        prep += ["--nc", str(a.nc)]
    out, _, _ = timed(prep)
    paths = json.loads(out.strip().splitlines()[-1])
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), RAYON_NUM_THREADS=str(a.threads))

    def peer(kind, model, b):
        cmd = me + ["--worker", kind, "--model", model, "--batch", str(b), "--imgsz", str(a.imgsz),
                    "--threads", str(a.threads), "--iters", str(a.iters), "--warmup", str(a.warmup)]
        out, err, rss = timed(cmd, env)
        try:
            return {kind: json.loads(out.strip().splitlines()[-1])["median_ms"]}, rss
        except (ValueError, IndexError):
            raise SystemExit(f"{kind} worker failed:\n{err[-3000:]}")

    def ours(b):
        cmd = [a.ours, "bench", "--config", config, "--scale", a.scale, "--imgsz", str(a.imgsz),
               "--batch", str(b), "--device", "cpu", "--iters", str(a.iters), "--warmup", str(a.warmup),
               "--json"]
        if a.nc is not None:
            cmd += ["--nc", str(a.nc)]
        if not a.unfused:
            cmd += ["--burn", "false"]
        out, err, rss = timed(cmd, env)
        try:
            rows = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise SystemExit(f"ours failed:\n{err[-3000:]}")
        return {r["variant"]: r["median_ms"] for r in rows}, rss

    engines = []
    if a.ours:
        engines.append(("ours", lambda b: ours(b)))
    engines.append(("torch", lambda b: peer("torch", paths["fused"], b)))
    engines.append(("ort", lambda b: peer("ort", paths["onnx"], b)))
    engines.append(("openvino", lambda b: peer("openvino", paths["onnx"], b)))
    if paths["ov_bf16"]:
        engines.append(("openvino-bf16", lambda b: peer("openvino-bf16", paths["onnx"], b)))
    if a.unfused:
        engines.append(("torch unfused", lambda b: ({"torch unfused": peer("torch", paths["unfused"], b)[0]["torch"]}, 0.0)))

    results = []
    for b in batches:
        per_round = {}
        rss = {}
        for _ in range(a.rounds):
            for name, fn in engines:
                vals, r = fn(b)
                for k, v in vals.items():
                    per_round.setdefault(k, []).append(v)
                if r:
                    rss[name] = max(rss.get(name, 0.0), r)
        med = {k: statistics.median(v) for k, v in per_round.items()}
        results.append({"batch": b, "median_ms": med, "rounds": per_round, "peak_rss_mib": rss})
        print(json.dumps(results[-1]), file=sys.stderr)

    head = (f"{config} scale {a.scale}, {a.imgsz}x{a.imgsz}, {a.threads} threads, median of {a.rounds} "
            f"rounds x {a.iters} runs; {paths['versions']}")
    print(head)
    print()
    print("| batch | ours (ms) | PyTorch (ms) | ONNX Runtime (ms) | OpenVINO (ms) | best peer / ours "
          "| peak RSS MiB ours / PyTorch / ORT / OpenVINO |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        m = r["median_ms"]
        o = m.get("engine fused", float("nan"))
        rs = r["peak_rss_mib"]
        best = min(m["torch"], m["ort"], m["openvino"])
        bf16 = f" (bf16 {m['openvino-bf16']:.1f})" if "openvino-bf16" in m else ""
        print(f"| {r['batch']} | {o:.1f} | {m['torch']:.1f} | {m['ort']:.1f} | {m['openvino']:.1f}{bf16} "
              f"| {best / o:.2f}x | {rs.get('ours', 0):.0f} / {rs.get('torch', 0):.0f} / {rs.get('ort', 0):.0f} / "
              f"{rs.get('openvino', 0):.0f} |")
    if a.unfused:
        print()
        print("| batch | unfused ms: ours / PyTorch / burn | ours unfused / fused | PyTorch unfused / fused "
              "| burn unfused / fused |")
        print("|---:|---|---:|---:|---:|")
        for r in results:
            m = r["median_ms"]
            nan = float("nan")
            eu, bu, bf = (m.get(k, nan) for k in ("engine unfused", "burn unfused", "burn fused"))
            print(f"| {r['batch']} | {eu:.1f} / {m['torch unfused']:.1f} / {bu:.1f} | {eu / m['engine fused']:.2f}x "
                  f"| {m['torch unfused'] / m['torch']:.2f}x | {bu / bf:.2f}x |")
    name = Path(config).stem
    return {"model": f"{name} {a.scale}", "config": config, "versions": paths["versions"],
            "ov_bf16": paths["ov_bf16"], "header": head,
            "results": results}


if __name__ == "__main__":
    main()
