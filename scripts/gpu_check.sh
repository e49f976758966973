#!/usr/bin/env bash
# The trainer on a CUDA machine, in one command (a machine with torch and Python >= 3.11
# and no ROS, no internet: the project's GPU machines).
#
#   scripts/gpu_check.sh --fetch-wheels   here, with PyPI: the Python packages such a
#                                         machine lacks (trimesh, embreex, rtree) as
#                                         cp312 wheels into .whl/ (git-ignored)
#   scripts/gpu_check.sh                  there: installs .whl/ (no index) into a scratch
#                                         folder, runs the core tests (the CUDA-parametrised
#                                         ones included), then the bench on one synthetic
#                                         scene with the gpu preset, offline and online,
#                                         with --eval-at, and prints a summary: iterations
#                                         per second, seconds of training to PQ^scene 65
#                                         and 75, peak GPU memory, time to the first object
#
# Environment: GPU_CHECK_SCENE (a scene folder to use instead of generating scene seed 0;
# carry one from here, where the Sweet Home 3D models are installed, to compare with the
# CPU bench), GPU_CHECK_DEVICE (default cuda; cpu for a smoke run), GPU_CHECK_BENCH_ARGS
# (extra bench arguments, e.g. --set clusteringsdf.trainer.iterations=200 for a smoke run),
# OUT (where results go; default outputs/gpu_check). Meant to finish in under 8 minutes
# on an H100/H200 machine.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=(trimesh==5.2.0 embreex==4.4.0.post1 rtree==1.4.1)

if [[ "${1:-}" == "--fetch-wheels" ]]; then
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}" || exit 1
  ls -l .whl
  exit 0
fi

OUT_DIR=${OUT:-outputs/gpu_check}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
mkdir -p "$OUT_DIR"
say() { printf '\n[gpu_check %s] %s\n' "$(date +%T)" "$*"; }
started=$(date +%s)

if compgen -G ".whl/*.whl" > /dev/null; then
  say "installing $(ls .whl/*.whl | wc -l) carried wheels (no index) into /tmp/clusteringsdf_site"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/clusteringsdf_site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/clusteringsdf_site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

say "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
$PY - "$DEVICE" <<'EOF' || exit 1
import importlib, sys
import torch
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, cuda available: {torch.cuda.is_available()}"
      + (f" ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else ""))
missing = [m for m in ("numpy", "scipy", "cv2", "skimage", "sklearn", "trimesh", "yaml", "tqdm", "pytest")
           if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing Python packages: {missing} (run scripts/gpu_check.sh --fetch-wheels where pip works, "
             "and carry .whl/)")
if sys.argv[1] == "cuda" and not torch.cuda.is_available():
    sys.exit("GPU_CHECK_DEVICE is cuda but torch sees no CUDA device")
EOF

say "core tests (CUDA-parametrised tests run where CUDA is available)"
xdist=()
$PY -c "import xdist" 2>/dev/null && xdist=(-n 8)
timeout 300 $PY -m pytest -q -p no:cacheprovider "${xdist[@]}" test/core 2>&1 | tail -15
tests_rc=${PIPESTATUS[0]}

say "bench: offline and online, gpu preset, on $DEVICE"
scene_args=(--seeds 0)
[[ -n "${GPU_CHECK_SCENE:-}" ]] && scene_args=(--scene "$GPU_CHECK_SCENE")
# shellcheck disable=SC2086
timeout 420 $PY -m clusteringsdf_core.cli bench --methods clusteringsdf,clusteringsdf_online \
  "${scene_args[@]}" --label-seed 0 --device "$DEVICE" \
  --set clusteringsdf.preset=gpu --set clusteringsdf_online.preset=gpu \
  --eval-at 250,500,750,1000,1500,2000,3000,4000,5000 --figure-views 0 \
  --out "$OUT_DIR/bench" ${GPU_CHECK_BENCH_ARGS:-} 2>&1 | grep -v "^\s*$" | tail -12
bench_rc=${PIPESTATUS[0]}

say "summary"
$PY - "$OUT_DIR/bench/results.json" <<'EOF'
import json, pathlib, sys
path = pathlib.Path(sys.argv[1])
if not path.exists():
    sys.exit(f"no {path}: the bench wrote no results (see its output above)")
doc = json.loads(path.read_text())
for protocol in doc["protocols"].values():
    for variant in protocol["variants"].values():
        for name, method in variant["methods"].items():
            for run, entry in method["scenes"].items():
                if "error" in entry:
                    print(f"{name} {run}: ERROR {entry['error']}")
                    continue
                meta = entry["prediction"]["meta"]
                curve = meta.get("curve") or []
                def first(threshold):
                    hit = [p for p in curve if (p.get("pq_scene") or 0) >= threshold]
                    return f"{hit[0]['train_s']:.0f} s (it {hit[0]['iteration']})" if hit else "not reached"
                mem = meta.get("peak_gpu_mib")
                print(f"{name} on {run}: {meta.get('iterations')} it at {meta.get('iterations_per_s', 0):.1f} it/s, "
                      f"training {meta.get('train_s', 0):.0f} s; PQ^scene {entry.get('pq_scene', 0):.1f}, "
                      f"objects {entry.get('num_pred_instances')} of {entry.get('num_gt_instances')}; "
                      f"to PQ^scene 65: {first(65)}, to 75: {first(75)}; "
                      f"peak GPU memory {'n/a' if mem is None else f'{mem:.0f} MiB'}"
                      + (f"; first object after {meta['first_object_s']:.1f} s" if meta.get("first_object_s") else ""))
                print("  curve: " + ", ".join(f"it {p['iteration']} ({p['train_s']:.0f} s) {p.get('pq_scene') or 0:.1f}"
                                              for p in curve))
EOF
say "done in $(( $(date +%s) - started )) s (tests rc $tests_rc, bench rc $bench_rc)"
[[ $tests_rc == 0 && $bench_rc == 0 ]]
