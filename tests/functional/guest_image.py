"""Build a tiny, real, bootable guest for the functional tests.

The functional tests need a guest that really boots under QEMU/TCG, says so
on its serial console and really powers itself off when libvirt presses the
ACPI power button (``virsh shutdown``; ``virsh reboot`` does the same and then
resets).  Everything is assembled offline from Debian packages already on the
host:

* ``linux-image-amd64`` -- the kernel (``/boot/vmlinuz-*``) and the two
  modules the power-button path needs when they are not built in
  (``button.ko`` for the ACPI button, ``evdev.ko`` for ``/dev/input/event*``);
* ``busybox-static`` -- the whole userspace (one static binary);
* ``qemu-utils`` -- ``qemu-img`` for the (never mounted) root disk.

Boot the kernel with ``KERNEL_CMDLINE``; the guest prints
``KVMX-GUEST-BOOTED <marker>`` once it is ready to react to the power button
and ``KVMX-GUEST-POWEROFF <marker>`` just before a graceful power-off.

:mod:`tests.functional.agent_image` builds a variant of this guest with
the QEMU guest agent and a filesystem on its root disk.
"""

import atexit
import collections
import glob
import gzip
import io
import lzma
import os
import re
import shutil
import struct
import tempfile
import threading

from oslo_concurrency import processutils

BOOT_MARKER_PREFIX = 'KVMX-GUEST-BOOTED'
POWEROFF_MARKER_PREFIX = 'KVMX-GUEST-POWEROFF'
NUMA_MARKER_PREFIX = 'KVMX-GUEST-NUMA-NODE'
DIRTY_MARKER_PREFIX = 'KVMX-GUEST-DIRTYING'
DEFAULT_MARKER = 'kvmx'
# console=ttyS0: the marker must land in libvirt's serial <log>.
# panic=0: a broken guest stays visibly hung instead of reboot-looping.
# no_timer_check: under TCG on a loaded host the kernel's IO-APIC timer
# check can miss its ticks and panic ("IO-APIC + timer doesn't work").
KERNEL_CMDLINE = 'console=ttyS0 panic=0 no_timer_check quiet'
BUSYBOX = '/bin/busybox'

# Kernel options the power-button path needs -> module providing it when =m.
_NEEDED_KCONFIG = (('CONFIG_INPUT_EVDEV', 'evdev'),
                   ('CONFIG_ACPI_BUTTON', 'button'))

GuestArtifacts = collections.namedtuple(
    'GuestArtifacts',
    ['kernel', 'kernel_version', 'initramfs', 'root_disk', 'marker',
     'cmdline'])


class GuestImageError(Exception):
    """A host prerequisite for building the test guest is missing."""


def find_kernel():
    """Return ``(path, version)`` of the newest Debian kernel in /boot.

    The running kernel may be a different (e.g. container host) build with no
    modules on disk, so the guest always uses the packaged one.
    """
    def key(path):
        ver = os.path.basename(path)[len('vmlinuz-'):]
        return [int(p) if p.isdigit() else p for p in re.split(r'(\d+)', ver)]

    kernels = sorted(glob.glob('/boot/vmlinuz-*'), key=key)
    if not kernels:
        raise GuestImageError(
            'no /boot/vmlinuz-* found: install the Debian package '
            'linux-image-amd64 to run the functional tests')
    return kernels[-1], os.path.basename(kernels[-1])[len('vmlinuz-'):]


def extract_vmlinux(dest_path, kernel=None):
    """Unpack the ELF ``vmlinux`` from an xz-compressed Debian bzImage.

    QEMU boots an ELF kernel via PVH and so skips the in-guest decompression,
    which under TCG takes longer than the rest of the boot (about 11 s to
    the boot marker with the bzImage, 5.5 s with this).  The file is ~65 MiB.
    """
    kernel = kernel or find_kernel()[0]
    kver = os.path.basename(kernel)[len('vmlinuz-'):]
    with open('/boot/config-%s' % kver) as f:
        if 'CONFIG_PVH=y\n' not in f.read():
            raise GuestImageError('%s cannot boot via PVH' % kernel)
    with open(kernel, 'rb') as f:
        data = f.read()
    start = data.find(b'\xfd7zXZ\x00')
    if start < 0:
        raise GuestImageError('%s is not xz-compressed' % kernel)
    vmlinux = lzma.LZMADecompressor().decompress(data[start:])
    if not vmlinux.startswith(b'\x7fELF'):
        raise GuestImageError('no ELF vmlinux inside %s' % kernel)
    with open(dest_path, 'wb') as f:
        f.write(vmlinux)
    return dest_path


