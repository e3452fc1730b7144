"""Benchmark: a roofline of the training loop. Per phase of the loop (query, SAG, update,
bookkeeping) its time, its multiply-accumulates and its bytes moved, against this core's
measured fp32 rate and memory bandwidth; and the stages of one train job around the loop.

    python bench/roofline.py --data-root resources/mnist [--steps 468] [--threads 1]
                             [--mode sensitivity --s-des 0.9] [--json roofline.json]
                             [--snakemake-overhead]

Method (four measurements, printed as Markdown tables ready for docs/benchmarks.md):

1. The machine, on ``--threads`` torch threads: the fp32 rate R (MAC/s) of the best of a few
   n x n matrix products (n^3 MACs each, n = ``--gemm-size``); the memory bandwidth W (B/s) of
   the best of a few copies (2 x size bytes: read + written) and triads a = b + s*c (3 x size)
   of ``--bandwidth-mib`` arrays, W the larger of the two; and the same copy of 1 MiB arrays,
   which stay in cache (the loop's tensors are mostly under a few MB: its real bandwidth lies
   between the two).
2. One job: the train CLI in a child process, as the train rule runs it (fast engine), with
   time stamps at its stages: interpreter start (spawn to the first line), imports (torch,
   then the package), CLI checks, MNIST load, engine set-up, the loop, publishing the run,
   teardown (to the parent seeing it exit). In the loop, the time of each phase is what the
   loop's own timers record (``runner.bookkeeping.Bookkeeping.phase_s``, the timers the loop
   wraps around its query, SAG and update); bookkeeping is the loop's time minus the three.
3. The op census: the same run again in this process, every torch op it dispatches recorded
   (a ``TorchDispatchMode``) under the phase whose timer is open, with
     MACs   matrix products: (n x k) @ (k x m) -> n*k*m (bmm: times the batch; mv: n*k);
            convolutions: output elements x (input channels / groups) x kh x kw, and
            convolution_backward twice that when it computes both input and weight gradients;
     bytes  every tensor an op reads plus every tensor it writes, elements x element size
            (an in-place op reads and writes its tensor; an ``out=`` tensor is only written;
            views, and allocations not yet written, move nothing; a gather such as
            ``images[idx]`` reads only what it gathers).
   The dropout masks are drawn in numpy (``algorithm.masks.draw_masks``): each of its n
   decisions is 22 bytes (a float64 written, read and compared into a bool, the bool turned
   into a float32). The rest of the numpy work (SAG's sorts and ROC curves, the stream's
   arrays) is not counted: SAG's row has a time only.
4. The roofline: MAC-time = MACs / R, byte-time = bytes / W, floor = max(MAC-time, byte-time)
   (the phase cannot run faster than its arithmetic or its memory traffic allows), and the
   fraction of the floor reached = floor / measured time.

``--snakemake-overhead`` adds the CPU that Snakemake's own process spends per job: it runs the
smoke preset (workflow/presets/smoke.yaml) in a scratch folder and divides the Snakemake
process's own CPU seconds (``getrusage(RUSAGE_SELF)`` inside it, its jobs excluded) by the jobs
it ran (the method of docs/benchmarks.md, "The Snakemake head"; measured there, "Roofline of
the loop").
"""

import time  # noqa: I001 -- first, so that a job's child process stamps its start at once

T_START = time.time()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # the checkout's package, as the child runs it
from askdagger_mnist.errors import UserError  # noqa: E402  (standard library only)
from askdagger_mnist.settings import MODES, STREAM_STEPS  # noqa: E402

PHASES = ("query", "sag", "update", "bookkeeping")
JOB_STAGES = (  # (row, stamp it ends at); each stage starts where the one before ended
    ("interpreter start", "started"), ("import torch", "torch imported"),
    ("import the package", "package imported"), ("CLI checks and run lock", "mnist load start"),
    ("MNIST load", "mnist loaded"), ("engine set-up", "loop start"), ("the loop", "loop end"),
    ("publish the run", "published"), ("teardown (exit)", "exited"))
