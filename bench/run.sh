#!/usr/bin/env bash
# devbox performance benchmark: each devbox number is measured side by side with a baseline in
# the same run (interleaved), and printed with its target. See bench/README.md.
#
#   bash bench/run.sh            (as root: devbox runs as the unprivileged user devbox-test,
#                                 made by `sudo bash tests/setup.sh`; otherwise as yourself)
#
# Tunables (environment): WARM_RUNS (200), COLD_RUNS (20), CREATE_RUNS (10), UNPACK_RUNS (3),
# PULL_RUNS (3), PUSH_RUNS (3), ARCHIVE_RUNS (2), SETTLE_SECONDS (61, see settle below),
# DEVBOX_BENCH_USER (devbox-test, root only), DEVBOX_BENCH_NO_BUILD=1 (use the existing
# target/release/devbox).
#
# Exit status: 0 when everything was measured (a MISS is a result, not a failure); non-zero
# when something broke.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)

WARM_RUNS=${WARM_RUNS:-200}
WARM_WARMUP=${WARM_WARMUP:-20}
COLD_RUNS=${COLD_RUNS:-20}
COLD_WARMUP=${COLD_WARMUP:-2}
CREATE_RUNS=${CREATE_RUNS:-10}
UNPACK_RUNS=${UNPACK_RUNS:-3}
PULL_RUNS=${PULL_RUNS:-3}
PUSH_RUNS=${PUSH_RUNS:-3}
ARCHIVE_RUNS=${ARCHIVE_RUNS:-2}
SETTLE_SECONDS=${SETTLE_SECONDS:-61}
BOX=bench

log() { printf '==> %s\n' "$*" >&2; }

# Before a section that makes thousands of files: write everything out, then wait until no
# inode counts as recently deleted. ext4 without a journal (as on the machines this runs on)
# does not reuse an inode for 60 s after its deletion once the inode table is written back
# (300 s while it is dirty), and each new file's allocation walks past every such inode of its
# block group: an unpack right after deleting the previous one's tree took 4.4 s of system time
# instead of 0.5 s, on whichever side came after the deletion. Sections delete nothing while
# they are timed. SETTLE_SECONDS=0 skips the wait (on a journalled file system, or for a
# quick look).
settle() {
    sync
    if ((SETTLE_SECONDS > 0)); then
        log "   (settling: sync, then ${SETTLE_SECONDS}s so no inode is recently deleted)"
        sleep "$SETTLE_SECONDS"
    fi
}
die() {
    printf 'bench: error: %s\n' "$*" >&2
    exit 1
}

for tool in setpriv nsenter unshare tar gzip xz zstd du awk skopeo; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed (run: sudo bash tests/setup.sh)"
done

# ---- who runs devbox ----------------------------------------------------------------------
if [[ $EUID -eq 0 ]]; then
    BENCH_USER=${DEVBOX_BENCH_USER:-devbox-test}
    id -u "$BENCH_USER" >/dev/null 2>&1 ||
        die "user $BENCH_USER does not exist: run \`sudo bash tests/setup.sh\` first"
    # Root's python3 may be a shim the unprivileged user cannot run.
    if [[ -x /usr/bin/python3 ]]; then PY=/usr/bin/python3; else PY=$(command -v python3 || true); fi
else
    BENCH_USER=$(id -un)
    PY=$(command -v python3 || true)
fi
[[ -n "$PY" ]] || die "python3 is not installed (run: sudo bash tests/setup.sh)"
BENCH_UID=$(id -u "$BENCH_USER")
BENCH_GID=$(id -g "$BENCH_USER")

