#!/usr/bin/env bash
# Regenerates testdata/wal/ and testdata/wal.json from a real PostgreSQL 15 server.
#
# The result is what a WAL archive looks like after a failover: complete 1 MB segments on
# timeline 1, the old timeline's last segment as <name>.partial, 00000002.history, and complete
# segments on timeline 2. Every byte was written by PostgreSQL itself; the manifest is computed
# from pg_controldata, pg_waldump and the history file so tests can cross-check their readers.
#
# Usage: bash testdata/generate.sh        (as root: the server runs through runuser -u postgres)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/wal"
manifest="$here/wal.json"

find_bindir() {
  local d
  if command -v pg_config >/dev/null 2>&1; then
    d="$(pg_config --bindir 2>/dev/null || true)"
    if [[ -x "$d/postgres" && -x "$d/pg_waldump" ]] && "$d/postgres" --version | grep -q ' 15\.'; then
      echo "$d"
      return
    fi
  fi
  for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
    if [[ -x "$d/postgres" && -x "$d/pg_waldump" ]]; then
      echo "$d"
      return
    fi
  done
  echo "PostgreSQL binaries not found; install them with: apt-get install -y postgresql-15" >&2
  exit 1
}
bin="$(find_bindir)"
if ! "$bin/postgres" --version | grep -q ' 15\.'; then
  echo "warning: $("$bin/postgres" --version) is not PostgreSQL 15; the sample is meant to be 15" >&2
fi

# Servers refuse to run as root: run them (and everything touching their files) as postgres.
if [[ "$(id -u)" == 0 ]]; then
  as_pg() { runuser -u postgres -- "$@"; }
else
  as_pg() { "$@"; }
fi

work="$(mktemp -d /tmp/walrelay-gen.XXXXXX)"
data="$work/data"
arch="$work/archive"
mkdir -p "$arch"
if [[ "$(id -u)" == 0 ]]; then chown -R postgres: "$work"; fi
# The postgres user may not be allowed into the clone's directory (e.g. under /root).
cd "$work"

