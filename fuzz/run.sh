#!/usr/bin/env bash
# Runs fuzz targets one after another, each for SECONDS (default 600), niced, with the committed
# seeds (and, for `webhook`, the real payloads of tests/fixtures/webhooks) beside the growing
# corpus in fuzz/corpus/<target>. A crash, a time-out (5 s for one input) or an input that takes
# more than 1 GiB stops that target and is saved in fuzz/artifacts/<target>/; the next one runs.
# Logs: fuzz/logs/<target>.log, whose last lines hold the executions and coverage.
#
#   fuzz/run.sh                      # every target, 10 minutes each
#   fuzz/run.sh 60 policy commands   # these two, a minute each
set -uo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(policy request commands webhook signature fields oidc)
fi
mkdir -p fuzz/logs
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    seeds=("fuzz/seeds/$t")
    [ "$t" = webhook ] && seeds+=(tests/fixtures/webhooks)
    echo "== $t: $seconds s ($(date -u +%H:%M:%S))"
    nice cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "${seeds[@]}" -- \
        -max_total_time="$seconds" -timeout=5 -rss_limit_mb=1024 -print_final_stats=1 \
        >"fuzz/logs/$t.log" 2>&1
    echo "   exit $?: $(grep -E '^#[0-9]+' "fuzz/logs/$t.log" | tail -n1)"
    grep -E '^stat::number_of_executed_units|^SUMMARY|panicked at' "fuzz/logs/$t.log" | sed 's/^/   /'
done