# ---- binary and fixtures ------------------------------------------------------------------
if [[ -z "${DEVBOX_BENCH_NO_BUILD:-}" ]]; then
    log "cargo build --release"
    (cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
fi
[[ -x "$REPO/target/release/devbox" ]] || die "$REPO/target/release/devbox is missing: run cargo build --release"

log "fixtures"
BUSYBOX_TAR=$(bash "$REPO/tests/fixtures/busybox-rootfs.sh" | tail -n1)
DEBIAN_TAR=$(bash "$REPO/tests/fixtures/debian-rootfs.sh" | tail -n1)
[[ -f "$BUSYBOX_TAR" && -f "$DEBIAN_TAR" ]] || die "fixture tarballs missing (run: sudo bash tests/setup.sh)"

# ---- private world: binary copy, HOME, XDG_RUNTIME_DIR, scratch ---------------------------
ROOT=$(mktemp -d /tmp/devbox-bench.XXXXXX)
chmod 0755 "$ROOT"
BIN_DIR="$ROOT/bin"
BENCH_HOME="$ROOT/home"
RUN_DIR="$ROOT/run"
WORK="$ROOT/work"
DEVBOX="$BIN_DIR/devbox"
HARNESS="$BIN_DIR/harness.py"
ENV_PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin

# Runs a command as the benchmark user in the benchmark's environment.
as_user() {
    local envs=(env -i "HOME=$BENCH_HOME" "XDG_RUNTIME_DIR=$RUN_DIR" "PATH=$ENV_PATH"
        "USER=$BENCH_USER" "LANG=C.UTF-8")
    if [[ $EUID -eq 0 ]]; then
        setpriv --reuid="$BENCH_UID" --regid="$BENCH_GID" --init-groups "${envs[@]}" "$@"
    else
        "${envs[@]}" "$@"
    fi
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    if [[ -n "${ROOT:-}" && -d "$ROOT" ]]; then
        log "cleaning up $ROOT"
        cd /
        if [[ -n "${REG_PID:-}" ]]; then
            as_user bash "$BIN_DIR/registry.sh" stop "$REG_PID" >/dev/null 2>&1 || true
        fi
        if [[ -n "${REG2_PID:-}" ]]; then
            as_user bash "$BIN_DIR/registry.sh" stop "$REG2_PID" >/dev/null 2>&1 || true
        fi
        if [[ -x "$DEVBOX" ]]; then
            as_user "$DEVBOX" stop --all >/dev/null 2>&1 || true
            # Unpacked trees belong to subordinate ids: delete them as root of the namespace.
            as_user "$DEVBOX" unshare -- find "$BENCH_HOME" "$WORK" -mindepth 1 -maxdepth 1 \
                -exec rm -rf {} + >/dev/null 2>&1 || true
            as_user "$DEVBOX" stop --all >/dev/null 2>&1 || true
        fi
        rm -rf "$ROOT" 2>/dev/null || log "could not remove all of $ROOT"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

mkdir "$BIN_DIR" "$BENCH_HOME" "$RUN_DIR" "$WORK"
install -m 0755 "$REPO/target/release/devbox" "$DEVBOX"
install -m 0755 "$REPO/tests/fixtures/registry.sh" "$BIN_DIR/registry.sh"
if [[ $EUID -eq 0 ]]; then
    chown "$BENCH_UID:$BENCH_GID" "$BENCH_HOME" "$RUN_DIR" "$WORK"
fi
chmod 0700 "$RUN_DIR"
chmod 0755 "$BIN_DIR"

# The timing harness: spawns commands with posix_spawn as the benchmark user (no shell, no
# wrapper inside the timed region), interleaves devbox and baseline, prints medians in ms.
cat >"$HARNESS" <<'PY'
import os, shutil, statistics, sys, time

LOG = os.path.join(os.environ["BENCH_WORK"], "harness.log")

def resolve(argv):
    exe = argv[0] if "/" in argv[0] else shutil.which(argv[0])
    if exe is None:
        sys.exit(f"bench: {argv[0]} not found in PATH")
    return [exe] + argv[1:]

def spawn(argv, env=None):
    """Runs argv to completion; returns its wall time in ms. Fails loudly on a non-zero exit."""
    argv = resolve(argv)
    null = os.open(os.devnull, os.O_RDWR)
    log = os.open(LOG, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    acts = [(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, null, 1),
            (os.POSIX_SPAWN_DUP2, log, 2)]
    t0 = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, env or os.environ, file_actions=acts)
    _, status = os.waitpid(pid, 0)
    t1 = time.perf_counter_ns()
    os.close(null)
    os.close(log)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        with open(LOG, errors="replace") as f:
            err = f.read().strip()
        sys.exit(f"bench: `{' '.join(argv)}` failed (exit {code}):\n{err}")
    return (t1 - t0) / 1e6

def split(args, marks):
    """Splits args at the marker tokens: {'@A': [...], '@B': [...], ...}."""
    out, cur = {}, None
    for a in args:
        if a in marks:
            cur = out.setdefault(a, [])
        elif cur is None:
            sys.exit(f"bench: harness: unexpected {a}")
        else:
            cur.append(a)
    return out

def med(xs):
    return f"{statistics.median(xs):.3f}"

def pair(runs, warmup, args):
    """Interleaved A/B (order alternating ABBA); @BEFORE runs, untimed, before each A."""
    p = split(args, {"@A", "@B", "@BEFORE"})
    a, b, before = p["@A"], p["@B"], p.get("@BEFORE")
    ta, tb = [], []
    def one_a():
        if before:
            spawn(before)
        return spawn(a)
    for _ in range(warmup):
        one_a()
        spawn(b)
    for i in range(runs):
        if i % 2 == 0:
            ta.append(one_a())
            tb.append(spawn(b))
        else:
            tb.append(spawn(b))
            ta.append(one_a())
    print(med(ta), med(tb))

def create(runs, args):
    """Times `devbox create IMAGE --name PREFIX<i>`; prints the median time in ms."""
    devbox, image, prefix = args
    ts = [spawn([devbox, "create", image, "--name", f"{prefix}{i}"]) for i in range(runs)]
    print(med(ts))

def unpack(runs, args):
    """devbox create into a fresh HOME vs tar through `devbox unshare`, interleaved.
    ZFLAG is tar's decompression option: -z, -J or --zstd."""
    devbox, image, work, excludes, zflag = args
    ta, tb = [], []
    for i in range(runs):
        home = os.path.join(work, f"unpack-home-{i}")
        dest = os.path.join(work, f"unpack-tar-{i}")
        os.mkdir(home, 0o700)
        os.mkdir(dest, 0o755)
        env = dict(os.environ, HOME=home)
        def dv():
            os.sync()
            ta.append(spawn([devbox, "create", image, "--name", "unpack"], env))
        def gt():
            os.sync()
            tb.append(spawn([devbox, "unshare", "--", "tar", "--numeric-owner",
                             "--exclude-from", excludes, zflag, "-xf", image, "-C", dest]))
        if i % 2 == 0:
            dv(); gt()
        else:
            gt(); dv()
    # Nothing is deleted while the section is timed (see settle in run.sh).
    spawn([devbox, "unshare", "--", "rm", "-rf"] + [os.path.join(work, n) for n in os.listdir(work)
          if n.startswith(("unpack-home-", "unpack-tar-"))])
    print(med(ta), med(tb))

def pull(runs, args):
    """`devbox image pull REF` into a fresh HOME vs `skopeo copy` to a dir: and tar -xzf of
    the layer blob through `devbox unshare` (the two baseline steps' times added), interleaved."""
    devbox, ref, layer_hex, work, excludes = args
    ta, tb = [], []
    for i in range(runs):
        home = os.path.join(work, f"pull-home-{i}")
        copy = os.path.join(work, f"pull-skopeo-{i}")
        dest = os.path.join(work, f"pull-tar-{i}")
        os.mkdir(home, 0o700)
        os.mkdir(dest, 0o755)
        env = dict(os.environ, HOME=home)
        def dv():
            os.sync()
            ta.append(spawn([devbox, "image", "pull", ref], env))
        def bl():
            os.sync()
            t = spawn(["skopeo", "copy", "--src-tls-verify=false", "docker://" + ref,
                       "dir:" + copy])
            t += spawn([devbox, "unshare", "--", "tar", "--numeric-owner", "--exclude-from",
                        excludes, "-xzf", os.path.join(copy, layer_hex), "-C", dest])
            tb.append(t)
        if i % 2 == 0:
            dv(); bl()
        else:
            bl(); dv()
    spawn([devbox, "unshare", "--", "rm", "-rf"] + [os.path.join(work, n) for n in os.listdir(work)
          if n.startswith(("pull-home-", "pull-skopeo-", "pull-tar-"))])
    print(med(ta), med(tb))

mode, rest = sys.argv[1], sys.argv[2:]
if mode == "pair":
    pair(int(rest[0]), int(rest[1]), rest[2:])
elif mode == "create":
    create(int(rest[0]), rest[1:])
elif mode == "unpack":
    unpack(int(rest[0]), rest[1:])
elif mode == "pull":
    pull(int(rest[0]), rest[1:])
else:
    sys.exit(f"bench: harness: unknown mode {mode}")
PY
chmod 0644 "$HARNESS"

harness() { (cd "$BENCH_HOME" && as_user env "BENCH_WORK=$WORK" "$PY" "$HARNESS" "$@"); }
dvx() { (cd "$BENCH_HOME" && as_user "$DEVBOX" "$@"); }

# ---- results table --------------------------------------------------------------------------
ROWS=()
# row WHAT DEVBOX BASELINE UNIT RATIO_TARGET|"" ABS_TARGET|""
#   RATIO_TARGET / ABS_TARGET: "<=1.25", "<1.0", "<25"...; the verdict uses whichever is given.
row() { ROWS+=("$1|$2|$3|$4|$5|$6"); }

print_table() {
    printf '\n'
    printf '%-46s %12s %12s %7s %11s  %s\n' what devbox baseline ratio target result
    printf '%-46s %12s %12s %7s %11s  %s\n' "$(printf '%.0s-' {1..46})" ------------ \
        ------------ ------- ----------- ------
    local r what dv bl unit rt at
    for r in "${ROWS[@]}"; do
        IFS='|' read -r what dv bl unit rt at <<<"$r"
        awk -v what="$what" -v dv="$dv" -v bl="$bl" -v unit="$unit" -v rt="$rt" -v at="$at" '
            function ok(v, t,   op, lim) {
                op = t; sub(/[0-9.].*/, "", op); lim = substr(t, length(op) + 1) + 0
                return op == "<=" ? v <= lim : v < lim
            }
            BEGIN {
                ratio = (bl != "" && bl + 0 > 0) ? dv / bl : ""
                if (rt != "") { pass = ok(ratio, rt); target = "ratio" rt }
                else { pass = ok(dv, at); target = at " " unit }
                printf "%-46s %12s %12s %7s %11s  %s\n", what,
                    sprintf("%.2f %s", dv, unit),
                    bl == "" ? "-" : sprintf("%.2f %s", bl, unit),
                    ratio == "" ? "-" : sprintf("%.2f", ratio),
                    target, pass ? "PASS" : "MISS"
            }'
    done
}

# ---- the box used by the run benchmarks --------------------------------------------------------
log "creating box '$BOX' from the busybox fixture"
dvx create "$BUSYBOX_TAR" --name "$BOX" >/dev/null
dvx run "$BOX" -- /bin/true

# devbox's runtime state lives in its store (the holder's record, the mount point of its
# namespace tmpfs), whatever XDG_RUNTIME_DIR says.
STATE="$BENCH_HOME/.local/share/devbox/run"
read -r HOLDER _ <"$STATE/holder.pid"
NS="/proc/$HOLDER/root$STATE/ns/$BOX"
NSENTER=(nsenter "--user=/proc/$HOLDER/ns/user" "--uts=$NS/uts" "--mount=$NS/mnt"
    --preserve-credentials -- /bin/true)

# nsenter must land exactly where `devbox run` does: same user/uts/mnt namespaces, same ids.
# shellcheck disable=SC2016 # expanded by the box's shell
probe='printf "%s %s:%s %s " "$(hostname)" "$(id -u)" "$(id -g)" "$(id -G)";
       for n in user uts mnt; do readlink /proc/self/ns/$n; done | tr "\n" " "'
via_devbox=$(dvx run "$BOX" -- /bin/sh -c "$probe")
via_nsenter=$(cd "$BENCH_HOME" && as_user "${NSENTER[@]:0:5}" -- /bin/sh -c "$probe") ||
    die "nsenter cannot join box '$BOX' as $BENCH_USER"
[[ "$via_devbox" == "$via_nsenter" && "$via_devbox" == "$BOX $BENCH_UID:"* ]] ||
    die "nsenter does not join the same namespaces as devbox run:
  devbox run: $via_devbox
  nsenter:    $via_nsenter"
log "nsenter joins the same namespaces: $via_nsenter"

# ---- 1. warm run -----------------------------------------------------------------------------
log "1/6 warm run vs nsenter ($WARM_RUNS runs each, interleaved)"
out=$(harness pair "$WARM_RUNS" "$WARM_WARMUP" \
    @A "$DEVBOX" run "$BOX" -- /bin/true @B "${NSENTER[@]}")
read -r dv bl <<<"$out"
row "warm run BOX -- /bin/true  (vs nsenter)" "$dv" "$bl" ms "<=1.0" ""
WARM_ONE=$dv

# ---- 1b. warm run with 100 boxes running ------------------------------------------------------
log "1b/6 warm run with 100 boxes running ($WARM_RUNS runs each, interleaved)"
for ((i = 1; i < 100; i++)); do
    dvx create "$BUSYBOX_TAR" --name "many-$i" >/dev/null 2>&1
    dvx run "many-$i" -- /bin/true
done
out=$(harness pair "$WARM_RUNS" "$WARM_WARMUP" \
    @A "$DEVBOX" run "$BOX" -- /bin/true @B "${NSENTER[@]}")
read -r dv bl <<<"$out"
row "warm run, 100 boxes running (vs 1 box above)" "$dv" "$WARM_ONE" ms "<=1.10" ""
row "  the same run's nsenter baseline" "$dv" "$bl" ms "<=1.0" ""
for ((i = 1; i < 100; i++)); do
    dvx rm --force "many-$i" >/dev/null 2>&1
done

# ---- 2. cold start ---------------------------------------------------------------------------
# `stop --all` must really end the holder, or the "cold" runs would be warm.
dvx stop --all >/dev/null
holder_state=$(sed 's/.*) //' "/proc/$HOLDER/stat" 2>/dev/null | cut -d' ' -f1 || true)
if [[ -e "$STATE/holder.pid" || ${holder_state:-X} != [ZX] ]]; then
    die "devbox stop --all left the holder (pid $HOLDER) running"
fi
# 99 boxes were just removed, and starting a box makes directories: settle first (see settle).
settle
log "2/6 cold start ($COLD_RUNS runs, each after stop --all)"
out=$(harness pair "$COLD_RUNS" "$COLD_WARMUP" \
    @BEFORE "$DEVBOX" stop --all \
    @A "$DEVBOX" run "$BOX" -- /bin/true \
    @B unshare --user --map-root-user --mount /bin/true)
read -r dv bl <<<"$out"
row "cold start: holder+box+run  (vs unshare -Urm)" "$dv" "$bl" ms "" "<10"

# ---- 3. second box from an image in the store -------------------------------------------------
log "3/6 create with the image already in the store ($CREATE_RUNS runs per image)"
dvx create "$DEBIAN_TAR" --name deb0 >/dev/null 2>&1
for img in busybox debian; do
    if [[ $img == busybox ]]; then tarball=$BUSYBOX_TAR; else tarball=$DEBIAN_TAR; fi
    size=$(stat -c %s "$tarball" | awk '{ printf "%.1f", $1 / 1048576 }')
    dv=$(harness create "$CREATE_RUNS" "$DEVBOX" "$tarball" "$img-")
    row "create 2nd box: $img (${size} MiB archive)" "$dv" "" ms "" "<100"
    kib=$(for ((i = 0; i < CREATE_RUNS; i++)); do
        as_user du -sk "$BENCH_HOME/.local/share/devbox/boxes-v1/$img-$i" | cut -f1
    done | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
    row "  disk used by the new box: $img" "$kib" "" KiB "" "<1024"
done

# ---- 4. unpack ------------------------------------------------------------------------------
log "4/6 unpack the Debian fixture (.tar.gz, .tar.xz, .tar.zst): devbox create vs tar in the namespace ($UNPACK_RUNS runs each)"
# Device nodes cannot be made in a user namespace: devbox skips them, so tar leaves them out too.
DEV_LIST="$WORK/devices.exclude"
tar -tvzf "$DEBIAN_TAR" | awk '$1 ~ /^[bc]/ { print $6 }' >"$DEV_LIST"
# The same tar stream recompressed once, before any timing (multi-threaded, as -T0 writes it).
DEBIAN_XZ="$WORK/debian.tar.xz"
DEBIAN_ZST="$WORK/debian.tar.zst"
gzip -dc "$DEBIAN_TAR" | xz -T0 -q -c >"$DEBIAN_XZ"
gzip -dc "$DEBIAN_TAR" | zstd -T0 -q -c >"$DEBIAN_ZST"
chmod 0644 "$DEV_LIST" "$DEBIAN_XZ" "$DEBIAN_ZST"
[[ $EUID -ne 0 ]] || chown "$BENCH_UID:$BENCH_GID" "$DEV_LIST" "$DEBIAN_XZ" "$DEBIAN_ZST"
SIZES=()
for fmt in gz xz zst; do
    case $fmt in
    gz) archive=$DEBIAN_TAR zflag=-z xflags=-xz ;;
    xz) archive=$DEBIAN_XZ zflag=-J xflags=-xJ ;;
    zst) archive=$DEBIAN_ZST zflag=--zstd xflags="-x --zstd" ;;
    esac
    SIZES+=("$fmt $(stat -c %s "$archive" | awk '{ printf "%.1f", $1 / 1048576 }') MiB")
    settle
    out=$(harness unpack "$UNPACK_RUNS" "$DEVBOX" "$archive" "$WORK" "$DEV_LIST" "$zflag")
    read -r dv bl <<<"$out"
    row "unpack+hash debian .tar.$fmt (vs tar $xflags)" "$dv" "$bl" ms "<=0.75" ""
