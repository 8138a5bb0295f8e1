"""``label``: run each modality's pseudo-labeler over a store and write ``<name>/raw``."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from fourm_registry import ModalitySet, ModalitySpec

from .errors import StoreError
from .identity import labeler_identity
from .jobkit import Dist, JobReport, job_lock, kill_point, log, progress_bar, resolve_modalities
from .store import Store


def _order_by_requires(specs: list[ModalitySpec]) -> list[ModalitySpec]:
    """Specs ordered so that a modality comes after the modalities it requires (when both are given)."""
    by_name = {s.name: s for s in specs}
    ordered: list[ModalitySpec] = []
    visiting: set[str] = set()

    def visit(s: ModalitySpec) -> None:
        if s in ordered:
            return
        if s.name in visiting:
            raise StoreError(f"modality {s.name!r} requires itself through {sorted(visiting)}: a dependency cycle")
        visiting.add(s.name)
        for r in s.requires:
            if r in by_name:
                visit(by_name[r])
        visiting.discard(s.name)
        ordered.append(s)

    for s in specs:
        visit(s)
    return ordered


def _parse_weights(weights: Mapping[str, str] | None, specs: list[ModalitySpec]) -> dict[str, str]:
    weights = dict(weights or {})
    names = {s.name for s in specs}
    unknown = sorted(set(weights) - names)
    if unknown:
        raise StoreError(f"--weights names {unknown}, which are not among the modalities being labeled {sorted(names)}")
    return weights


def label(url: str, modalities: Sequence[str], *, overwrite: bool = False, batch_size: int | None = None,
          device: str = "cpu", weights: Mapping[str, str] | None = None, registry: ModalitySet | None = None,
          progress: bool = True, labeler_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
          force: bool = False) -> dict[str, JobReport]:
    """Run each modality's pseudo-labeler over the store and write ``<name>/raw`` (resumable, distributed).

    Holds the store's writer lock (``force`` takes over one held by another job). A resume must use the labeler,
    weights and labeler keyword arguments of the finished shards (their identity is recorded per array);
    ``overwrite`` relabels from scratch."""
    specs = _order_by_requires(resolve_modalities(modalities, registry))
    weights = _parse_weights(weights, specs)
    dist = Dist(device)
    store = Store.open(url, "r+")
    for spec in specs:
        if spec.labeler is None:
            raise StoreError(
                f"modality {spec.name!r} (plugin {spec.plugin}) has no pseudo-labeler; "
                + ("its raw data is written by `fourm ingest`" if spec.name == "rgb" else
                   "label it with another tool and write it with Store.write_raw")
            )
        if spec.storage is None:
            raise StoreError(f"modality {spec.name!r} (plugin {spec.plugin}) declares no StorageSpec; it cannot be stored")
    for spec in specs:
        meta = store.modalities().get(spec.name, {})
        if meta.get("source") == "labels" and not overwrite:
            raise StoreError(f"store {url}: {spec.name!r} holds real labels (ingested from "
                             f"{meta.get('labels', {}).get('from', 'a labeled source')}); `fourm label` does not "
                             f"overwrite them: pass --overwrite to replace them with pseudo-labels")
    planned: set[str] = set()
    for spec in specs:
        for req in dict.fromkeys(("rgb", *spec.requires)):
            if req in planned:
                continue
            if not store.is_complete(req, "raw"):
                have = store.complete_samples(req, "raw") if store.has(req, "raw") else 0
                raise StoreError(
                    f"modality {spec.name!r} requires {req!r}, but store {url} has {have} of {store.num_samples} "
                    f"samples of {req!r}; run `fourm label {url} --modalities {req}` first (or add it to "
                    f"--modalities)" if req != "rgb" else
                    f"modality {spec.name!r} needs 'rgb', which store {url} lacks or has incomplete; run "
                    f"`fourm ingest SRC {url}` first"
                )
        planned.add(spec.name)

    reports = {}
    job = f"fourm label {url} --modalities {','.join(s.name for s in specs)}"
    with job_lock(url, dist, job, force=force) as lock:
        for spec in specs:
            w = weights.get(spec.name, spec.default_weights)
            extra = dict((labeler_kwargs or {}).get(spec.name, {}))
            # the labeler is built before anything is written: one that cannot load (weights offline, a bad
            # argument) leaves no empty array or record behind
            finished = not overwrite and store.has(spec.name, "raw") and store.is_complete(spec.name, "raw")
            labeler = None if finished else _build_labeler(spec, weights=w, device=device, batch_size=batch_size,
                                                           extra=extra)
            if dist.is_main:
                store.ensure_raw(spec, overwrite=overwrite, identity=labeler_identity(spec.labeler.target, w, extra))
                store._set_modality_meta(spec.name, weights=w, source="pseudo-labeler", labels=None)  # noqa: SLF001
            dist.barrier()
            store = Store.open(url, "r+")  # see the arrays process 0 created
            reports[spec.name] = _label_one(store, spec, dist, labeler=labeler, batch_size=batch_size,
                                            progress=progress, lock=lock)
            dist.barrier()
    return reports


def _build_labeler(spec: ModalitySpec, *, weights: str | None, device: str, batch_size: int | None,
                   extra: dict[str, Any]) -> Any:
    kwargs: dict[str, Any] = {"weights": weights, "device": device, **extra}
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    return spec.labeler.build(**kwargs)


def _label_one(store: Store, spec: ModalitySpec, dist: Dist, *, labeler: Any, batch_size: int | None,
               progress: bool, lock: Any) -> JobReport:
    t0 = time.perf_counter()
    shards = store.shards()
    done = store.done(spec.name, "raw")
    mine = [s for s in range(len(shards)) if s % dist.world == dist.rank]
    todo = [s for s in mine if not done[s]]
    skipped = len(mine) - len(todo)
    if skipped:
        log.info("label %s: %d shard(s) already complete, skipped", spec.name, skipped)
    samples = 0
    if todo:
        if labeler is None:
            raise StoreError(f"internal: modality {spec.name!r} has shards to label but no labeler was built")
        bs = int(batch_size or getattr(labeler, "batch_size", 8) or 8)
        # optional inputs (e.g. metadata counts instances when sam_instance is there) are fed when complete
        optional = [m for m in getattr(labeler, "optional_inputs", ())
                    if m not in spec.requires and store.has(m, "raw") and store.is_complete(m, "raw")]
        inputs_needed = list(dict.fromkeys(("rgb", *spec.requires, *optional)))
        bar = progress_bar(sum(len(shards[s]) for s in todo), f"label {spec.name}", progress and dist.is_main)
        try:
            for s in todo:
                rng = shards[s]
                outs: list[Any] = []
                for a in range(rng.start, rng.stop, bs):
                    idx = range(a, min(a + bs, rng.stop))
                    inputs = {m: store.read_raw(m, idx) for m in inputs_needed}
                    result = list(labeler(inputs))
                    if len(result) != len(idx):
                        raise StoreError(
                            f"labeler of modality {spec.name!r} ({spec.labeler.target}) returned {len(result)} "
                            f"outputs for {len(idx)} inputs"
                        )
                    outs.extend(result)
                    bar.update(len(idx))
                lock.check()  # still this job's store (nobody took it over with --force)
                store.write_raw(spec, rng.start, outs, mark_done=False)
                kill_point(f"label:{spec.name}:{s}")
                store.mark_done(spec.name, "raw", s)  # after the data: an interrupted shard is redone
                samples += len(rng)
        finally:
            bar.close()
    return JobReport(modality=spec.name, shards_done=len(todo), shards_skipped=skipped, samples=samples,
                     seconds=time.perf_counter() - t0)
