"""PyTorch autograd reference for `deno task bench:vjp` (optional; the benchmark runs without it).

Reads a graph exported by cli/bench_vjp.ts (graph.json + data.bin: the SD-block composite's nodes,
weights, feeds, and ONNX Runtime's output and VJP for the same feeds), executes the same nodes
eagerly with torch, and measures, interleaved as the ONNX Runtime benchmark does:
  forward       under torch.inference_mode()
  forward+VJP   sample.requires_grad_(); torch.autograd.grad(out, sample, cotangent)
with the weights as constants (no weight gradients, like our transform with --wrt sample).
It also reports how far torch's output and gradient are from ONNX Runtime's (an independent check of
the VJP transform on the full-size composite).

Usage: python3 torch_reference.py DIR RUNS WARMUP THREADS     (prints one JSON object)
Exit code 3 when torch is not importable.
"""
import json
import re
import sys
import time

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:  # reported by the caller as "reference unavailable"
    print(f"torch reference unavailable: {e}", file=sys.stderr)
    sys.exit(3)


def load(d):
    meta = json.load(open(f"{d}/graph.json"))
    raw = open(f"{d}/data.bin", "rb").read()

    def arr(spec):
        a = np.frombuffer(raw, dtype=np.float32, count=spec["length"], offset=spec["offset"] * 4)
        return torch.from_numpy(a.copy()).reshape(spec["dims"])

    consts = {}
    for name, spec in meta["initializers"].items():
        if spec["dtype"] == "int64":
            consts[name] = torch.tensor(spec["values"], dtype=torch.int64).reshape(spec["dims"])
        else:
            consts[name] = arr(spec)
    tensors = {k: arr(v) for k, v in meta["tensors"].items()}
    return meta, consts, tensors


def ints(t):
    return [int(v) for v in t.reshape(-1).tolist()]


def run_graph(meta, consts, feeds):
    env = dict(consts)
    env.update(feeds)
    for n in meta["nodes"]:
        op, a = n["op"], n["attrs"]
        x = [env[i] if i else None for i in n["inputs"]]
        if op == "Conv":
            p = a.get("pads", [0, 0, 0, 0])
            assert p[0] == p[2] and p[1] == p[3], "asymmetric pads"
            y = F.conv2d(x[0], x[1], x[2] if len(x) > 2 else None, stride=a.get("strides", 1),
                         padding=(p[0], p[1]), dilation=a.get("dilations", 1),
                         groups=a.get("group", 1))
        elif op == "Gemm":
            A = x[0].t() if a.get("transA", 0) else x[0]
            B = x[1].t() if a.get("transB", 0) else x[1]
            y = A @ B
            if len(x) > 2 and x[2] is not None:
                y = y + x[2]
        elif op == "MatMul":
            y = torch.matmul(x[0], x[1])
        elif op in ("Add", "Sub", "Mul", "Div"):
            y = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div}[op](x[0], x[1])
        elif op in ("Sigmoid", "Erf", "Sin", "Cos", "Sqrt", "Exp", "Tanh"):
            y = getattr(torch, op.lower())(x[0])
        elif op == "Softmax":
            y = torch.softmax(x[0], dim=a.get("axis", -1))
        elif op == "Transpose":
            y = x[0].permute(*a["perm"])
        elif op == "Reshape":
            shape = ints(x[1])
            shape = [x[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
            y = x[0].reshape(shape)
        elif op == "Shape":
            y = torch.tensor(list(x[0].shape), dtype=torch.int64)
        elif op == "Concat":
            y = torch.cat(x, dim=a["axis"])
        elif op == "Split":
            sizes = ints(x[1]) if len(x) > 1 and x[1] is not None else a["split"]
            ys = torch.split(x[0], sizes, dim=a.get("axis", 0))
            for name, v in zip(n["outputs"], ys):
                env[name] = v
            continue
        elif op == "Unsqueeze":
            y = x[0]
            for ax in sorted(ints(x[1])):
                y = y.unsqueeze(ax)
        elif op == "InstanceNormalization":
            y = F.instance_norm(x[0], weight=x[1], bias=x[2], eps=a.get("epsilon", 1e-5))
        elif op == "LayerNormalization":
            axis = a.get("axis", -1) % x[0].dim()
            y = F.layer_norm(x[0], x[0].shape[axis:], x[1], x[2] if len(x) > 2 else None,
                             eps=a.get("epsilon", 1e-5))
        elif op == "Resize":
            assert a.get("mode") == "nearest" and a.get("nearest_mode") == "floor"
            assert a.get("coordinate_transformation_mode") == "asymmetric"
            scales = x[2].tolist()
            assert scales[0] == 1 and scales[1] == 1
            y = F.interpolate(x[0], scale_factor=tuple(scales[2:]), mode="nearest")
        elif op == "Identity":
            y = x[0]
        else:
            raise SystemExit(f"torch reference: op {op} not implemented")
        env[n["outputs"][0]] = y
    return env[meta["output"]]


def blas_libraries():
    """The BLAS shared objects this process loaded (Debian's torch links the libblas.so.3
    alternative: reference BLAS or OpenBLAS, which differ 10x in speed)."""
    try:
        with open("/proc/self/maps") as f:
            libs = {l.split()[-1] for l in f if "blas" in l.lower() and "/" in l}
        return sorted(libs)
    except OSError:
        return re.findall(r"BLAS_INFO=([^,]*)", torch.__config__.show())[:1]


def main():
    d, runs, warmup, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    if threads > 0:
        torch.set_num_threads(threads)
    meta, consts, t = load(d)
    feeds = {k: t[k] for k in meta["inputs"]}
    cot = t["cotangent"]
    wrt = meta["wrt"]

    def forward():
        with torch.inference_mode():
            return run_graph(meta, consts, feeds)

    def forward_vjp():
        x = feeds[wrt].clone().requires_grad_(True)
        with torch.enable_grad():
            out = run_graph(meta, consts, {**feeds, wrt: x})
            (g,) = torch.autograd.grad(out, x, cot)
        return out.detach(), g

    def rel(a, b):
        return float((a - b).abs().max() / b.abs().max())

    out0 = forward()
    out1, grad = forward_vjp()
    check = {"outputRelErr": rel(out0, t["expected_out"]),
             "gradRelErr": rel(grad, t["expected_grad"]),
             "vjpOutputRelErr": rel(out1, t["expected_out"])}
    for _ in range(warmup):
        forward()
        forward_vjp()
    tf, tv = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        forward()
        t1 = time.perf_counter()
        forward_vjp()
        t2 = time.perf_counter()
        tf.append((t1 - t0) * 1000)
        tv.append((t2 - t1) * 1000)
    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "blas": blas_libraries(),
        "check": check,
        "forward": {"median": float(np.median(tf)), "runs": tf},
        "vjp": {"median": float(np.median(tv)), "runs": tv},
        "ratio": float(np.median(tv) / np.median(tf)),
        "ratioMin": float(min(tv) / min(tf)),
    }))


if __name__ == "__main__":
    main()