done

# ---- 5. pull from a loopback registry ---------------------------------------------------------
log "5/6 pull the Debian fixture from a loopback registry: devbox image pull vs skopeo copy + tar ($PULL_RUNS runs each)"
out=$(cd "$WORK" && as_user bash "$BIN_DIR/registry.sh" start "$WORK/registry" 0 $$) ||
    die "cannot start the loopback registry (tests/fixtures/registry.sh)"
read -r REG_PORT REG_PID <<<"$out"
REF="127.0.0.1:$REG_PORT/bench/debian:bookworm"
# A one-layer OCI image: the layer is the fixture's .tar.gz as it is. Prints the layer's hex
# digest, which is also its file name in skopeo's dir: copy.
OCI_DIR="$WORK/oci"
layer_hex=$(cd "$WORK" && as_user "$PY" - "$DEBIAN_TAR" "$OCI_DIR" bookworm <<'PY'
import gzip, hashlib, json, os, platform, sys

src, out, tag = sys.argv[1:]
blobs = os.path.join(out, "blobs", "sha256")
os.makedirs(blobs)

def chunks(f):
    return iter(lambda: f.read(1 << 20), b"")

def put(media_type, data):
    hexd = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, hexd), "wb") as f:
        f.write(data)
    return {"mediaType": media_type, "digest": "sha256:" + hexd, "size": len(data)}

