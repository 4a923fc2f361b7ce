#!/usr/bin/env bash
# Build the dicombox appliance image: a GPT disk with an EFI system partition, an ext4 root
# and an ext4 data partition at /var/lib/dicombox. It boots on UEFI firmware (systemd-boot)
# and on legacy BIOS (SYSLINUX on the same partition), both starting the same kernel.
#
#   image/build.sh            (as root; `make image` runs it)
#
# Output in image/build/: dicombox.img (raw disk, write it to a disk as it is), dicombox.manifest
# (Debian packages and Python wheels in it, partition UUIDs, kernel command line) and SHA256SUMS.
#
# Nothing here needs a loop device or a mount of its own: debootstrap fills a folder, mke2fs -d
# and mtools make file systems from folders, sfdisk writes the partition table into a plain file
# and dd puts the file systems at their offsets. (debootstrap itself mounts /proc in the folder
# while packages configure.)
#
# Variables (environment):
#   MIRROR             Debian mirror; default: the host's first apt source for the suite
#   SOURCE_DATE_EPOCH  time stamp of every file; default: the last commit's time
#   PYTHON             a Python with pip on the host, to fetch wheels; default: .venv/bin/python
#   ROOT_PASSWORD      set a root password (console login); default: root cannot log in
#   ESP_MB ROOT_MB DATA_MB   partition sizes; the data partition grows to fill the disk at boot
#   KEEP_ROOTFS=1      keep the image's root folder (build/rootfs) after the build
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$PWD
HERE=$REPO/image
OUT=$HERE/build
ROOT=$OUT/rootfs
SUITE=bookworm # pinned: the image's Python (3.11) and systemd (252) are this suite's
ARCH=amd64
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
ESP_MB=${ESP_MB:-256}
ROOT_MB=${ROOT_MB:-2048}
DATA_MB=${DATA_MB:-1024}

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot and file ownership need it)"
for tool in debootstrap sfdisk mkfs.ext4 debugfs mkfs.fat mmd mcopy syslinux chroot; do
    command -v "$tool" >/dev/null || die "missing $tool (make image installs it)"
done
[ -x "$PYTHON" ] || die "no Python at $PYTHON (make image creates .venv)"
GPTMBR=/usr/lib/syslinux/mbr/gptmbr.bin # BIOS: boot code that starts the bootable partition
[ -f "$GPTMBR" ] || die "missing $GPTMBR (syslinux-common; make image installs it)"

# One time stamp for everything the build writes: packages' own files keep older times, and
# newer ones (postinst output, our files) are clamped to it.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git -C "$REPO" log -1 --format=%ct 2>/dev/null) ||
        die "no git history: set SOURCE_DATE_EPOCH"
fi
export SOURCE_DATE_EPOCH
# mke2fs and debugfs take their "now" from this, so superblocks and inode times are fixed
export E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH
export LC_ALL=C TZ=UTC

# The mirror: no host name is written here; the host's own apt sources say where Debian is.
if [ -z "${MIRROR:-}" ]; then
    MIRROR=$("$PYTHON" - "$SUITE" <<'EOF'
import glob
import sys

suite = sys.argv[1]
entries = []  # (uris, suites, components) of each deb source, in apt's reading order
for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        words = line.split("#", 1)[0].split()
        if len(words) >= 4 and words[0] == "deb":
            words = [w for w in words[1:] if not w.startswith("[")]  # drop [options]
            entries.append(([words[0]], [words[1]], words[2:]))
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in open(path).read().split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            if ":" in line and not line.startswith(("#", " ")):
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.split()
        if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"]) != ["no"]:
            entries.append((fields.get("uris", []), fields.get("suites", []),
                            fields.get("components", [])))
for uris, suites, components in entries:
    if suite in suites and "main" in components and uris:
        print(uris[0])
        break
EOF
)
    [ -n "$MIRROR" ] || die "no apt source for $SUITE main on this host: set MIRROR"
fi

