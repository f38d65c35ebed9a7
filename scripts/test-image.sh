#!/usr/bin/env bash
# Builds, exports and starts the real zone image, as a provider ships it and the zone starts it
# (CI: .ci/run, after the tests). Needs root (debootstrap, chroot, rootful Podman) on x86_64 Debian
# bookworm (the host-built binary must match the image's glibc).
#
#  1. podman, debootstrap and curl, installed with apt-get when missing;
#  2. the base image localhost/debian:bookworm-local: reused from Podman's store, else imported from
#     the cached root filesystem ($CARGO_TARGET_DIR or target/, zone-image/), else made with
#     `debootstrap --variant=minbase bookworm` from the Debian mirror apt already uses (read from
#     /etc/apt/sources.list*) and cached there;
#  3. the release zone-programd, the developer CLI (local zone, app side), the stub SDK and the shim
#     (native/build.sh); the stub SDK is packed as a vendor SDK archive and pinned by its SHA-256;
#  4. scripts/export-image.sh --engine podman --isolation chroot --base localhost/debian:bookworm-local
#     --binary <zone-programd>: build (no registry pull), create + export (never save) the upload
#     tar, check its layout (scripts/check-image-tar.sh);
#  5. the checker itself on deliberately broken layouts (each must be refused, the intact one passed);
#  6. the tar extracted and `/bin/sh /opt/zone-program/bin/start.sh` run in a chroot under `env -i`
#     (no variable at all, as the zone starts it), native backend over the stub SDK; a local zone
#     and an app receiver on the host drive the whole loop through it: a sync call, an async call
#     and its report, an event -> program_notify -> get_callback_data;
#  7. the preflight stopping the start, with its fix line, for a port taken, a missing SDK library and
#     a key file with a wrong mode;
#  8. a summary: times, the tar's size and SHA-256.
#
# The chroot shares the host's network: the program listens on 127.0.0.1:PORT, where PORT is 8080
# when free (else a free port), written into the extracted config.toml (the image's own config keeps
# 0.0.0.0:8080; the zone's port).
#
# Usage: scripts/test-image.sh [options]
#   --port N        the program's port on the host (default 8080 when free, else a free one)
#   --binary FILE   a release zone-programd already built (default: cargo build --release)
#   --cli FILE      the developer CLI already built (default: cargo build, the debug one of the tests)
#   --mirror URL    the Debian mirror for debootstrap (default: the one apt uses)
#   --keep          keep the work directory (the extracted image, logs)
#   -h, --help      this text
set -euo pipefail

die() { echo "test-image: FAILED: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

root="$(cd "$(dirname "$0")/.." && pwd)"
port="" binary="" cli="" mirror="" keep=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --port) port="${2:?}"; shift 2 ;;
    --binary) binary="${2:?}"; shift 2 ;;
    --cli) cli="${2:?}"; shift 2 ;;
    --mirror) mirror="${2:?}"; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "test-image: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
cd "$root"

target="${CARGO_TARGET_DIR:-$root/target}"
cache="$target/zone-image"
base_image=localhost/debian:bookworm-local
tag=localhost/zone-program:ci
tar_out="$cache/zone-program-ci.tar"
corp=wwlocal0000000001
mkdir -p "$cache"

# ---- bookkeeping: phases and their times, processes we started, the work directory ----
# The extracted image (~150 MB) goes to memory when it can: extracting it to a busy disk is most of
# the run's time.
scratch="${TMPDIR:-/tmp}"
if [[ -z "${TMPDIR:-}" && -d /dev/shm && -w /dev/shm ]] &&
  [[ "$(df -Pk /dev/shm | awk 'NR == 2 { print $4 }')" -gt 1048576 ]]; then
  scratch=/dev/shm
