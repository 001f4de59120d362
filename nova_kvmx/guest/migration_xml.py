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

"""The domain XML a live migration hands the destination.

A running guest cannot be re-planned: its devices, guest PCI addresses,
machine type and memory layout are fixed for its life. So the migratable
XML of the running domain is taken and only what belongs to the host is
changed to what Nova claimed on the destination: where vCPUs, emulator
threads, IOThreads and cell memory live (``<cputune>``, ``<numatune>``,
the large page size per guest cell), the CPUs unpinned guests float over
(their IOThreads with them), the PCI functions of passthrough devices, the
host side of ports and volumes (the destination's block device or Ceph
monitors and secret), the VNC listen address and the serial console's
ports.

Pure: XML and a :class:`DestinationHost` in, XML out.
"""

import dataclasses

from lxml import etree
from nova import exception
from nova.pci import utils as pci_utils
from nova.virt import hardware

from nova_kvmx.guest import render_devices
from nova_kvmx.guest import render_volumes
from nova_kvmx import safe_xml


@dataclasses.dataclass(frozen=True)
class DestinationHost:
    """What the destination's claim and configuration make of the guest.

    :param vcpu_pins: ((vCPU, host CPUs), ...) for a guest with a NUMA
        claim, empty otherwise
    :param emulator_pin: host CPUs of the emulator threads and IOThreads
        (NUMA claim)
    :param cell_nodes: ((guest cell, host NUMA node), ...)
    :param cell_pages: ((guest cell, large page size in KiB or None), ...),
        None to keep the source's pages
    :param realtime_vcpus: vCPUs under SCHED_FIFO, with
        ``realtime_priority``
    :param floating: CPUs a guest without a NUMA claim floats over on the
        destination; frozenset() for any CPU, None to keep the source's
    :param vnc_listen: the destination's VNC listen address (None: keep)
    :param hostdevs: ((source PCI address, destination PCI address), ...)
        of the flavor's passthrough devices
    :param interfaces: InterfaceSpecs of the ports as bound on the
        destination; each replaces the interface with its MAC
    :param volumes: guest.volumes.VolumeDisks of the volumes as connected
        on the destination; each replaces the disk with its serial
    :param serial_listen: the destination's serial console address, with
        ``serial_ports`` the ports it acquired, by serial port index
    """

    vcpu_pins: tuple = ()
    emulator_pin: frozenset = frozenset()
    cell_nodes: tuple = ()
    cell_pages: tuple | None = None
    realtime_vcpus: frozenset = frozenset()
    realtime_priority: int | None = None
    floating: frozenset | None = None
    vnc_listen: str | None = None
    hostdevs: tuple = ()
    interfaces: tuple = ()
    volumes: tuple = ()
    serial_listen: str | None = None
    serial_ports: tuple = ()


def destination_xml(xml, dest):
    """The migratable domain ``xml`` (str) rewritten for ``dest``.

    :raises: MigrationError when the source domain does not have what the
        destination's claim describes (another vCPU or cell layout, a
        device that is not there, small pages becoming large ones)
    """
    root = safe_xml.fromstring(xml)
    name = root.findtext('name')
    if dest.cell_nodes:
        _rewrite_numa(root, dest, name)
    elif dest.floating is not None:
        _set_cpuset(root.find('vcpu'), dest.floating)
    for src, dst in dest.hostdevs:
        _rewrite_hostdev(root, src, dst, name)
    for spec in dest.interfaces:
        _rewrite_interface(root, spec, name)
    for disk in dest.volumes:
        _rewrite_volume(root, disk)
    if dest.vnc_listen is not None:
        _rewrite_vnc(root, dest.vnc_listen)
    if dest.serial_listen is not None:
        _rewrite_serial(root, dest.serial_listen, dest.serial_ports)
    return etree.tostring(root, encoding='unicode')


def _fail(name, reason):
    raise exception.MigrationError(
        reason='the domain of %s cannot be moved to the destination\'s '
               'claim: %s' % (name, reason))


def _one(root, path, name):
    found = root.find(path)
    if found is None:
        _fail(name, 'it has no %s' % path)
    return found


def _set_cpuset(element, cpus, attribute='cpuset'):
    if cpus:
        element.set(attribute, hardware.format_cpu_spec(cpus))
    elif attribute in element.attrib:
        del element.attrib[attribute]


