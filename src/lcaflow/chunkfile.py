"""The gradient chunk file's contract: what chunks/NNNN.h5 records of how it was made, and the checks that
assembly and every reader of lca.h5 make of it.

A chunk holds the rows of its iterations of the stored T x K matrices (MATRICES) and the reductions of
lcaflow.reducers. Its attributes say which run and trajectory it belongs to, which iterations it covers,
and fingerprints of the lca settings it was computed with (settings.NUMBERS) and stored with
(settings.STORED); assembly refuses a chunk whose record differs from what the run's config asks for, and
lca.h5 records each chunk's identity so that a chunk rewritten under it is refused (check_sources)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py

from . import settings
from .errors import CorruptFileError
from .io import require

FORMAT_VERSION = 4  # 3: the reductions of lcaflow.reducers, storage forms; 4: settings fingerprints of lcaflow.settings
MATRICES = ("lca", "lca_val", "grad")  # the T x K (or T x S) datasets, virtual in lca.h5
REQUIRED = ("lca", "loss", "error", "lca_layer")
IDENTITY = ("trajectory_fingerprint", "lca_fingerprint", "storage_fingerprint", "start", "stop")


def n_chunks(iterations: int, per_job: int) -> int:
    """Gradient jobs of a run (lca.iterations_per_job iterations each, the last one may be shorter)."""
    return -(-iterations // per_job)


def chunk_range(chunk: int, iterations: int, per_job: int) -> tuple[int, int]:
    """Iterations [start, stop) handled by gradient job `chunk`."""
    start = chunk * per_job
    return start, min(start + per_job, iterations)


def attributes(run_name: str, trajectory_fingerprint: str, lca: dict, chunk: int, start: int, stop: int) -> dict:
    """What a chunk records of how it was made (its job adds its passes and speed settings)."""
    return {
        "format_version": FORMAT_VERSION,
        "run_name": run_name,
        "trajectory_fingerprint": trajectory_fingerprint,
        "lca_fingerprint": settings.fingerprint_of(lca, settings.NUMBERS),
        "storage_fingerprint": settings.fingerprint_of(lca, settings.STORED),
        "chunk": chunk,
        "start": start,
        "stop": stop,
        "lca_config": json.dumps(settings.lca_params(lca, "gradients"), sort_keys=True),
    }


def identity(f: h5py.File) -> dict:
    """What lca.h5 records of each chunk file it maps, to notice one rewritten under it."""
    return {key: str(f.attrs.get(key)) for key in IDENTITY}


def check(f: h5py.File, path, expected: dict, K: int, store: str) -> None:
    """One line naming every way chunk `f` differs from `expected` (attributes(...) of what the run's config
    asks for), and whether its matrix has the expected shape: stop - start rows of K columns (or a sample)."""
    require(f, REQUIRED, path, "gradients")
    attrs = f.attrs
    problems = []
    if attrs.get("format_version") != FORMAT_VERSION:
        problems.append(f"format version {attrs.get('format_version')} (expected {FORMAT_VERSION})")
    if attrs.get("trajectory_fingerprint") != expected["trajectory_fingerprint"] or attrs.get("run_name") != expected["run_name"]:
        problems.append(
            f"it belongs to run {attrs.get('run_name')!r} trajectory {attrs.get('trajectory_fingerprint')}, "
            f"not run {expected['run_name']!r} trajectory {expected['trajectory_fingerprint']}"
        )
    if attrs.get("lca_fingerprint") != expected["lca_fingerprint"]:
        problems.append(f"it was computed with other LCA settings ({settings.names(settings.NUMBERS)})")
    if attrs.get("storage_fingerprint") != expected["storage_fingerprint"]:
        problems.append(f"it was stored with other storage settings ({settings.names(settings.STORED)})")
    start, stop = expected["start"], expected["stop"]
    if (attrs.get("start"), attrs.get("stop")) != (start, stop):
        problems.append(f"it covers iterations {attrs.get('start')}..{attrs.get('stop')} instead of {start}..{stop}")
    if f["lca"].shape[0] != stop - start or (store == "full" and f["lca"].shape[1] != K):
        problems.append(
            f"lca has shape {f['lca'].shape}, expected {stop - start} rows of {K if store == 'full' else 'the sample'}"
        )
    if problems:
        raise CorruptFileError(f"{path}: {'; '.join(problems)}; delete it and rerun its gradient job")


def check_sources(f: h5py.File, path) -> None:
    """Every chunk file that a virtual matrix of lca.h5 reads exists, opens and is the one assembled (HDF5
    would return fill values for a missing one, and convert the numbers of one stored otherwise)."""
    folder = Path(path).parent
    recorded = json.loads(f.attrs.get("chunks", "{}"))
    sources = {vs.file_name for name in MATRICES if name in f and f[name].is_virtual for vs in f[name].virtual_sources()}
    for source in sorted(sources):
        chunk = folder / source
        if not chunk.is_file():
            raise CorruptFileError(
                f"{path}: its matrix reads {chunk}, which is missing; rerun the gradient job that makes it "
                f"(snakemake {chunk} --cores all), then assemble"
            )
        try:
            with h5py.File(chunk, "r") as c:
                found = identity(c)
                encoding = str(c["lca"].attrs.get("encoding", "float32"))
        except (OSError, KeyError) as err:
            raise CorruptFileError(
                f"{chunk}: unreadable ({str(err).splitlines()[0]}), read by {path}; delete it and rerun its gradient job"
            ) from err
        if (source in recorded and recorded[source] != found) or encoding != str(f["lca"].attrs.get("encoding", "float32")):
            raise CorruptFileError(f"{path}: {chunk} was rewritten after assembly (other settings); rerun assemble")
