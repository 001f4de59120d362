"""The test guest on a real network: DHCP, the server's identity, SSH.

A cloud test (Neutron with its DHCP and metadata agents, Tempest with
``run_validation = True``) needs a guest that behaves like CirrOS: it
takes its address by DHCP, learns its name and SSH key from a config drive
or the metadata service, and lets Tempest in over SSH to run a few shell
commands. This is the guest of :mod:`tests.functional.guest_image` (same
kernel, markers and ACPI power button), assembled offline the same way,
plus:

* kernel modules (with their dependencies, from ``modules.dep``):
  ``virtio_pci`` and ``virtio_net`` (which needs ``net_failover`` and
  ``failover``) for the NICs, ``af_packet`` for udhcpc's raw socket where
  it is not built in, ``virtio-rng`` so that a domain's RNG feeds the
  kernel's entropy, the disks Tempest lists (``virtio_blk``,
  ``virtio_scsi``, ``sd_mod``), and the config drive's CD-ROM on q35
  (``ahci``) or pc (``ata_piix``) with ``sr_mod`` and ``isofs``. The
  network's are loaded first; the storage ones (guest_image's ``later``)
  while the first DHCP exchange is under way;
* busybox ``udhcpc`` on every ethernet interface, those present at boot
  and those hot-plugged later (Nova's interface attach): a small loop
  polls ``/sys/class/net`` once a second, as Debian's kernel has no uevent
  helper and there is no udev. Its ``default.script`` sets the address,
  netmask, MTU, DNS servers, and either the DHCP option 121 classless
  static routes (Neutron's dnsmasq sends the metadata service's route to
  169.254.169.254 that way) or else the router as default route (RFC 3442:
  a client given option 121 ignores the router option). Routes get the
  interface's index as metric, so the first NIC keeps the default route.
  The pid file is ``/var/run/udhcpc.<nic>.pid``, where Tempest's
  ``renew_lease`` looks for it;
* the server's name and SSH public keys, from a config drive (ISO 9660
  labelled ``config-2``: ``openstack/latest/meta_data.json``,
  ``hostname`` and ``public_keys``, read with a small awk JSON reader)
  when there is one, else from the EC2-style metadata service
  (``latest/meta-data/local-hostname`` or ``hostname``, and
  ``public-keys/<n>/openssh-key``), retried until a deadline. The hostname
  becomes the name's first label (``server-1`` of
  ``server-1.novalocal``), as Tempest's
  ``test_host_name_is_same_as_server_name`` expects; the keys become
  root's ``authorized_keys``;
* Debian's ``dropbear`` (package ``dropbear-bin``) with the shared
  libraries ``ldd`` finds for it: root logs in with those keys only (no
  password logins), host keys are made at the first connection
  (``dropbear -R``), busybox ``sh`` runs the commands;
* Debian's ``ethtool``, to turn each NIC's transmit checksum offload off
  (see ``ETHTOOL``: the userspace Open vSwitch of the all-in-one cloud
  drops packets whose checksums a host would have completed);
* for Tempest's validation commands (``RemoteClient`` of Tempest 47):
  ``sudo`` (root needs none: it runs the command), ``lsblk`` (the
  ``-lb --nodeps`` table with a TYPE column, from ``/sys/block``),
  ``blkid -L config-2 -o device`` (busybox ``findfs``) and ``curl`` (GET
  and POST of the metadata service, on busybox ``wget``). The rest --
  ``hostname``, ``ip``, ``ping``, ``grep``, ``awk``, ``cut``, ``cat``,
  ``mount``, ``kill`` -- are busybox applets.

Markers on the serial console, besides guest_image's
``KVMX-GUEST-BOOTED <marker>`` and ``KVMX-GUEST-POWEROFF <marker>``:

* ``KVMX-GUEST-NET <nic> <address>`` each time a NIC takes a new lease;
* ``KVMX-GUEST-NOLEASE <nic> after <n>s`` once, when a NIC got no lease
  within ``kvmx.dhcp_wait=<n>`` seconds (kernel command line, default 30;
  udhcpc goes on asking);
* ``KVMX-GUEST-META <source> hostname=<name> keys=<count>`` with source
  ``config-drive`` or ``metadata``, or ``none`` when neither answered
  within ``kvmx.metadata_wait=<n>`` seconds (default 120);
* ``KVMX-GUEST-SSH ready`` once dropbear listens on port 22 (``failed``
  with its last log lines if it does not).

For Tempest: ``[validation] image_ssh_user = root`` (no password: Tempest
47 logs in with its keypair, ``auth_method = keypair``); its default
``ssh_shell_prologue`` works with busybox ``sh``. Busybox ``nc`` has no
``-k`` (it has ``-ll``), which Tempest's ``nc_listen_host`` uses.

Only with a config drive are the hostname and keys there before the boot
marker; the network and the metadata service are waited for in the
background. Busybox-static's ``wget -T`` crashes (Debian 1.35), so
``timeout`` bounds each request instead.

``python -m tests.functional.net_image [--bzimage] OUTDIR``, run from the
repository root, writes ``kernel``, ``initramfs``, ``root.qcow2`` and
``cmdline`` into OUTDIR for Glance (kernel_id, ramdisk_id and
os_command_line of an image) and prints them.
"""