def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()

blob, diff = hashlib.sha256(), hashlib.sha256()
tmp = os.path.join(blobs, "layer.tmp")
with open(src, "rb") as f, open(tmp, "wb") as o:
    for c in chunks(f):
        blob.update(c)
        o.write(c)
with gzip.open(src) as f:
    for c in chunks(f):
        diff.update(c)
os.rename(tmp, os.path.join(blobs, blob.hexdigest()))
layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
         "digest": "sha256:" + blob.hexdigest(), "size": os.path.getsize(src)}
machine = platform.machine()
arch = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64le", "s390x": "s390x",
        "riscv64": "riscv64", "i686": "386"}.get(machine, machine)
config = put("application/vnd.oci.image.config.v1+json", canonical({
    "architecture": arch, "os": "linux", "created": "1970-01-01T00:00:00Z",
    "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
               "Cmd": ["/bin/bash"]},
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff.hexdigest()]},
}))
manifest = put("application/vnd.oci.image.manifest.v1+json", canonical({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": config, "layers": [layer],
}))
manifest["annotations"] = {"org.opencontainers.image.ref.name": tag}
with open(os.path.join(out, "index.json"), "wb") as f:
    f.write(canonical({"schemaVersion": 2,
                       "mediaType": "application/vnd.oci.image.index.v1+json",
                       "manifests": [manifest]}))
