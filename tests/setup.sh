#!/usr/bin/env bash
# Prepare a Debian host to run the devbox test suite. Run as root; idempotent.
#
#   - installs the packages the tests use (apt-get update only if needed)
#   - creates the test users:
#       devbox-test, devbox-test2  with /etc/subuid and /etc/subgid ranges of
#                                  at least 65536 ids
#       devbox-nosub               deliberately WITHOUT subuid/subgid entries
#   - makes /dev/fuse usable by unprivileged users (fuse-overlayfs fallback)
#   - names 127.0.0.1 devbox-registry-alias in /etc/hosts (a non-loopback name for tests)
#   - warms the fixture cache (tests/fixtures/*-rootfs.sh, tests/fixtures/apt-repo.sh)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'setup.sh: error: %s\n' "$*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "must run as root: sudo tests/setup.sh"
command -v apt-get >/dev/null 2>&1 || die "this script supports Debian/Ubuntu hosts (apt-get) only"

PACKAGES=(
    uidmap debootstrap busybox-static fuse-overlayfs util-linux
    tar gzip xz-utils zstd python3 procps iproute2
    bash zsh fish hyperfine
    bash-completion # devbox completions --install bash, tested with the loader (tests/it/completions.rs)
    tmux         # the final screen after progress bars (tests/it/polish.rs)
    docker-registry skopeo umoci
    podman       # a third-party client of pushed and saved images (tests/it/share.rs)
    dpkg-dev     # dpkg-scanpackages for the apt repository fixture (tests/it/apply.rs)
    ncurses-term # terminfo entries the Debian fixture lacks (tests/it/inbox.rs)
    gnupg        # signs the loopback package archive (tests/it/debarchive.rs)
    mmdebstrap   # the baseline of bench/run.sh's package-archive line
    binutils gcc # readelf, and libgcc_eh.a for build.rs (tests/it/runtime.rs: the libraries devbox loads)
)
SUB_COUNT=65536

# ---- packages ---------------------------------------------------------------
installed() {
    dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -q '^install ok installed$'
}
missing=()
for p in "${PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done
if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update </dev/null >&2
    apt-get install -y --no-install-recommends "${missing[@]}" </dev/null >&2
else
    log "packages: all ${#PACKAGES[@]} present"
fi

# ---- users and subordinate id ranges -----------------------------------------
touch /etc/subuid /etc/subgid
chmod 0644 /etc/subuid /etc/subgid

# Largest count of any /etc/sub{u,g}id entry for user $2 (name or uid) in $1.
sub_count() {
    local file=$1 user=$2 uid
    uid=$(id -u "$user")
    awk -F: -v n="$user" -v u="$uid" '
        ($1 == n || $1 == u) && $3 + 0 > max { max = $3 + 0 }
        END { print max + 0 }' "$file"
}
# First id after every range in both files (never below 100000), so the new
# range is free as a subuid and as a subgid range.
next_free_start() {
    awk -F: 'NF >= 3 && $2 + $3 > max { max = $2 + $3 } END { print (max > 100000 ? max : 100000) }' \
        /etc/subuid /etc/subgid
}

ensure_user() { # name [useradd options...]
    local name=$1
    shift
    if id -u "$name" >/dev/null 2>&1; then
        log "user $name exists"
    else
        log "creating user $name"
        useradd -m -s /bin/bash "$@" "$name"
    fi
}

ensure_subids() { # name
    local name=$1 start end
    if (($(sub_count /etc/subuid "$name") < SUB_COUNT)); then
        start=$(next_free_start)
        end=$((start + SUB_COUNT - 1))
        log "adding subuids $start-$end for $name"
        usermod --add-subuids "$start-$end" "$name"
    fi
    if (($(sub_count /etc/subgid "$name") < SUB_COUNT)); then
        start=$(next_free_start)
        end=$((start + SUB_COUNT - 1))
        log "adding subgids $start-$end for $name"
        usermod --add-subgids "$start-$end" "$name"
    fi
}

remove_subids() { # name
    local name=$1 uid f
    uid=$(id -u "$name")
    for f in /etc/subuid /etc/subgid; do
        if awk -F: -v n="$name" -v u="$uid" '$1 == n || $1 == u { found = 1 } END { exit !found }' "$f"; then
            log "removing $name's entries from $f"
            awk -F: -v n="$name" -v u="$uid" '!($1 == n || $1 == u)' "$f" >"$f.devbox-tmp"
            chmod 0644 "$f.devbox-tmp"
            mv -f "$f.devbox-tmp" "$f"
        fi
    done
}

for u in devbox-test devbox-test2; do
    ensure_user "$u"
    ensure_subids "$u"
done
# Ask useradd not to allocate subordinate ids, and remove any that exist.
ensure_user devbox-nosub -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0
remove_subids devbox-nosub

# ---- /dev/fuse --------------------------------------------------------------
fuse_note="absent"
if [[ -c /dev/fuse ]]; then
    mode=$(stat -c '%a' /dev/fuse)
    if (((8#$mode & 8#006) != 8#006)); then
        chmod 0666 /dev/fuse
        log "chmod 0666 /dev/fuse (was $mode) so fuse-overlayfs works for unprivileged users"
        fuse_note="chmod 0666 (was $mode)"
    else
        fuse_note="already world read-writable ($mode)"
    fi
fi

# ---- a name of 127.0.0.1 that is not "localhost" ------------------------------
# The insecure-registry test names the loopback registry by a name devbox does not take for
# a loopback one. The host name usually is such a name; when it does not resolve to 127.0.0.1,
# this one is.
if ! grep -qE '^127\.0\.0\.1[[:space:]].*\bdevbox-registry-alias\b' /etc/hosts; then
    printf '127.0.0.1 devbox-registry-alias\n' >>/etc/hosts
    log "added devbox-registry-alias (127.0.0.1) to /etc/hosts"
fi

# ---- fixtures ---------------------------------------------------------------
log "busybox rootfs fixture"
busybox_tar=$(bash "$HERE/fixtures/busybox-rootfs.sh" | tail -n1)
log "debian rootfs fixture (first run takes a few minutes)"
debian_tar=$(bash "$HERE/fixtures/debian-rootfs.sh" | tail -n1)
log "apt repository fixture (a built package and the host's sudo)"
apt_repo=$(bash "$HERE/fixtures/apt-repo.sh" | tail -n1)

# ---- summary ----------------------------------------------------------------
subs() { # name
    local u g
    u=$(awk -F: -v n="$1" '$1 == n { printf "%s%s:%s", sep, $2, $3; sep = "," }' /etc/subuid)
    g=$(awk -F: -v n="$1" '$1 == n { printf "%s%s:%s", sep, $2, $3; sep = "," }' /etc/subgid)
    printf 'subuid %s, subgid %s' "${u:-none}" "${g:-none}"
}
cat <<EOF

devbox test host ready
  packages      ${#PACKAGES[@]} required, ${#missing[@]} installed now
  devbox-test   $(subs devbox-test)
  devbox-test2  $(subs devbox-test2)
  devbox-nosub  $(subs devbox-nosub)
  /dev/fuse     $fuse_note
  busybox tar   $busybox_tar ($(du -h "$busybox_tar" | cut -f1))
  debian tar    $debian_tar ($(du -h "$debian_tar" | cut -f1))
  apt repo      $apt_repo ($(ls "$apt_repo"/*.deb | wc -l) packages)
EOF
