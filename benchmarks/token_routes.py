"""The two routes to token-group LCA, timed at one theta of the character transformer (examples/char_transformer),
on one thread, as ratios to one plain training-set gradient evaluation (forward and backward over the split):

(a) forward mode, as lcaflow.curves.TokenGroups computes it: one JVP per parameter group over the split gives
    every token group's derivative along the step, at once (G passes per point, any E);
(b) reverse mode: one backward per token group (E passes per point), which gives each token group's whole
    gradient (E x K: per-parameter token-group LCA); timed as E forward+backward passes, and as one forward
    with E backwards through the kept graph.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/token_routes.py [--windows 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples" / "char_transformer"))
CONFIG = REPO / "configs" / "examples" / "char_transformer.yaml"


def setup(windows: int):
    import yaml
    from data import fortunes
    from tokens import kinds

    from lcaflow.config import validate_config
    from lcaflow.spec import RunSpec

    config = yaml.safe_load(CONFIG.read_text())
    run = {k: v for k, v in config["runs"]["char_transformer"].items() if k != "trajectory"}  # its model, loss, groups
    run.update(iterations=1, batch_size=10, optimizer={"name": "sgd", "lr": 0.1})  # not trained here
    run = validate_config({"runs": {"char_transformer": run}})["runs"]["char_transformer"]
    spec = RunSpec.of("char_transformer", run)
    train, _ = fortunes(train_windows=windows, test_windows=10)
    x, y = train.tensors
    model = spec.build_model((x.shape[1],), 96)
    labels = kinds(x, y)
    names = sorted(set(labels.reshape(-1)))
    index = torch.from_numpy(np.searchsorted(np.array(names), labels))
    return spec, model, spec.layout(model), x, y, index, names


def best(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    from lcaflow.curves import TokenGroups
    from lcaflow.objective import FullSetObjective

    spec, model, layout, x, y, index, names = setup(args.windows)
    E, G, K = len(names), len(layout.layers), layout.num_params
    theta = torch.cat([p.detach().flatten() for p in model.parameters()])
    plain = FullSetObjective(model, layout, _split(x, y), 1, chunk_size=10000, per_class=False, loss=spec.loss)
    t_plain = best(lambda: plain(theta), args.repeats)

    tokens = TokenGroups(model, layout, x, y, spec.loss, index, names, 10000, "bench")
    tokens.delta = 1e-3 * torch.randn(K, dtype=torch.float64)
    t_jvp = best(lambda: tokens.derivatives(theta), args.repeats)

    params = [p for p in model.parameters()]

    def group_losses():
        logits = model(x)
        losses = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
        onehot = torch.nn.functional.one_hot(index.reshape(-1), E).to(losses.dtype)
        return losses @ onehot / losses.numel()

    def reverse_separate():
        return [torch.autograd.grad(group_losses()[e], params) for e in range(E)]

    def reverse_kept_graph():
        values = group_losses()
        return [torch.autograd.grad(values[e], params, retain_graph=e < E - 1) for e in range(E)]

    t_sep, t_kept = best(reverse_separate, args.repeats), best(reverse_kept_graph, args.repeats)
    _agree(tokens, theta, reverse_kept_graph(), layout)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    print(f"# Token-group routes, char transformer, one theta ({time.strftime('%Y-%m-%d')})\n")
    print(f"{cpu}, 1 thread, torch {torch.__version__}; K = {K:,} parameters, G = {G} parameter groups, E = {E} token groups "
          f"({', '.join(names)}), {len(y)} windows x {y.shape[1]} tokens, median of {args.repeats} after a warm-up\n")
    print("| route | passes per point | seconds per point | / plain gradient |")
    print("|---|---|---|---|")
    print(f"| plain training-set gradient (forward + backward) | 1 | {t_plain:.3f} | 1.00 |")
    print(f"| (a) forward mode: one JVP per parameter group | {G} | {t_jvp:.3f} | {t_jvp / t_plain:.2f} |")
    print(f"| (b) reverse mode: forward + backward per token group | {E} | {t_sep:.3f} | {t_sep / t_plain:.2f} |")
    print(f"| (b') reverse mode: one forward, one backward per token group | 1 + {E} | {t_kept:.3f} | {t_kept / t_plain:.2f} |")
    print(f"\nper JVP: {t_jvp / G / t_plain:.2f} plain gradients; per token-group backward (kept graph): {(t_kept / t_plain - 1) / E + 0:.2f} "
          f"(upper bound: the forward counted in)")


def _agree(tokens, theta, grads, layout) -> None:
    """Both routes give the same (E, G) derivatives along the step: (b)'s gradients dotted with each group's step."""
    _, forward = tokens.derivatives(theta)
    rows = torch.stack([torch.cat([g.flatten() for g in each]).double() for each in grads])  # (E, K)
    product = rows * tokens.delta
    lookup, reverse = {name: i for i, name in enumerate(layout.layers)}, torch.zeros_like(forward)
    for off, size, layer in zip(layout.offsets, layout.sizes, layout.layer_of_param):
        reverse[:, lookup[layer]] += product[:, off : off + size].sum(1)
    assert torch.allclose(forward, reverse, rtol=1e-3, atol=1e-9), (forward, reverse)


def _split(x, y):
    from lcaflow.data import Split

    return Split(x=x, y=y)


if __name__ == "__main__":
    main()