with open(os.path.join(out, "oci-layout"), "w") as f:
    f.write('{"imageLayoutVersion":"1.0.0"}')
print(blob.hexdigest())
PY
) || die "cannot build the OCI layout of the Debian fixture"
(cd "$WORK" && as_user skopeo copy --dest-tls-verify=false "oci:$OCI_DIR:bookworm" "docker://$REF" >/dev/null) ||
    die "skopeo cannot push the Debian image to $REF"
settle
out=$(harness pull "$PULL_RUNS" "$DEVBOX" "$REF" "$layer_hex" "$WORK" "$DEV_LIST")
read -r dv bl <<<"$out"
row "pull debian, loopback registry (vs skopeo+tar)" "$dv" "$bl" ms "<=0.75" ""

# ---- 6. push to a loopback registry ------------------------------------------------------------
# The image pulled in 5 (its blobs in devbox's cache, so devbox pushes the very blobs skopeo
# pushes from the layout) to a second registry, each run to a repository of its own (a registry
# links blobs per repository: every run uploads the whole layer), devbox and skopeo interleaved.
log "6/7 push the Debian image to a loopback registry: devbox image push vs skopeo copy ($PUSH_RUNS runs each)"
out=$(cd "$WORK" && as_user bash "$BIN_DIR/registry.sh" start "$WORK/registry2" 0 $$) ||
    die "cannot start the second loopback registry (tests/fixtures/registry.sh)"