def _check_static(path):
    """Fail unless ``path`` is an ELF with no PT_INTERP (i.e. static)."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as e:
        raise GuestImageError('%s unreadable (install busybox-static): %s'
                              % (path, e))
    if data[:5] != b'\x7fELF\x02' or data[5] != 1:
        raise GuestImageError('%s is not a 64-bit LE ELF' % path)
    phoff, = struct.unpack_from('<Q', data, 0x20)
    phentsize, phnum = struct.unpack_from('<HH', data, 0x36)
    for i in range(phnum):
        if struct.unpack_from('<I', data, phoff + i * phentsize)[0] == 3:
            raise GuestImageError('%s is dynamically linked: install '
                                  'busybox-static' % path)
    return data


def _read_module(path):
    """Return an uncompressed .ko image (insmod in the guest can't unpack)."""
    with open(path, 'rb') as f:
        data = f.read()
    if path.endswith('.xz'):
        return lzma.decompress(data)
    if path.endswith('.gz'):
        return gzip.decompress(data)
    if path.endswith('.zst'):
        raise GuestImageError('%s: zstd modules are not supported' % path)
    return data


def _modules_for(kver, needed=_NEEDED_KCONFIG):
    """``[(name, ko_bytes)]`` to insmod in order; empty if all built in.

    Debian builds the ACPI button driver and evdev as modules, without which
    the guest never sees the ACPI power button.

    :param needed: ``((kernel option, module providing it when =m), ...)``
    """
    config_path = '/boot/config-%s' % kver
    try:
        with open(config_path) as f:
            config = dict(line.strip().split('=', 1) for line in f
                          if line.startswith('CONFIG_'))
    except OSError:
        raise GuestImageError('%s missing: reinstall linux-image-amd64'
                              % config_path)
    moddir = '/lib/modules/%s' % kver
    try:
        with open(os.path.join(moddir, 'modules.dep')) as f:
            deps = dict((k, v.split()) for k, v in
                        (line.rstrip('\n').split(':', 1) for line in f))
    except OSError:
        deps = {}
    by_name = {re.sub(r'\.ko(\.\w+)?$', '', os.path.basename(k)): k
               for k in deps}
    ordered = []

    def add(rel):
        for dep in reversed(deps.get(rel, [])):
            add(dep)
        if rel not in ordered:
            ordered.append(rel)

    for option, name in needed:
        if config.get(option) == 'y':
            continue
        if config.get(option) != 'm' or name not in by_name:
            raise GuestImageError(
                '%s (%s) unavailable for kernel %s: install the Debian '
                'package linux-image-amd64 with its modules'
                % (option, name, kver))
        add(by_name[name])
    return [(os.path.basename(rel).split('.ko')[0],
             _read_module(os.path.join(moddir, rel))) for rel in ordered]


_INIT = r'''#!/bin/busybox sh
# PID 1 of the nova-kvmx functional-test guest.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
load_modules() {
    for m; do
        insmod /lib/modules/$m.ko || echo "KVMX-GUEST-WARNING insmod $m failed"
    done
}
load_modules %(modules)s
# Open the ACPI power button's event device *before* announcing readiness so
# a press right after the boot marker is buffered, then power off on it.
for ev in /sys/class/input/event*; do
    if [ "$(cat $ev/device/name 2>/dev/null)" = "Power Button" ]; then
        exec 3<"/dev/input/${ev##*/}"
        { dd bs=4096 count=1 of=/dev/null 2>/dev/null
          echo "%(poweroff)s %(marker)s"; sync; poweroff -f; } <&3 &
        exec 3<&-
        break
    fi
done
[ -n "$!" ] || echo "KVMX-GUEST-WARNING no ACPI power button"
later_modules='%(later_modules)s'
%(extra_init)s
# kvmx.dirty=<MiB> on the kernel command line: rewrite that much memory
# over and over, as a busy guest does (live migration benchmarks).
for arg in $(cat /proc/cmdline); do
    case "$arg" in kvmx.dirty=*)
        mib=${arg#kvmx.dirty=}
        mkdir -p /dirty && mount -t tmpfs -o size=$((mib + 1))m tmpfs /dirty
        { i=0; while :; do i=$((i + 1))
              yes $i | head -c $((mib * 1048576)) >/dirty/pages; done; } &
        echo "%(dirty)s $mib MiB";;
    esac
done
# The NUMA nodes the guest sees, with their CPUs, for NUMA flavor tests.
for n in /sys/devices/system/node/node*; do
    [ -d "$n" ] && echo "%(numa)s ${n##*/} cpus=$(cat $n/cpulist)"
done
echo "%(booted)s %(marker)s"
while :; do sleep 3600; done
'''


def _cpio_newc(entries):
    """Serialise ``(name, mode, data, rdev)`` tuples as a newc archive."""
    out = io.BytesIO()

    def pad():
        out.write(b'\0' * (-out.tell() % 4))

    for ino, (name, mode, data, rdev) in enumerate(
            entries + [('TRAILER!!!', 0, b'', (0, 0))], start=1):
        nlink = 2 if mode & 0o170000 == 0o040000 else 1
        fields = (ino if name != 'TRAILER!!!' else 0, mode, 0, 0, nlink, 0,
                  len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0)
        out.write(b'070701' + b''.join(b'%08X' % v for v in fields))
        out.write(name.encode() + b'\0')
        pad()
        out.write(data)
        pad()
    return out.getvalue()


def build_initramfs(dest_path, marker=DEFAULT_MARKER,
                    needed=_NEEDED_KCONFIG, extra_init='', extra_files=(),
                    later=()):
    """Write a deterministic gzip'ed newc initramfs (busybox + /init).

    :param needed: the kernel options whose modules /init loads
    :param later: more kernel options whose modules (those ``needed`` did
        not load) extra_init loads when it wants them, with
        ``load_modules $later_modules``
    :param extra_init: shell lines /init runs before it says it booted
    :param extra_files: ``[(path, bytes)]`` of executables to add, or
        ``(path, bytes, mode)`` for other files; their directories are made
    """
    if not re.fullmatch(r'[A-Za-z0-9._:-]+', marker):
        raise ValueError('marker must match [A-Za-z0-9._:-]+: %r' % marker)
    busybox = _check_static(BUSYBOX)
    kver = find_kernel()[1]
    modules = _modules_for(kver, needed)
    loaded = {name for name, _ in modules}
    later_modules = [m for m in _modules_for(kver, tuple(needed) +
                                             tuple(later))
                     if m[0] not in loaded] if later else []
    init = _INIT % {'modules': ' '.join(n for n, _ in modules),
                    'later_modules': ' '.join(n for n, _ in later_modules),
                    'marker': marker, 'booted': BOOT_MARKER_PREFIX,
                    'poweroff': POWEROFF_MARKER_PREFIX,
                    'numa': NUMA_MARKER_PREFIX, 'extra_init': extra_init,
                    'dirty': DIRTY_MARKER_PREFIX}
    d, f = 0o040755, 0o100755
    dirs = ['bin', 'dev', 'lib', 'lib/modules', 'proc', 'sys', 'tmp']
    for path, *_ in extra_files:
        parts = path.split('/')[:-1]
        dirs += [parent for parent in ('/'.join(parts[:i])
                                       for i in range(1, len(parts) + 1))
                 if parent not in dirs]
    entries = [(n, d, b'', (0, 0)) for n in dirs]
    entries += [('dev/console', 0o020600, b'', (5, 1)),
                ('bin/busybox', f, busybox, (0, 0)),
                ('bin/sh', 0o120777, b'busybox', (0, 0)),
                ('init', f, init.encode(), (0, 0))]
    entries += [('lib/modules/%s.ko' % n, 0o100644, ko, (0, 0))
                for n, ko in modules + later_modules]
    entries += [(path, 0o100000 | (rest[0] if rest else 0o755), data,
                 (0, 0)) for path, data, *rest in extra_files]
    with open(dest_path, 'wb') as raw:
        with gzip.GzipFile(fileobj=raw, mode='wb', compresslevel=1,
                           mtime=0, filename='') as gz:
            gz.write(_cpio_newc(entries))
    return dest_path


def program_files(path, package):
    """``[(path in the guest, bytes)]``: the dynamically linked program
    ``path`` and the shared libraries (with the dynamic loader) ``ldd``
    resolves for it, each at the path ``ldd`` names, where the loader
    looks for it.

    :param package: the Debian package to install when ``path`` is missing
    """
    if not os.access(path, os.X_OK):
        raise GuestImageError('%s missing: install the Debian package %s'
                              % (path, package))
    ldd, _ = processutils.execute('ldd', path)
    files = []
    for name in [path] + re.findall(r'(/\S+) \(0x', ldd):
        with open(name, 'rb') as f:
            files.append((name.lstrip('/'), f.read()))
    return files


def build_root_disk(dest_path, size_mb=16):
    """Create an empty qcow2 so the Nova server has a root disk to attach."""
    processutils.execute('qemu-img', 'create', '-f', 'qcow2', dest_path,
                         '%dM' % size_mb)
    return dest_path


_cache = {}
_cache_lock = threading.Lock()


def _cache_dir():
    """One temp dir per process for the cached artefacts."""
    if 'dir' not in _cache:
        # Outside the per-test TMPDIR, which is removed after each test
        # while this cache lives as long as the process.
        _cache['dir'] = tempfile.mkdtemp(
            prefix='kvmx-guest-',
            dir=os.environ.get('KVMX_TEST_DIR', '/var/tmp'))
        os.chmod(_cache['dir'], 0o755)  # qemu runs as libvirt-qemu
        atexit.register(shutil.rmtree, _cache['dir'], True)
    return _cache['dir']


def get_guest_artifacts():
    """Build (once per process) and return a ``GuestArtifacts`` tuple.

    Files live in a world-readable temp dir removed at interpreter exit
    (libvirt's unprivileged qemu user must read kernel and initrd); callers
    must copy ``root_disk`` rather than write to it if they need isolation.
    """
    with _cache_lock:
        if 'artifacts' not in _cache:
            tmpdir = _cache_dir()
            kernel, kver = find_kernel()
            _cache['artifacts'] = GuestArtifacts(
                kernel=kernel, kernel_version=kver,
                initramfs=build_initramfs(
                    os.path.join(tmpdir, 'initramfs.cpio.gz'),
                    DEFAULT_MARKER),
                root_disk=build_root_disk(os.path.join(tmpdir, 'root.qcow2')),
                marker=DEFAULT_MARKER, cmdline=KERNEL_CMDLINE)
        return _cache['artifacts']


_variants = {}
_variants_lock = threading.Lock()


def variant(name, **builders):
    """The default guest's artifacts with some replaced, built once per
    process: ``builders`` maps a ``GuestArtifacts`` field to a function
    that builds it in guest_image's cache directory (given), in files
    named after ``name``, and returns it."""
    with _variants_lock:
        if name not in _variants:
            plain = get_guest_artifacts()
            tmpdir = os.path.dirname(plain.initramfs)
            _variants[name] = plain._replace(**{
                field: build(tmpdir) for field, build in builders.items()})
        return _variants[name]


def get_pvh_kernel():
    """Return (building once per process) a fast-booting ``vmlinux`` path.

    A drop-in replacement for ``GuestArtifacts.kernel``; costs ~1.3 s once.
    """
    with _cache_lock:
        if 'vmlinux' not in _cache:
            _cache['vmlinux'] = extract_vmlinux(
                os.path.join(_cache_dir(), 'vmlinux'))
        return _cache['vmlinux']
