#!/usr/bin/env bash
# The trainer on a CUDA machine, in one command (a machine with torch and Python >= 3.11
# and no ROS, no internet: the project's GPU machines).
#
#   scripts/gpu_check.sh --fetch-wheels   here, with PyPI: the Python packages such a
#                                         machine lacks (trimesh, embreex, rtree) as
#                                         cp312 wheels into .whl/ (git-ignored)
#   scripts/gpu_check.sh                  there: installs .whl/ (no index) into a scratch
#                                         folder, runs the core tests parametrised over the
#                                         torch device, the bench on one synthetic scene
#                                         with the gpu preset, offline then online, with
#                                         --eval-at, a profile of training steps
#                                         (scripts/step_profile.py), then the other core
#                                         tests (which train on CUDA too: trainer.device
#                                         auto), and prints a summary: iterations per
#                                         second, seconds of training to PQ^scene 65 and
#                                         75, peak GPU memory, time to the first object
#
# Environment: GPU_CHECK_SCENE (a scene folder to use instead of generating scene seed 0;
# carry one from here, where the Sweet Home 3D models are installed, to compare with the
# CPU bench), GPU_CHECK_DEVICE (default cuda; cpu for a smoke run), GPU_CHECK_PRESET
# (default gpu; cpu for a smoke run), GPU_CHECK_ITERATIONS
# (training iterations of both bench methods instead of the preset's 6000: 200 for a smoke
# run), GPU_CHECK_BENCH_ARGS (extra bench arguments),
# GPU_CHECK_BUDGET_S (seconds for the whole check, default 470: each phase gets its own
# limit or what is left), GPU_CHECK_WORK (scratch folder, default /tmp/gpu_check_work),
# OUT (where the logs, results_*.json and summary.txt go; default outputs/gpu_check).
# Meant to finish in under 8 minutes on an H100/H200 machine.
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
WORK=${GPU_CHECK_WORK:-/tmp/gpu_check_work}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
PRESET=${GPU_CHECK_PRESET:-gpu}
BUDGET=${GPU_CHECK_BUDGET_S:-470}
mkdir -p "$OUT_DIR" "$WORK"
say() { printf '\n[gpu_check %s] %s\n' "$(date +%T)" "$*"; }
started=$(date +%s)

# Seconds a phase may take: its own limit, or what is left of the whole budget.
limit() {
  local left=$(( BUDGET - ($(date +%s) - started) ))
  (( left > $1 )) && left=$1
  (( left < 5 )) && left=5
  echo "$left"
}

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

xdist=()
$PY -c "import xdist" 2>/dev/null && xdist=(-n 8)
scene_args=(--seeds 0)
[[ -n "${GPU_CHECK_SCENE:-}" ]] && scene_args=(--scene "$GPU_CHECK_SCENE")

say "core tests parametrised over the torch device (log: $OUT_DIR/tests_device.log)"
timeout "$(limit 90)" $PY -m pytest -q -p no:cacheprovider -k cuda test/core > "$OUT_DIR/tests_device.log" 2>&1
device_tests_rc=$?
tail -6 "$OUT_DIR/tests_device.log"

bench_rcs=()
for method in clusteringsdf clusteringsdf_online; do
  say "bench: $method, $PRESET preset, on $DEVICE (log: $OUT_DIR/bench_$method.log)"
  # shellcheck disable=SC2086
  timeout "$(limit 170)" $PY -m clusteringsdf_core.cli bench --methods "$method" \
    "${scene_args[@]}" --label-seed 0 --device "$DEVICE" --set "$method.preset=$PRESET" \
    --eval-at 250,500,750,1000,1500,2000,3000,4000,5000 --figure-views 0 \
    ${GPU_CHECK_ITERATIONS:+--set "$method.trainer.iterations=$GPU_CHECK_ITERATIONS"} \
    --out "$WORK/bench_$method" ${GPU_CHECK_BENCH_ARGS:-} > "$OUT_DIR/bench_$method.log" 2>&1
  bench_rcs+=($?)
  grep -v "^\s*$" "$OUT_DIR/bench_$method.log" | tail -4
  cp "$WORK/bench_$method/results.json" "$OUT_DIR/results_$method.json" 2>/dev/null
done

say "step profile, $PRESET preset (log: $OUT_DIR/profile.log)"
profile_scene=${GPU_CHECK_SCENE:-$WORK/bench_clusteringsdf/scenes/seed_0}
timeout "$(limit 60)" $PY scripts/step_profile.py --scene "$profile_scene" --preset "$PRESET" --device "$DEVICE" \
  --rows 20 > "$OUT_DIR/profile.log" 2>&1
grep -m1 "it/s" "$OUT_DIR/profile.log"

say "the other core tests (log: $OUT_DIR/tests.log)"
timeout "$(limit 150)" $PY -m pytest -q -p no:cacheprovider "${xdist[@]}" -k "not cuda" test/core \
  > "$OUT_DIR/tests.log" 2>&1
tests_rc=$?
grep -E "passed|failed|error|FAILED|ERROR" "$OUT_DIR/tests.log" | tail -8

say "summary"
$PY - "$OUT_DIR"/results_*.json <<'EOF' | tee "$OUT_DIR/summary.txt"
import json, pathlib, sys
paths = [pathlib.Path(p) for p in sys.argv[1:] if pathlib.Path(p).exists()]
if not paths:
    sys.exit("no results_*.json: the bench wrote no results (see the bench logs)")
for path in paths:
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
                    print(f"{name} on {run}: {meta.get('iterations')} it at {meta.get('iterations_per_s', 0):.1f} "
                          f"it/s, training {meta.get('train_s', 0):.0f} s; PQ^scene {entry.get('pq_scene', 0):.1f}, "
                          f"objects {entry.get('num_pred_instances')} of {entry.get('num_gt_instances')}; "
                          f"to PQ^scene 65: {first(65)}, to 75: {first(75)}; "
                          f"peak GPU memory {'n/a' if mem is None else f'{mem:.0f} MiB'}"
                          + (f"; first object after {meta['first_object_s']:.1f} s" if meta.get("first_object_s") else ""))
                    print("  curve: " + ", ".join(f"it {p['iteration']} ({p['train_s']:.0f} s) "
                                                  f"{p.get('pq_scene') or 0:.1f}" for p in curve))
EOF
say "done in $(( $(date +%s) - started )) s (device tests rc $device_tests_rc, bench rc ${bench_rcs[*]}, other tests rc $tests_rc)"
[[ $device_tests_rc == 0 && $tests_rc == 0 && "${bench_rcs[*]}" == "0 0" ]]
