#!/usr/bin/env bash
# Builds the standard ftx86 Linux test guest from Debian's i386 packages:
#   out/bzImage          the kernel of the current linux-image-686 (non-PAE) package
#   out/initrd.cpio.gz   busybox-static, /init, /bench.sh and a few driver modules
#   out/versions.env     KERNEL_RELEASE, KERNEL_PACKAGE, BUSYBOX_VERSION, ...
# Downloads go to cache/ and are reused; a second run downloads nothing.
# Needs root (or sudo) only for what is missing: the i386 architecture, the
# i386 package lists, and the host tools kmod (depmod) and cpio.
set -euo pipefail
shopt -s inherit_errexit  # functions run inside $(...) below stop at their first error too

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=$here/cache
out=$here/out

# Driver modules for the devices the guest may be given (QEMU's and ftx86's):
# virtio-pci with virtio-blk/virtio-net, or PIIX IDE (+ sd_mod for /dev/sda)
# and an NE2000 PCI NIC. Their dependencies are added from modules.dep.
modules=(virtio_pci virtio_blk virtio_net ata_piix sd_mod ne2k_pci)

# console=ttyS0: the guest's only console is the first 16550 UART.
# cryptomgr.notests: skip the crypto self-tests (many millions of instructions).
# noisapnp: no ISA PnP probing of ports nobody emulates.
# nokaslr: the same kernel addresses on every boot, for reproducible runs.
# panic=-1: reboot at once on a panic; with -no-reboot the emulator then exits.
kernel_cmdline='console=ttyS0 cryptomgr.notests noisapnp nokaslr panic=-1'

log() { printf '==> %s\n' "$*"; }
die() { printf 'build.sh: error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [[ $(id -u) == 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    die "needs root for: $*"
  fi
}

# --- host setup: i386 architecture, package lists, tools ----------------------

if ! dpkg --print-foreign-architectures | grep -qx i386; then
  log "adding the i386 architecture to dpkg"
  as_root dpkg --add-architecture i386
fi

# The candidate records of both packages, empty while the i386 lists are absent.
# (One apt-cache call: each costs a second when apt keeps no pkgcache.bin.)
query_candidates() {
  apt-cache show --no-all-versions linux-image-686:i386 busybox-static:i386 2>/dev/null || true
}
records=$(query_candidates)
if ! grep -q '^Package: linux-image-686$' <<<"$records"; then
  log "i386 package lists absent: apt-get update"
  # A partial failure (say, one mirror mid-sync) is tolerated as long as the
  # lists we need arrived; the check below says so clearly if they did not.
  as_root apt-get update || log "apt-get update reported errors; checking what arrived"
  records=$(query_candidates)
  grep -q '^Package: linux-image-686$' <<<"$records" ||
    die "no linux-image-686:i386 in the package lists after apt-get update"
fi

