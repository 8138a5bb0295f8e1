"""Mutation testing of one fourm module group with mutmut 3 (``python tools/mutation/run.py GROUP``).

fourm's packages live in distribution folders (``core/fourm_core``, ``plugins/metadata/fourm_metadata``, ...),
a layout mutmut does not import from. For each group this script lays out a workspace under
``build/mutation/<group>/`` in which every fourm package is a top-level folder (so mutmut's copy of it, in
``mutants/``, is imported ahead of the editable installs), copies the tests, writes the mutmut and pytest
settings, runs ``mutmut run`` there, and writes ``build/mutation/<group>/report.json`` and ``report.md``:
the kill rate per mutated file and every surviving mutant with its diff.

Only the files of the group are mutated; only the group's test files run against each mutant (mutmut runs,
for each mutant, just the tests that reached the mutated function). Groups are listed in ``GROUPS`` below.
Requires the dev install plus ``pip install -r tools/mutation/requirements.txt``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: group -> files to mutate (workspace paths: package-relative) and the tests that run against them.
GROUPS: dict[str, dict[str, list[str]]] = {
    "schedules": {
        "mutate": ["fourm_core/generation/schedules.py"],
        "tests": ["tests/generation"],
    },
    "sampler": {
        "mutate": ["fourm_core/generation/sampler.py", "fourm_core/generation/sampling.py"],
        "tests": ["tests/generation"],
    },
    "masking": {
        "mutate": ["fourm_core/masking/config.py", "fourm_core/masking/draws.py", "fourm_core/masking/budgets.py",
                   "fourm_core/masking/layouts.py", "fourm_core/masking/masker.py"],
        "tests": ["tests/core/test_masking.py", "tests/core/test_masking_*.py", "tests/quickstart/test_masking_layout.py"],
    },
    "kinds": {
        "mutate": ["fourm_core/kinds/base.py", "fourm_core/kinds/image.py", "fourm_core/kinds/vector.py",
                   "fourm_core/kinds/sequence.py", "fourm_core/kinds/pixels.py",
                   "fourm_core/kinds/embedding_sequence.py"],
        "tests": ["tests/core/test_kinds.py", "tests/core/test_model.py", "tests/core/test_checkpoint.py",
                  "tests/generation", "tests/data/test_data_pipeline.py"],
    },
    "store": {
        "mutate": ["fourm_core/data/store.py", "fourm_core/data/shards.py", "fourm_core/data/raw.py"],
        "tests": ["tests/data", "tests/tokenizers/test_codec_and_job.py"],
    },
    "jobs": {
        "mutate": [
            "fourm_core/data/jobkit.py",
            "fourm_core/data/ingest_job.py",
            "fourm_core/data/label_job.py",
            "fourm_core/data/tokenize_job.py",
            "fourm_core/data/inspect_job.py",
        ],
        "tests": ["tests/data", "tests/tokenizers/test_codec_and_job.py"],
    },
    "checkpoint": {
        "mutate": ["fourm_core/checkpoint.py"],
        "tests": ["tests/core/test_checkpoint.py", "tests/core/test_model.py", "tests/trainers/test_train.py"],
    },
    "serializers": {
        "mutate": [
            "fourm_core/compat/serializer.py",
            "fourm_core/plugin_kit/seqtext.py",
            "fourm_metadata/components.py",
            "fourm_det/components.py",
            "fourm_color_palette/components.py",
        ],
        "tests": ["tests/sequence", "plugins/metadata/tests", "plugins/det/tests", "plugins/color_palette/tests",
                  "plugins/caption/tests", "tests/core/test_compat_ml4m.py"],
    },
}


def _packages() -> dict[str, Path]:
    """Every fourm package folder of the checkout, by import name."""
    found = {"fourm_registry": REPO / "fourm_registry", "fourm_core": REPO / "core" / "fourm_core",
             "fourm_trainers": REPO / "trainers" / "fourm_trainers"}
    for plugin in sorted((REPO / "plugins").iterdir()):
        for pkg in plugin.glob("fourm_*/__init__.py"):
            found[pkg.parent.name] = pkg.parent
    return found


def _expand_tests(patterns: list[str]) -> list[str]:
    out: list[str] = []
    for pattern in patterns:
        hits = sorted(str(p.relative_to(REPO)) for p in REPO.glob(pattern)) if any(c in pattern for c in "*?[") \
            else ([pattern] if (REPO / pattern).exists() else [])
        out.extend(hits)
    if not out:
        raise SystemExit(f"no test files match {patterns}")
    return out


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def build_workspace(group: str, root: Path) -> Path:
    spec = GROUPS[group]
    ws = root / group
    if ws.exists():
        shutil.rmtree(ws)
    ws.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name, src in _packages().items():
        shutil.copytree(src, ws / name, ignore=ignore)
    shutil.copytree(REPO / "tests", ws / "tests", ignore=ignore)
    plugin_tests = []
    for tests in sorted((REPO / "plugins").glob("*/tests")):
        dest = ws / "plugins" / tests.parent.name / "tests"
        shutil.copytree(tests, dest, ignore=ignore)
        plugin_tests.append(str(dest.relative_to(ws)))
    shutil.copy2(REPO / "conftest.py", ws / "conftest.py")
    # the tests find the conformance sets beside the repository: point the workspace (and its mutants/) there
    shared = REPO.parent / "shared"
    if shared.exists():
        (ws / "shared").symlink_to(shared)
    for f in spec["mutate"]:
        if not (ws / f).is_file():
            raise SystemExit(f"group {group!r}: {f} is not a file of the workspace")
    tests = _expand_tests(spec["tests"])
    also_copy = ["conftest.py", "plugins"]
    (ws / "pyproject.toml").write_text(
        "[tool.mutmut]\n"
        # only the packages holding mutated files are copied into mutants/ (the others import from the install)
        f"source_paths = {_toml_list(sorted({f.split('/')[0] for f in spec['mutate']}))}\n"
        f"only_mutate = {_toml_list(spec['mutate'])}\n"
        f"also_copy = {_toml_list(also_copy)}\n"
        f"pytest_add_cli_args_test_selection = {_toml_list(tests)}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-m", "not slow", "-x", "-q"]\n'
        'process_isolation = "forkserver"\n'
        # a mutant that loops forever costs (tests' time + constant) x multiplier x 2 of CPU before it counts as
        # killed (timeout); mutmut's default multiplier of 15 makes each such mutant cost many minutes here; below ~5 slow but correct runs (a busy machine) are miscounted as timeouts
        "timeout_multiplier = 10.0\n"
        "timeout_constant = 5.0\n"
        "use_git_change_detection = false\n"
        "\n[tool.pytest.ini_options]\n"
        'addopts = "--strict-markers"\n'
        'markers = ["slow: long-running tests"]\n'
        'filterwarnings = ["ignore::DeprecationWarning"]\n'
    )
    return ws


def report(group: str, ws: Path) -> dict:
    """Per-file counts from mutmut's metadata, and the diffs of the survivors."""
    from mutmut.stats import status_by_exit_code  # type: ignore[import-not-found]

    spec = GROUPS[group]
    files = {}
    survivors = []
    for f in spec["mutate"]:
        meta = ws / "mutants" / (f + ".meta")
        data = json.loads(meta.read_text()) if meta.exists() else {"exit_code_by_key": {}}
        counts: dict[str, int] = {}
        for key, code in data["exit_code_by_key"].items():
            status = status_by_exit_code[code]
            counts[status] = counts.get(status, 0) + 1
            if status in ("survived", "no tests", "suspicious"):
                diff = subprocess.run([sys.executable, "-m", "mutmut", "show", key], cwd=ws,
                                      capture_output=True, text=True).stdout
                survivors.append({"file": f, "mutant": key, "status": status, "diff": diff})
        killed = counts.get("killed", 0) + counts.get("timeout", 0)
        tested = sum(v for k, v in counts.items() if k not in ("skipped", "not checked"))
        files[f] = {"counts": counts, "kill_rate": round(100.0 * killed / tested, 1) if tested else None,
                    "interval95": _wilson(killed, tested)}
    result = {"group": group, "files": files, "survivors": survivors}
    (ws / "report.json").write_text(json.dumps(result, indent=2))
    sample = json.loads((ws / "sample.json").read_text()) if (ws / "sample.json").exists() else None
    lines = [f"# mutation report: {group}", ""]
    if sample:
        lines += [f"A uniform sample of {len(sample['mutants'])} of the {sample['population']} mutants (seed "
                  f"{sample['seed']}); 'not checked' are the mutants outside the sample.", ""]
    lines += ["| file | mutants | killed (timeout) | survived | not run / other | kill rate | 95 % interval |",
              "|---|---|---|---|---|---|---|"]
    for f, d in files.items():
        c = d["counts"]
        total = sum(c.values())
        killed = c.get("killed", 0) + c.get("timeout", 0)
        other = total - killed - c.get("survived", 0)
        lines.append(f"| {f} | {total} | {killed} ({c.get('timeout', 0)}) | {c.get('survived', 0)} | {other} | "
                     f"{d['kill_rate']} % | {d['interval95'][0]}-{d['interval95'][1]} % |")
    lines += ["", "## survivors", ""]
    for s in survivors:
        lines += [f"### {s['mutant']} ({s['status']})", "```diff", s["diff"].strip(), "```", ""]
    (ws / "report.md").write_text("\n".join(lines))
    return result


