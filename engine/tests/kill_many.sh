#!/bin/sh
# Runs the kill -9 resume test with many kills and several seeds:
#   engine/tests/kill_many.sh [KILLS_PER_ROUND] [ROUNDS]
# Each round kills a process running a full pass at KILLS random instants (default 100),
# resumes it in-process and checks with the verifier that both servers hold the same mail
# with no duplicate. Stops at the first failing round and prints its seed.
set -eu
kills="${1:-100}"
rounds="${2:-5}"
cd "$(dirname "$0")/../.."
cargo test -p imapmirror-engine --test mirror_dovecot --no-run
i=1
while [ "$i" -le "$rounds" ]; do
    seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
    echo "round $i/$rounds: $kills kills, seed $seed"
    if ! IMAPMIRROR_KILLS="$kills" IMAPMIRROR_KILL_SEED="$seed" \
        cargo test -p imapmirror-engine --test mirror_dovecot -- --exact kill_nine_at_random_instants_then_resume; then
        echo "FAILED with IMAPMIRROR_KILL_SEED=$seed IMAPMIRROR_KILLS=$kills" >&2
        exit 1
    fi
    i=$((i + 1))
done
echo "all $rounds rounds passed"
