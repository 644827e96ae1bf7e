#!/usr/bin/env bash
# Builds the Debian package and checks what is in it (README "Install").
#
#   scripts/deb.sh             build target/debian/writer-sync_<version>-1_<arch>.deb and check it
#   scripts/deb.sh --install   also install it here with apt (root, on a machine you can spare),
#                              check the user, modes, units and completions, then purge it
#
# The binary is built in release mode without the `demo` feature; the shell
# completions and man pages come from that binary (`generate-assets`), so
# they describe exactly the CLI that is packaged. Prints one line per check
# and exits non-zero at the first one that fails.
set -euo pipefail
cd "$(dirname "$0")/.."

install=no
case "${1:-}" in
  --install) install=yes ;;
  "") ;;
  *) echo "usage: scripts/deb.sh [--install]" >&2; exit 2 ;;
esac

fail() { echo "deb.sh: FAIL: $*" >&2; exit 1; }
ok() { echo "deb.sh: ok: $*"; }

command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
cargo build --release --locked --no-default-features
rm -rf target/assets
target/release/writer-sync generate-assets target/assets >/dev/null
rm -f target/debian/writer-sync_*.deb
cargo deb --no-build --locked >/dev/null
deb=$(ls target/debian/writer-sync_*.deb)
ok "built $deb"

contents=$(dpkg-deb --contents "$deb")
has() { # MODE PATH: a file in the package, root-owned, with that mode
  grep -qE "^$1 (root/root|0/0) +[0-9]+ [0-9-]+ [0-9:]+ \./$2\$" <<<"$contents" \
    || fail "$deb has no $1 root-owned ./$2"
}
has -rwxr-xr-x usr/bin/writer-sync
has -rw-r----- etc/writer-sync/config.toml
units=$(grep -oE '\./usr/lib/systemd/system/[^ ]+$' <<<"$contents" | sort | tr '\n' ' ')
[ "$units" = "./usr/lib/systemd/system/writer-sync-once.service ./usr/lib/systemd/system/writer-sync.service ./usr/lib/systemd/system/writer-sync.timer " ] \
  || fail "units in the package: $units"
for unit in writer-sync.service writer-sync-once.service writer-sync.timer; do
  has -rw-r--r-- "usr/lib/systemd/system/$unit"
  dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/lib/systemd/system/$unit" | cmp -s - "systemd/$unit" \
    || fail "usr/lib/systemd/system/$unit differs from systemd/$unit"
done
has -rw-r--r-- usr/lib/sysusers.d/writer-sync.conf
for doc in README.md config.example.toml prometheus/alerts.yml grafana/writer-sync.json; do
  has -rw-r--r-- "usr/share/doc/writer-sync/$doc"
done
has -rw-r--r-- usr/share/bash-completion/completions/writer-sync
has -rw-r--r-- usr/share/zsh/vendor-completions/_writer-sync
has -rw-r--r-- usr/share/fish/vendor_completions.d/writer-sync.fish
for page in target/assets/man/*.1; do
  has -rw-r--r-- "usr/share/man/man1/$(basename "$page").gz"
done
ok "contents: binary, conffile 0640, units as in systemd/, sysusers, docs, completions, $(ls target/assets/man | wc -l) man pages"

dpkg-deb --field "$deb" Package Version Architecture Depends Section
dpkg-deb --field "$deb" Depends | grep -q 'systemd | systemd-standalone-sysusers' \
  || fail "Depends lacks systemd-sysusers"
dpkg-deb --field "$deb" Depends | grep -q 'libc6' || fail "Depends lacks libc6"
control=$(mktemp -d)
trap 'rm -rf "$control"' EXIT
dpkg-deb --control "$deb" "$control"
grep -qx '/etc/writer-sync/config.toml' "$control/conffiles" || fail "config.toml is not a conffile"
for script in postinst prerm postrm; do
  [ -x "$control/$script" ] || fail "no $script"
  sh -n "$control/$script" || fail "$script: syntax"
  ! grep -q '#DEBHELPER#' "$control/$script" || fail "$script: #DEBHELPER# left in"
done
grep -q 'systemd-sysusers' "$control/postinst" || fail "postinst does not create the user"
grep -q 'deb-systemd-helper unmask' "$control/postinst" || fail "postinst does not unmask the units"
# Nothing is started, and nothing enabled on a first install (enable only
# re-creates links of a unit the admin had enabled, on upgrade).
! grep -q 'deb-systemd-invoke start' "$control/postinst" || fail "postinst starts a unit"
! grep -q 'was-enabled defaults to true' "$control/postinst" || fail "postinst enables a unit"
for unit in writer-sync.service writer-sync.timer writer-sync-once.service; do
  grep -q "deb-systemd-invoke stop.*$unit" "$control/prerm" || fail "prerm does not stop $unit"
  grep -q "deb-systemd-helper purge.*$unit" "$control/postrm" || fail "postrm does not purge $unit"
done
ok "control: conffile, Depends, maintainer scripts (user, unmask, no start, no enable, stop, purge)"

[ "$install" = yes ] || exit 0

[ "$(id -u)" = 0 ] || fail "--install needs root"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "./$deb" >/dev/null
id writer-sync >/dev/null || fail "no writer-sync user"
[ "$(stat -c '%U:%G %a' /etc/writer-sync/config.toml)" = "root:writer-sync 640" ] \
  || fail "config.toml is $(stat -c '%U:%G %a' /etc/writer-sync/config.toml)"
[ "$(stat -c '%U %a' /etc/credstore)" = "root 700" ] || fail "/etc/credstore is $(stat -c '%U %a' /etc/credstore)"
setpriv --reuid=writer-sync --regid=writer-sync --clear-groups cat /etc/writer-sync/config.toml >/dev/null \
  || fail "the service user cannot read the config"
! setpriv --reuid=nobody --regid=nogroup --clear-groups cat /etc/writer-sync/config.toml >/dev/null 2>&1 \
  || fail "any user can read the config"
systemd-analyze verify /usr/lib/systemd/system/writer-sync.service /usr/lib/systemd/system/writer-sync-once.service \
  /usr/lib/systemd/system/writer-sync.timer || fail "systemd-analyze verify"
man -w writer-sync >/dev/null || fail "man writer-sync"
/usr/bin/writer-sync --version
[ ! -e /etc/systemd/system/multi-user.target.wants/writer-sync.service ] || fail "the daemon got enabled"
[ ! -e /etc/systemd/system/timers.target.wants/writer-sync.timer ] || fail "the timer got enabled"
ok "installed: user, config root:writer-sync 0640, credstore 0700, units verified, man page, nothing enabled"
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq writer-sync >/dev/null
[ ! -e /etc/writer-sync ] || fail "/etc/writer-sync left after purge"
[ ! -e /usr/lib/systemd/system/writer-sync.service ] || fail "unit left after purge"
[ ! -e /usr/bin/writer-sync ] || fail "binary left after purge"
ok "purged: config, units and binary gone (the user and /var/lib/writer-sync stay)"