missing=()
command -v depmod >/dev/null || missing+=(kmod)
command -v cpio >/dev/null || missing+=(cpio)
if ((${#missing[@]})); then
  log "installing host tools: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# --- resolve and fetch the packages --------------------------------------------

# Prints field $2 of package $1 from the candidate records.
field() {
  awk -v pkg="$1" -v key="$2:" '$1 == "Package:" { p = $2 } p == pkg && $1 == key {
    sub(/^[^:]*: /, ""); print; exit }' <<<"$records"
}

# The metapackage depends on exactly one image at an exact version, e.g.
# "linux-image-6.1.0-50-686 (= 6.1.176-1)"; -686-pae is another metapackage.
kernel_dep=$(field linux-image-686 Depends | tr ',' '\n' | grep -E '^ *linux-image-[0-9][^ ]*-686 ' | head -n1 || true)
kernel_pkg=$(sed -E 's/^ *([^ ]+).*/\1/' <<<"$kernel_dep")
kernel_ver=$(sed -nE 's/.*\(= ([^)]+)\).*/\1/p' <<<"$kernel_dep")
busybox_ver=$(field busybox-static Version)
[[ -n $kernel_pkg && -n $kernel_ver ]] ||
  die "cannot find an exact kernel image dependency in linux-image-686's Depends: '$(field linux-image-686 Depends)'"
[[ -n $busybox_ver ]] || die "no busybox-static:i386 in the package lists"

# Prints the path of the cached .deb of package $1 at version $2, downloading it first if needed.
fetch_deb() {
  local pkg=$1 ver=$2 deb tmp
  deb=$cache/debs/${pkg}_${ver//:/%3a}_i386.deb
  if [[ ! -f $deb ]]; then
    log "downloading $pkg:i386 $ver" >&2
    mkdir -p "$cache/debs"
    tmp=$(mktemp -d "$cache/debs/.download.XXXXXX")
    # Sandbox=root: _apt cannot write into a root-owned cache directory.
    (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$pkg:i386=$ver" >&2) ||
      { rm -rf "$tmp"; die "apt-get download $pkg:i386=$ver failed"; }
    mv "$tmp"/*.deb "$deb"
    rmdir "$tmp"
  fi
  printf '%s\n' "$deb"
}

kernel_deb=$(fetch_deb "$kernel_pkg" "$kernel_ver")
busybox_deb=$(fetch_deb busybox-static "$busybox_ver")

# A new kernel ABI replaces the old one in the cache rather than piling up beside it.
for old in "$cache"/debs/*.deb; do
  [[ $old == "$kernel_deb" || $old == "$busybox_deb" ]] && continue
  log "pruning $(basename "$old") from the cache"
  rm -rf "$old" "$cache/root/$(basename "$old" .deb)"
done

# --- skip the rest when nothing changed ------------------------------------------

stamp=$( { cat "$here/build.sh" "$here/init" "$here/bench.sh"; basename "$kernel_deb"; basename "$busybox_deb"; } | sha256sum | cut -d' ' -f1)

summary() {
  log "built:"
  local f
  for f in "$out/bzImage" "$out/initrd.cpio.gz" "$out/versions.env"; do
    printf '    %-40s %9d bytes\n' "${f#"$here"/}" "$(stat -c %s "$f")"
  done
  sed 's/^/    /' "$out/versions.env"
}

if [[ -f $out/.stamp && $(cat "$out/.stamp") == "$stamp" &&
      -f $out/bzImage && -f $out/initrd.cpio.gz && -f $out/versions.env ]]; then
  log "up to date (cached)"
  summary
  exit 0
fi

# --- unpack (cached per package version) ----------------------------------------

# Unpacks a .deb once into cache/root/<name of the deb>/, running $2 inside it.
unpack() {
  local deb=$1 after=${2:-true} dir tmp
  dir=$cache/root/$(basename "$deb" .deb)
  if [[ ! -f $dir/.complete ]]; then
    log "unpacking $(basename "$deb")" >&2
    rm -rf "$dir"
    tmp=$dir.tmp
    rm -rf "$tmp" && mkdir -p "$tmp"
    dpkg-deb -x "$deb" "$tmp" || die "cannot unpack $deb (delete it to download it again)"
    (cd "$tmp" && "$after")
    touch "$tmp/.complete"
    mv "$tmp" "$dir"
  fi
  printf '%s\n' "$dir"
}

# Debian ships no modules.dep (the postinst runs depmod); generate it here.
run_depmod() {
  local release
  release=$(ls lib/modules)
  depmod -b . "$release"
}

kernel_root=$(unpack "$kernel_deb" run_depmod)
busybox_root=$(unpack "$busybox_deb")

releases=("$kernel_root"/lib/modules/*)
((${#releases[@]} == 1)) || die "expected one /lib/modules dir in $kernel_pkg, found ${#releases[@]}"
release=$(basename "${releases[0]}")
moddir=$kernel_root/lib/modules/$release
[[ -f $kernel_root/boot/vmlinuz-$release ]] || die "no boot/vmlinuz-$release in $kernel_pkg"
[[ -x $busybox_root/bin/busybox ]] || die "no bin/busybox in busybox-static"

# --- resolve the modules in load order -------------------------------------------

declare -A dep_of=() path_of=() loaded=()
while IFS=: read -r mod deps; do
  dep_of[$mod]=$deps
  name=${mod##*/}
  name=${name%%.ko*}
  path_of[${name//-/_}]=$mod     # module names treat - and _ alike
done <"$moddir/modules.dep"

load_order=()
visit() {
  local mod=$1 dep
  [[ -z ${loaded[$mod]:-} ]] || return 0
  loaded[$mod]=1
  for dep in ${dep_of[$mod]:-}; do visit "$dep"; done
  load_order+=("$mod")
}
for name in "${modules[@]}"; do
  mod=${path_of[${name//-/_}]:-}
  if [[ -z $mod ]]; then
    grep -qE "/${name//_/[-_]}\.ko" "$moddir/modules.builtin" &&
      { log "$name is built into the kernel"; continue; }
    die "module $name is neither in modules.dep nor in modules.builtin of $release"
  fi
  visit "$mod"
done

# --- stage the initramfs tree -------------------------------------------------------

stage=$cache/stage
rm -rf "$stage"
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,proc,sys,tmp,root,etc,"lib/modules/$release"}
chmod 1777 "$stage/tmp"
cp "$busybox_root/bin/busybox" "$stage/bin/busybox"
ln -s busybox "$stage/bin/sh"             # the rest of the applet links: busybox --install at boot
install -m 0755 "$here/init" "$stage/init"
install -m 0755 "$here/bench.sh" "$stage/bench.sh"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$stage/etc/passwd"
printf 'root:x:0:\n' >"$stage/etc/group"

# insmod of busybox 1.35 reads plain .ko only: decompress if the kernel compressed them.
for mod in "${load_order[@]}"; do
  dest=$stage/lib/modules/$release/${mod%.ko*}.ko
  mkdir -p "$(dirname "$dest")"
  case $mod in
    *.ko) cp "$moddir/$mod" "$dest" ;;
    *.ko.xz) xz -dc "$moddir/$mod" >"$dest" ;;
    *.ko.zst) zstd -q -dc "$moddir/$mod" >"$dest" ;;
    *.ko.gz) gzip -dc "$moddir/$mod" >"$dest" ;;
    *) die "unknown module format: $mod" ;;
  esac
  printf '%s\n' "${mod%.ko*}.ko" >>"$stage/lib/modules/$release/ftx86.load-order"
done
# A modules.dep for the subset, so modprobe works in the guest too.
cp "$moddir"/modules.{builtin,builtin.modinfo,order} "$stage/lib/modules/$release/"
depmod -b "$stage" "$release"

# --- write the outputs ---------------------------------------------------------------

# One newc entry without file data (a device node or directory), written by
# hand so that no mknod (and no root) is needed to put /dev/console in the
# archive: the kernel opens it for init's stdin/stdout/stderr before /init runs.
newc_entry() { # name mode(octal) rdev_major rdev_minor
  local name=$1 namesize=$((${#1} + 1))
  printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s\0' \
    0 "$((8#$2))" 0 0 1 0 0 0 0 "$3" "$4" "$namesize" 0 "$name"
  # header (110 bytes) + name is padded to a multiple of 4
  head -c $(((4 - (110 + namesize) % 4) % 4)) /dev/zero
}

mkdir -p "$out"
tmp_initrd=$out/initrd.cpio.gz.tmp
log "writing initrd.cpio.gz"
find "$stage" -exec touch -h -d @0 {} +     # reproducible: fixed mtimes, sorted names, owner 0
{
  newc_entry dev 040755 0 0
  newc_entry dev/console 020600 5 1
  (cd "$stage" && find . -mindepth 1 -printf '%P\0' | LC_ALL=C sort -z |
    cpio --null --create --format=newc --owner=0:0 --reproducible --quiet)
} | gzip -9 -n >"$tmp_initrd"
mv "$tmp_initrd" "$out/initrd.cpio.gz"
cp "$kernel_root/boot/vmlinuz-$release" "$out/bzImage"

short_order=()
for mod in "${load_order[@]}"; do
  name=${mod##*/}
  short_order+=("${name%%.ko*}")
done
cat >"$out/versions.env" <<EOF
KERNEL_RELEASE=$release
KERNEL_PACKAGE=$kernel_pkg
KERNEL_PACKAGE_VERSION=$kernel_ver
BUSYBOX_VERSION=$(sed -E 's/^[0-9]+://; s/-[^-]+$//' <<<"$busybox_ver")
BUSYBOX_PACKAGE_VERSION=$busybox_ver
MODULES="${short_order[*]}"
KERNEL_CMDLINE="$kernel_cmdline"
EOF
printf '%s\n' "$stamp" >"$out/.stamp"
summary
