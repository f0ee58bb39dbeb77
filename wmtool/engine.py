"""Runs a sweep's cells: each after the cells it reads, skipping those the store has, recording every
finished cell — or its one-line error — as it comes. Backends only decide where a cell runs: in this
process (``jobs`` 1), in local worker processes, or as Ray tasks (a local Ray, or a cluster's)."""

from __future__ import annotations

import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable

from wmtool.errors import UserError
from wmtool.store import Store
from wmtool.sweep import Cell

Report = Callable[[Cell, str, dict[str, Any], "str | None", bool], None]
"""Called for every cell: (cell, status, result, error, cached)."""


def _save(model: Any, folder: Path, registry: Any) -> str:
    """A cell's model in its folder: safetensors, or ONNX for a model no registered architecture rebuilds."""
    from wmtool.models import save_model

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.safetensors"
    try:
        save_model(model, path, registry, force=True)
    except UserError:
        path = folder / "model.onnx"
        save_model(model, path, registry, force=True)
    return str(path)


def execute(cell: Cell, inputs: list[dict[str, Any]], store_folder: str, device: str, threads: int) -> dict[str, Any]:
    """Compute one cell from its inputs' results (in a worker process or in this one)."""
    from wmtool.data import load_dataset
    from wmtool.run import Run
    from wmtool.workflows import (attack_model, data_card, embed_watermark, key_card, make_key, new_model,
                                  open_model, open_suspect, test_accuracy, train_model, verify_suspect)

    if threads and cell.kind != "verify":
        import torch

        torch.set_num_threads(threads)
    p = cell.params
    run = Run(quiet=True, device=device, seed=int(p.get("seed", 0)))
    folder = Store(store_folder).files(cell.key)
    if cell.kind == "open":
        return {"model": p["path"], "source": p.get("source", {})}
    if cell.kind == "train":
        data = _owner_data(p, run.seed)
        trained = train_model(run, p["arch"], dict(p["arch_args"]), data, epochs=p["epochs"], batch_size=64, lr=1e-3,
                              optimizer="adam", validation=0.0)
        return {"model": _save(trained.model, folder, run.registry)}
    if cell.kind == "embed":
        from wmtool.keys import save_key
        from wmtool.models import file_sha256

        data = _owner_data(p, run.seed)
        if "arch" in p:  # the scheme trains its marked model from scratch
            model = new_model(run, p["arch"], dict(p["arch_args"]), data)
        else:
            model = open_model(run, inputs[0]["model"], _source(inputs[0]), data_card(data)).train()
        outcome = embed_watermark(run, p["scheme"], dict(p["options"]), data, model, pretrained="arch" not in p)
        path = _save(outcome.model, folder, run.registry)
        key = make_key(run, p["scheme"], outcome, file_sha256(path))
        save_key(key, folder / "key.json", force=True)
        return {"model": path, "key": str(folder / "key.json")}
    if cell.kind == "attack":
        data = load_dataset(p["data"], "train", seed=run.seed)
        white_box = run.registry.get("attack", p["attack"]).white_box
        victim = (open_model if white_box else open_suspect)(run, inputs[0]["model"], _source(inputs[0]),
                                                             data_card(data))
        outcome, _, _ = attack_model(run, p["attack"], dict(p["options"]), victim, data)
        return {"model": _save(outcome.model, folder, run.registry), "queries": outcome.queries}
    if cell.kind == "verify":
        from wmtool.keys import load_key
        from wmtool.stats import queries_needed

        key = load_key(inputs[0]["key"])
        suspect = open_suspect(run, inputs[1]["model"], _source(inputs[1]), key_card(key))
        result, _ = verify_suspect(run, key, suspect, alpha=p["alpha"], test="binomial", queries=None)
        return {"accuracy": test_accuracy(suspect, p["data"], run), "success_rate": result.success_rate,
                "null_rate": result.null_rate, "p_value": result.p_value, "claimed": result.claimed,
                "queries": result.queries,
                "queries_needed": queries_needed(result.success_rate, result.null_rate, alpha=p["alpha"])}
    raise UserError(f"unknown cell kind {cell.kind!r}")


def _source(result: dict[str, Any]) -> Any:
    """How to open a cell's model: what an ``open`` cell's spec states (arch, preprocessing), else nothing."""
    from wmtool.models import ModelSource
    from wmtool.preprocessing import Preprocessing

    given = result.get("source") or {}
    preprocessing = Preprocessing.stated(*(given.get(k) for k in ("input_range", "mean", "std", "layout")))
    return ModelSource(given.get("arch"), dict(given.get("arch_args", {})), preprocessing)


def _owner_data(params: dict[str, Any], seed: int) -> Any:
    """The owner's training data: the split, or the share of it this seed draws (as ``wmtool demo``)."""
    from wmtool.data import load_dataset, split_validation

    data = load_dataset(params["data"], "train", seed=seed)
    return split_validation(data, 1 - params["share"], seed)[0] if "share" in params else data


