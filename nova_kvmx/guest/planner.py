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

"""Nova's instance, flavor and image -> :class:`GuestSpec`.

Pure: no libvirt, no files, no CONF. Every decision about what the guest
looks like is made here, from the objects Nova hands the driver and the
host-wide :class:`DriverSettings`.
"""

import re

from nova import exception

from nova_kvmx.guest import cpu_model
from nova_kvmx.guest import cpu_quota
from nova_kvmx.guest import consoles
from nova_kvmx.guest import cpu_topology
from nova_kvmx.guest import devices
from nova_kvmx.guest import disk_names
from nova_kvmx.guest import extras
from nova_kvmx.guest import firmware
from nova_kvmx.guest import hwdevices
from nova_kvmx.guest import keys
from nova_kvmx.guest import numa
from nova_kvmx.guest import platform
from nova_kvmx.guest import qos
from nova_kvmx.guest import spec
from nova_kvmx.guest import vtpm

# The consoles Nova's libvirt driver puts on a direct kernel boot command
# line (after root=<root disk>), so images built for Nova boot the same way.
CONSOLE_CMDLINE = 'console=tty0 console=ttyS0'

# A machine type as libvirt's domain schema spells it.
MACHINE_TYPE = re.compile(r'[a-zA-Z0-9_.-]+')
# Characters XML 1.0 cannot carry, even escaped: NUL and the other C0
# controls but tab and newlines, lone surrogates (a non-UTF-8 byte decoded
# with surrogateescape), U+FFFE and U+FFFF.
_NOT_XML = re.compile('[^\t\n\r\x20-\ud7ff\ue000-\ufffd'
                      '\U00010000-\U0010ffff]')


def plan_guest(context, instance, image_meta, files, settings,
               network_info=None, vf_netdevs=None, volumes=(),
               serial_ports=(), chosen_firmware=None):
    """Decide the guest that realises ``instance`` on this host.

    :param context: the request context (for the owner's names only)
    :param instance: nova.objects.Instance (with its flavor)
    :param image_meta: nova.objects.ImageMeta of the boot image
    :param files: spec.GuestFiles prepared for the instance
    :param settings: spec.DriverSettings of this host
    :param network_info: the instance's ports (nova.network.model)
    :param vf_netdevs: {VF PCI address: netdev} of its macvtap ports
    :param volumes: guest.volumes.VolumeDisks of the connected volumes
        (the root disk among them when the instance boots from a volume)
    :param serial_ports: the TCP ports acquired for its serial ports
        (guest.consoles.serial_port_count of them), empty without the
        serial console
    :param chosen_firmware: guest.firmware.Chosen, the UEFI firmware
        files of the instance's previous domain, kept if they still fit
    """
    flavor = instance.flavor
    keys.refuse_unsupported(flavor, image_meta)
    wanted = consoles.serial_port_count(flavor, image_meta, settings)
    if len(serial_ports) != wanted:
        raise exception.InternalError(
            '%d serial ports acquired for a guest of %d' % (
                len(serial_ports), wanted))
    machine_type = plan_machine_type(image_meta, settings)
    disk_names.check_disk_bus(image_meta, machine_type)
    disks = plan_disks(files, image_meta, settings.disk_cache, volumes,
                       settings.network_disk_cache, settings.disk_io,
                       cdrom_bus=disk_names.cdrom_bus(
                           image_meta, settings.virt_type, machine_type),
                       has_ide='q35' not in machine_type)
    nics_and_hostdevs = devices.plan_devices(
        instance, image_meta, settings.virt_type, network_info, vf_netdevs)
    memory = numa.plan_numa(instance.numa_topology, flavor, image_meta,
                            machine_type, settings)
    if devices.needs_shared_memory(nics_and_hostdevs):
        memory['shared_memory'] = True
    guest_extras = extras.plan_extras(flavor, image_meta, settings,
                                      disks[0].bus)
    return spec.GuestSpec(
        uuid=instance.uuid,
        name=instance.name,
        virt_type=settings.virt_type,
        arch=settings.arch,
        machine_type=machine_type,
        memory_mb=flavor.memory_mb,
        vcpus=flavor.vcpus,
        cpu=plan_cpu(flavor, image_meta, settings),
        boot=plan_boot(files, image_meta, disks[0].target_dev),
        disks=disks,
        console_log=files.console_log,
        owner=plan_owner(context, instance, image_meta, disks[0]),
        package_version=settings.package_version,
        vnc_listen=settings.vnc_listen,
        serial_listen=settings.serial_listen if serial_ports else None,
        serial_ports=tuple(serial_ports),
        spice=settings.spice,
        guest_agent=image_meta.properties.get('hw_qemu_guest_agent',
                                              False),
        devices=nics_and_hostdevs,
        cpu_quota=cpu_quota.plan_cpu_quota(flavor, settings),
        # A guest without a NUMA claim has no <iothreadpin>: libvirt runs
        # its IOThreads on the <vcpu cpuset> its vCPUs and emulator threads
        # float over (every CPU without one).
        iothreads=numa.IOTHREADS,
        pcie_root_ports=plan_pcie_root_ports(machine_type, settings),
        extras=guest_extras,
        qos=qos.plan_qos(flavor, settings, nics_and_hostdevs),
        firmware=firmware.plan_firmware(flavor, image_meta, machine_type,
                                        settings, chosen_firmware),
        vtpm=vtpm.plan_vtpm(instance, image_meta, settings),
        hw_devices=hwdevices.plan_hw_devices(
            flavor, image_meta, settings, machine_type,
            usb_devices=extras.on_usb(guest_extras) or any(
                d.bus == 'usb' for d in disks
                if isinstance(d, spec.DiskSpec))),
        platform=platform.plan_platform(instance, image_meta, settings),
        **memory,
    )