import argparse
import os
import shutil
import sys

from oslo_concurrency import processutils

from tests.functional import guest_image

NET_MARKER_PREFIX = 'KVMX-GUEST-NET'
NOLEASE_MARKER_PREFIX = 'KVMX-GUEST-NOLEASE'
META_MARKER_PREFIX = 'KVMX-GUEST-META'
SSH_MARKER_PREFIX = 'KVMX-GUEST-SSH'
DROPBEAR = '/usr/sbin/dropbear'
# A virtio NIC leaves the TCP and UDP checksums of what it sends to the
# host (checksum offload). Open vSwitch's userspace datapath reads a
# system tap port as raw frames, without the offload's metadata, so its
# connection tracking (Neutron's OVS firewall) counts those packets as
# invalid and drops them: the all-in-one cloud's datapath. The guest turns
# the offload off and sends complete checksums, as a guest behind a NIC
# without offloads does.
ETHTOOL = '/usr/sbin/ethtool'
KERNEL_CMDLINE = guest_image.KERNEL_CMDLINE

# Kernel options -> module providing it when =m (see the module's doc):
# loaded first, those the network needs; the storage ones are loaded while
# the first DHCP exchange is under way.
NEEDED_KCONFIG = guest_image._NEEDED_KCONFIG + (
    ('CONFIG_VIRTIO_PCI', 'virtio_pci'),
    ('CONFIG_VIRTIO_NET', 'virtio_net'),
    ('CONFIG_PACKET', 'af_packet'),
    ('CONFIG_HW_RANDOM_VIRTIO', 'virtio-rng'))
LATER_KCONFIG = (
    ('CONFIG_VIRTIO_BLK', 'virtio_blk'),
    ('CONFIG_SCSI_VIRTIO', 'virtio_scsi'),
    ('CONFIG_BLK_DEV_SD', 'sd_mod'),
    ('CONFIG_SATA_AHCI', 'ahci'),
    ('CONFIG_ATA_PIIX', 'ata_piix'),
    ('CONFIG_BLK_DEV_SR', 'sr_mod'),
    ('CONFIG_ISO9660_FS', 'isofs'))

# Runs in /init before the boot marker.
INIT = r'''# -- net_image: network, identity, SSH server --
mkdir -p /dev/pts /run /var /mnt /root/.ssh /etc/dropbear
mount -t devpts devpts /dev/pts
ln -s ../run /var/run
chmod 700 /root /root/.ssh
hostname localhost
ip link set dev lo up
dhcp_wait=30
metadata_wait=120
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    kvmx.dhcp_wait=*[!0-9]*|kvmx.metadata_wait=*[!0-9]*) ;;
    kvmx.dhcp_wait=?*) dhcp_wait=${arg#*=};;
    kvmx.metadata_wait=?*) metadata_wait=${arg#*=};;
    esac
done
/usr/lib/kvmx/netwatch "$dhcp_wait" </dev/null >/dev/null 2>&1 &
/usr/sbin/dropbear -F -E -R -s -p 22 </dev/null >/run/dropbear.log 2>&1 &
load_modules $later_modules
if ! /usr/lib/kvmx/identity config-drive; then
    /usr/lib/kvmx/identity metadata "$metadata_wait" </dev/null \
        >/dev/null 2>&1 &
fi
n=0
until awk '$2 ~ /:0016$/ && $4 == "0A" {up = 1} END {exit !up}' \
        /proc/net/tcp /proc/net/tcp6; do
    n=$((n + 1)); [ $n -gt 100 ] && break; sleep 0.1
done
if [ $n -gt 100 ]; then
    echo "@SSH@ failed: $(tail -n 3 /run/dropbear.log | tr '\n' ' ')"
else
    echo "@SSH@ ready"
fi'''