MASK_BYTES_PER_DECISION = 8 + 8 + 1 + 1 + 4  # float64 written, read; bool written, read; float32


# ---- 1. the machine ---------------------------------------------------------------------------


def best_time(work, repeat: int) -> float:
    work()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        work()
        times.append(time.perf_counter() - t0)
    return min(times)


def machine_rates(gemm_size: int, bandwidth_mib: int) -> dict:
    import torch

    a, b = torch.randn(gemm_size, gemm_size), torch.randn(gemm_size, gemm_size)
    rate = gemm_size ** 3 / best_time(lambda: torch.mm(a, b), 3)

    def bandwidths(n_bytes: int, repeat: int) -> tuple[float, float]:
        x, y, z = (torch.ones(n_bytes // 4) for _ in range(3))
        copy = 2 * n_bytes / best_time(lambda: y.copy_(x), repeat)
        triad = 3 * n_bytes / best_time(lambda: torch.add(y, z, alpha=3.0, out=x), repeat)
        return copy, triad

    copy, triad = bandwidths(bandwidth_mib << 20, 5)
    cache_copy, _ = bandwidths(1 << 20, 200)
    return {"gemm_size": gemm_size, "mac_per_s": rate, "bandwidth_mib": bandwidth_mib,
            "copy_B_per_s": copy, "triad_B_per_s": triad, "bytes_per_s": max(copy, triad),
            "cache_copy_B_per_s": cache_copy}


# ---- 2. one job of the train CLI, with time stamps ---------------------------------------------


def job_child(stamps_file: str, train_argv: list[str]) -> None:
    """In the child process: the train CLI, its stages stamped; the stamps, the loop's phase
    times and its own time written to ``stamps_file`` as JSON just before it exits."""
    stamps, record = {"started": T_START}, {}
    import torch  # noqa: F401

    stamps["torch imported"] = time.time()
    from askdagger_mnist.cli import train
    from askdagger_mnist.runner import train_job

    stamps["package imported"] = time.time()
    load, loop = train_job.load_mnist_train, train_job.run_loop

    def stamped_load(*a, **k):
        stamps["mnist load start"] = time.time()
        try:
            return load(*a, **k)
        finally:
            stamps["mnist loaded"] = time.time()

    def stamped_loop(settings, images, labels, device, engine, observer):
        stamps["loop start"] = time.time()
        state, model = loop(settings, images, labels, device, engine, observer)
        stamps["loop end"] = time.time()
        record.update(loop_s=state.elapsed_s, phase_s=dict(observer.phase_s))
        return state, model

    train_job.load_mnist_train, train_job.run_loop = stamped_load, stamped_loop
    code = train.main(train_argv)
    stamps["published"] = time.time()
    Path(stamps_file).write_text(json.dumps({"stamps": stamps, **record}))
    train.exit_now(code)


def time_job(args, tmp: Path) -> dict:
    """One train job in a child process: seconds per stage, the loop's phase times."""
    stamps_file = tmp / "stamps.json"
    cmd = [sys.executable, __file__, "--job-child", str(stamps_file), "--mode", args.mode,
           "--s-des", args.s_des, "--data-root", args.data_root, "--out", str(tmp / "run"),
           "--threads", str(args.threads), "--max-steps", str(args.steps), "--engine", "fast",
           "--device", "cpu"]
    spawned = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    exited = time.time()
    if done.returncode != 0 or not stamps_file.is_file():
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1].removeprefix("error: ")
        raise UserError(f"the train command failed (exit status {done.returncode}): {last}")
    child = json.loads(stamps_file.read_text())
    stamps = {**child["stamps"], "exited": exited}
    stages, before = {}, spawned
    for row, stamp in JOB_STAGES:
        stages[row], before = stamps[stamp] - before, stamps[stamp]
    phase_s = dict(child["phase_s"])
    phase_s["bookkeeping"] = child["loop_s"] - sum(phase_s.values())
    return {"stages_s": stages, "total_s": exited - spawned, "loop_s": child["loop_s"],
            "phase_s": phase_s}


# ---- 3. the op census -------------------------------------------------------------------------


def op_macs(func, args, out) -> int:
    name = func.__name__.split(".")[0]
    if name in ("mm", "bmm", "mv", "addmm", "baddbmm"):
        a, b = args[:2] if name in ("mm", "bmm", "mv") else args[1:3]  # addmm: (bias, a, b)
        return a.numel() * (b.shape[-1] if b.dim() > 1 else 1)
    if name in ("convolution", "conv2d"):
        return out.numel() * args[1][0].numel()  # output elements x one output channel's weight
    if name == "convolution_backward":
        grad_out, weight, wanted = args[0], args[2], args[-1]
        return grad_out.numel() * weight[0].numel() * (int(wanted[0]) + int(wanted[1]))
    return 0


def op_bytes(func, args, kwargs, out) -> int:
    import torch
    from torch.utils._pytree import tree_flatten

    def tensors(tree):
        return [t for t in tree_flatten(tree)[0] if isinstance(t, torch.Tensor)]

    def size(ts):
        return sum(t.numel() * t.element_size() for t in ts)

    name = func.__name__.split(".")[0]
    ins = tensors((args, {k: v for k, v in kwargs.items() if k != "out"}))
    outs = tensors(out)
    if "empty" in name:  # allocated, not written
        return 0
    if name in ("index", "index_select", "gather"):  # reads only what it gathers
        return 2 * size(outs) + size(ins[1:])
    writes_in_place = any(a.alias_info is not None and a.alias_info.is_write
                          for a in func._schema.arguments)
    storages = {t.untyped_storage().data_ptr() for t in ins}
    if not writes_in_place and all(t.untyped_storage().data_ptr() in storages for t in outs):
        return 0  # a view (a reshape that had to copy has storage of its own)
    return size(ins) + size(outs)


def census(args, images, labels) -> dict:
    """MACs, bytes and op counts per phase of a run in this process (fast engine); also the
    query's images and the update's SGD steps and samples."""
    import dataclasses

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from askdagger_mnist.algorithm import loop, training
    from askdagger_mnist.algorithm.loop import Observer, run_loop
    from askdagger_mnist.algorithm.masks import WIDTHS
    from askdagger_mnist.fast.engine import FAST
    from askdagger_mnist.settings import RunSettings

    counts = {p: {"macs": 0, "bytes": 0, "ops": 0} for p in ("set-up", *PHASES)}
    work = {"query images": 0, "SGD steps": 0, "SGD samples": 0}

    class Census(TorchDispatchMode, Observer):
        """Records every op under the open phase; as the loop's observer, opens the phases."""

        phase = "set-up"  # until the loop starts (the model's initialisation)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            c = counts[self.phase]
            c["macs"] += op_macs(func, args, out)
            c["bytes"] += op_bytes(func, args, kwargs, out)
            c["ops"] += 1
            return out

        def started(self, run) -> None:
            self.phase = "bookkeeping"

        @contextlib.contextmanager
        def timer(self, phase: str):
            before, self.phase = self.phase, phase
            try:
                yield
            finally:
                self.phase = before

    census_mode = Census()
    draw_masks = loop.draw_masks

    def counted_masks(rng, batch, n_passes, p, device):
        counts[census_mode.phase]["bytes"] += (
            MASK_BYTES_PER_DECISION * batch * n_passes * sum(WIDTHS.values()))
        if census_mode.phase == "query":
            work["query images"] += batch
        return draw_masks(rng, batch, n_passes, p, device)

    def counted_gradients(model, x, y, masks):
        work["SGD steps"] += 1
        work["SGD samples"] += len(x)
        return FAST.gradients(model, x, y, masks)

    settings = RunSettings(mode=args.mode, s_des=float(args.s_des), steps=args.steps)
    engine = dataclasses.replace(FAST, gradients=counted_gradients)
    loop.draw_masks = training.draw_masks = counted_masks
    try:
        with census_mode:
            run_loop(settings, images, labels, torch.device("cpu"), engine, census_mode)
    finally:
        loop.draw_masks = training.draw_masks = draw_masks
    return {"phases": counts, "work": work}


# ---- --snakemake-overhead ---------------------------------------------------------------------

HEAD_RUSAGE = """\
import json, resource, sys
from snakemake.cli import main
try:
    main(sys.argv[2:])
    code = 0
except SystemExit as exc:
    code = exc.code
own = resource.getrusage(resource.RUSAGE_SELF)
jobs = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as fh:
    json.dump({"head_cpu_s": own.ru_utime + own.ru_stime,
               "jobs_cpu_s": jobs.ru_utime + jobs.ru_stime, "code": code}, fh)
"""


def snakemake_overhead(data_root: str, tmp: Path) -> dict:
    """The smoke preset in a scratch folder: the Snakemake process's own CPU-s per job."""
    wd = tmp / "smoke"
    raw = wd / "resources" / "mnist" / "MNIST" / "raw"
    shutil.copytree(Path(data_root) / "MNIST" / "raw", raw)
    usage = tmp / "head.json"
    cmd = [sys.executable, "-c", HEAD_RUSAGE, str(usage), "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(wd), "--cores", "2",
           "--configfile", str(REPO / "workflow" / "presets" / "smoke.yaml")]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    head = json.loads(usage.read_text()) if usage.is_file() else {"code": done.returncode}
    steps = re.findall(r"(\d+) of (\d+) steps", done.stderr)
    if head["code"] not in (0, None) or not steps:
        raise UserError(f"the smoke preset failed (exit status {head['code']}); Snakemake's log "
                        f"ends: {(done.stderr.strip().splitlines() or ['(empty)'])[-1]}")
    jobs = int(steps[-1][0])
    return {**head, "jobs": jobs, "wall_s": wall, "head_cpu_s_per_job": head["head_cpu_s"] / jobs}


# ---- 4. the roofline and the tables -----------------------------------------------------------


def roofline(machine: dict, counts: dict, phase_s: dict) -> dict:
    rows = {}
    for phase in PHASES:
        c, t = counts[phase], phase_s[phase]
        mac_time = c["macs"] / machine["mac_per_s"]
        byte_time = c["bytes"] / machine["bytes_per_s"]
        floor = max(mac_time, byte_time)
        rows[phase] = {**c, "time_s": t, "mac_time_s": mac_time, "byte_time_s": byte_time,
                       "cache_byte_time_s": c["bytes"] / machine["cache_copy_B_per_s"],
                       "floor_s": floor, "fraction_of_floor": floor / t if t > 0 else None}
    return rows


def markdown(result: dict) -> str:
    m, job, rows, work = result["machine"], result["job"], result["roofline"], result["work"]
    big = f"{m['bandwidth_mib']} MiB arrays"
    machine = [(f"fp32 GEMM rate ({m['gemm_size']}^2 matmul)", m["mac_per_s"], "GMAC/s"),
               (f"copy bandwidth ({big})", m["copy_B_per_s"], "GB/s"),
               (f"triad bandwidth ({big})", m["triad_B_per_s"], "GB/s"),
               ("copy bandwidth (1 MiB arrays, in cache)", m["cache_copy_B_per_s"], "GB/s")]
    lines = [f"Machine, {result['threads']} torch thread(s):", "",
             "| measure | value |", "|---|---|",
             *(f"| {name} | {value / 1e9:.1f} {unit} |" for name, value, unit in machine),
             "", f"The loop by phase ({result['steps']} steps, {result['mode']}, s_des "
             f"{result['s_des']}, fast engine; {work['query images']} query images, "
             f"{work['SGD steps']} SGD steps on {work['SGD samples']} samples):", "",
             "| phase | time (s) | GMAC | GB moved | MAC/byte | MAC-time (s) | byte-time (s) "
             "| byte-time in cache (s) | floor (s) | floor / time | GMAC/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for phase, r in rows.items():
        cells = [(r["macs"] / 1e9, ".2f"), (r["bytes"] / 1e9, ".2f"),
                 (r["macs"] / r["bytes"] if r["bytes"] else None, ".2f"),
                 (r["mac_time_s"], ".3f"), (r["byte_time_s"], ".3f"),
                 (r["cache_byte_time_s"], ".3f"), (r["floor_s"], ".3f"),
                 (r["fraction_of_floor"], ".1%"),
                 (r["macs"] / r["time_s"] / 1e9 if r["time_s"] > 0 else None, ".1f")]
        if not r["bytes"]:  # nothing counted (SAG's numpy work)
            cells = [(None, "")] * len(cells)
        shown = ("—" if v is None else format(v, spec) for v, spec in cells)
        lines.append(f"| {phase} | {r['time_s']:.2f} | " + " | ".join(shown) + " |")
    lines += ["", "(SAG: numpy, not counted; bookkeeping: the loop's time outside the three "
              "timers, its torch ops counted.)", "",
              f"One job, spawn to exit ({job['total_s']:.2f} s):", "",
              "| stage | time (s) | share |", "|---|---|---|"]
    lines += [f"| {row} | {secs:.2f} | {secs / job['total_s']:.1%} |"
              for row, secs in job["stages_s"].items()]
    if "snakemake" in result:
        s = result["snakemake"]
        lines += ["", f"Snakemake head (smoke preset, {s['jobs']} jobs, {s['wall_s']:.0f} s "
                  f"wall): {s['head_cpu_s']:.1f} CPU-s, {s['head_cpu_s_per_job']:.2f} CPU-s per "
                  f"job (jobs: {s['jobs_cpu_s']:.1f} CPU-s)."]
    return "\n".join(lines)


def measure(args) -> dict:
    import torch

    from askdagger_mnist.data.mnist import load_mnist_train
    from askdagger_mnist.data.atomic import write_bytes_atomic

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        job = time_job(args, Path(tmp))  # first: the machine is as a job finds it
        images, labels = load_mnist_train(Path(args.data_root))
        counted = census(args, images, labels)
        machine = machine_rates(args.gemm_size, args.bandwidth_mib)
        result = {"steps": args.steps, "mode": args.mode, "s_des": args.s_des,
                  "threads": args.threads, "machine": machine, "job": job,
                  "work": counted["work"], "ops": counted["phases"],
                  "roofline": roofline(machine, counted["phases"], job["phase_s"])}
        if args.snakemake_overhead:
            result["snakemake"] = snakemake_overhead(args.data_root, Path(tmp))
    if args.json:
        write_bytes_atomic(Path(args.json), json.dumps(result, indent=1).encode())
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--job-child"]:
        job_child(argv[1], argv[2:])
    from askdagger_mnist.cli.common import run_command

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True, help="folder holding MNIST/raw/*.gz")
    p.add_argument("--steps", type=int, default=STREAM_STEPS,
                   help="stream steps (default: a full run)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--mode", default="sensitivity", choices=MODES)
    p.add_argument("--s-des", default="0.9")
    p.add_argument("--gemm-size", type=int, default=2048, help="n of the n x n matmul (fp32 rate)")
    p.add_argument("--bandwidth-mib", type=int, default=256, help="array size of copy and triad")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--snakemake-overhead", action="store_true",
                   help="also run the smoke preset and report the "
                        "Snakemake process's own CPU-s per job (minutes)")
    args = p.parse_args(argv)
    return run_command(lambda: measure(args), lambda result: print(markdown(result)))


if __name__ == "__main__":
    sys.exit(main())