def plan_cpu(flavor, image_meta, settings):
    mode, model, features = cpu_model.plan_model(flavor, settings)
    topology = cpu_topology.best_cpu_topology(flavor, image_meta)
    return spec.CPUSpec(
        mode=mode,
        model=model,
        sockets=topology.sockets,
        cores=topology.cores,
        threads=topology.threads,
        features=features)


def _image_ids(image_meta):
    return dict(image_id=image_meta.id if 'id' in image_meta else None,
                image_name=image_meta.name if 'name' in image_meta else None)


def plan_machine_type(image_meta, settings):
    """The image's ``hw_machine_type``, else the host's; InvalidMachineType
    for a value libvirt cannot take (an image owner chooses it)."""
    mtype = image_meta.properties.get('hw_machine_type',
                                      settings.machine_type)
    if not MACHINE_TYPE.fullmatch(mtype):
        raise exception.InvalidMachineType(
            mtype=mtype, reason="a machine type is letters, digits, '_', "
            "'.' and '-' only", **_image_ids(image_meta))
    return mtype


def plan_pcie_root_ports(machine_type, settings):
    """``[libvirt] num_pcie_ports`` on the machines with PCI Express root
    ports, as Nova's libvirt driver does: a q35 guest has only as many
    hotplug slots (attach interface, attach volume) as root ports."""
    pcie_machine = (
        (settings.arch == 'x86_64' and 'q35' in machine_type) or
        (settings.arch == 'aarch64' and machine_type.startswith('virt')))
    return settings.pcie_ports if pcie_machine else 0


def plan_boot(files, image_meta, root_dev):
    """Direct kernel boot when the instance has a kernel; the image's
    ``os_command_line`` replaces the default only when it is not empty.

    :raises: ImageUnacceptable for a command line XML cannot carry
    """
    if not files.kernel:
        return spec.BootSpec()
    cmdline = image_meta.properties.get('os_command_line')
    if cmdline and _NOT_XML.search(cmdline):
        raise exception.ImageUnacceptable(
            image_id=_image_ids(image_meta)['image_id'],
            reason='its os_command_line has characters a libvirt domain '
            'cannot carry (NUL, control characters or invalid Unicode)')
    return spec.BootSpec(
        kernel=files.kernel,
        initrd=files.ramdisk,
        cmdline=cmdline or 'root=/dev/%s %s' % (root_dev, CONSOLE_CMDLINE))