# Partition and file system identities: fixed for a given SOURCE_DATE_EPOCH (so the build is
# repeatable) and different from one release to the next.
ident() { "$PYTHON" -c 'import sys, uuid; print(uuid.uuid5(uuid.NAMESPACE_URL, sys.argv[1]))' \
    "dicombox-image:$SOURCE_DATE_EPOCH:$1"; }
DISK_GUID=$(ident disk)
ESP_PARTUUID=$(ident esp-part)
ROOT_PARTUUID=$(ident root-part)
DATA_PARTUUID=$(ident data-part)
ROOT_FSUUID=$(ident root-fs)
DATA_FSUUID=$(ident data-fs)
# ro: systemd checks the root file system (fsck) before fstab remounts it read-write
CMDLINE="root=PARTUUID=$ROOT_PARTUUID ro console=tty0 console=ttyS0,115200n8"

# Commands inside the image run with a clean environment: nothing of the host's (pip's
# configuration, locale) leaks in but a proxy for apt, and Python's hash seed is fixed so
# the byte code it compiles is the same on every build.
in_root() {
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 TZ=UTC \
        DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true \
        SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" PYTHONHASHSEED=0 \
        ${http_proxy:+http_proxy="$http_proxy"} ${https_proxy:+https_proxy="$https_proxy"} \
        chroot "$ROOT" "$@"
}

started=$(date +%s)
log "suite $SUITE from $MIRROR, SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH"
# a build that stopped inside debootstrap can leave /proc or /sys mounted in the folder
findmnt -rn -o TARGET | { grep -F "$OUT/" || true; } | sort -r | while read -r target; do
    umount -l "$target"
done
rm -rf --one-file-system "$OUT"
mkdir -p "$OUT"

# --- 1. the base system -------------------------------------------------------------------
log "debootstrap (minbase)"
debootstrap --variant=minbase --arch="$ARCH" --components=main "$SUITE" "$ROOT" "$MIRROR" \
    >"$OUT/debootstrap.log" 2>&1 || { tail -n 30 "$OUT/debootstrap.log" >&2; die "debootstrap failed"; }

# Documentation, manual pages, translations and the kernel drivers a headless wired box has
# no use for (graphics, sound, video capture, radio, InfiniBand) are never unpacked; the
# license texts stay. The same rules stay in the image for packages installed later.
{
    echo "path-exclude=/usr/share/doc/*"
    echo "path-include=/usr/share/doc/*/copyright"
    echo "path-exclude=/usr/share/man/*"
    echo "path-exclude=/usr/share/info/*"
    echo "path-exclude=/usr/share/locale/*"
    echo "path-include=/usr/share/locale/locale.alias"
    # bookworm's kernel packages still ship their modules under /lib (a link to /usr/lib)
    for modules in /lib/modules /usr/lib/modules; do
        for dir in drivers/gpu sound drivers/media drivers/infiniband drivers/net/wireless \
            net/wireless net/mac80211 net/bluetooth drivers/bluetooth drivers/staging \
            drivers/iio drivers/comedi drivers/isdn; do
            echo "path-exclude=$modules/*/kernel/$dir/*"
        done
    done
} >"$ROOT/etc/dpkg/dpkg.cfg.d/50-dicombox-excludes"
# What debootstrap already unpacked goes by the same rules.
find "$ROOT/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$ROOT/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$ROOT/usr/share/man" "$ROOT/usr/share/info"
find "$ROOT/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +

printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
    >"$ROOT/etc/apt/apt.conf.d/50-dicombox"
# no daemon starts inside the build folder
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"

mapfile -t packages < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$HERE/packages.txt" | sort -u)
log "apt-get install ${packages[*]}"
in_root apt-get install -y -q "${packages[@]}" >"$OUT/apt.log" 2>&1 ||
    { tail -n 30 "$OUT/apt.log" >&2; die "apt-get install failed"; }
rm -f "$ROOT/usr/sbin/policy-rc.d"