read -r REG2_PORT REG2_PID <<<"$out"
dvx -q image pull "$REF" || die "devbox cannot pull $REF"
now_ms() { echo $(($(date +%s%N) / 1000000)); }
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
dv_times=() sk_times=()
for ((i = 1; i <= PUSH_RUNS; i++)); do
    t0=$(now_ms)
    dvx -q image push "$REF" "127.0.0.1:$REG2_PORT/bench/devbox-$i:bookworm" ||
        die "devbox image push failed"
    # skopeo remembers where it pushed a blob (its blob-info cache) and would mount it from
    # the previous run's repository instead of uploading it: each run starts without it.
    as_user rm -rf "$BENCH_HOME/.local/share/containers/cache" "$BENCH_HOME/.cache/containers"
    t1=$(now_ms)
    (cd "$WORK" && as_user skopeo copy -q --dest-tls-verify=false "oci:$OCI_DIR:bookworm" \
        "docker://127.0.0.1:$REG2_PORT/bench/skopeo-$i:bookworm" >/dev/null) ||
        die "skopeo copy failed"
    t2=$(now_ms)
    dv_times+=($((t1 - t0)))
    sk_times+=($((t2 - t1)))
done
dv=$(printf '%s\n' "${dv_times[@]}" | median)
bl=$(printf '%s\n' "${sk_times[@]}" | median)
row "push debian, loopback registry (vs skopeo copy)" "$dv" "$bl" ms "<=1.0" ""
as_user bash "$BIN_DIR/registry.sh" stop "$REG2_PID" >/dev/null 2>&1 || true

