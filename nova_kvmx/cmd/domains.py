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

"""A host's usage read back from its libvirt domains.

When Nova's database cannot be asked, each domain's XML says what Nova
claimed for it, because the driver (ours, as Nova's libvirt driver)
renders the claim there: ``<cpu><numa>`` the guest nodes, ``<numatune>``
each node's host cell, ``<cputune>`` the pins (a vCPU pinned to one CPU
of ``cpu_dedicated_set`` is a dedicated vCPU; the others float over the
cell's shared CPUs) and the emulator threads' CPUs (dedicated ones not
pinned to a vCPU are the isolated emulator threads' reservation),
``<memoryBacking>`` the page size per node, ``<hostdev>`` and hostdev
interfaces the PCI devices. Each domain becomes a
:class:`usage.Consumer` with an ``InstanceNUMATopology`` as Nova's claim
would have it; Nova's own accounting then does the rest.

Defined domains that are shut off are counted: Nova keeps a stopped
server's claim. What a domain cannot say: instances Nova is still
building or migrating here, and whether a guest's thread policy was
``isolate`` on a host with SMT (its free siblings are then not counted).
"""

from nova import objects
from nova.objects import fields
from nova.virt import hardware

from nova_kvmx.cmd import usage as host_usage
from nova_kvmx import safe_xml

_UNITS_KIB = {'b': 1.0 / 1024, 'bytes': 1.0 / 1024, 'KB': 1000.0 / 1024,
              'k': 1, 'KiB': 1, 'MB': 1000.0 ** 2 / 1024, 'M': 1024,
              'MiB': 1024, 'GB': 1000.0 ** 3 / 1024, 'G': 1024 ** 2,
              'GiB': 1024 ** 2, 'TB': 1000.0 ** 4 / 1024, 'T': 1024 ** 3,
              'TiB': 1024 ** 3}


def _kib(element, attr=None):
    """KiB of a libvirt size (text or ``attr``) with its ``unit``."""
    value = element.get(attr) if attr else element.text
    return int(int(value) * _UNITS_KIB.get(element.get('unit', 'KiB'), 1))


def _cpus(spec):
    return hardware.parse_cpu_spec(spec) if spec else set()


def _pci_address(element):
    return '%04x:%02x:%02x.%x' % tuple(
        int(element.get(key), 16)
        for key in ('domain', 'bus', 'slot', 'function'))


def pci_addresses(root):
    """Host PCI addresses given to the guest: ``<hostdev>`` devices and
    SR-IOV ports (``<interface type='hostdev'>``)."""
    found = root.findall("devices/hostdev[@type='pci']/source/address")
    found += root.findall(
        "devices/interface[@type='hostdev']/source/address[@type='pci']")
    return tuple(_pci_address(address) for address in found)


def _page_sizes(root):
    """{guest cell id or None (all cells): page size KiB}."""
    sizes = {}
    for page in root.findall('memoryBacking/hugepages/page'):
        size = _kib(page, 'size')
        nodeset = page.get('nodeset')
        for cell in (_cpus(nodeset) if nodeset else (None,)):
            sizes[cell] = size
    return sizes


def _host_cells(root):
    """{guest cell id: host cell id} of ``<numatune>``."""
    result = {}
    for memnode in root.findall('numatune/memnode'):
        nodes = sorted(_cpus(memnode.get('nodeset')))
        if nodes:
            result[int(memnode.get('cellid'))] = nodes[0]
    whole = root.find('numatune/memory')
    if whole is not None and whole.get('nodeset'):
        nodes = sorted(_cpus(whole.get('nodeset')))
        result.setdefault(None, nodes[0])
    return result


def _claim(root, numa, notes, name):
    """The InstanceNUMATopology the domain realises, or None."""
    guest_cells = root.findall('cpu/numa/cell')
    if not guest_cells or numa is None:
        return None
    host_cells = _host_cells(root)
    cells_by_id = {cell.id: cell for cell in numa.cells}
    pins = {int(pin.get('vcpu')): _cpus(pin.get('cpuset'))
            for pin in root.findall('cputune/vcpupin')}
    sizes = _page_sizes(root)
    cells, pinned_all = [], set()
    for guest in guest_cells:
        guest_id = int(guest.get('id'))
        host_id = host_cells.get(guest_id, host_cells.get(None))
        if host_id not in cells_by_id:
            notes.append('%s: guest node %d is bound to no host cell this '
                         'host reports; not counted' % (name, guest_id))
            continue
        host_cell = cells_by_id[host_id]
        vcpus = _cpus(guest.get('cpus'))
        pinning = {}
        for vcpu in vcpus:
            target = pins.get(vcpu, set())
            if len(target) == 1 and target <= host_cell.pcpuset:
                pinning[vcpu] = next(iter(target))
        shared = vcpus - set(pinning)
        policy = (host_usage.SHARED if not pinning else
                  host_usage.DEDICATED if not shared else host_usage.MIXED)
        pinned_all |= set(pinning.values())
        cells.append(objects.InstanceNUMACell(
            id=host_id, cpuset=shared, pcpuset=set(pinning),
            memory=_kib(guest, 'memory') // 1024,
            pagesize=sizes.get(guest_id, sizes.get(None)),
            cpu_pinning=pinning or None, cpu_policy=policy,
            cpuset_reserved=None))
    if not cells:
        return None
    claim = objects.InstanceNUMATopology(cells=cells)
    emulator = root.find('cputune/emulatorpin')
    if emulator is not None and any(c.cpu_policy != host_usage.SHARED
                                    for c in cells):
        reserved = _cpus(emulator.get('cpuset')) - pinned_all
        for cell in cells:
            mine = reserved & cells_by_id[cell.id].pcpuset
            if mine:
                cell.cpuset_reserved = mine
                reserved -= mine
        if any(cell.cpuset_reserved for cell in cells):
            claim.emulator_threads_policy = (
                fields.CPUEmulatorThreadsPolicy.ISOLATE)
    return claim


def resources(claim, vcpus, memory_mb):
    """The Placement resources Nova allocated for a server like this."""
    pcpus = 0
    for cell in claim.cells if claim else ():
        pcpus += len(cell.pcpuset) + len(cell.cpuset_reserved or ())
    resources = {'MEMORY_MB': memory_mb}
    if pcpus:
        resources['PCPU'] = pcpus
    shared = vcpus - sum(len(cell.pcpuset) for cell in (
        claim.cells if claim else ()))
    if shared > 0:
        resources['VCPU'] = shared
    return resources


def consumer(xml, numa, notes):
    """A :class:`usage.Consumer` of one domain's XML, named by the Nova
    instance's name in the domain's metadata when there is one."""
    root = safe_xml.fromstring(xml)
    domain = root.findtext('name')
    display = root.findtext('metadata/{*}instance/{*}name')
    name = '%s [%s]' % (display, domain) if display else domain
    claim = _claim(root, numa, notes, name)
    vcpus = int(root.findtext('vcpu') or 0)
    memory = root.find('memory')
    memory_mb = _kib(memory) // 1024 if memory is not None else 0
    return host_usage.Consumer(
        name=name, uuid=root.findtext('uuid'), claim=claim,
        resources=resources(claim, vcpus, memory_mb),
        pci_devices=pci_addresses(root))


def usage_from_domains(domains, numa, source):
    """:class:`usage.Usage` of ``[(xml, running)]``."""
    result = host_usage.Usage(source=source)
    for xml, _running in domains:
        result.consumers.append(consumer(xml, numa, result.notes))
    running = sum(1 for _xml, active in domains if active)
    result.source = '%s (%d domains, %d running)' % (
        source, len(domains), running)
    return result
