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

"""Guest disk names and buses, as Nova's libvirt driver assigns them.

A disk's target name (``vda``, ``sdb``) is what libvirt orders the guest's
disks by, and what Nova stores as a block device mapping's ``device_name``
(``/dev/vdb``): the two must agree, and they should be what the guest's
kernel calls the disk. Linux names virtio disks ``vd*`` and SCSI and SATA
disks ``sd*``, each the lowest free letter in the order the disks appear,
so names are handed out the same way (``nova.virt.libvirt.blockinfo``):
the root disk first, then the ephemeral and swap disks, then the volumes,
each the first name free on its bus. The config drive is a CD-ROM on SATA
named ``sdz`` (Linux calls it ``sr0``), kept out of every other disk's way.

Pure: names in, names out.
"""

from nova import block_device
from nova import exception
from nova.virt.libvirt import blockinfo

from nova_kvmx import exception as kvmx_exception

# The disk buses a guest disk may use, with the name prefix of their disks
# (a q35 machine has neither IDE nor a floppy controller).
BUS_PREFIX = {'virtio': 'vd', 'scsi': 'sd', 'sata': 'sd'}
# Device types a disk may be (libvirt's <disk device=...>).
DEVICE_TYPES = ('disk', 'cdrom', 'lun')
DEFAULT_DISK_BUS = 'virtio'
DEFAULT_CDROM_BUS = 'sata'
# The config drive: a CD-ROM on the SATA bus.
CONFIG_DRIVE_DEV = 'sdz'
CONFIG_DRIVE_BUS = 'sata'
# The buses of Nova's blockinfo a CD-ROM can be on (hw_cdrom_bus), with
# the config drive's name on each (Nova's on IDE: hdd); virtio-blk and
# the floppy controller have no CD-ROM.
CDROM_DEV = {'sata': CONFIG_DRIVE_DEV, 'scsi': CONFIG_DRIVE_DEV,
             'usb': CONFIG_DRIVE_DEV, 'ide': 'hdd'}


def prefix(bus):
    """The name prefix of ``bus``'s disks; UnsupportedHardware for a bus
    the driver does not give guests."""
    try:
        return BUS_PREFIX[bus]
    except KeyError:
        raise exception.UnsupportedHardware(model=bus, virt='kvmx')


def strip(name):
    """'/dev/vdb' -> 'vdb' (a partition number is not part of a disk's
    name: '/dev/sda1' -> 'sda')."""
    if not name:
        return None
    return block_device.strip_dev(name).rstrip('0123456789') or None


def bus_of_name(name):
    """The bus a disk name implies (Nova's reverse mapping: ``sd`` is
    taken for SCSI), None when it implies none this driver offers."""
    if name and name.startswith('vd'):
        return 'virtio'
    if name and name.startswith('sd'):
        return 'scsi'
    return None


def image_bus(image_meta, device_type='disk'):
    """The bus of the image's disks (``hw_disk_bus``, virtio by default)
    or CD-ROMs (``hw_cdrom_bus``, SATA by default)."""
    props = image_meta.properties
    if device_type == 'cdrom':
        bus = props.get('hw_cdrom_bus', DEFAULT_CDROM_BUS)
    else:
        bus = props.get('hw_disk_bus', DEFAULT_DISK_BUS)
    prefix(bus)
    return bus


def cdrom_bus(image_meta, virt_type, machine_type):
    """The bus of the guest's CD-ROM (the config drive): the image's
    ``hw_cdrom_bus`` (SATA by default, as Nova's blockinfo on q35).

    :raises: Nova's UnsupportedHardware for a bus blockinfo does not
        allow; UnsupportedKey for virtio and fdc (no CD-ROM there) and
        for IDE on a q35 machine (it has no IDE controller)
    """
    bus = image_meta.properties.get('hw_cdrom_bus', DEFAULT_CDROM_BUS)
    if not blockinfo.is_disk_bus_valid_for_virt(virt_type, bus):
        raise exception.UnsupportedHardware(model=bus, virt=virt_type)
    reason = None
    if bus not in CDROM_DEV:
        reason = 'QEMU has no CD-ROM on the %s bus' % bus
    elif bus == 'ide' and 'q35' in machine_type:
        reason = 'the %s machine type has no IDE controller' % machine_type
    if reason:
        raise kvmx_exception.UnsupportedKey(
            kind='image property', key='hw_cdrom_bus', value=bus,
            reason=reason)
    return bus


def choose_bus(requested, name, default):
    """The bus of a block device mapping, as Nova's blockinfo chooses it:
    the one it asks for if the driver offers it, else the one its name
    implies (``default`` when that has the name's prefix: ``sdb`` of an
    image on SATA is on SATA), else ``default``."""
    if requested in BUS_PREFIX:
        return requested
    name = strip(name)
    if name and name.startswith(prefix(default)):
        return default
    return bus_of_name(name) or default


def next_free(bus, used, maximum=-1):
    """The first name on ``bus`` not in ``used`` (a set of names).

    :param maximum: ``[compute] max_disk_devices_to_attach`` (-1: no
        limit); TooManyDiskDevices once the bus has no name left under it
    """
    pre = prefix(bus)
    index = 0
    while True:
        if 0 <= maximum <= index:
            raise exception.TooManyDiskDevices(maximum=maximum)
        name = block_device.generate_device_name(pre, index)
        if name not in used:
            return name
        index += 1


def local_names(bus, kinds, taken=()):
    """Names of the instance's own disks on ``bus``, in the order of
    ``kinds`` (Nova's: the root disk, the ephemeral disk, swap), each the
    first name free once the volumes (``taken``) and the config drive
    have theirs.

    :returns: {kind: name}
    """
    used = set(taken) | {CONFIG_DRIVE_DEV}
    names = {}
    for kind in kinds:
        names[kind] = next_free(bus, used)
        used.add(names[kind])
    return names