# --- 2. dicombox in its virtualenv ----------------------------------------------------------
# The wheels are fetched on the host for the image's Python and C library, then installed
# inside the image with no network.
log "wheels"
WHEELS=$OUT/wheels
mkdir -p "$WHEELS" "$OUT/src"
# build from a copy of the tracked and new files, so the work tree gets no build/ of its own
git -C "$REPO" ls-files -z --cached --others --exclude-standard |
    tar -C "$REPO" --null --ignore-failed-read -T - -cf - | tar -C "$OUT/src" -xf -
"$PYTHON" -m pip wheel --quiet --no-deps -w "$WHEELS" "$OUT/src" >"$OUT/pip.log" 2>&1 ||
    { tail -n 30 "$OUT/pip.log" >&2; die "pip wheel failed"; }
py_version=$(in_root python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
py_tag=cp${py_version/./}
glibc_minor=$(in_root python3 -c 'import platform; print(platform.libc_ver()[1].split(".")[1])')
platforms=()
for ((minor = glibc_minor; minor >= 5; minor--)); do
    platforms+=(--platform "manylinux_2_${minor}_x86_64")
done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 \
    --platform manylinux1_x86_64)
"$PYTHON" -m pip download --quiet --only-binary=:all: -d "$WHEELS" \
    --python-version "$py_version" --implementation cp \
    --abi "$py_tag" --abi abi3 --abi none "${platforms[@]}" \
    "$WHEELS"/dicombox-*.whl >>"$OUT/pip.log" 2>&1 ||
    { tail -n 30 "$OUT/pip.log" >&2; die "pip download failed"; }