# ---- 7. debian:13 from the package archive ---------------------------------------------------
# devbox create debian:13 built from Debian's archive through the host's apt configuration (a
# catalog with only the archive source, so no registry is tried first) vs mmdebstrap
# --variant=minbase --mode=unshare of the same suite into a tarball. Both start cold: a fresh
# HOME for devbox (no package cache, no image), a fresh output for mmdebstrap (which caches
# nothing). Needs the network to the mirror; ARCHIVE_RUNS=0 leaves the line out.
if ((ARCHIVE_RUNS > 0)); then
    command -v mmdebstrap >/dev/null 2>&1 || die "mmdebstrap is not installed (run: sudo bash tests/setup.sh)"
    log "7/7 debian:13 from the package archive: devbox create vs mmdebstrap --variant=minbase --mode=unshare ($ARCHIVE_RUNS runs each)"
    CAT6="$WORK/archive-catalog"
    mkdir -p "$CAT6"
    cat >"$CAT6/debian.toml" <<'EOF'
id = "debian"
name = "Debian (archive only)"
family = "apt"
default_release = "13"
[[release]]
name = "13"
aliases = ["trixie"]
vars = { codename = "trixie" }
[arch.archive]
amd64 = "amd64"
arm64 = "arm64"
[[source]]
kind = "archive"
suite = "{codename}"
EOF
    chmod -R a+rX "$CAT6"
    now() { date +%s.%N; }
    DV6=() BL6=()
    # devbox and mmdebstrap alternate which goes first; mmdebstrap deletes its build tree
    # when it is done, so every timed run starts after a settle.
    archive_devbox() {
        local home6="$WORK/archive-home-$1" t0 t1
        mkdir -p "$home6"
        [[ $EUID -ne 0 ]] || chown "$BENCH_UID:$BENCH_GID" "$home6"
        settle
        t0=$(now)
        (cd "$home6" && as_user env "HOME=$home6" "DEVBOX_CATALOG_DIR=$CAT6" "$DEVBOX" -q create debian:13 --name deb) ||
            die "devbox create debian:13 from the archive failed"
        t1=$(now)
        DV6+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
    }
    archive_mmdebstrap() {
        local out6="$WORK/mmdebstrap-$1" t2 t3
        mkdir -p "$out6"
        [[ $EUID -ne 0 ]] || chown "$BENCH_UID:$BENCH_GID" "$out6"
        settle
        t2=$(now)
        (cd "$out6" && as_user env "HOME=$out6" mmdebstrap --quiet --variant=minbase --mode=unshare trixie "$out6/root.tar") ||
            die "mmdebstrap --variant=minbase --mode=unshare trixie failed"
        t3=$(now)
        BL6+=("$(awk -v a="$t2" -v b="$t3" 'BEGIN { print b - a }')")
    }
    for ((i = 0; i < ARCHIVE_RUNS; i++)); do
        if ((i % 2 == 0)); then
            archive_devbox "$i"
            archive_mmdebstrap "$i"
        else
            archive_mmdebstrap "$i"
            archive_devbox "$i"
        fi
    done
    for ((i = 0; i < ARCHIVE_RUNS; i++)); do
        home6="$WORK/archive-home-$i"
        (cd "$home6" && as_user env "HOME=$home6" "$DEVBOX" unshare -- rm -rf "$home6/.local/share/devbox" "$home6/.cache/devbox") >/dev/null 2>&1 || true
        rm -rf "$WORK/mmdebstrap-$i"
    done
    median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
    row "create debian:13 from the archive (vs mmdebstrap)" "$(median "${DV6[@]}")" "$(median "${BL6[@]}")" s "<=1.0" ""
