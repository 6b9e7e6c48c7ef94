#!/usr/bin/env bash
# One prepared run on a lent GPU machine (see benchmarks/README.md, "GPU figures").
# Usage on the device machine, from the repository root, with the wheels of the pinned pure-Python
# dependencies in .whl/ and the UCI split files in .uci/:
#   bash benchmarks/device/run_gpu.sh "$OUT"
# Each step has its own time limit and appends its log to all.log in the output folder, so a step that
# fails or runs out of time costs only itself.
set -u
OUT_DIR=${1:-/tmp/gpu_out}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false MPLBACKEND=Agg
PY=${PYTHON:-python3}
if [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
if [ -d .uci ]; then mkdir -p /work/shared/data && ln -sfn "$PWD/.uci" /work/shared/data/uci; fi

step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  echo "=== $name (limit ${limit}s): $*" | tee -a "$OUT_DIR/summary.log"
  timeout "$limit" "$@" >"/tmp/step_$name.log" 2>&1
  local rc=$?
  echo "--- $name rc=$rc in $(( $(date +%s) - t0 )) s" | tee -a "$OUT_DIR/summary.log"
  { echo "=== $name rc=$rc: $*"; cat "/tmp/step_$name.log"; } >>"$OUT_DIR/all.log"
  tail -n 25 "/tmp/step_$name.log"
}

step env 40 $PY -c "import jax, blackjax, numpyro, optax, arviz, bayesnn, samplers; \
print('jax', jax.__version__, jax.devices()); print('blackjax', blackjax.__version__, \
'numpyro', numpyro.__version__, 'optax', optax.__version__, 'arviz', arviz.__version__)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >>"$OUT_DIR/summary.log" 2>&1
lscpu | grep 'Model name' >>"$OUT_DIR/summary.log" 2>&1
step hebbian 70 $PY benchmarks/hebbian_speed.py --chains 4096 --sweeps 20
step hebbian256 35 $PY benchmarks/hebbian_speed.py --chains 256 --sweeps 20 --ks 3
step nngp 45 $PY benchmarks/nngp_speed.py --n 4000 --reps 5
step nngp16k 35 $PY benchmarks/nngp_speed.py --n 16000 --reps 3
step mdbm 60 $PY benchmarks/device/mdbm_gpu.py
step sgmcmc 75 $PY benchmarks/sgmcmc_speed.py --quick --chains 1,256,4096 --no-torch
step tests 150 $PY -m pytest -v --tb=short -n 8 -p no:cacheprovider --ignore=tests/test_notebooks.py \
  -o addopts="-m 'not slow'" -rfE tests
step uci 70 $PY benchmarks/nngp_uci.py --root .uci --splits 5 \
  --sets yacht,bostonHousing,energy,concrete,wine-quality-red,kin8nm,naval-propulsion-plant,power-plant
echo done | tee -a "$OUT_DIR/summary.log"
