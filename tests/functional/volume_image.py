# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""The test guest that shows what it sees of its disks.

The agent guest of :mod:`tests.functional.agent_image` (virtio disks,
ext4, the QEMU guest agent when the domain has its channel), plus a
watcher of its virtio disks, at boot and hot-plugged, on the serial
console:

* a disk seen for the first time has its first sector read: a token
  there (``KVMX-TOKEN:<token>``) is reported, ``KVMX-VOLUME vdb read
  <token> size <bytes>``; else a new token is written and synced
  (``KVMX-VOLUME vdb wrote <token> size <bytes>``), or ``nowrite`` for a
  read-only disk -- so data written by one guest is read back by another
  that is given the same volume;
* a disk whose size changes (an extended volume) is reported again,
  ``KVMX-VOLUME vdb size <bytes>``; a disk that goes, ``KVMX-VOLUME vdb
  gone``.

The root disk image (:func:`build_root_disk`) is an ext4 filesystem (for
the agent's freeze) with a token in its first sector naming the image: a
server booted from a volume made of it reports that token for ``vda``.
"""

import os
import re

from oslo_concurrency import processutils

from tests.functional import agent_image
from tests.functional import guest_image

VOLUME_MARKER_PREFIX = 'KVMX-VOLUME'
TOKEN_PREFIX = 'KVMX-TOKEN:'
IMAGE_TOKEN = 'image-root-disk'

WATCHER = r'''# Disks: read or write a token, report sizes and departures.
mkdir -p /run/vol
( while :; do
    for b in /sys/block/vd*; do
        [ -e "$b" ] || continue
        d=${b##*/}
        size=$(( $(cat $b/size) * 512 ))
        if [ ! -e /run/vol/$d ]; then
            tok=$(dd if=/dev/$d bs=512 count=1 2>/dev/null | tr -d '\000' |
                  head -n 1)
            case "$tok" in
            %(prefix)s*)
                echo "%(marker)s $d read ${tok#%(prefix)s} size $size";;
            *)
                tok=$(cat /proc/sys/kernel/random/uuid)
                if echo "%(prefix)s$tok" |
                        dd of=/dev/$d bs=512 conv=sync,fsync 2>/dev/null
                then
                    echo "%(marker)s $d wrote $tok size $size"
                else
                    echo "%(marker)s $d nowrite size $size"
                fi;;
            esac
            echo $size >/run/vol/$d
        elif [ "$(cat /run/vol/$d)" != "$size" ]; then
            echo "%(marker)s $d size $size"
            echo $size >/run/vol/$d
        fi
    done
    for f in /run/vol/*; do
        [ -e "$f" ] || continue
        d=${f##*/}
        if [ ! -e /sys/block/$d ]; then
            echo "%(marker)s $d gone"
            rm -f "$f"
        fi
    done
    sleep 0.5
done ) &'''


def build_initramfs(dest_path):
    return guest_image.build_initramfs(
        dest_path, guest_image.DEFAULT_MARKER,
        needed=agent_image.NEEDED_KCONFIG,
        extra_init='\n'.join((agent_image.INIT % {
            'disk': agent_image.DISK_MARKER_PREFIX,
            'agent': agent_image.AGENT_MARKER_PREFIX,
            'port': agent_image.AGENT_PORT,
            'noagent': agent_image.NO_AGENT_CMDLINE},
            WATCHER % {'marker': VOLUME_MARKER_PREFIX,
                       'prefix': TOKEN_PREFIX})),
        extra_files=agent_image.agent_files())


def build_root_disk(dest_path, size_mb=16):
    """A raw disk: ext4, with the image's token in its first sector (which
    ext4 leaves unused)."""
    with open(dest_path, 'wb') as f:
        f.truncate(size_mb * 1024 * 1024)
    processutils.execute(
        'mkfs.ext4', '-q', '-F', '-L', 'kvmx-root', '-m', '0',
        '-E', 'lazy_itable_init=0,lazy_journal_init=0,nodiscard', dest_path)
    with open(dest_path, 'r+b') as f:
        f.write((TOKEN_PREFIX + IMAGE_TOKEN + '\n').encode())
    return dest_path


def get_artifacts():
    """Build (once per process) and return a ``GuestArtifacts`` tuple, in
    guest_image's cache directory."""
    return guest_image.variant(
        'volume',
        initramfs=lambda tmpdir: build_initramfs(
            os.path.join(tmpdir, 'volume-initramfs.cpio.gz')),
        root_disk=lambda tmpdir: build_root_disk(
            os.path.join(tmpdir, 'volume-root.raw')))


def events(console):
    """[(disk, what, value, size)] the watcher reported, in order: what is
    'read', 'wrote', 'nowrite', 'size' or 'gone'."""
    found = []
    for line in console.splitlines():
        m = re.search(VOLUME_MARKER_PREFIX + r' (vd[a-z]+) (read|wrote) '
                      r'(\S+) size (\d+)', line)
        if m:
            found.append((m.group(1), m.group(2), m.group(3),
                          int(m.group(4))))
            continue
        m = re.search(VOLUME_MARKER_PREFIX + r' (vd[a-z]+) nowrite size '
                      r'(\d+)', line)
        if m:
            found.append((m.group(1), 'nowrite', None, int(m.group(2))))
            continue
        m = re.search(VOLUME_MARKER_PREFIX + r' (vd[a-z]+) size (\d+)',
                      line)
        if m:
            found.append((m.group(1), 'size', None, int(m.group(2))))
            continue
        m = re.search(VOLUME_MARKER_PREFIX + r' (vd[a-z]+) gone', line)
        if m:
            found.append((m.group(1), 'gone', None, None))
    return found