NETWATCH = r'''#!/bin/sh
# netwatch SECONDS: udhcpc on every ethernet interface, those there at
# boot and those hot-plugged later (no udev, no uevent helper: polled).
# Reports "no lease" after about SECONDS; udhcpc goes on asking.
# /run/kvmx-net/<nic>.pid: "<udhcpc pid> <ifindex>", so that a NIC
# unplugged and another plugged under the same name between two looks
# gets a udhcpc of its own.
tries=$((($1 + 1) / 2)); [ "$tries" -ge 1 ] || tries=1
mkdir -p /run/kvmx-net
while :; do
    for dev in /sys/class/net/*; do
        n=${dev##*/}
        [ -e "$dev/device" ] || continue
        read -r type <"$dev/type" && [ "$type" = 1 ] || continue
        read -r index <"$dev/ifindex" || continue
        pid='' was=''
        read -r pid was <"/run/kvmx-net/$n.pid" 2>/dev/null
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            [ "$was" = "$index" ] && continue
            kill "$pid"
        fi
        rm -f "/run/kvmx-net/$n.nolease"
        # Checksums computed here, not left to the host (see ETHTOOL).
        /usr/sbin/ethtool -K "$n" tx off >/dev/null 2>&1 ||
            echo "KVMX-GUEST-WARNING ethtool: $n's checksum offload stays on"
        ip link set dev "$n" up
        KVMX_DHCP_WAIT=$1 udhcpc -f -i "$n" -p "/run/udhcpc.$n.pid" \
            -s /usr/share/udhcpc/default.script -t "$tries" -T 2 -A 3 \
            -O mtu -O staticroutes >>"/run/udhcpc.$n.log" 2>&1 &
        echo "$! $index" >"/run/kvmx-net/$n.pid"
    done
    for f in /run/kvmx-net/*.pid; do
        n=${f##*/}; n=${n%.pid}
        if [ -e "$f" ] && [ ! -e "/sys/class/net/$n" ]; then
            read -r pid was <"$f" && kill "$pid" 2>/dev/null
            rm -f "/run/kvmx-net/$n".* "/run/udhcpc.$n.pid"
            cat /run/kvmx-net/*.resolv >/etc/resolv.conf 2>/dev/null
        fi
    done
    sleep 1
done
'''

DHCP_SCRIPT = r'''#!/bin/sh
# udhcpc's hook: $1 is the event, the lease is in the environment.
event=$1
metric=1
read -r metric <"/sys/class/net/$interface/ifindex"
state=/run/kvmx-net/$interface
resolv() {
    cat /run/kvmx-net/*.resolv >/etc/resolv.conf 2>/dev/null
}
case "$event" in
deconfig)
    ip -4 addr flush dev "$interface"
    ip link set dev "$interface" up
    rm -f "$state.resolv"
    resolv
    ;;
leasefail)
    if [ ! -e "$state.nolease" ]; then
        : >"$state.nolease"
        echo "@NOLEASE@ $interface after ${KVMX_DHCP_WAIT}s" >/dev/console
    fi
    ;;
bound|renew)
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    if [ "$event" = bound ] ||
            ! ip -4 addr show dev "$interface" | grep -q " $ip/"; then
        ip -4 addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" ${broadcast:+broadcast $broadcast} \
            dev "$interface"
    fi
    # RFC 3442: with classless static routes (option 121), the router
    # option is ignored.
    if [ -n "$staticroutes" ]; then
        set -- $staticroutes
        while [ $# -ge 2 ]; do
            if [ "$2" = 0.0.0.0 ]; then
                ip route replace "$1" dev "$interface" metric "$metric"
            else
                ip route replace "$1" via "$2" dev "$interface" \
                    metric "$metric"
            fi
            shift 2
        done
    elif [ -n "$router" ]; then
        set -- $router
        ip route replace default via "$1" dev "$interface" metric "$metric"
    fi
    {
        [ -n "$domain" ] && echo "search $domain"
        for s in $dns; do echo "nameserver $s"; done
    } >"$state.resolv"
    resolv
    [ "$event" = bound ] && echo "@NET@ $interface $ip" >/dev/console
    ;;
esac
exit 0
'''

