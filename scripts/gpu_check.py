"""The GPU check, run by scripts/gpu_check.sh: ours (burn, wgpu) next to PyTorch on the same GPU, one run.

    python3 scripts/gpu_check.py --bin DIR --out DIR [--dry-run] [--device wgpu]

DIR holds our release binaries (bench_step, deploy, data). Measures, for yolov8-mobileone n and yolov8n:
  1. one training step on the GPU against the same step on the CPU (burn-flex), same weights and batch;
  2. training images/s at 640, batch 16 and 64: ours with `bench_step` (the data phase reported apart),
     PyTorch with a plain Ultralytics training step (DetectionModel + its v8DetectionLoss + SGD) on tensors
     already on the GPU, in float32 and with AMP (Ultralytics' default on CUDA);
  3. fused inference latency at batch 1 and 32 (ours: `deploy bench`, host input to host output; PyTorch:
     the reparameterized module, input already on the GPU);
  4. peak GPU memory of each (nvidia-smi's memory.used, highest minus the level before the process started).
Writes gpu_check.json and gpu_check.md to --out and prints the table. `--dry-run`: tiny sizes, ours on
`--device wgpu:cpu` (a software Vulkan driver), PyTorch on the CPU, no nvidia-smi: it checks the script.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODELS = {
    "yolov8-mobileone n": "configs/yolov8-mobileone.yaml",
    "yolov8n": "configs/yolov8.yaml",
}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Memory:
    """Peak of nvidia-smi's memory.used (MiB) while a command runs, above the level before it."""

    def __init__(self):
        self.ok = shutil.which("nvidia-smi") is not None

    def used(self):
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=30,
        ).stdout
        return max(int(v) for v in out.split())

    def run(self, cmd, timeout):
        """(returncode, stdout, stderr, peak MiB or None, seconds)."""
        base = self.used() if self.ok else None
        peak = [base]
        mon = None
        if self.ok:
            mon = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-lms", "100"],
                stdout=subprocess.PIPE, text=True,
            )

            def read():
                for line in mon.stdout:
                    try:
                        peak[0] = max(peak[0], int(line.strip()))
                    except ValueError:
                        pass

            threading.Thread(target=read, daemon=True).start()
        t0 = time.time()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
            rc, out, err = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            rc, out, err = 124, e.stdout or "", (e.stderr or "") + f"\ntimed out after {timeout} s"
            out = out.decode() if isinstance(out, bytes) else out
            err = err.decode() if isinstance(err, bytes) else err
        secs = time.time() - t0
        if mon:
            time.sleep(0.3)
            mon.terminate()
        return rc, out, err, (peak[0] - base) if base is not None else None, secs


