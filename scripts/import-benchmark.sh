#!/usr/bin/env bash
# Measure `unlockbot accounts import` (release build) on generated rows,
# each with three security questions (three argon2id hashes a row).
#
#   scripts/import-benchmark.sh [ROWS] [DATABASE_URL]
#
# ROWS defaults to 10000. DATABASE_URL defaults to a fresh SQLite file in a
# temporary directory; for PostgreSQL give a server URL *with a database
# name that does not exist yet*, e.g. postgres://postgres@127.0.0.1:5432/import_bench
# (the script creates it with createdb-like SQL through psql and drops it
# afterwards). HASH_WORKERS, if set, is passed on (default: one per core).
#
# Prints the import's own summary (rows, seconds, rows/s), the process's
# user and system CPU and peak RSS (GNU time -v), the load average before
# and after (other work on the machine slows hashing), and what 1.5 million
# rows would take at the measured rate and, hashing bound, per core.
set -euo pipefail

rows=${1:-10000}
database=${2:-}
estate=1500000

cd "$(dirname "$0")/.."
cargo build --release --quiet
binary=$PWD/target/release/unlockbot

work=$(mktemp -d)
postgres_admin=""
postgres_name=""
cleanup() {
    if [[ -n $postgres_name ]]; then
        psql -q "$postgres_admin" -c "DROP DATABASE IF EXISTS $postgres_name WITH (FORCE)" || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

if [[ -z $database ]]; then
    database="sqlite://$work/bench.sqlite"
elif [[ $database == postgres://* || $database == postgresql://* ]]; then
    postgres_name=${database##*/}
    postgres_admin=${database%/*}/postgres
    psql -q "$postgres_admin" -c "CREATE DATABASE $postgres_name"
fi

csv=$work/accounts.csv
awk -v n="$rows" 'BEGIN {
    print "email,mobile,organisation,same_sign_on,synced_at,locked,question1,answer1,question2,answer2,question3,answer3"
    for (i = 1; i <= n; i++) {
        printf "bench.user%07d@nhs.net,07700 9%05d,Leeds Teaching Hospitals,false,2026-01-05T09:00:00Z,%s,", i, i % 1000, (i % 10 == 0) ? "true" : "false"
        printf "\"What was the name of your first pet?\",\"pet %d\",", i
        printf "\"In which town were you born?\",\"town %d\",", i
        printf "\"What was the make of your first car?\",\"car %d\"\n", i
    }
}' >"$csv"

cores=$(nproc)
echo "rows: $rows, cores: $cores, HASH_WORKERS: ${HASH_WORKERS:-default (one per core)}"
echo "database: ${database%%://*}"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

env -i PATH="$PATH" DATABASE_URL="$database" ${HASH_WORKERS:+HASH_WORKERS=$HASH_WORKERS} \
    /usr/bin/time -v -o "$work/time" "$binary" accounts import "$csv" \
    >"$work/stdout" 2>"$work/stderr"

echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"
tail -n 1 "$work/stdout"
summary=$(grep '^import: .* rows in ' "$work/stderr" | tail -n 1)
echo "$summary"
user=$(awk -F': ' '/User time/ {print $2}' "$work/time")
sys=$(awk -F': ' '/System time/ {print $2}' "$work/time")
wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/time")
rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time")
echo "process: wall $wall, user ${user} s, sys ${sys} s, peak RSS $((rss / 1024)) MiB"

rate=$(sed -E 's/.*\(([0-9.]+) rows\/s\).*/\1/' <<<"$summary")
awk -v rate="$rate" -v user="$user" -v sys="$sys" -v rows="$rows" -v cores="$cores" -v estate="$estate" 'BEGIN {
    cpu_per_row = (user + sys) / rows
    printf "CPU per row: %.1f ms (user+sys)\n", cpu_per_row * 1000
    printf "%d rows at %.1f rows/s: %.1f hours\n", estate, rate, estate / rate / 3600
    for (n = 2; n <= 32; n *= 2) {
        printf "  hashing bound, %2d idle cores: about %.1f hours\n", n, estate * cpu_per_row / n / 3600
    }
}'