def plan_disks(files, image_meta, cache, volumes=(), network_cache='none',
               io=None, cdrom_bus=disk_names.CONFIG_DRIVE_BUS,
               has_ide=False):
    """The guest's disks, root disk first: the instance's own disks on the
    image's disk bus (``hw_disk_bus``), each named as Nova's blockinfo
    names it (the first name its bus has free once the volumes have
    theirs), then the volumes with the names of their block device
    mappings, then the config drive, then a stable rescue's disk.

    An instance disk is a qcow2 file with the ``cache`` and ``io``
    modes, or an RBD image (raw) with the ``network_cache`` mode.

    :param has_ide: the machine type has an IDE controller (i440fx)
    :raises: InvalidBDM when no disk is the root disk, two disks have
        one name, or a volume is on IDE without an IDE controller
    """
    bus = disk_names.image_bus(image_meta)
    local = [(kind, path) for kind, path in (
        ('root', files.root_disk), ('rescued_root', files.rescued_root),
        ('ephemeral', files.ephemeral), ('swap', files.swap)) if path]
    names = disk_names.local_names(bus, [kind for kind, _ in local],
                                   [v.target_dev for v in volumes])
    own = [own_disk(path, names[kind], bus, cache, network_cache, io,
                    files.base_of(path)) for kind, path in local]
    roots = [v for v in volumes if v.is_root]
    if files.root_disk is None and len(roots) != 1:
        raise exception.InvalidBDMFormat(
            details='the instance has no root disk: no local root disk and '
                    '%d root volumes (boot index 0)' % len(roots))
    disks = roots + own + sorted(
        (v for v in volumes if not v.is_root),
        key=lambda v: (len(v.target_dev), v.target_dev))
    if files.config_drive:
        # A CD-ROM on the image's hw_cdrom_bus (SATA: q35 has no IDE).
        disks.append(spec.DiskSpec(
            path=files.config_drive,
            target_dev=disk_names.CDROM_DEV[cdrom_bus],
            bus=cdrom_bus, device='cdrom',
            driver_format='raw', readonly=True, cache=cache))
    if files.rescue:
        disks.append(spec.DiskSpec(
            path=files.rescue.path, target_dev=disk_names.next_free(
                files.rescue.bus, {d.target_dev for d in disks}),
            bus=files.rescue.bus, device=files.rescue.device,
            cache=cache, boot_order=1,
            base=files.base_of(files.rescue.path)))
    ide = [d.target_dev for d in disks if d.bus == 'ide']
    if ide and not has_ide:
        raise exception.InvalidBDMFormat(
            details='%s on IDE, and the machine type has no IDE '
                    'controller' % ', '.join(ide))
    names = [d.target_dev for d in disks]
    if len(set(names)) != len(names):
        raise exception.InvalidBDMFormat(
            details='two disks of the guest are named alike: %s' %
                    ', '.join(sorted(names)))
    return tuple(disks)


def own_disk(path, target_dev, bus, cache, network_cache, io=None,
             base=None):
    """A disk of the instance's own: a qcow2 file (an overlay on
    ``base``, a spec.BaseImage), or an RBD image."""
    if isinstance(path, spec.RBDImage):
        return spec.DiskSpec(path=path, target_dev=target_dev, bus=bus,
                             driver_format='raw', cache=network_cache)
    return spec.DiskSpec(path=path, target_dev=target_dev, bus=bus,
                         cache=cache, io=io, base=base)


def plan_owner(context, instance, image_meta, root=None):
    flavor = instance.flavor
    return spec.OwnerInfo(
        display_name=instance.display_name or '',
        flavor_name=flavor.name,
        flavor_id=flavor.flavorid,
        flavor_memory_mb=flavor.memory_mb,
        flavor_vcpus=flavor.vcpus,
        flavor_root_gb=flavor.root_gb,
        flavor_ephemeral_gb=flavor.ephemeral_gb,
        flavor_swap_mb=flavor.swap,
        user_id=instance.user_id,
        user_name=getattr(context, 'user_name', None),
        project_id=instance.project_id,
        project_name=getattr(context, 'project_name', None),
        image_id=image_meta.id if 'id' in image_meta else None,
        root_volume_id=getattr(root, 'volume_id', None),
    )