def last_json(text):
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{") or line.startswith("["):
            return json.loads(line)
    return None


def step(name, mem, cmd, timeout, results):
    log(f"== {name}: {' '.join(cmd)}")
    rc, out, err, peak, secs = mem.run(cmd, timeout)
    entry = {"name": name, "rc": rc, "seconds": round(secs, 1), "peak_gpu_mib": peak}
    try:
        entry["result"] = last_json(out)
    except json.JSONDecodeError as e:
        entry["result"] = None
        entry["parse_error"] = str(e)
    if rc != 0 or entry["result"] is None:
        entry["stderr_tail"] = err[-3000:]
        log(f"   failed (exit {rc}):\n{err[-1500:]}")
    else:
        log(f"   done in {secs:.0f} s, peak GPU memory {peak} MiB")
    results.append(entry)
    return entry


# ---- PyTorch side (run as `gpu_check.py torch ...` in its own process, so memory is per process) ----

def torch_main(a):
    sys.path.insert(0, str(HERE))
    import torch
    from bench_peers import build

    dev = torch.device(a.torch_device)
    model, fused = build(str(ROOT / a.config), "n", a.nc)
    out = {"torch": torch.__version__, "device": str(dev)}
    if dev.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(0)
        torch.backends.cudnn.benchmark = True

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    if a.what == "train":
        from ultralytics.cfg import get_cfg
        from ultralytics.utils import DEFAULT_CFG

        model = model.to(dev).train()
        model.args = get_cfg(DEFAULT_CFG)
        g = torch.Generator().manual_seed(0)
        b, s = a.batch, a.imgsz
        n = 3 * b
        batch = {
            "img": torch.rand(b, 3, s, s, generator=g).to(dev),
            "batch_idx": torch.arange(b).repeat_interleave(3).float().to(dev),
            "cls": torch.randint(0, a.nc, (n, 1), generator=g).float().to(dev),
            "bboxes": torch.cat([0.2 + 0.6 * torch.rand(n, 2, generator=g), 0.05 + 0.3 * torch.rand(n, 2, generator=g)], 1).to(dev),
        }
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        for amp in (False, True):
            if amp and dev.type != "cuda":
                continue
            scaler = torch.amp.GradScaler("cuda", enabled=amp)

            def one():
                opt.zero_grad(set_to_none=True)
                with torch.autocast(dev.type, dtype=torch.float16, enabled=amp):
                    loss, _ = model.loss(batch)
                scaler.scale(loss.sum()).backward()
                scaler.step(opt)
                scaler.update()

            for _ in range(3):
                one()
            sync()
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            t0, k = time.time(), 0
            while k < 2 or time.time() - t0 < a.seconds:
                one()
                k += 1
                if k % 5 == 0:
                    sync()
            sync()
            dt = time.time() - t0
            key = "amp" if amp else "fp32"
            out[key] = {"images_per_s": k * b / dt, "steps": k}
            if dev.type == "cuda":
                out[key]["max_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
    else:
        fused = fused.to(dev).eval()
        for b in a.batches:
            x = torch.rand(b, 3, a.imgsz, a.imgsz, device=dev)
            ts = []
            with torch.inference_mode():
                for i in range(3 + a.iters):
                    sync()
                    t0 = time.perf_counter()
                    y = fused(x)
                    y = y[0] if isinstance(y, (list, tuple)) else y
                    sync()
                    if i >= 3:
                        ts.append((time.perf_counter() - t0) * 1e3)
            out[f"b{b}"] = {"median_ms": statistics.median(ts), "images_per_s": b * 1e3 / statistics.median(ts)}
    print(json.dumps(out))


# ---- the report ----

def fmt(v, spec=".1f"):
    return "n/a" if v is None else format(v, spec)


def report(res, meta):
    by = {r["name"]: r for r in res}
    lines = [f"GPU check, {meta['date']}: {meta.get('gpu', 'no GPU')}; ours on `--device {meta['device']}`, "
             f"PyTorch {meta.get('torch', '?')} on {meta['torch_device']}; {meta['imgsz']} px.", ""]
    par = by.get("parity", {}).get("result") or {}
    if par:
        p = par["parity"]
        lines += [f"One training step, GPU vs CPU (same weights and batch): loss {p['loss']:.1e}, weights {p['weights']:.1e}, "
                  f"eval output {p['eval_out']:.1e} (relative) -> {'ok' if par['ok'] else 'DIFFERENT'}.", ""]
    lines += ["| training, images/s | batch | ours | ours without data | PyTorch fp32 | PyTorch AMP | ours / PyTorch fp32 | peak GPU MiB ours / PyTorch |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for m in MODELS:
        for b in meta["train_batches"]:
            o = by.get(f"ours train {m} b{b}", {})
            t = by.get(f"torch train {m} b{b}", {})
            orr, tr = o.get("result") or {}, t.get("result") or {}
            ours, ours_nd = orr.get("images_per_s"), orr.get("images_per_s_without_data")
            tf = (tr.get("fp32") or {}).get("images_per_s")
            ta = (tr.get("amp") or {}).get("images_per_s")
            ratio = ours_nd / tf if ours_nd and tf else None
            lines.append(f"| {m} | {b} | {fmt(ours)} | {fmt(ours_nd)} | {fmt(tf)} | {fmt(ta)} | {fmt(ratio, '.2f')} | "
                         f"{fmt(o.get('peak_gpu_mib'), '.0f')} / {fmt(t.get('peak_gpu_mib'), '.0f')} |")
    lines += ["", "| fused inference, ms | batch | ours (burn fused) | ours (burn unfused) | PyTorch fused | ours / PyTorch | peak GPU MiB ours / PyTorch |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for m in MODELS:
        o = by.get(f"ours infer {m}", {})
        t = by.get(f"torch infer {m}", {})
        rows = o.get("result") or []
        tr = t.get("result") or {}
        for b in meta["infer_batches"]:
            f = next((r["median_ms"] for r in rows if r["batch"] == b and r["variant"] == "burn fused"), None)
            u = next((r["median_ms"] for r in rows if r["batch"] == b and r["variant"] == "burn unfused"), None)
            tp = (tr.get(f"b{b}") or {}).get("median_ms")
            lines.append(f"| {m} | {b} | {fmt(f, '.2f')} | {fmt(u, '.2f')} | {fmt(tp, '.2f')} | {fmt(f / tp if f and tp else None, '.2f')} | "
                         f"{fmt(o.get('peak_gpu_mib'), '.0f')} / {fmt(t.get('peak_gpu_mib'), '.0f')} |")
    failed = [r["name"] for r in res if r["rc"] != 0 or r.get("result") is None]
    if failed:
        lines += ["", "Failed: " + ", ".join(failed) + " (stderr tails in gpu_check.json)."]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", nargs="?", default="check", choices=["check", "torch"])
    ap.add_argument("--bin", default=os.environ.get("CARGO_TARGET_DIR", "/var/tmp/yolo-target") + "/release")
    ap.add_argument("--out", default="runs/gpu_check")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--device", default=None, help="ours: wgpu (default), wgpu:N, cuda:N")
    # torch mode
    ap.add_argument("--what", choices=["train", "infer"])
    ap.add_argument("--config")
    ap.add_argument("--nc", type=int, default=80)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--batches", type=lambda s: [int(v) for v in s.split(",")])
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--torch-device", default="cuda")
    a = ap.parse_args()
    if a.mode == "torch":
        return torch_main(a)

    dry = a.dry_run
    device = a.device or ("wgpu:cpu" if dry else "wgpu")
    torch_device = "cpu" if dry else "cuda"
    imgsz = 64 if dry else 640
    train_batches = [2, 4] if dry else [16, 64]
    infer_batches = [1, 2] if dry else [1, 32]
    secs = 2 if dry else 25
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    binp = Path(a.bin)
    mem = Memory()
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device": device, "torch_device": torch_device, "imgsz": imgsz,
            "train_batches": train_batches, "infer_batches": infer_batches, "dry_run": dry}
    if mem.ok:
        meta["nvidia_smi"] = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.strip()
        meta["gpu"] = meta["nvidia_smi"].splitlines()[0] if meta["nvidia_smi"] else "?"
    res = []
    t_start = time.time()

    ds = Path("/tmp/yolo-gpu-check-data")
    if not (ds / "data.yaml").exists():
        subprocess.run([str(binp / "data"), "synth", "--out", str(ds), "--train", str(2 * max(train_batches)),
                        "--val", "2", "--size", str(imgsz)], check=True, cwd=ROOT)
    data = str(ds / "data.yaml")
    py = sys.executable
    me = str(Path(__file__).resolve())

    step("parity", mem, [str(binp / "bench_step"), "--parity", "--json", "--device", device, "--config", MODELS["yolov8-mobileone n"],
                         "--data", data, "--batch", "2", "--imgsz", "64" if dry else "320"], 600 if dry else 150, res)
    for m, cfg in MODELS.items():
        for b in train_batches:
            step(f"ours train {m} b{b}", mem, [str(binp / "bench_step"), "--json", "--device", device, "--config", cfg,
                                               "--scale", "n", "--data", data, "--imgsz", str(imgsz), "--batch", str(b),
                                               "--optimizer", "SGD", "--warmup", "1" if dry else "3", "--steps", "1000",
                                               "--seconds", str(secs), "--workers", "2" if dry else "12"], 900 if dry else 120, res)
            step(f"torch train {m} b{b}", mem, [py, me, "torch", "--what", "train", "--config", cfg, "--nc", "3", "--batch", str(b),
                                                "--imgsz", str(imgsz), "--seconds", str(1 if dry else 8),
                                                "--torch-device", torch_device], 300, res)
        step(f"ours infer {m}", mem, [str(binp / "deploy"), "bench", "--json", "--device", device, "--config", cfg, "--scale", "n",
                                      "--nc", "80", "--imgsz", str(imgsz), "--batch", ",".join(map(str, infer_batches)),
                                      "--warmup", "1" if dry else "3", "--iters", "2" if dry else "10"], 900 if dry else 150, res)
        step(f"torch infer {m}", mem, [py, me, "torch", "--what", "infer", "--config", cfg, "--nc", "80",
                                       "--batches", ",".join(map(str, infer_batches)), "--imgsz", str(imgsz),
                                       "--iters", "2" if dry else "20", "--torch-device", torch_device], 300, res)
    for r in res:
        tr = r.get("result")
        if isinstance(tr, dict) and "torch" in tr:
            meta["torch"] = tr["torch"]
    meta["seconds"] = round(time.time() - t_start)
    (out / "gpu_check.json").write_text(json.dumps({"meta": meta, "results": res}, indent=1))
    md = report(res, meta)
    (out / "gpu_check.md").write_text(md)
    print(md)
    return 0 if all(r["rc"] == 0 and r.get("result") is not None for r in res) else 1


if __name__ == "__main__":
    sys.exit(main())