def _rewrite_numa(root, dest, name):
    cells = {int(m.get('cellid'))
             for m in root.findall('./numatune/memnode')}
    if cells != {cell for cell, _ in dest.cell_nodes}:
        _fail(name, 'guest NUMA cells %s, the claim has %s' % (
            sorted(cells), sorted(cell for cell, _ in dest.cell_nodes)))
    for cell, node in dest.cell_nodes:
        _one(root, "./numatune/memnode[@cellid='%d']" % cell, name).set(
            'nodeset', str(node))
    _one(root, './numatune/memory', name).set(
        'nodeset', hardware.format_cpu_spec(
            {node for _, node in dest.cell_nodes}))
    for vcpu, cpus in dest.vcpu_pins:
        _set_cpuset(_one(root, "./cputune/vcpupin[@vcpu='%d']" % vcpu, name),
                    cpus)
    if dest.emulator_pin:
        _set_cpuset(_one(root, './cputune/emulatorpin', name),
                    dest.emulator_pin)
        # IOThreads run with the emulator threads (numa.plan_cpu_tuning).
        # A guest started before it had IOThreads has none: it cannot get
        # one by migrating (libvirt keeps their number for the guest's
        # life).
        for pin in root.findall('./cputune/iothreadpin'):
            _set_cpuset(pin, dest.emulator_pin)
    _rewrite_vcpusched(root, dest)
    if dest.cell_pages is not None:
        _rewrite_pages(root, dest, name)


def _rewrite_vcpusched(root, dest):
    cputune = root.find('./cputune')
    if cputune is None:
        return
    for sched in cputune.findall('./vcpusched'):
        cputune.remove(sched)
    if dest.realtime_vcpus:
        etree.SubElement(
            cputune, 'vcpusched', vcpus=hardware.format_cpu_spec(
                dest.realtime_vcpus), scheduler='fifo',
            priority=str(dest.realtime_priority))


def _rewrite_pages(root, dest, name):
    """One ``<page>`` per guest cell backed by large pages, as the
    renderer writes them; the page size may differ from the source's
    (``hw:mem_page_size=large`` or ``any``), not its kind: a guest on
    small pages has no hugetlbfs backing to move to, and the reverse."""
    hugepages = root.find('./memoryBacking/hugepages')
    wanted = sorted((cell, size) for cell, size in dest.cell_pages if size)
    if (hugepages is None) != (not wanted):
        _fail(name, 'the source uses %s pages, the destination claim %s '
              'pages' % ('small' if hugepages is None else 'large',
                         'large' if wanted else 'small'))
    if hugepages is None:
        return
    for page in list(hugepages):
        hugepages.remove(page)
    for cell, size in wanted:
        etree.SubElement(hugepages, 'page', size=str(size), unit='KiB',
                         nodeset=str(cell))


def _pci_address(element):
    return pci_utils.get_pci_address(*(
        '%0*x' % (width, int(element.get(key), 16)) for key, width in (
            ('domain', 4), ('bus', 2), ('slot', 2), ('function', 1))))


def _rewrite_hostdev(root, src, dst, name):
    for address in root.findall(
            "./devices/hostdev[@type='pci']/source/address"):
        if _pci_address(address) == src:
            domain, bus, slot, function = \
                pci_utils.get_pci_address_fields(dst)
            for key, value in (('domain', domain), ('bus', bus),
                               ('slot', slot), ('function', function)):
                address.set(key, '0x' + value)
            return
    _fail(name, 'it has no PCI device %s' % src)


def _rewrite_interface(root, spec, name):
    """Replace the host side of the interface with ``spec``'s MAC; the
    guest side (PCI address, alias) stays what the guest sees."""
    for interface in root.findall('./devices/interface'):
        mac = interface.find('mac')
        if mac is None or mac.get('address', '').lower() != spec.mac:
            continue
        kept = [child for child in interface
                if child.tag in ('address', 'alias', 'rom', 'boot')]
        new = render_devices.build_interface(spec).format_dom()
        interface.clear()
        interface.attrib.update(new.attrib)
        interface.extend(list(new) + kept)
        return
    _fail(name, 'it has no interface with MAC %s' % spec.mac)


def _rewrite_volume(root, disk):
    """Replace the host side of the volume's disk (found by its serial, the
    volume id) with the destination's; its guest PCI address stays. A
    volume the domain does not have is left alone (as Nova does)."""
    for element in root.findall('./devices/disk'):
        if element.findtext('serial') != disk.volume_id:
            continue
        kept = [child for child in element if child.tag == 'address']
        new = render_volumes.build_volume_disk(disk).format_dom()
        element.clear()
        element.attrib.update(new.attrib)
        element.extend(list(new) + kept)
        return


def _rewrite_vnc(root, listen):
    for graphics in root.findall("./devices/graphics[@type='vnc']"):
        if graphics.get('listen') is not None:
            graphics.set('listen', listen)
        for element in graphics.findall("./listen[@type='address']"):
            element.set('address', listen)


def _rewrite_serial(root, listen, ports):
    """The TCP serial ports (and the console mirroring the first) listen
    on the destination's address, at the ports it acquired, as Nova's
    libvirt driver rewrites them."""
    for source in root.findall("./devices/serial[@type='tcp']/source") + \
            root.findall("./devices/console[@type='tcp']/source"):
        if source.get('host') is not None:
            source.set('host', listen)
        target = source.getparent().find('target')
        if target is not None and source.get('service') is not None:
            index = int(target.get('port', 0))
            if index < len(ports):
                source.set('service', str(ports[index]))