IDENTITY = r'''#!/bin/sh
# identity config-drive | identity metadata SECONDS
# The server's name and SSH keys from a config drive (ISO 9660 labelled
# config-2) or the EC2-style metadata service: sets the hostname, writes
# root's authorized_keys, says what it found on the console.
keys=/root/.ssh/authorized_keys
uptime_s() {
    read -r up rest </proc/uptime
    echo "${up%%.*}"
}
use() {  # use SOURCE NAME KEYFILE
    fqdn=$(echo "$2" | tr -cd 'A-Za-z0-9.-')
    short=$(echo "${fqdn%%.*}" | cut -c1-63)
    if [ -n "$short" ]; then
        hostname "$short"
        printf '127.0.0.1 localhost\n127.0.1.1 %s %s\n' "$fqdn" "$short" \
            >/etc/hosts
    fi
    grep -v '^[[:space:]]*$' "$3" >"$keys.new"
    chmod 600 "$keys.new"
    mv "$keys.new" "$keys"
    echo "@META@ $1 hostname=$(hostname) keys=$(grep -c . "$keys")" \
        >/dev/console
}
case "$1" in
config-drive)
    dev=$(findfs LABEL=config-2 2>/dev/null) || exit 1
    mnt=/run/config-drive
    mkdir -p "$mnt"
    mount -t iso9660 -o ro "$dev" "$mnt" || exit 1
    md=$mnt/openstack/latest/meta_data.json
    [ -r "$md" ] && /usr/lib/kvmx/jsonflat "$md" >/run/meta_data
    umount "$mnt"
    [ -s /run/meta_data ] || exit 1
    awk -F '\t' '$1 ~ /^\/public_keys\// {print $2}' /run/meta_data \
        >/run/keys
    use config-drive \
        "$(awk -F '\t' '$1 == "/hostname" {print $2; exit}' /run/meta_data)" \
        /run/keys
    ;;
metadata)
    url=http://169.254.169.254/latest/meta-data
    get() {
        timeout 10 wget -q -O - "$url/$1" 2>/dev/null
    }
    deadline=$(($(uptime_s) + $2))
    until name=$(get local-hostname) || name=$(get hostname); do
        if [ "$(uptime_s)" -ge "$deadline" ]; then
            echo "@META@ none hostname=$(hostname) keys=0" >/dev/console
            exit 1
        fi
        sleep 2
    done
    get public-keys/ | while IFS= read -r entry || [ -n "$entry" ]; do
        get "public-keys/${entry%%=*}/openssh-key"
        echo
    done >/run/keys
    use metadata "$name" /run/keys
    ;;
*)
    echo "usage: $0 config-drive | metadata SECONDS" >&2
    exit 2
    ;;
esac
'''

# Each string, number or literal of a JSON document as "<path>\t<value>",
# a line per line of the value; path components are object keys and array
# indexes ("/public_keys/mykey", "/keys/0/data"). There is no jq here.
JSONFLAT = r'''#!/bin/awk -f
{ doc = doc $0 "\n" }
END { n = length(doc); pos = 1; value("") }
function ws() {
    while (pos <= n && index(" \t\r\n", substr(doc, pos, 1))) pos++
}
function str(    out, c) {
    pos++
    out = ""
    while (pos <= n) {
        c = substr(doc, pos, 1)
        if (c == "\"") { pos++; return out }
        if (c == "\\") {
            c = substr(doc, ++pos, 1)
            if (c == "n") c = "\n"
            else if (c == "t") c = "\t"
            else if (c == "r" || c == "b" || c == "f") c = ""
            else if (c == "u") {
                c = hex(substr(doc, pos + 1, 4)); pos += 4
                c = (c >= 32 && c < 127) ? sprintf("%c", c) : "?"
            }
        }
        out = out c; pos++
    }
    return out
}
function hex(s,    i, v) {
    v = 0
    for (i = 1; i <= length(s); i++)
        v = v * 16 + index("0123456789abcdef", tolower(substr(s, i, 1))) - 1
    return v
}
function emit(path, v,    lines, i, k) {
    k = split(v, lines, "\n")
    for (i = 1; i <= k; i++) if (lines[i] != "") print path "\t" lines[i]
}
function value(path,    c, key, i, start) {
    ws(); c = substr(doc, pos, 1)
    if (c == "{") {
        pos++; ws()
        if (substr(doc, pos, 1) == "}") { pos++; return }
        while (pos <= n) {
            ws(); key = str(); ws(); pos++
            value(path "/" key); ws()
            if (substr(doc, pos++, 1) != ",") return
        }
    } else if (c == "[") {
        pos++; ws()
        if (substr(doc, pos, 1) == "]") { pos++; return }
        i = 0
        while (pos <= n) {
            value(path "/" i++); ws()
            if (substr(doc, pos++, 1) != ",") return
        }
    } else if (c == "\"") {
        emit(path, str())
    } else {
        start = pos
        while (pos <= n && !index(",]} \t\r\n", substr(doc, pos, 1))) pos++
        emit(path, substr(doc, start, pos - start))
    }
}
'''

