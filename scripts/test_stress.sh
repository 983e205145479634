#!/usr/bin/env bash
# make test-stress: the crash, resume, clock (train.time_limit), distributed and concurrent-sweep tests, RUNS times in a row,
# while BURNERS CPU-burning processes load the machine. A test that passes only on an idle machine
# fails here. Prints one line per run and exits non-zero if any run failed.
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
BURNERS=${BURNERS:-2}
PY=${PY:-.venv/bin/python}
TESTS=(tests/test_resume.py tests/test_time_plan.py tests/test_distributed.py tests/test_sweep.py tests/test_tracking.py)

burners=()
for _ in $(seq "$BURNERS"); do
  "$PY" -c "while True: pass" &
  burners+=($!)
done
trap 'kill "${burners[@]}" 2>/dev/null' EXIT

failed=0
for i in $(seq "$RUNS"); do
  start=$(date +%s)
  if "$PY" -m pytest -q -p no:randomly "${TESTS[@]}" > "/tmp/imgclf-stress-$i.log" 2>&1; then
    result="passed"
  else
    result="FAILED (log: /tmp/imgclf-stress-$i.log)"
    failed=$((failed + 1))
  fi
  echo "stress run $i/$RUNS under $BURNERS CPU burners: $result — $(tail -n 1 "/tmp/imgclf-stress-$i.log") ($(( $(date +%s) - start )) s)"
done
echo "$((RUNS - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