cleanup() {
  if [[ -f "$data/postmaster.pid" ]]; then
    as_pg "$bin/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# Only a Unix socket in the work directory: nothing listens on TCP.
psql_() { as_pg "$bin/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$work" -d postgres "$@"; }
sql() { psql_ -c "$1"; }

wait_archived() { # file name: waits until the archiver copied it
  local i
  for ((i = 0; i < 300; i++)); do
    [[ -f "$arch/$1" ]] && return 0
    sleep 0.1
  done
  echo "timed out waiting for $1 to be archived" >&2
  exit 1
}

switch_wal() { # forces a segment switch and waits until the finished segment is archived
  local seg
  seg="$(sql "SELECT pg_walfile_name(pg_switch_wal())")"
  wait_archived "$seg"
}

echo "initdb ($bin)"
as_pg "$bin/initdb" -D "$data" --wal-segsize=1 --auth=trust --username=postgres \
  --locale=C --encoding=UTF8 --no-instructions >"$work/initdb.log"

cat >>"$data/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$work'
wal_level = replica
archive_mode = on
archive_command = 'test ! -f $arch/%f && cp %p $arch/%f'
# Keep WAL small and predictable: no periodic checkpoints, few recycled segments.
checkpoint_timeout = 1h
max_wal_size = 64MB
min_wal_size = 4MB
logging_collector = off
EOF

start() { as_pg "$bin/pg_ctl" -D "$data" -l "$work/server.log" -w -t 60 start >/dev/null; }
stop() { as_pg "$bin/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null; }

start

echo "timeline 1: workload"
sql "CREATE TABLE items (id int PRIMARY KEY, name text, qty int, note text)"
sql "INSERT INTO items SELECT g, 'item ' || g, g % 100, repeat(md5(g::text), 3)
     FROM generate_series(1, 4000) g"
sql "CHECKPOINT" # full-page images on the updates below
sql "UPDATE items SET qty = qty + 1 WHERE id % 3 = 0"
switch_wal
sql "CREATE TABLE events (id bigserial PRIMARY KEY, item int, at timestamptz DEFAULT now(),
     payload text)"
sql "CREATE INDEX ON events (item)"
# Many small transactions: commit records, record headers split across pages.
cat >"$work/events.sql" <<'EOF'
\set item random(1, 4000)
BEGIN;
INSERT INTO events (item, payload) VALUES (:item, md5(random()::text));
UPDATE items SET qty = qty + 1 WHERE id = :item;
END;
EOF
chmod 644 "$work/events.sql"
as_pg "$bin/pgbench" -n -h "$work" -c 2 -t 400 -f "$work/events.sql" postgres >/dev/null
# A large record (a TOASTed value) spanning several pages.
sql "INSERT INTO events (item, payload) SELECT 0, string_agg(md5(g::text), '')
     FROM generate_series(1, 2000) g"
sql "DELETE FROM items WHERE id > 3500"
sql "VACUUM items"

echo "timeline 1: crash, restart as a standby of the archive, promote"
# An immediate stop, as when a primary fails: the switch point lands in the middle of a segment
# (a clean stop would first switch to a new segment), so the .partial holds real timeline 1 WAL
# and timeline 2's first segment starts with a copy of it. Committed work is already flushed.
as_pg "$bin/pg_ctl" -D "$data" -m immediate -w -t 60 stop >/dev/null
touch "$data/standby.signal"
chown --reference="$data" "$data/standby.signal"
cat >>"$data/postgresql.conf" <<EOF
restore_command = 'cp $arch/%f %p'
EOF
start
as_pg "$bin/pg_ctl" -D "$data" -w -t 60 promote >/dev/null
wait_archived 00000002.history

echo "timeline 2: workload"
sql "INSERT INTO items SELECT g, 'new ' || g, 0, repeat(md5(g::text), 2)
     FROM generate_series(3501, 5000) g"
as_pg "$bin/pgbench" -n -h "$work" -c 2 -t 300 -f "$work/events.sql" postgres >/dev/null
switch_wal
# Promotion left older segments marked .ready; the archiver copies them in the background.
for ((i = 0; i < 300; i++)); do
  compgen -G "$data/pg_wal/archive_status/*.ready" >/dev/null || break
  sleep 0.1
done
if compgen -G "$data/pg_wal/archive_status/*.ready" >/dev/null; then
  echo "timed out waiting for the archiver" >&2
  exit 1
fi
stop

echo "collecting"
rm -rf "$out"
mkdir -p "$out"
cp "$arch"/* "$out"/
chmod 644 "$out"/*

# ---- manifest -------------------------------------------------------------------------------

controldata="$(as_pg "$bin/pg_controldata" -D "$data")"
control() { sed -n "s/^$1: *//p" <<<"$controldata"; }
sysid="$(control 'Database system identifier')"
segsize="$(control 'Bytes per WAL segment')"
blcksz="$(control 'WAL block size')"
version="$("$bin/postgres" --version | sed 's/.* \([0-9][0-9.]*\).*/\1/')"

# LSN text (hi/lo in hex) to a number and back, PostgreSQL's %X/%X spelling.
lsn_num() { echo $(((16#${1%/*} << 32) | 16#${1#*/})); }
lsn_text() { printf '%X/%X' $(($1 >> 32)) $(($1 & 0xFFFFFFFF)); }
seg_start() { # segment file name → LSN of its first byte
  local n="$1" per=$((0x100000000 / segsize))
  echo $(((16#${n:8:8} * per + 16#${n:16:8}) * segsize))
}

history_line="$(grep -v '^#' "$out/00000002.history" | grep -v '^[[:space:]]*$' | head -1)"
switch_lsn="$(cut -f2 <<<"$history_line")"
switch_num="$(lsn_num "$switch_lsn")"

# The last valid record pg_waldump reads on timeline $1 from $2 (a directory) starting at $3;
# sets rec_lsn, rec_end (rec_lsn + xl_tot_len, not aligned), rec_desc and rec_count.
last_record() {
  local dump line
  dump="$("$bin/pg_waldump" -p "$2" -t "$1" -s "$3" 2>&1 || true)"
  line="$(grep '^rmgr:' <<<"$dump" | tail -1)"
  if [[ -z "$line" ]]; then
    echo "pg_waldump found no records on timeline $1:" >&2
    echo "$dump" >&2
    exit 1
  fi
  rec_lsn="$(lsn_num "$(sed 's/.*lsn: \([0-9A-F]*\/[0-9A-F]*\),.*/\1/' <<<"$line")")"
  rec_end=$((rec_lsn + $(sed 's/.*len (rec\/tot): *[0-9]*\/ *\([0-9]*\),.*/\1/' <<<"$line")))
  rec_desc="$(sed 's/^rmgr: *\([A-Za-z0-9]*\) .*desc: \(.*\)$/\1 \2/' <<<"$line" | sed 's/ *$//')"
  rec_count="$(grep -c '^rmgr:' <<<"$dump")"
}

tl1_segs=()
for f in "$out"/00000001????????????????; do tl1_segs+=("$(basename "$f")"); done
tl2_segs=()
for f in "$out"/00000002????????????????; do tl2_segs+=("$(basename "$f")"); done
first1="${tl1_segs[0]}"
first2="${tl2_segs[0]}"
last2="${tl2_segs[${#tl2_segs[@]} - 1]}"
partial=""
for f in "$out"/*.partial; do partial="$(basename "$f")"; done

# Timeline 1 ends inside the .partial; pg_waldump reads it under its plain segment name.
scratch="$work/waldump1"
mkdir "$scratch"
cp "$out"/00000001???????????????? "$scratch"/
cp "$out/$partial" "$scratch/${partial%.partial}"
last_record 1 "$scratch" "$(lsn_text "$(seg_start "$first1")")"
tl1_rec_lsn=$rec_lsn tl1_rec_end=$rec_end tl1_rec_desc=$rec_desc
if (((tl1_rec_end + 7) / 8 * 8 != switch_num)); then
  echo "timeline 1's last record ends at $(lsn_text "$tl1_rec_end"), switch point is $switch_lsn" >&2
  exit 1
fi
last_record 2 "$out" "$switch_lsn"

{
  echo "{"
  echo "  \"generator\": \"testdata/generate.sh\","
  echo "  \"server_version\": \"$version\","
  echo "  \"system_identifier\": \"$sysid\","
  echo "  \"segment_size\": $segsize,"
  echo "  \"block_size\": $blcksz,"
  echo "  \"timelines\": ["
  echo "    {"
  echo "      \"timeline\": 1,"
  echo "      \"begin_lsn\": \"$(lsn_text "$(seg_start "$first1")")\","
  echo "      \"end_lsn\": \"$switch_lsn\","
  echo "      \"first_segment\": \"$first1\","
  echo "      \"partial_segment\": \"$partial\","
  echo "      \"last_record_lsn\": \"$(lsn_text "$tl1_rec_lsn")\","
  echo "      \"last_record\": \"$tl1_rec_desc\","
  echo "      \"last_record_end_lsn\": \"$(lsn_text "$tl1_rec_end")\""
  echo "    },"
  echo "    {"
  echo "      \"timeline\": 2,"
  echo "      \"parent\": 1,"
  echo "      \"switchpoint\": \"$switch_lsn\","
  echo "      \"begin_lsn\": \"$switch_lsn\","
  echo "      \"first_segment\": \"$first2\","
  echo "      \"last_segment\": \"$last2\","
  echo "      \"last_record_lsn\": \"$(lsn_text "$rec_lsn")\","
  echo "      \"last_record\": \"$rec_desc\","
  echo "      \"last_record_end_lsn\": \"$(lsn_text "$rec_end")\","
  echo "      \"end_lsn\": \"$(lsn_text "$rec_end")\","
  echo "      \"segment_end_lsn\": \"$(lsn_text $(($(seg_start "$last2") + segsize)))\","
  echo "      \"records_from_switchpoint\": $rec_count"
  echo "    }"
  echo "  ],"
  echo "  \"history\": {"
  printf '    "00000002.history": "%s"\n' \
    "$(sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' "$out/00000002.history" | awk '{printf "%s\\n", $0}' |
      sed 's/\t/\\t/g')"
  echo "  },"
  echo "  \"files\": ["
  n=0
  total="$(find "$out" -type f | wc -l)"
  for f in $(find "$out" -type f -printf '%f\n' | LC_ALL=C sort); do
    n=$((n + 1))
    size="$(stat -c %s "$out/$f")"
    sum="$(sha256sum "$out/$f" | cut -d' ' -f1)"
    sep=","
    [[ $n == "$total" ]] && sep=""
    echo "    {"
    echo "      \"name\": \"$f\","
    if [[ "$f" =~ ^([0-9A-F]{8})([0-9A-F]{16})(\.partial)?$ ]]; then
      echo "      \"timeline\": $((16#${f:0:8})),"
      echo "      \"start_lsn\": \"$(lsn_text "$(seg_start "${f:0:24}")")\","
    fi
    echo "      \"size\": $size,"
    echo "      \"sha256\": \"$sum\""
    echo "    }$sep"
  done
  echo "  ]"
  echo "}"
} >"$manifest"

echo "wrote $out ($(du -sh "$out" | cut -f1)) and $manifest"
echo "system identifier $sysid, switch to timeline 2 at $switch_lsn," \
  "timeline 2 ends at $(lsn_text "$rec_end") ($rec_desc)"
