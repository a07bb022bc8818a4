# Shared helpers for the benches/*.sh scripts (sourced, not run).
#
# Every figure is taken with /usr/bin/time: wall seconds, CPU seconds (user + sys) and peak
# RSS. The machine is often shared, so each script prints the load average next to its
# figures; compare CPU seconds and ratios rather than wall seconds when the load is high.

# Build the release CLI into $CARGO_TARGET_DIR (default target/) unless CAIRN is set.
cairn_bin() {
  if [ -n "${CAIRN:-}" ]; then echo "$CAIRN"; return; fi
  local tdir=${CARGO_TARGET_DIR:-$PWD/target}
  cargo build --release -q -p cairn -j "$(nproc)" >&2
  echo "$tdir/release/cairn"
}

# One line of machine facts for the report.
machine_line() {
  local cpu
  cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
  printf '%s UTC, nproc %s, CPU %s, load average at start %s' \
    "$(date -u '+%Y-%m-%d %H:%M')" "$(nproc)" "$cpu" "$(cut -d' ' -f1-3 /proc/loadavg)"
}

load1() { cut -d' ' -f1 /proc/loadavg; }

# measure OUTVAR cmd...   runs cmd once under /usr/bin/time (stdout -> $work/last.out,
# stderr -> $work/last.err), sets OUTVAR_wall, OUTVAR_cpu (user+sys s), OUTVAR_rss (MiB),
# OUTVAR_load (1-min load average when it ended). Fails the script if cmd fails.
measure() {
  local var=$1; shift
  local tf=$work/time.txt
  if ! /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" >"$work/last.out" 2>"$work/last.err"; then
    echo "command failed: $*" >&2; tail -n 20 "$work/last.err" >&2; return 1
  fi
  local e u s m
  read -r e u s m < <(tail -n1 "$tf")
  printf -v "${var}_wall" '%.2f' "$e"
  printf -v "${var}_cpu" '%.2f' "$(echo "$u + $s" | bc -l)"
  printf -v "${var}_rss" '%.0f' "$(echo "$m / 1024" | bc -l)"
  printf -v "${var}_load" '%s' "$(load1)"
}

# best OUTVAR RUNS setup_fn cmd...   runs (setup_fn; cmd) RUNS times; keeps the smallest
# wall, the smallest CPU and the largest RSS seen (min wall and min CPU may come from
# different runs: both are lower bounds of what the program needs on a busy machine).
best() {
  local var=$1 runs=$2 setup=$3; shift 3
  local bw=999999 bc=999999 br=0 bl="" i
  for ((i = 0; i < runs; i++)); do
    "$setup"
    measure _b "$@" || return 1
    if (( $(echo "$_b_wall < $bw" | bc -l) )); then bw=$_b_wall; bl=$_b_load; fi
    if (( $(echo "$_b_cpu < $bc" | bc -l) )); then bc=$_b_cpu; fi
    if (( _b_rss > br )); then br=$_b_rss; fi
  done
  printf -v "${var}_wall" '%s' "$bw"
  printf -v "${var}_cpu" '%s' "$bc"
  printf -v "${var}_rss" '%s' "$br"
  printf -v "${var}_load" '%s' "$bl"
}

noop() { :; }

# ratio A B  -> A/B with one decimal ("n/a" when B is 0: /usr/bin/time counts in 10 ms steps)
ratio() {
  if (( $(echo "$2 == 0" | bc -l) )); then printf 'n/a'; return; fi
  printf '%.1f' "$(echo "$1 / $2" | bc -l)"
}
mib() { printf '%.0f' "$(echo "$1 / 1048576" | bc -l)"; }

# measure_best OUTVAR cmd...   like measure, then times a `sync` right after it (the dirty
# data the command left behind: cairn fsyncs its output, restic and borg do not, so "until
# durable" = wall + that sync is the like-for-like figure) and keeps, across calls with the
# same OUTVAR (RUNS repetitions), the smallest wall / CPU / durable time, the largest RSS and
# the load when the best wall was seen. Sets OUTVAR_dur too. Runs `sync` first so that
# earlier writes are not charged to this command. `sync` flushes the whole machine: on a
# shared box other programs' writes land in it too.
measure_best() {
  local var=$1; shift
  sync
  measure _m "$@" || return 1
  local s0 s1 dur
  s0=$(date +%s.%N); sync; s1=$(date +%s.%N)
  printf -v dur '%.2f' "$(echo "$_m_wall + $s1 - $s0" | bc -l)"
  local w=${var}_wall c=${var}_cpu r=${var}_rss d=${var}_dur l=${var}_load
  if [ -z "${!w:-}" ] || (( $(echo "$_m_wall < ${!w}" | bc -l) )); then
    printf -v "$w" '%s' "$_m_wall"; printf -v "$l" '%s' "$_m_load"
  fi
  if [ -z "${!c:-}" ] || (( $(echo "$_m_cpu < ${!c}" | bc -l) )); then printf -v "$c" '%s' "$_m_cpu"; fi
  if [ -z "${!d:-}" ] || (( $(echo "$dur < ${!d}" | bc -l) )); then printf -v "$d" '%s' "$dur"; fi
  if [ -z "${!r:-}" ] || (( _m_rss > ${!r} )); then printf -v "$r" '%s' "$_m_rss"; fi
}
