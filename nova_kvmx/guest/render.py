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

"""GuestSpec -> libvirt domain XML.

Pure: it fills Nova's libvirt config classes (``nova.virt.libvirt.config``,
one small class per libvirt element, XML built with lxml so every
user-controlled string is escaped by construction) from a GuestSpec and
nothing else.
"""

from lxml import etree
from nova.virt.libvirt import config as vconfig

from nova_kvmx.guest import consoles
from nova_kvmx.guest import extras
from nova_kvmx.guest import firmware
from nova_kvmx.guest import hwdevices
from nova_kvmx.guest import platform
from nova_kvmx.guest import qos
from nova_kvmx.guest import render_devices
from nova_kvmx.guest import render_numa
from nova_kvmx.guest import render_volumes
from nova_kvmx.guest import spec
from nova_kvmx.guest import vtpm

# SMBIOS values cloud-init and other guest tools use to recognise a Nova
# guest; the same as Nova's libvirt driver sets.
SMBIOS_MANUFACTURER = 'OpenStack Foundation'
SMBIOS_PRODUCT = 'OpenStack Nova'
SMBIOS_FAMILY = 'Virtual Machine'

MEMBALLOON_STATS_PERIOD = 10

# The virtio-serial port the QEMU guest agent listens on (the name its
# packages look for, and libvirt talks to).
GUEST_AGENT_CHANNEL = 'org.qemu.guest_agent.0'


def render_domain(guest):
    """Return the domain XML (str) for a :class:`spec.GuestSpec`."""
    return build_domain(guest).to_xml()


def build_domain(guest):
    conf = vconfig.LibvirtConfigGuest()
    conf.virt_type = guest.virt_type
    conf.name = guest.name
    conf.uuid = guest.uuid
    conf.memory = guest.memory_mb * 1024
    conf.vcpus = guest.vcpus
    conf.metadata.append(build_metadata(guest))
    conf.sysinfo = build_sysinfo(guest)
    conf.os_smbios = vconfig.LibvirtConfigGuestSMBIOS()
    conf.os_type = 'hvm'
    conf.os_mach_type = guest.machine_type
    set_boot(conf, guest.boot, any(getattr(disk, 'boot_order', None)
                                   for disk in guest.disks))
    conf.features = [vconfig.LibvirtConfigGuestFeatureACPI(),
                     vconfig.LibvirtConfigGuestFeatureAPIC()]
    conf.cpu = build_cpu(guest.cpu)
    render_numa.apply_numa(conf, guest)
    conf.clock = build_clock()
    for disk in guest.disks:
        conf.add_device(build_disk(disk) if isinstance(disk, spec.DiskSpec)
                        else render_volumes.build_volume_disk(disk))
    for device in render_devices.build_devices(guest.devices):
        conf.add_device(device)
    for device in build_pcie_root_ports(guest.pcie_root_ports):
        conf.add_device(device)
    for device in consoles.build_serials(
            guest.console_log, guest.serial_listen, guest.serial_ports):
        conf.add_device(device)
    if guest.guest_agent:
        conf.add_device(GuestAgentChannel())
    for device in consoles.build_graphics(guest.vnc_listen, guest.spice):
        conf.add_device(device)
    if guest.vtpm is not None:
        conf.add_device(vtpm.build_vtpm(guest.vtpm))
    conf.add_device(build_memballoon(guest.memballoon))
    if guest.extras is not None:
        extras.apply_extras(conf, guest.extras)
    if guest.qos is not None:
        qos.apply_qos(conf, guest.qos)
    firmware.apply_firmware(conf, guest.firmware)
    if guest.hw_devices is not None:
        hwdevices.apply_hw_devices(conf, guest.hw_devices)
    if guest.platform is not None:
        platform.apply_platform(conf, guest.platform)
    return conf


def build_pcie_root_ports(count):
    """The PCI Express root and ``count`` root ports; libvirt only adds
    ports beyond those for the devices the domain already has."""
    if not count:
        return []
    return [vconfig.LibvirtConfigGuestPCIeRootController()] + [
        vconfig.LibvirtConfigGuestPCIeRootPortController()
        for _ in range(count)]


def build_metadata(guest):
    owner = guest.owner
    meta = vconfig.LibvirtConfigGuestMetaNovaInstance()
    meta.package = guest.package_version
    meta.name = owner.display_name
    flavor = vconfig.LibvirtConfigGuestMetaNovaFlavor()
    flavor.name = owner.flavor_name
    flavor.id = owner.flavor_id
    flavor.memory = owner.flavor_memory_mb
    flavor.vcpus = owner.flavor_vcpus
    flavor.disk = owner.flavor_root_gb
    flavor.ephemeral = owner.flavor_ephemeral_gb
    flavor.swap = owner.flavor_swap_mb
    meta.flavor = flavor
    meta_owner = vconfig.LibvirtConfigGuestMetaNovaOwner()
    meta_owner.userid = owner.user_id
    meta_owner.username = owner.user_name
    meta_owner.projectid = owner.project_id
    meta_owner.projectname = owner.project_name
    meta.owner = meta_owner
    if owner.root_volume_id:
        meta.roottype = 'volume'
        meta.rootid = owner.root_volume_id
    elif owner.image_id:
        meta.roottype = 'image'
        meta.rootid = owner.image_id
    return meta