fi

# ---- report ----------------------------------------------------------------------------------
rev=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)
printf '\ndevbox benchmark  (devbox %s, as %s)\n' "$rev" "$BENCH_USER"
printf 'machine: nproc %s, kernel %s, %s\n' "$(nproc)" "$(uname -r)" "$(uname -m)"
print_table
cat <<EOF

medians; runs: warm $WARM_RUNS, cold $COLD_RUNS, create $CREATE_RUNS, unpack $UNPACK_RUNS, pull $PULL_RUNS, push $PUSH_RUNS (devbox and baseline interleaved)
baselines: warm = nsenter --user --uts --mount (the namespaces devbox joins for a default box);
           cold = unshare --user --map-root-user --mount /bin/true (context only);
           unpack = GNU tar -x with gzip/xz/zstd run as root of devbox's user namespace (devbox
             also hashes); archives: ${SIZES[0]}, ${SIZES[1]}, ${SIZES[2]} (xz and zst made with -T0);
           pull = skopeo copy docker://... dir:DIR, then tar -xzf of the layer blob as in unpack
             (the two times added); one-layer OCI image of the Debian fixture, fresh HOME each run;
           push = skopeo copy oci:LAYOUT docker://... of that image's layout, to a second
             loopback registry, a fresh repository each run (devbox pushes the same blobs).
           archive = mmdebstrap --variant=minbase --mode=unshare trixie to a tarball, from the
             host's apt mirror, against devbox create debian:13 from the same archive with no
             package cache ($ARCHIVE_RUNS runs each).
EOF