fi
work="$(mktemp -d "$scratch/zone-image-test.XXXXXX")"
pids=()
cleanup() {
  local status="$1" pid log
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ "$status" != 0 ]]; then
    for log in program.out program.err local-zone.log listen.err; do
      [[ -s "$work/$log" ]] || continue
      echo "---- last lines of $log" >&2
      tail -n 15 "$work/$log" >&2
    done
  fi
  if [[ $keep -eq 1 ]]; then echo "test-image: kept $work"; else rm -rf "$work"; fi
}
trap 'cleanup $?' EXIT
times=()
phase_name="" phase_start=0
now() { date +%s%3N; }  # milliseconds
secs() { printf '%d.%d' $(($1 / 1000)) $(($1 % 1000 / 100)); }
phase() {
  phase_end
  phase_name="$1" phase_start="$(now)"
  echo "== test-image: $1"
}
phase_end() {
  [[ -n "$phase_name" ]] || return 0
  times+=("$(printf '%-44s %6s s' "$phase_name" "$(secs $(($(now) - phase_start)))")")
  phase_name=""
}
started="$(now)"

# until_ok SECS WHAT CMD...: polls CMD every 0.1 s until it succeeds; fails after SECS.
until_ok() {
  local secs="$1" what="$2"; shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    [[ $(date +%s) -lt $deadline ]] || die "$what: not within ${secs} s"
    sleep 0.1
  done
}
# port_free N: nothing accepts connections on 127.0.0.1:N.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p
  for _ in $(seq 1 100); do
    p=$((20000 + RANDOM % 40000))
    port_free "$p" && { echo "$p"; return; }
  done
  die "no free port found"
}
# json FILE EXPR: a value of the JSON in FILE (Python expression over `d`), printed as JSON or text.
json() {
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); v=eval(sys.argv[2]); print(v if isinstance(v,str) else json.dumps(v))' "$1" "$2"
}

