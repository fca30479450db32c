# shellcheck shell=bash
# Helpers shared by the benchmark and test scripts, sourced (`. scripts/lib.sh`) once
# they are at the repository's root; one copy, so that the scripts cannot drift apart.
# Sourcing only defines functions. Those that report call say(), which each script
# defines with its own prefix.

# free_port: prints a port nobody listens on (a refused connection means free).
free_port() {
  local port
  for _ in $(seq 1 50); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  say "no free port found"
  return 1
}

# busy_hundredths: prints the cores busy over the next second, in hundredths (from /proc/stat).
busy_hundredths() {
  local u1 n1 s1 q1 sq1 st1 u2 n2 s2 q2 sq2 st2 hz
  hz=$(getconf CLK_TCK)
  read -r _ u1 n1 s1 _ _ q1 sq1 st1 _ </proc/stat
  sleep 1
  read -r _ u2 n2 s2 _ _ q2 sq2 st2 _ </proc/stat
  echo $(((u2 + n2 + s2 + q2 + sq2 + st2 - u1 - n1 - s1 - q1 - sq1 - st1) * 100 / hz))
}

# wait_quiet SECONDS ANYWAY: waits up to SECONDS for other work to leave the machine
# (a quarter of a core at most), then, if it has not, says so ending with ANYWAY.
# Leaves the last reading, in hundredths of a core, in QUIET_BUSY.
wait_quiet() {
  local seconds=$1 anyway=$2 deadline busy
  deadline=$((SECONDS + seconds))
  busy=$(busy_hundredths)
  while [ "$busy" -gt 25 ] && [ "$SECONDS" -lt "$deadline" ]; do
    say "machine busy ($((busy / 100)).$(printf '%02d' $((busy % 100))) cores used by other work); waiting"
    sleep 4
    busy=$(busy_hundredths)
  done
  if [ "$busy" -gt 25 ]; then
    say "still busy after ${seconds}s; $anyway"
  fi
  QUIET_BUSY=$busy
}

# write_section NAME SECTION_FILE OUTPUT [first]: replaces the lines of OUTPUT from
# <!-- NAME:start --> to <!-- NAME:end --> by SECTION_FILE (which holds both markers),
# keeping the rest; when OUTPUT lacks the start marker, adds the section after the rest
# and a blank line (before them with "first"), or alone when OUTPUT is empty or absent.
# Written to a temporary file, then copied over OUTPUT: a failure leaves OUTPUT whole.
write_section() {
  local name=$1 section=$2 output=$3 where=${4:-last} tmp
  local from="<!-- $name:start -->" to="<!-- $name:end -->"
  # awk would take an unreadable section for an empty one and drop the old section.
  [ -r "$section" ] || { say "cannot read $section"; return 1; }
  tmp=$(mktemp "${TMPDIR:-/tmp}/section.XXXXXX") || return 1
  if [ -f "$output" ] && grep -qF -- "$from" "$output"; then
    awk -v section="$section" -v from="$from" -v to="$to" '
      index($0, from) { while ((getline line < section) > 0) print line; skip = 1; next }
      index($0, to) { skip = 0; next }
      !skip { print }' "$output" >"$tmp"
  elif [ ! -s "$output" ]; then
    cat "$section" >"$tmp"
  elif [ "$where" = first ]; then
    { cat "$section" && echo && cat "$output"; } >"$tmp"
  else
    { cat "$output" && echo && cat "$section"; } >"$tmp"
  fi && cp "$tmp" "$output" || { rm -f "$tmp"; return 1; }
  rm -f "$tmp"
}

# stop_pid PID...: ends each process still running (SIGTERM) and waits for it; empty
# PIDs are skipped.
stop_pid() {
  local pid
  for pid in "$@"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
}

# delete_redis_keys PATTERN: deletes the keys of the local Redis matching PATTERN,
# inside Redis: cache keys of searches (fuzzed ones above all) hold spaces, quotes and
# newlines that a pipe into xargs would split or choke on.
delete_redis_keys() {
  redis-cli -h 127.0.0.1 -p 6379 eval "local cursor = '0'
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000)
  cursor = page[1]
  for _, key in ipairs(page[2]) do redis.call('DEL', key) end
until cursor == '0'" 0 "$1" >/dev/null 2>&1 || true
}