# Tempest runs some commands through sudo; root needs none.
SUDO = r'''#!/bin/sh
while [ $# -gt 0 ]; do
    case "$1" in
    --) shift; break;;
    -u|-g) shift 2;;
    -*) shift;;
    *) break;;
    esac
done
[ $# -gt 0 ] || exec /bin/sh -l
exec "$@"
'''

# Tempest's get_disks runs "lsblk -lb --nodeps" and keeps the lines with
# "disk" in the TYPE column; sizes are in bytes.
LSBLK = r'''#!/bin/sh
nodeps=
for a; do
    case "$a" in
    --nodeps) nodeps=1;;
    --*) ;;
    -*d*) nodeps=1;;
    esac
done
fmt='%-10s %7s %2s %14s %2s %-4s %s\n'
printf "$fmt" NAME MAJ:MIN RM SIZE RO TYPE MOUNTPOINT
row() {  # row SYSFS_DIR TYPE
    read -r dev <"$1/dev"; read -r size <"$1/size"; read -r ro <"$1/ro"
    rm=0; [ -e "$1/removable" ] && read -r rm <"$1/removable"
    mp=$(awk -v d="/dev/${1##*/}" '$1 == d {print $2; exit}' /proc/mounts)
    printf "$fmt" "${1##*/}" "$dev" "$rm" $((size * 512)) "$ro" "$2" "$mp"
}
for b in /sys/block/*; do
    case "${b##*/}" in loop*|ram*) continue;; sr*) type=rom;; *) type=disk;;
    esac
    row "$b" "$type"
    [ -n "$nodeps" ] && continue
    for p in "$b/${b##*/}"*; do
        [ -e "$p/partition" ] && row "$p" part
    done
done
'''

# Tempest's mount_config_drive runs "blkid -L config-2 -o device".
BLKID = r'''#!/bin/sh
while [ $# -gt 0 ]; do
    case "$1" in
    -L) exec findfs "LABEL=$2";;
    -U) exec findfs "UUID=$2";;
    esac
    shift
done
echo "blkid: only -L LABEL and -U UUID here" >&2
exit 2
'''

# The curl calls Tempest makes in a guest: GET and POST of the metadata
# service ("curl URL", "curl -X POST -d DATA URL"), and "curl -V".
CURL = r'''#!/bin/sh
data='' post='' url=''
while [ $# -gt 0 ]; do
    case "$1" in
    -V|--version) echo "curl (busybox wget)"; exit 0;;
    -X|--request) [ "$2" = POST ] && post=1; shift;;
    -d|--data) data=$2; post=1; shift;;
    -*) ;;
    *) url=$1;;
    esac
    shift
done
if [ -n "$post" ]; then
    exec wget -q -O - --post-data "$data" "$url"
fi
exec wget -q -O - "$url"
'''

# Root's shell is busybox sh; its password is locked (keys only).
ETC_FILES = (
    ('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\n', 0o644),
    ('etc/group', 'root:x:0:\n', 0o644),
    ('etc/shadow', 'root:*:19000:0:99999:7:::\n', 0o600),
    ('etc/shells', '/bin/sh\n/bin/ash\n', 0o644),
    ('etc/nsswitch.conf', 'passwd: files\ngroup: files\nshadow: files\n'
     'hosts: files dns\n', 0o644),
)