# ---- 1. tools ----
phase "tools: podman, debootstrap, curl, g++"
[[ $(id -u) -eq 0 ]] || die "needs root (debootstrap, chroot and rootful Podman); run it as root or in CI"
missing=()
command -v podman >/dev/null || missing+=(podman)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v curl >/dev/null || missing+=(curl)
if [[ ${#missing[@]} -gt 0 ]]; then
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
  echo "test-image: installing ${missing[*]}"
  # Other apt users on the machine: wait for the lock rather than fail.
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
fi
scripts/native-deps.sh
chroot_bin="$(command -v chroot)"
podman --version

# ---- 2. the base image ----
phase "base image $base_image"
# The first enabled "deb" source of suite bookworm in apt's sources (one-line and deb822 formats).
apt_mirror() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f "$f" ]] || continue
    awk '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i+1) == "bookworm") { print $i; exit } }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] || continue
    awk 'BEGIN { RS = ""; FS = "\n" }
      { types = ""; uris = ""; suites = ""; enabled = "yes"
        for (j = 1; j <= NF; j++) {
          if ($j ~ /^#/) continue
          split($j, kv, ":[ \t]*"); key = tolower(kv[1]); val = substr($j, length(kv[1]) + 2); sub(/^[ \t]+/, "", val)
          if (key == "types") types = val; else if (key == "uris") uris = val
          else if (key == "suites") suites = val; else if (key == "enabled") enabled = tolower(val)
        }
        if (enabled != "no" && (" " types " ") ~ / deb / && (" " suites " ") ~ / bookworm /) { split(uris, u, /[ \t]+/); print u[1]; exit }
      }' "$f"
  done
}
# Bump base_rev when the recipe below changes: an image or cached tar of another revision is remade.
base_rev=2
base_tar="$cache/debian-bookworm-minbase-r$base_rev.tar"
if [[ "$(podman image inspect --format '{{index .Labels "zone-program.base-rev"}}' "$base_image" 2>/dev/null)" == "$base_rev" ]]; then
  echo "test-image: $base_image (revision $base_rev) is in Podman's store: reused"
  base_how="reused from Podman's store"
else
  if [[ ! -f "$base_tar" ]]; then
    [[ -n "$mirror" ]] || mirror="$(apt_mirror | head -n 1)"
    [[ -n "$mirror" ]] || die "apt's sources name no bookworm suite; pass --mirror URL (a Debian mirror)"
    echo "test-image: debootstrap --variant=minbase bookworm from apt's mirror"
    rootfs="$work/base-rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
      { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
    # As Debian's slim images: no downloaded packages, package lists or apt caches, now or after the
    # image build's apt-get; no documentation, manuals or translations.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/* \
      "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
EOF
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    tar -C "$rootfs" -cf "$base_tar.part" . && mv "$base_tar.part" "$base_tar"
    rm -rf "$rootfs"
    base_how="made with debootstrap, cached in ${base_tar#"$root"/}"
  else
    base_how="imported from ${base_tar#"$root"/}"
  fi
  podman import --change "LABEL zone-program.base-rev=$base_rev" "$base_tar" "$base_image" >/dev/null
fi

# ---- 3. the binaries, the stub SDK as a vendor archive, the deployment files ----
phase "build: zone-programd (release), CLI, shim"
if [[ -z "$binary" ]]; then
  cargo build --release --locked -p zone-program --bin zone-programd
  binary="$target/release/zone-programd"
fi
if [[ -z "$cli" ]]; then
  cargo build --locked -p zone-cli --bin zone-program
  cli="$target/debug/zone-program"
fi
native/build.sh
mkdir -p "$work/sdk-pkg/include" "$work/sdk-pkg/lib"
cp native/stub-sdk/cpp_sdk.h "$work/sdk-pkg/include/"
cp native/build/stub/libWeWorkSpecSDK.so "$work/sdk-pkg/lib/"
tar -C "$work/sdk-pkg" -czf "$work/stub-sdk.tar.gz" .
sdk_sha="$(sha256sum "$work/stub-sdk.tar.gz" | cut -d' ' -f1)"

zport="$(free_port)"
deploy="$work/deploy"
mkdir -p "$deploy"
# keygen picks the next version above the local zone's demo key (version 1 of the demo corp).
kver="$("$cli" keygen --corp-id "$corp" --keys-dir "$deploy/keys" --json | sed -n 's/.*"public_key_ver": *\([0-9][0-9]*\).*/\1/p')"
[[ -n "$kver" ]] || { echo "test-image: keygen printed no public_key_ver" >&2; exit 1; }
# The zone example config with what the stub SDK needs (the local codec's public demo token and key,
# the local zone's URL) and a keyring entry, so keys/ is exercised too.
sed -e "s#^library = .*#&\ninit_options = \"token=LocalZoneDemoToken;key.1=LocalZoneDemoKey0123456789abcdefghijklmnopq;zone_url=http://127.0.0.1:$zport\"#" \
  -e "s#^keys = \[\]\$#keys = [{ corp_id = \"$corp\", public_key_ver = $kver, private_key_path = \"/opt/zone-program/keys/$corp.$kver.pem\" }]#" \
  deploy/config.zone.example.toml >"$deploy/config.toml"
grep -q '^init_options = ' "$deploy/config.toml" && grep -q "^keys = \[{ corp_id = \"$corp\"" "$deploy/config.toml" ||
  die "deploy/config.zone.example.toml changed shape: no 'library =' or 'keys = []' line to extend"

# ---- 4. build and export ----
phase "image: podman build + create + export"
previous="$(podman image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
scripts/export-image.sh --engine podman --isolation chroot --base "$base_image" --binary "$binary" \
  --sdk-archive "$work/stub-sdk.tar.gz" --sdk-sha256 "$sdk_sha" --deploy "$deploy" --tag "$tag" --out "$tar_out" \
  >"$work/export.log" 2>&1 || { tail -n 40 "$work/export.log" >&2; die "scripts/export-image.sh failed"; }
grep -E '^check-image-tar:|^Image exported' "$work/export.log"
grep -q '^check-image-tar: .*: layout ok' "$work/export.log" || die "the layout check did not pass"
# The previous run's image (and its build layers no other image uses) would pile up on the machine.
if [[ -n "$previous" && "$previous" != "$(podman image inspect --format '{{.Id}}' "$tag")" ]]; then
  podman rmi "$previous" >/dev/null 2>&1 || true
fi

# ---- 5. the checker on broken layouts ----
phase "layout checker on broken layouts"
rootfs="$work/rootfs"
mkdir -p "$rootfs"
tar --numeric-owner -xpf "$tar_out" -C "$rootfs"
mini="$work/mini"
z=opt/zone-program
# The part of the image the checker looks at, packed as the export packs it.
mkdir -p "$mini"
(cd "$rootfs" && tar -cf - bin usr/bin/sh usr/bin/dash "$z" usr/lib/x86_64-linux-gnu/libstdc++.so.6* \
  usr/lib/x86_64-linux-gnu/libcrypto.so.3) | tar -xpf - -C "$mini"
# A small x86-64 executable stands in for zone-programd (checked above in the real tar), so each
# variant packs kilobytes, not the 60+ MB program.
cp "$rootfs/usr/bin/true" "$mini/$z/bin/zone-programd"
# broken NAME EXPECTED: packs $mini as it is now and wants the checker to refuse it saying EXPECTED.
checked=0
broken() {
  local name="$1" expected="$2" out
  tar -C "$mini" -cf "$work/variant.tar" .
  if out="$(scripts/check-image-tar.sh "$work/variant.tar" 2>&1)"; then
    die "the layout checker passed a broken layout ($name)"
  fi
  grep -qF -- "$expected" <<<"$out" || die "the layout checker refused $name without saying \"$expected\": $out"
  echo "  refused: $name"
  checked=$((checked + 1))
}
tar -C "$mini" -cf "$work/variant.tar" .
scripts/check-image-tar.sh "$work/variant.tar" >/dev/null || die "the layout checker refused the intact layout"
chmod 0755 "$mini/$z/keys"
broken "keys/ readable by others" "/$z/keys is 755; expected 0700"
chmod 0700 "$mini/$z/keys"
chmod 0644 "$mini/$z/keys/$corp.$kver.pem"
broken "a key file 0644" "/$z/keys/$corp.$kver.pem is 644; a key file must be 0600"
chmod 0600 "$mini/$z/keys/$corp.$kver.pem"
chmod 0755 "$mini/$z/data"
broken "data/ readable by others" "/$z/data is 755; expected 0700"
chmod 0700 "$mini/$z/data"
mv "$mini/$z/bin/start.sh" "$work/start.sh.aside"
broken "no start.sh" "lacks /$z/bin/start.sh"
mv "$work/start.sh.aside" "$mini/$z/bin/start.sh"
mv "$mini/$z/lib/libWeWorkSpecSDK.so" "$work/sdk.aside"
broken "no vendor SDK library" "lacks /$z/lib/libWeWorkSpecSDK.so"
mv "$work/sdk.aside" "$mini/$z/lib/libWeWorkSpecSDK.so"
cp "$cli" "$mini/$z/bin/zone-programd"
broken "the developer CLI as the binary" "carries emulator, bench or app code"
cp "$rootfs/usr/bin/true" "$mini/$z/bin/zone-programd"
printf 'not an executable' >"$mini/$z/bin/zone-programd"
broken "a binary that is not x86-64 ELF" "is not an x86-64 ELF executable"
cp "$rootfs/usr/bin/true" "$mini/$z/bin/zone-programd"
rm -f "$mini/bin" && mkdir "$mini/bin"
broken "no /bin/sh" "lacks /bin/sh"
rmdir "$mini/bin" && ln -s usr/bin "$mini/bin"
mv "$mini" "$work/inner" && mkdir "$mini" && mv "$work/inner" "$mini/rootfs"
broken "the tree in a folder" "the tree sits in a folder (rootfs/)"
mv "$mini/rootfs" "$work/inner" && rmdir "$mini" && mv "$work/inner" "$mini"
tar -C "$mini" -cf "$work/variant.tar" .
scripts/check-image-tar.sh "$work/variant.tar" >/dev/null || die "the layout checker refused the restored layout"
tar -P -cf "$work/variant.tar" "$mini" 2>/dev/null
out="$(scripts/check-image-tar.sh "$work/variant.tar" 2>&1)" && die "the layout checker passed absolute member names"
grep -qF "absolute member name" <<<"$out" || die "absolute member names refused without saying so: $out"
echo "  refused: absolute member names"
checked=$((checked + 1))
rm -rf "$mini" "$work/variant.tar"

# ---- 6. start in a chroot under env -i, and the loop from the host ----
phase "start in chroot (env -i) + the loop from the host"
if [[ -z "$port" ]]; then
  if port_free 8080; then port=8080; else port="$(free_port)"; fi
fi
port_free "$port" || die "port $port is taken"
aport="$(free_port)"
sed -i "s#^listen = \"0.0.0.0:8080\"\$#listen = \"127.0.0.1:$port\"#" "$rootfs/$z/config.toml"
grep -q "^listen = \"127.0.0.1:$port\"" "$rootfs/$z/config.toml" || die "no listen line to set in the image's config.toml"
if [[ "$port" == 8080 ]]; then
  port_note="127.0.0.1:8080 (the image's 0.0.0.0:8080 narrowed to loopback in the extracted config.toml)"
else
  port_note="127.0.0.1:$port (8080 is taken here; set in the extracted config.toml, the image keeps 0.0.0.0:8080)"
fi
echo "test-image: the program listens on $port_note"

cat >"$work/zone.toml" <<EOF
[local_zone]
listen = "127.0.0.1:$zport"
program_url = "http://127.0.0.1:$port"
app_callback_url = "http://127.0.0.1:$aport/callback"
data_dir = "$work/local-zone"

[app]
base_url = "http://127.0.0.1:$zport"
token_cache = "$work/app-token.json"

[app.callback]
listen = "127.0.0.1:$aport"
EOF
app() { "$cli" --config "$work/zone.toml" app "$@"; }

"$cli" --config "$work/zone.toml" local-zone >"$work/local-zone.log" 2>&1 &
pids+=($!)
until_ok 30 "the local zone answers" curl -sf "http://127.0.0.1:$zport/local/world"

# start_in_chroot: the zone's start, exactly: no environment, the form's command and argument.
start_in_chroot() { env -i "$chroot_bin" "$rootfs" /bin/sh /opt/zone-program/bin/start.sh; }
# Started without a function or subshell in between: $! is the program itself (env, chroot, sh and
# start.sh each exec the next).
env -i "$chroot_bin" "$rootfs" /bin/sh /opt/zone-program/bin/start.sh >"$work/program.out" 2>"$work/program.err" &
program_pid=$!
pids+=("$program_pid")
program_up() {
  kill -0 "$program_pid" 2>/dev/null || { cat "$work/program.out" "$work/program.err" >&2; die "the program in the chroot exited"; }
  curl -sf "http://127.0.0.1:$port/healthz"
}
until_ok 30 "the program in the chroot answers /healthz" program_up
grep -q "preflight passed" "$work/program.out" || die "no 'preflight passed' in the start's output"

"$cli" --config "$work/zone.toml" app listen --fetch --count 1 >"$work/listen.out" 2>"$work/listen.err" &
listen_pid=$!
pids+=("$listen_pid")
until_ok 30 "the app receiver listens" curl -s -o /dev/null "http://127.0.0.1:$aport/callback"

# A sync call.
app call invoke_sync_msg '{"limit":2}' >"$work/sync.json" || die "sync call failed: $(cat "$work/sync.json")"
[[ "$(json "$work/sync.json" 'd["errcode"]')" == 0 && "$(json "$work/sync.json" 'len(d["msg_list"])')" == 2 ]] ||
  die "sync call: unexpected output $(cat "$work/sync.json")"
echo "  sync call invoke_sync_msg: errcode 0, 2 messages"

# An async call and its report.
app async invoke_sync_msg '{"limit":1}' >"$work/async.json" || die "async call failed: $(cat "$work/async.json")"
jobid="$(json "$work/async.json" 'd["jobid"]')"
app result "$jobid" --wait 30 >"$work/result.json" || die "async result failed: $(cat "$work/result.json")"
[[ "$(json "$work/result.json" 'd["status"]')" == "done" && "$(json "$work/result.json" 'd["response_errcode"]')" == 0 ]] ||
  die "async call: unexpected result $(cat "$work/result.json")"
[[ "$(json "$work/result.json" 'len(d["response_data"]["msg_list"])')" == 1 ]] ||
  die "async call: the report is not the job's output: $(cat "$work/result.json")"
echo "  async call invoke_sync_msg: job $jobid reported, errcode 0"

# An event: a new message -> the program pulls it -> program_notify -> get_callback_data.
curl -sf "http://127.0.0.1:$zport/local/world" >"$work/world.json"
sender="$(json "$work/world.json" 'd["customers"][0]["external_userid"]')"
follower="$(json "$work/world.json" 'd["customers"][0]["follower"]')"
curl -sf -X POST "http://127.0.0.1:$zport/local/messages" -H 'content-type: application/json' \
  -d "{\"sender\":\"$sender\",\"receivers\":[\"$follower\"],\"content\":\"image test\"}" >"$work/message.json" ||
  die "POST /local/messages failed"
[[ "$(json "$work/message.json" 'd["event_ack"]["errcode"]')" == 0 ]] || die "event not acknowledged: $(cat "$work/message.json")"
msgid="$(json "$work/message.json" 'd["msgid"]')"
until_ok 30 "the app receiver got program_notify and fetched its data" bash -c "! kill -0 $listen_pid"
wait "$listen_pid" || die "the app receiver failed: $(cat "$work/listen.err")"
python3 - "$work/listen.out" "$msgid" <<'EOF' || die "event loop: $(cat "$work/listen.out")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
notify = next(l for l in lines if l["event"] == "program_notify")
data = next(l for l in lines if l["event"] == "callback_data")
assert data["notify_id"] == notify["notify_id"], (notify, data)
out = data["response_data"]
assert out["event_type"] == "conversation_new_message", out
assert sys.argv[2] in [m["msgid"] for m in out["msg_list"]], out
assert "image test" not in json.dumps(out), "content left the zone"
EOF
echo "  event conversation_new_message -> program_notify -> get_callback_data: message $msgid delivered"

# ---- 7. the preflight stops a broken start, with its fix ----
phase "preflight failures stop the start"
# expect_refused WHAT FIX: the start exits 1, its preflight prints "FAIL  WHAT" and "fix: FIX...".
expect_refused() {
  local what="$1" fix="$2" code=0
  start_in_chroot >"$work/refused.out" 2>"$work/refused.err" || code=$?
  [[ $code -eq 1 ]] || die "start with $what: exit $code, expected 1: $(cat "$work/refused.out" "$work/refused.err")"
  grep -qF "FAIL  $what" "$work/refused.out" && grep -qF "fix: $fix" "$work/refused.out" ||
    die "start with $what: no FAIL line with its fix: $(cat "$work/refused.out")"
  grep -q "start.sh: the preflight failed; the program is not started" "$work/refused.err" ||
    die "start with $what: start.sh did not say it stopped"
  grep -F -A1 "FAIL  $what" "$work/refused.out" | sed 's/^/  /'
}
expect_refused port "stop the process that holds the port"
kill "$program_pid"
wait "$program_pid" || die "the program did not stop cleanly on SIGTERM"
mv "$rootfs/$z/lib/libWeWorkSpecSDK.so" "$work/sdk.aside"
expect_refused sdk ""
grep -q "libWeWorkSpecSDK.so" "$work/refused.out" || die "the missing library is not named"
mv "$work/sdk.aside" "$rootfs/$z/lib/libWeWorkSpecSDK.so"
chmod 0644 "$rootfs/$z/keys/$corp.$kver.pem"
expect_refused "keyring.keys[0]" "chmod 600"
chmod 0600 "$rootfs/$z/keys/$corp.$kver.pem"
phase_end

# ---- 8. summary ----
size_bytes="$(stat -c %s "$tar_out")"
image_size="$(podman image inspect --format '{{.Size}}' "$tag")"
total="$(secs $(($(now) - started)))"
cat <<EOF

test-image: passed in $total s
$(printf '  %s\n' "${times[@]}")
  base image:      $base_image ($base_how)
  upload tar:      ${tar_out#"$root"/} ($(numfmt --to=iec-i --suffix=B "$size_bytes"), $size_bytes bytes; image $(numfmt --to=iec-i --suffix=B "$image_size"))
  sha256:          $(sha256sum "$tar_out" | cut -d' ' -f1)
  layout checker:  the real tar passed; $checked broken layouts refused
  started:         env -i chroot ROOT /bin/sh /opt/zone-program/bin/start.sh on $port_note
  loop:            sync call, async call + report, event -> program_notify -> get_callback_data
  preflight:       port taken, missing SDK library, key file 0644: each stopped the start with its fix
EOF