log "virtualenv /opt/dicombox/venv (Python $py_version)"
mkdir -p "$ROOT/tmp/wheels"
cp "$WHEELS"/*.whl "$ROOT/tmp/wheels/"
in_root python3 -m venv /opt/dicombox/venv
in_root /opt/dicombox/venv/bin/python -m pip install --quiet --no-index --no-cache-dir \
    --find-links /tmp/wheels dicombox
rm -rf "$ROOT/tmp/wheels"

# --- 3. the appliance's files -----------------------------------------------------------------
log "units and configuration"
# The units come from systemd/ (unit files, sysusers, tmpfiles, udev rules, drop-in
# folders), installed where a package puts them; those with an [Install] section are enabled.
for name in dicombox.service dicombox.sysusers dicombox.tmpfiles; do
    [ -f "$REPO/systemd/$name" ] || die "systemd/$name is missing: the box cannot run without it"
done
units=()
install_unit_file() { # SOURCE
    local src=$1 name
    name=$(basename "$src")
    case "$name" in
    *.service | *.socket | *.timer | *.path | *.target | *.mount)
        install -D -m 644 "$src" "$ROOT/usr/lib/systemd/system/$name"
        if grep -q '^\[Install\]' "$src"; then units+=("$name"); fi ;;
    *.sysusers) install -D -m 644 "$src" "$ROOT/usr/lib/sysusers.d/${name%.sysusers}.conf" ;;
    *.tmpfiles) install -D -m 644 "$src" "$ROOT/usr/lib/tmpfiles.d/${name%.tmpfiles}.conf" ;;
    *.rules) install -D -m 644 "$src" "$ROOT/usr/lib/udev/rules.d/$name" ;;
    *) ;; # README and the like
    esac
}
for src in "$REPO"/systemd/*; do
    if [ -f "$src" ]; then install_unit_file "$src"; fi
done
for src in "$REPO"/systemd/*.d; do # drop-in folders: foo.service.d/*.conf
    [ -d "$src" ] || continue
    mkdir -p "$ROOT/usr/lib/systemd/system/$(basename "$src")"
    cp -r "$src"/. "$ROOT/usr/lib/systemd/system/$(basename "$src")/"
done

# fixed files: configuration, network, repartitioning, the console command
cp -r "$HERE/rootfs"/. "$ROOT/"
echo dicombox >"$ROOT/etc/hostname"
cat >"$ROOT/etc/hosts" <<'EOF'
127.0.0.1	localhost
127.0.1.1	dicombox
::1	localhost ip6-localhost ip6-loopback
ff02::1	ip6-allnodes
ff02::2	ip6-allrouters
EOF
cat >"$ROOT/etc/fstab" <<EOF
# file system, mount point, type, options, dump, pass
PARTUUID=$ROOT_PARTUUID  /                  ext4   rw,errors=remount-ro                  0 1
PARTUUID=$DATA_PARTUUID  /var/lib/dicombox  ext4   rw,nodev,nosuid,noexec,x-systemd.growfs  0 2
EOF
mkdir -p "$ROOT/var/lib/dicombox"

# users from sysusers.d (the dicombox user among them), then the services
in_root systemd-sysusers
in_root systemctl enable systemd-networkd.service systemd-resolved.service \
    systemd-timesyncd.service serial-getty@ttyS0.service "${units[@]}" 2>&1 |
    sed 's/^/   /' >&2
in_root systemctl set-default multi-user.target

# root: locked unless a password is asked for
if [ -n "${ROOT_PASSWORD:-}" ]; then
    printf 'root:%s\n' "$ROOT_PASSWORD" | in_root chpasswd
else
    in_root usermod -p '*' root
fi

# resolved's stub answers DNS (its package links this when it installs, but keep it certain)
ln -sfn ../run/systemd/resolve/stub-resolv.conf "$ROOT/etc/resolv.conf"

# --- 4. what makes two builds differ -------------------------------------------------------
log "clean-up"
# machine-id: empty, so each appliance makes its own on first boot
: >"$ROOT/etc/machine-id"
rm -f "$ROOT/var/lib/dbus/machine-id"
rm -rf "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb \
    "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/ldconfig/aux-cache \
    "$ROOT"/var/cache/debconf/*-old "$ROOT"/var/lib/dpkg/*-old \
    "$ROOT"/etc/passwd- "$ROOT"/etc/group- "$ROOT"/etc/shadow- "$ROOT"/etc/gshadow- \
    "$ROOT"/etc/subuid- "$ROOT"/etc/subgid- "$ROOT"/root/.cache \
    "$ROOT"/var/lib/systemd/random-seed "$ROOT"/var/lib/systemd/catalog/database
find "$ROOT/var/log" -type f -delete
find "$ROOT/tmp" "$ROOT/var/tmp" -mindepth 1 -delete
# the "last password change" day in /etc/shadow is the build's day otherwise
days=$((SOURCE_DATE_EPOCH / 86400))
awk -F: -v OFS=: -v d="$days" '$3 != "" { $3 = d } { print }' "$ROOT/etc/shadow" >"$OUT/shadow"
cat "$OUT/shadow" >"$ROOT/etc/shadow" && rm "$OUT/shadow"
# every file newer than SOURCE_DATE_EPOCH gets its time
find "$ROOT" -newermt "@$SOURCE_DATE_EPOCH" -print0 | xargs -0r touch -h -d "@$SOURCE_DATE_EPOCH"

# --- 5. the manifest ------------------------------------------------------------------------
log "manifest"
kernel=$(basename "$(readlink -f "$ROOT/vmlinuz")")
kernel=${kernel#vmlinuz-}
{
    echo "# dicombox appliance image"
    echo "suite: $SUITE ($ARCH)"
    echo "source_date_epoch: $SOURCE_DATE_EPOCH"
    echo "kernel: $kernel"
    echo "cmdline: $CMDLINE"
    echo "disk_guid: $DISK_GUID"
    echo "esp_partuuid: $ESP_PARTUUID"
    echo "root_partuuid: $ROOT_PARTUUID"
    echo "data_partuuid: $DATA_PARTUUID"
    echo "python: $py_version (/opt/dicombox/venv)"
    echo "host tools: $(dpkg-query -W -f '${Package} ${Version}, ' debootstrap e2fsprogs \
        dosfstools mtools fdisk syslinux syslinux-common 2>/dev/null | sed 's/, $//')"
    echo
    echo "## Debian packages"
    dpkg-query --admindir="$ROOT/var/lib/dpkg" -W -f '${Package}\t${Version}\t${Architecture}\n' |
        LC_ALL=C sort
    echo
    echo "## Python packages in /opt/dicombox/venv"
    in_root /opt/dicombox/venv/bin/python -m pip list --format=freeze --disable-pip-version-check |
        LC_ALL=C sort
} >"$OUT/dicombox.manifest"

# --- 6. file systems ------------------------------------------------------------------------
log "file systems"
PARTS=$OUT/parts
mkdir -p "$PARTS"

# mke2fs copies each file's change and access times (ctime, atime) from the folder, and on
# the host those are the build's own; debugfs sets them to SOURCE_DATE_EPOCH afterwards.
fix_times() { # IMAGE SOURCE_DIR
    local image=$1 src=$2
    (cd "$src" && find . -print0) | "$PYTHON" -c '
import sys
for raw in sys.stdin.buffer.read().split(b"\0"):
    if raw:
        path = raw.decode("utf-8", "surrogateescape")[1:] or "/"
        if "\"" in path or "\n" in path:
            sys.exit(f"cannot name {path!r} in debugfs")
        print(f"sif \"{path}\" ctime @{sys.argv[1]}")
        print(f"sif \"{path}\" atime @{sys.argv[1]}")
print(f"sif /lost+found ctime @{sys.argv[1]}")
print(f"sif /lost+found atime @{sys.argv[1]}")
' "$SOURCE_DATE_EPOCH" >"$PARTS/times.debugfs"
    debugfs -w -f "$PARTS/times.debugfs" "$image" >/dev/null 2>"$PARTS/debugfs.log" ||
        { tail -n 5 "$PARTS/debugfs.log" >&2; die "debugfs failed on $image"; }
}

mkfs.ext4 -q -L dicombox-root -U "$ROOT_FSUUID" -E "hash_seed=$ROOT_FSUUID" \
    -d "$ROOT" "$PARTS/root.ext4" "${ROOT_MB}M" >/dev/null
fix_times "$PARTS/root.ext4" "$ROOT"

# the data partition starts empty, owned by the box's user
data_uid=$(in_root id -u dicombox)
data_gid=$(in_root id -g dicombox)
mkdir -p "$PARTS/data"
chown "$data_uid:$data_gid" "$PARTS/data"
chmod 750 "$PARTS/data"
touch -d "@$SOURCE_DATE_EPOCH" "$PARTS/data"
mkfs.ext4 -q -L dicombox-data -U "$DATA_FSUUID" -E "hash_seed=$DATA_FSUUID" \
    -d "$PARTS/data" "$PARTS/data.ext4" "${DATA_MB}M" >/dev/null
fix_times "$PARTS/data.ext4" "$PARTS/data"

# The EFI system partition: systemd-boot as the removable-media boot loader (firmware finds
# it without any NVRAM entry) and one boot entry with the image's own kernel and initramfs.
# For BIOS machines SYSLINUX lives on the same FAT file system and starts the same files.
# mtools writes each file in the order given, with SOURCE_DATE_EPOCH as its time.
ESP=$PARTS/esp.vfat
mkfs.fat -F 32 -n ESP --invariant -C "$ESP" $((ESP_MB * 1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1
mmd -i "$ESP" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries ::/dicombox ::/syslinux
stage=$PARTS/esp
mkdir -p "$stage"
printf 'default dicombox.conf\ntimeout 0\nconsole-mode keep\n' >"$stage/loader.conf"
cat >"$stage/dicombox.conf" <<EOF
title   dicombox ($kernel)
linux   /dicombox/vmlinuz
initrd  /dicombox/initrd.img
options $CMDLINE
EOF
cat >"$stage/syslinux.cfg" <<EOF
SERIAL 0 115200
PROMPT 0
TIMEOUT 0
DEFAULT dicombox
LABEL dicombox
  LINUX /dicombox/vmlinuz
  INITRD /dicombox/initrd.img
  APPEND $CMDLINE
EOF
cp "$ROOT/usr/lib/systemd/boot/efi/systemd-bootx64.efi" "$stage/BOOTX64.EFI"
cp "$ROOT/boot/vmlinuz-$kernel" "$stage/vmlinuz"
cp "$ROOT/boot/initrd.img-$kernel" "$stage/initrd.img"
touch -d "@$SOURCE_DATE_EPOCH" "$stage"/*
mcopy -m -i "$ESP" "$stage/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
mcopy -m -i "$ESP" "$stage/loader.conf" ::/loader/loader.conf
mcopy -m -i "$ESP" "$stage/dicombox.conf" ::/loader/entries/dicombox.conf
mcopy -m -i "$ESP" "$stage/vmlinuz" ::/dicombox/vmlinuz
mcopy -m -i "$ESP" "$stage/initrd.img" ::/dicombox/initrd.img
mcopy -m -i "$ESP" "$stage/syslinux.cfg" ::/syslinux/syslinux.cfg
# ldlinux.sys and ldlinux.c32 into /syslinux, and the FAT boot sector that loads them
syslinux --install --directory /syslinux "$ESP"

# --- 7. the disk ------------------------------------------------------------------------------
log "disk"
IMG=$OUT/dicombox.img
start=1 # MiB: the first partition starts at 1 MiB, GPT and alignment before it
esp_start=$start
root_start=$((esp_start + ESP_MB))
data_start=$((root_start + ROOT_MB))
total=$((data_start + DATA_MB + 1)) # 1 MiB for the backup GPT at the end
rm -f "$IMG"
truncate -s "${total}M" "$IMG"
# Types: ESP (marked legacy-BIOS-bootable for gptmbr.bin); x86-64 root (the Discoverable
# Partitions type); the data partition is plain "Linux data", the one partition of that
# type, which /etc/repart.d/ grows at first boot.
sfdisk --quiet "$IMG" <<EOF
label: gpt
label-id: $DISK_GUID
unit: sectors
first-lba: 2048

start=$((esp_start * 2048)), size=$((ESP_MB * 2048)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=$ESP_PARTUUID, name="esp", attrs="LegacyBIOSBootable"
start=$((root_start * 2048)), size=$((ROOT_MB * 2048)), type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid=$ROOT_PARTUUID, name="root"
start=$((data_start * 2048)), size=$((DATA_MB * 2048)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=$DATA_PARTUUID, name="dicombox-data"
EOF
# BIOS boot code in the protective MBR's first 440 bytes (the partition table stays)
dd if="$GPTMBR" of="$IMG" bs=440 count=1 conv=notrunc status=none
dd if="$ESP" of="$IMG" bs=1M seek="$esp_start" conv=notrunc,sparse status=none
dd if="$PARTS/root.ext4" of="$IMG" bs=1M seek="$root_start" conv=notrunc,sparse status=none
dd if="$PARTS/data.ext4" of="$IMG" bs=1M seek="$data_start" conv=notrunc,sparse status=none
touch -d "@$SOURCE_DATE_EPOCH" "$IMG" "$OUT/dicombox.manifest"

(cd "$OUT" && sha256sum dicombox.img dicombox.manifest >SHA256SUMS)
log "done in $(($(date +%s) - started)) s: $IMG"
log "$(du -h --apparent-size "$IMG" | cut -f1) disk, $(du -h "$IMG" | cut -f1) written," \
    "root file system $(du -sh "$ROOT" | cut -f1)"
cat "$OUT/SHA256SUMS" >&2

# the folder and the pieces have served; the manifest and the logs stay
rm -rf "$PARTS" "$OUT/src"
[ "${KEEP_ROOTFS:-0}" = 1 ] || rm -rf --one-file-system "$ROOT"
