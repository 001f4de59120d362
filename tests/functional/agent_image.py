"""The test guest with the QEMU guest agent and a filesystem to freeze.

The guest of :mod:`tests.functional.guest_image` (same kernel, markers and
power button), plus:

* the real ``qemu-ga`` of the Debian package ``qemu-guest-agent`` and the
  shared libraries it loads (found with ``ldd``), started on the agent's
  port when the domain has the agent's channel (an image with
  ``hw_qemu_guest_agent=yes``) -- unless ``kvmx.noagent`` is on the kernel
  command line, which leaves the channel unanswered;
* a root disk holding an ext4 filesystem, and the kernel modules to reach
  it and the agent's port (virtio PCI, block and console, ext4).

It is a separate image so that the other tests' guests do not pay for it
at boot (about 4 MB more initramfs, the modules and the mount).

The guest mounts its root disk, prints ``KVMX-GUEST-DISK read <token>``
with the token an earlier boot of that disk left (``none`` on a new disk)
and writes its boot id as the new token (``KVMX-GUEST-DISK wrote
<token>``) without syncing it: with periodic writeback off and a long
journal commit interval, the token reaches the disk only when something
syncs the filesystem -- the agent's freeze before a quiesced snapshot, or
a clean power-off. A server booted from a snapshot so shows whether the
snapshot was quiesced.
"""

import os

from oslo_concurrency import processutils

from tests.functional import guest_image

DISK_MARKER_PREFIX = 'KVMX-GUEST-DISK'
AGENT_MARKER_PREFIX = 'KVMX-GUEST-AGENT'
NO_AGENT_CMDLINE = 'kvmx.noagent'
QEMU_GA = '/usr/sbin/qemu-ga'
AGENT_PORT = 'org.qemu.guest_agent.0'

# Kernel options -> module providing it when =m: the power button's, then
# virtio PCI devices, the root disk, the agent's serial port, and ext4 with
# the crc32c its checksums ask the crypto API for by name (there is no
# modprobe in the guest to load it on demand).
NEEDED_KCONFIG = guest_image._NEEDED_KCONFIG + (
    ('CONFIG_VIRTIO_PCI', 'virtio_pci'),
    ('CONFIG_VIRTIO_BLK', 'virtio_blk'),
    ('CONFIG_VIRTIO_CONSOLE', 'virtio_console'),
    ('CONFIG_CRYPTO_CRC32C', 'crc32c_generic'),
    ('CONFIG_EXT4_FS', 'ext4'))

INIT = r'''# The root disk's token (see agent_image.py): periodic writeback
# off, a long journal commit interval.
echo 0 >/proc/sys/vm/dirty_writeback_centisecs
mkdir -p /mnt /run
if mount -t ext4 -o commit=3600 /dev/vda /mnt; then
    echo "%(disk)s read $(cat /mnt/kvmx-token 2>/dev/null || echo none)"
    cat /proc/sys/kernel/random/boot_id >/mnt/kvmx-token
    echo "%(disk)s wrote $(cat /mnt/kvmx-token)"
fi
# The agent's port. udev would link /dev/virtio-ports/<name> to it; there
# is no udev here, so link it by hand. A port gets its name shortly after
# the virtio console device (there only with a channel) appears.
if grep -qx 0x0003 /sys/bus/virtio/devices/*/device 2>/dev/null; then
    n=0
    until p=$(grep -lx %(port)s /sys/class/virtio-ports/*/name 2>/dev/null)
    do
        n=$((n + 1)); [ $n -gt 100 ] && break; sleep 0.1
    done
    if [ -n "$p" ]; then
        p=${p%%/name}; mkdir -p /dev/virtio-ports
        ln -s "../${p##*/}" /dev/virtio-ports/%(port)s
    fi
fi
if [ ! -e /dev/virtio-ports/%(port)s ]; then
    echo "%(agent)s no port"
elif grep -qw %(noagent)s /proc/cmdline; then
    echo "%(agent)s not started (%(noagent)s)"
else
    /usr/sbin/qemu-ga -m virtio-serial -p /dev/virtio-ports/%(port)s \
        -f /run/qemu-ga.pid -t /run &
    echo "%(agent)s started"
fi'''


class AgentImageError(guest_image.GuestImageError):
    """The guest agent cannot go into the test guest."""


def agent_files():
    """``[(path in the guest, bytes)]``: ``qemu-ga`` and the shared
    libraries it loads (guest_image.program_files)."""
    try:
        return guest_image.program_files(QEMU_GA, 'qemu-guest-agent')
    except guest_image.GuestImageError as e:
        raise AgentImageError(str(e))


def build_initramfs(dest_path):
    return guest_image.build_initramfs(
        dest_path, guest_image.DEFAULT_MARKER, needed=NEEDED_KCONFIG,
        extra_init=INIT % {'disk': DISK_MARKER_PREFIX,
                           'agent': AGENT_MARKER_PREFIX, 'port': AGENT_PORT,
                           'noagent': NO_AGENT_CMDLINE},
        extra_files=agent_files())


def build_root_disk(dest_path, size_mb=16):
    """A qcow2 holding an empty ext4 filesystem. Its inode tables and
    journal are written out here, so the guest's kernel starts no
    background initialisation writing to it."""
    raw = dest_path + '.raw'
    with open(raw, 'wb') as f:
        f.truncate(size_mb * 1024 * 1024)
    try:
        processutils.execute(
            'mkfs.ext4', '-q', '-F', '-L', 'kvmx-root', '-m', '0',
            '-E', 'lazy_itable_init=0,lazy_journal_init=0,nodiscard', raw)
        processutils.execute('qemu-img', 'convert', '-f', 'raw',
                             '-O', 'qcow2', raw, dest_path)
    finally:
        os.unlink(raw)
    return dest_path


def get_artifacts():
    """Build (once per process) and return a ``GuestArtifacts`` tuple, in
    guest_image's cache directory."""
    return guest_image.variant(
        'agent',
        initramfs=lambda tmpdir: build_initramfs(
            os.path.join(tmpdir, 'agent-initramfs.cpio.gz')),
        root_disk=lambda tmpdir: build_root_disk(
            os.path.join(tmpdir, 'agent-root.qcow2')))