def _run_one(cell: Cell, inputs: list[dict[str, Any]], store_folder: str, device: str, threads: int
             ) -> tuple[str, dict[str, Any], str | None, float]:
    """A cell's (status, result, error, seconds): a failure is its one line, never a traceback."""
    start = time.perf_counter()
    try:
        result = execute(cell, inputs, store_folder, device, threads)
        return "ok", result, None, time.perf_counter() - start
    except UserError as exc:
        return "failed", {}, str(exc), time.perf_counter() - start
    except Exception as exc:  # a plugin's bug fails its cell, not the sweep
        return "failed", {}, f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}", \
            time.perf_counter() - start


class LocalBackend:
    """Cells in local worker processes."""

    def __init__(self, jobs: int):
        self.pool = ProcessPoolExecutor(max_workers=jobs)

    def submit(self, *args: Any) -> Future:
        return self.pool.submit(_run_one, *args)

    def wait(self, running: list[Any]) -> list[Any]:
        return list(wait(running, return_when=FIRST_COMPLETED)[0])

    def result(self, handle: Future) -> tuple[str, dict[str, Any], str | None, float]:
        return handle.result()

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


class RayBackend:
    """Cells as Ray tasks: ``ray.init()`` locally, or ``address`` for an existing cluster; each task asks
    for its share of the CPUs and, when the cluster has GPUs and the device allows, of a GPU."""

    def __init__(self, jobs: int, device: str, address: str | None):
        try:
            import ray
        except ImportError:
            raise UserError("--backend ray needs Ray: pip install 'wmtool[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            options: dict[str, Any] = {"address": address} if address else {"num_cpus": max(jobs, 1)}
            ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR", **options)
        gpus = ray.cluster_resources().get("GPU", 0)
        share = {"num_gpus": min(1.0, gpus / jobs)} if gpus and device != "cpu" else {}
        self.task = ray.remote(_run_one).options(num_cpus=1, **share)  # a local Ray has ``jobs`` CPUs

    def submit(self, *args: Any) -> Any:
        return self.task.remote(*args)

    def wait(self, running: list[Any]) -> list[Any]:
        done, _ = self.ray.wait(running, num_returns=1)
        return done

    def result(self, handle: Any) -> tuple[str, dict[str, Any], str | None, float]:
        return self.ray.get(handle)

    def close(self) -> None:
        self.ray.shutdown()


def run_sweep(cells: list[Cell], store: Store, *, jobs: int = 1, device: str = "auto",
              report: Report | None = None, backend: str = "local",
              ray_address: str | None = None) -> dict[str, int]:
    """Compute every cell the store lacks; returns how many were computed, cached and failed."""
    known = store.finished()
    by_key = {cell.key: cell for cell in cells}
    counts = {"computed": 0, "cached": 0, "failed": 0}
    for cell in cells:
        if cell.key in known:
            counts["cached"] += 1
            if report:
                report(cell, known[cell.key]["status"], known[cell.key]["result"], known[cell.key]["error"], True)
    threads = max(1, (os.cpu_count() or 1) // max(jobs, 1))
    pending = [cell for cell in cells if cell.key not in known]

    def finish(cell: Cell, status: str, result: dict[str, Any], error: str | None, seconds: float) -> None:
        store.put(cell, status, result, error, seconds)
        known[cell.key] = {"status": status, "result": result, "error": error}
        counts["computed" if status == "ok" else "failed"] += 1
        if report:
            report(cell, status, result, error, False)

    if backend not in ("local", "ray"):
        raise UserError(f"--backend must be local or ray, got {backend!r}")
    pool: Any = None
    if backend == "ray":
        pool = RayBackend(jobs, device, ray_address)
    elif jobs > 1:
        pool = LocalBackend(jobs)
    running: dict[Any, Cell] = {}
    try:
        while pending or running:
            for cell in list(pending):
                states = [known.get(dep, {}).get("status") for dep in cell.deps]
                if "failed" in states:
                    pending.remove(cell)
                    failed = next(dep for dep in cell.deps if known[dep]["status"] == "failed")
                    finish(cell, "failed", {}, f"needs {by_key[failed].kind} cell {failed}, which failed", 0.0)
                elif all(state == "ok" for state in states) and (pool or not running):
                    if pool is not None and len(running) >= jobs:
                        break
                    pending.remove(cell)
                    inputs = [known[dep]["result"] for dep in cell.deps]
                    if pool is None:
                        finish(cell, *_run_one(cell, inputs, str(store.folder), device, threads))
                    else:
                        running[pool.submit(cell, inputs, str(store.folder), device, threads)] = cell
            if running:
                for handle in pool.wait(list(running)):
                    finish(running.pop(handle), *pool.result(handle))
            elif pending and not any(all(known.get(d, {}).get("status") == "ok" for d in c.deps) for c in pending):
                raise UserError(f"{len(pending)} cells wait on cells that are not in the sweep")
    finally:
        if pool is not None:
            pool.close()
    return counts
