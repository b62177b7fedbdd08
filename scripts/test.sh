#!/usr/bin/env bash
# The whole test suite: formatting, vet, the race-enabled tests, short fuzz
# runs of every decoder, and the --quick form of every benchmark. This is
# the README's test command and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "dependencies"
go mod download
# Open MPI is the baseline of the launch and OSU benchmarks; install it when
# we can (root with apt), and carry on without it otherwise: the benchmarks
# then say so and measure pispace alone.
if ! command -v mpirun >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openmpi-bin libopenmpi-dev >/dev/null) \
    || echo "note: could not install openmpi-bin; benchmarks will run without the Open MPI baseline"
fi

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

step "go vet"
go vet ./...

step "go test -race"
go test -race -count=1 -timeout 20m ./...

step "fuzz (short)"
# Budgets are counts, not durations: with a duration, go1.26's fuzz
# coordinator can report its own deadline as a failure
# (golang/go#75804), and minimising a new input (60 s by default) stalls
# the run; FUZZTIME may still be a duration for a longer local run.
fuzz() { go test -run '^$' -fuzz "^$2\$" -fuzztime "${FUZZTIME:-200000x}" -fuzzminimizetime 10x "$1"; }
fuzz ./comm/wire FuzzParser
fuzz ./comm/wire FuzzRoundTrip
fuzz ./comm/wire FuzzDec
fuzz ./comm/internal/proto FuzzUnmarshal

step "benchmarks (--quick)"
for b in $(go run ./bench names); do
  go run ./bench "$b" --quick >/dev/null
done

echo
echo "all checks passed"