def build_sysinfo(guest):
    sysinfo = vconfig.LibvirtConfigGuestSysinfo()
    sysinfo.system_manufacturer = SMBIOS_MANUFACTURER
    sysinfo.system_product = SMBIOS_PRODUCT
    sysinfo.system_version = guest.package_version
    sysinfo.system_serial = guest.uuid
    sysinfo.system_uuid = guest.uuid
    sysinfo.system_family = SMBIOS_FAMILY
    return sysinfo


def set_boot(conf, boot, per_disk=False):
    """Direct kernel boot, else boot from the disks: the first hard disk,
    or the disk with ``<boot order>`` when one has it (libvirt takes
    either, not both)."""
    if boot.kernel:
        conf.os_kernel = boot.kernel
        conf.os_initrd = boot.initrd
        conf.os_cmdline = boot.cmdline
    elif not per_disk:
        conf.os_boot_dev = ['hd']


def build_cpu(cpu):
    conf = vconfig.LibvirtConfigGuestCPU()
    conf.mode = cpu.mode
    conf.model = cpu.model
    conf.sockets = cpu.sockets
    conf.cores = cpu.cores
    conf.threads = cpu.threads
    for name, policy in cpu.features:
        conf.add_feature(vconfig.LibvirtConfigGuestCPUFeature(
            name, policy=policy))
    return conf


def build_clock():
    clock = vconfig.LibvirtConfigGuestClock()
    clock.offset = 'utc'
    for name, tickpolicy, present in (('pit', 'delay', None),
                                      ('rtc', 'catchup', None),
                                      ('hpet', None, False)):
        timer = vconfig.LibvirtConfigGuestTimer()
        timer.name = name
        timer.tickpolicy = tickpolicy
        timer.present = present
        clock.add_timer(timer)
    return clock


class DiskOnBase(vconfig.LibvirtConfigGuestDisk):
    """A qcow2 overlay whose base (a spec.BaseImage) libvirt must not
    relabel: libvirt gives a backing file to QEMU's user and never gives
    it back, which would lock nova-compute (an unprivileged user) out of
    the image cache. QEMU reads the base through the image cache's
    group instead."""

    def __init__(self, base, **kwargs):
        super().__init__(**kwargs)
        self.base = base

    def format_dom(self):
        dev = super().format_dom()
        add_base(dev, self.base)
        return dev


def add_base(disk, base):
    """``<disk>`` element ``disk`` backed by ``base`` (a spec.BaseImage),
    which libvirt is not to relabel (DiskOnBase)."""
    backing = etree.SubElement(disk, 'backingStore', type='file')
    etree.SubElement(backing, 'format', type=base.format)
    source = etree.SubElement(backing, 'source', file=base.path)
    etree.SubElement(source, 'seclabel', model='dac', relabel='no')
    # The base has no backing file of its own (storage.base_image).
    etree.SubElement(backing, 'backingStore')


def build_disk(disk):
    conf = vconfig.LibvirtConfigGuestDisk() if disk.base is None \
        else DiskOnBase(disk.base)
    conf.source_device = disk.device
    if isinstance(disk.path, spec.RBDImage):
        set_rbd_source(conf, disk.path)
    else:
        conf.source_type = 'file'
        conf.source_path = disk.path
    conf.driver_name = 'qemu'
    conf.driver_format = disk.driver_format
    conf.driver_cache = disk.cache
    conf.driver_io = disk.io
    conf.target_dev = disk.target_dev
    conf.target_bus = disk.bus
    conf.readonly = disk.readonly
    if disk.boot_order:
        conf.boot_order = str(disk.boot_order)
    return conf


def set_rbd_source(conf, image):
    """An RBD image QEMU opens with librbd, as Nova's Rbd image backend
    describes it: the monitors, and the cephx user's libvirt secret."""
    conf.source_type = 'network'
    conf.source_protocol = 'rbd'
    conf.source_name = image.name
    conf.source_hosts = [host for host, _ in image.hosts]
    conf.source_ports = [port for _, port in image.hosts]
    if image.auth_username:
        conf.auth_username = image.auth_username
        conf.auth_secret_type = 'ceph'
        conf.auth_secret_uuid = image.auth_secret_uuid


class GuestAgentChannel(vconfig.LibvirtConfigGuestChannel):
    """The guest agent's channel: a UNIX socket at a path libvirt chooses.

    Nova's class always writes the socket's path (Nova's libvirt driver
    puts it in /var/lib/libvirt/qemu); without one, libvirt makes it in the
    domain's own channel directory, with the right owner and security
    label, removes it with the domain and leaves it out of the XML it
    migrates.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.type = 'unix'
        self.target_name = GUEST_AGENT_CHANNEL

    def format_dom(self):
        dev = vconfig.LibvirtConfigGuestDevice.format_dom(self)
        dev.set('type', self.type)
        dev.append(etree.Element('target', type=self.target_type,
                                 name=self.target_name))
        return dev


def build_memballoon(enabled):
    """A virtio balloon with memory statistics, or an explicit 'none'
    (without a <memballoon> libvirt adds one)."""
    balloon = vconfig.LibvirtConfigMemoryBalloon()
    if enabled:
        balloon.model = 'virtio'
        balloon.period = MEMBALLOON_STATS_PERIOD
    else:
        balloon.model = 'none'
    return balloon