MARKERS = {'@NET@': NET_MARKER_PREFIX, '@NOLEASE@': NOLEASE_MARKER_PREFIX,
           '@META@': META_MARKER_PREFIX, '@SSH@': SSH_MARKER_PREFIX}


def _markers(text):
    for token, prefix in MARKERS.items():
        text = text.replace(token, prefix)
    return text


def guest_files():
    """``[(path in the guest, bytes[, mode])]`` this image adds to the
    plain guest's initramfs."""
    scripts = (('usr/lib/kvmx/netwatch', NETWATCH),
               ('usr/lib/kvmx/identity', IDENTITY),
               ('usr/lib/kvmx/jsonflat', JSONFLAT),
               ('usr/share/udhcpc/default.script', DHCP_SCRIPT),
               ('usr/bin/sudo', SUDO), ('usr/bin/lsblk', LSBLK),
               ('usr/bin/blkid', BLKID), ('usr/bin/curl', CURL))
    files = [(path, _markers(text).encode()) for path, text in scripts]
    files += [(path, text.encode(), mode) for path, text, mode in ETC_FILES]
    return files + guest_image.program_files(DROPBEAR, 'dropbear-bin') + \
        guest_image.program_files(ETHTOOL, 'ethtool')


def build_initramfs(dest_path, marker=guest_image.DEFAULT_MARKER):
    return guest_image.build_initramfs(
        dest_path, marker, needed=NEEDED_KCONFIG, later=LATER_KCONFIG,
        extra_init=_markers(INIT), extra_files=guest_files())


def build(outdir, pvh=True):
    """Write ``kernel``, ``initramfs``, ``root.qcow2`` and ``cmdline`` into
    ``outdir``; return a ``GuestArtifacts``. The kernel is the ELF
    ``vmlinux`` QEMU boots via PVH (guest_image.extract_vmlinux, ~65 MB),
    or Debian's bzImage (~8 MB, twice as slow to boot under TCG) if not
    ``pvh`` or where PVH cannot be used."""
    os.makedirs(outdir, exist_ok=True)
    path, kver = guest_image.find_kernel()
    kernel = os.path.join(outdir, 'kernel')
    try:
        if not pvh:
            raise guest_image.GuestImageError('bzImage asked for')
        guest_image.extract_vmlinux(kernel, path)
    except guest_image.GuestImageError:
        shutil.copyfile(path, kernel)
    cmdline = os.path.join(outdir, 'cmdline')
    with open(cmdline, 'w') as f:
        f.write(KERNEL_CMDLINE + '\n')
    return guest_image.GuestArtifacts(
        kernel=kernel, kernel_version=kver,
        initramfs=build_initramfs(os.path.join(outdir, 'initramfs')),
        root_disk=guest_image.build_root_disk(
            os.path.join(outdir, 'root.qcow2')),
        marker=guest_image.DEFAULT_MARKER, cmdline=KERNEL_CMDLINE)


def get_artifacts():
    """Build (once per process) and return a ``GuestArtifacts`` tuple, in
    guest_image's cache directory, with its PVH kernel."""
    return guest_image.variant(
        'net',
        kernel=lambda tmpdir: guest_image.get_pvh_kernel(),
        initramfs=lambda tmpdir: build_initramfs(
            os.path.join(tmpdir, 'net-initramfs.cpio.gz')))


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m tests.functional.net_image',
        description='Build the DHCP/SSH test guest for Glance: an aki '
                    '(kernel), an ari (initramfs), an ami/qcow2 root disk '
                    'and the os_command_line property.')
    parser.add_argument('outdir', help='directory to write the files into')
    parser.add_argument('--bzimage', action='store_true',
                        help="Debian's compressed kernel instead of the "
                             'PVH vmlinux: smaller, slower to boot')
    args = parser.parse_args(argv)
    try:
        guest = build(args.outdir, pvh=not args.bzimage)
    except (guest_image.GuestImageError, OSError,
            processutils.ProcessExecutionError) as e:
        print('error: %s' % e, file=sys.stderr)
        return 1
    print('kernel     %s' % guest.kernel)
    print('initramfs  %s' % guest.initramfs)
    print('root_disk  %s' % guest.root_disk)
    print('cmdline    %s' % guest.cmdline)
    return 0


if __name__ == '__main__':
    sys.exit(main())