def _mutant_keys(group: str, ws: Path) -> list[str]:
    keys = []
    for f in GROUPS[group]["mutate"]:
        meta = ws / "mutants" / (f + ".meta")
        if meta.exists():
            keys.extend(json.loads(meta.read_text())["exit_code_by_key"])
    return keys


def sample_mutants(group: str, ws: Path, env: dict, n: int, seed: int) -> list[str]:
    """Generate the group's mutants (a ``mutmut run`` filtered on a name that matches none stops right after
    generating them) and draw ``n`` of them uniformly without replacement."""
    import random

    subprocess.run([sys.executable, "-m", "mutmut", "run", "fourm_no_such_mutant_*"], cwd=ws, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    keys = sorted(_mutant_keys(group, ws))
    if not keys:
        raise SystemExit(f"[{group}] mutmut generated no mutants in {ws / 'mutants'}")
    picked = sorted(random.Random(seed).sample(keys, min(n, len(keys))))
    print(f"[{group}] sampled {len(picked)} of {len(keys)} mutants (seed {seed})", flush=True)
    (ws / "sample.json").write_text(json.dumps({"seed": seed, "population": len(keys), "mutants": picked}, indent=1))
    return picked


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson interval of a proportion k / n, in percent."""
    if n == 0:
        return (0.0, 100.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return (round(100 * max(0.0, centre - half), 1), round(100 * min(1.0, centre + half), 1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("groups", nargs="*", help=f"groups to run ({', '.join(GROUPS)}); default: all")
    ap.add_argument("--out", type=Path, default=REPO / "build" / "mutation", help="workspace root")
    ap.add_argument("--max-children", type=int, default=None, help="parallel mutant workers (mutmut's default: CPUs)")
    ap.add_argument("--report-only", action="store_true", help="rewrite the report of an earlier run")
    ap.add_argument("--sample", type=int, default=None, metavar="N",
                    help="run a uniform random sample of N mutants per group instead of all of them (the report "
                         "gives the kill rate of the sample with a 95 %% interval)")
    ap.add_argument("--seed", type=int, default=0, help="seed of --sample")
    args = ap.parse_args(argv)
    try:
        import mutmut  # noqa: F401
    except ImportError:
        ap.error("mutmut is not installed: pip install -r tools/mutation/requirements.txt")
    groups = args.groups or list(GROUPS)
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        ap.error(f"unknown group(s) {unknown}; choose from {', '.join(GROUPS)}")
    summary = {}
    for group in groups:
        ws = args.out / group
        if not args.report_only:
            ws = build_workspace(group, args.out)
            cmd = [sys.executable, "-m", "mutmut", "run"]
            if args.max_children:
                cmd += ["--max-children", str(args.max_children)]
            env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1")
            if args.sample:
                cmd += sample_mutants(group, ws, env, args.sample, args.seed)
            print(f"[{group}] mutmut run in {ws}", flush=True)
            rc = subprocess.run(cmd, cwd=ws, env=env).returncode
            if rc != 0:
                print(f"[{group}] mutmut exited {rc}", file=sys.stderr)
        summary[group] = report(group, ws)["files"]
    for group, files in summary.items():
        for f, d in files.items():
            print(f"{group:12s} {f:45s} {d['kill_rate']} % (95 % {d['interval95'][0]}-{d['interval95'][1]})  "
                  f"{d['counts']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
