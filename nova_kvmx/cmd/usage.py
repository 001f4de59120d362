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

"""What is already on a host, counted the way Nova counts it.

A host's usage is its instances' claims: for each one the
``InstanceNUMATopology`` Nova fitted (host cells, pinned CPUs, CPUs of
isolated emulator threads, page size and memory per cell), the Placement
resources it holds and the PCI devices it was given. Where they come from
(Nova's database, libvirt's domains, a saved file) is for
:mod:`nova_kvmx.cmd.novadb`, :mod:`nova_kvmx.cmd.domains` and
:func:`load`; this module turns them into the host as Nova's scheduler
sees it, with Nova's own accounting: ``numa_usage_from_instance_numa``
for the cells (what the resource tracker stores in the compute node
record) and ``PciDevice.claim`` for the devices (which also takes a used
VF's parent PF and a used PF's VFs out of the pools).
"""

import copy
import dataclasses

from nova import exception
from nova import objects
from nova.objects import fields
from nova.pci import manager as pci_manager
from nova.pci import stats as pci_stats
from nova.virt import hardware

DEDICATED = fields.CPUAllocationPolicy.DEDICATED
MIXED = fields.CPUAllocationPolicy.MIXED
SHARED = fields.CPUAllocationPolicy.SHARED


@dataclasses.dataclass
class Consumer:
    """One instance (or domain) on the host and what it holds."""

    name: str
    uuid: str = None
    # Nova's claim (InstanceNUMATopology), None for a guest without NUMA
    # topology (Nova counts such guests in Placement only).
    claim: object = None
    resources: dict = dataclasses.field(default_factory=dict)
    pci_devices: tuple = ()


@dataclasses.dataclass
class Usage:
    """The consumers of a host, and what their source says of the host.

    ``numa`` and ``pci_pools`` are the host with usage as the source keeps
    it (Nova's compute node record); when None they are computed from the
    consumers' claims.
    """

    source: str
    consumers: list = dataclasses.field(default_factory=list)
    numa: object = None
    pci_pools: object = None
    # PciDevice objects with their status (Nova's database): the devices a
    # claim would take.
    pci_devices: list = None
    # Allocation ratios of the compute node record.
    ratios: dict = None
    notes: list = dataclasses.field(default_factory=list)
    # False when nothing was read: the host is taken as empty.
    counted: bool = True

    def used(self):
        """Placement usage {rc: amount}: the consumers' resources."""
        total = {}
        for consumer in self.consumers:
            for rc, amount in consumer.resources.items():
                total[rc] = total.get(rc, 0) + amount
        return total


def empty(source='none: the host is taken as empty'):
    return Usage(source=source, counted=False)


# -- cells --------------------------------------------------------------------

def numa_with_usage(numa, usage):
    """The host's NUMATopology with the consumers' claims counted, by
    Nova's ``numa_usage_from_instance_numa`` (as the resource tracker
    does), or the record's own when the source keeps one."""
    if usage.numa is not None or numa is None:
        return usage.numa if usage.numa is not None else numa
    # As the resource tracker does it: each instance's usage applied to
    # the topology deserialized from the record, serialized back after.
    # The JSON round trips are not idle: Nova's pinning takes a core's
    # free threads in the iteration order of its sets, which is the order
    # the record's lists rebuild them in.
    host = _stored(numa)
    for consumer in usage.consumers:
        if consumer.claim is None:
            continue
        claim = _known_cells(host, consumer, usage.notes)
        try:
            host = hardware.numa_usage_from_instance_numa(host, claim)
        except (exception.CPUPinningInvalid,
                exception.CPUPinningUnknown) as ex:
            # Nova would never have placed it so: a guest not placed by
            # Nova, or pinned over another. Count what is free of it.
            usage.notes.append('%s: %s; its CPUs already pinned are not '
                               'counted twice' % (consumer.name,
                                                  ex.format_message()))
            host = hardware.numa_usage_from_instance_numa(
                host, _without_pinned(host, claim))
        host = _stored(host)
    return host


def _stored(numa):
    """The topology as the scheduler reads it back from the record."""
    return objects.NUMATopology.obj_from_db_obj(numa._to_json())


def _known_cells(host, consumer, notes):
    """The claim without cells the host does not have."""
    ids = {cell.id for cell in host.cells}
    claim = consumer.claim.obj_clone()
    unknown = [cell.id for cell in claim.cells if cell.id not in ids]
    if unknown:
        notes.append('%s: uses host cells %s, which this host does not '
                     'report; not counted' % (
                         consumer.name, ','.join(map(str, unknown))))
        claim.cells = [cell for cell in claim.cells if cell.id in ids]
    return claim


def _without_pinned(host, claim):
    cells = {cell.id: cell for cell in host.cells}
    claim = claim.obj_clone()
    for cell in claim.cells:
        host_cell = cells[cell.id]
        taken = set(host_cell.pinned_cpus)
        if cell.cpu_pinning:
            cell.cpu_pinning = {
                vcpu: pcpu for vcpu, pcpu in cell.cpu_pinning.items()
                if pcpu not in taken and pcpu in host_cell.pcpuset}
        if cell.cpuset_reserved:
            cell.cpuset_reserved = (cell.cpuset_reserved - taken) & \
                host_cell.pcpuset
    return claim


# -- PCI ----------------------------------------------------------------------

def device_objects(devices, dev_filter):
    """PciDevice objects of the driver's device dicts that ``[pci]
    device_spec`` makes assignable, with Nova's PF/VF tree."""
    result = []
    for device in copy.deepcopy(devices):
        dev_spec = dev_filter.device_assignable(device)
        if dev_spec is None:
            continue
        dev_spec.enhanced_pci_device_with_spec_tags(device)
        device['compute_node_id'] = 0
        result.append(objects.PciDevice.create(None, device))
    pci_manager.PciDevTracker._build_device_tree(result)
    return result


def claim_devices(pci_devices, usage):
    """Mark the consumers' devices as Nova's tracker does (a used VF's PF
    and a used PF's VFs become unavailable); returns the addresses in use
    that the host does not offer."""
    by_address = {dev.address: dev for dev in pci_devices}
    unknown = []
    for consumer in usage.consumers:
        for address in consumer.pci_devices:
            dev = by_address.get(address)
            if dev is None:
                unknown.append(address)
            elif dev.status == fields.PciDeviceStatus.AVAILABLE:
                dev.claim(consumer.uuid or consumer.name)
    return unknown


def pci_stats_with_usage(numa, devices, dev_filter, usage):
    """(pools, devices): the PCI pools the scheduler filters with, and
    PciDeviceStats of the free devices (which a claim would take; None
    when neither ``devices`` nor the source gives them).

    From the source's own record when it keeps one (Nova's database),
    else from the driver's ``devices`` less the consumers'.
    """
    if usage.pci_devices is not None:
        pci_devices = usage.pci_devices
    elif devices is not None:
        pci_devices = device_objects(devices, dev_filter)
        unknown = claim_devices(pci_devices, usage)
        if unknown:
            usage.notes.append(
                'PCI devices in use that [pci] device_spec does not make '
                'assignable (not counted): %s' % ', '.join(sorted(unknown)))
    else:
        pci_devices = None
    free = None
    if pci_devices is not None:
        free = pci_stats.PciDeviceStats(numa, dev_filter=dev_filter)
        for dev in pci_devices:
            if dev.status == fields.PciDeviceStatus.AVAILABLE:
                free.add_device(dev)
    pools = usage.pci_pools
    if pools is None:
        pools = (free.to_device_pools_obj() if free is not None
                 else objects.PciDevicePoolList(objects=[]))
    # As the scheduler's HostState builds them: from the pools alone.
    return pci_stats.PciDeviceStats(numa, stats=pools), free


# -- who uses what ------------------------------------------------------------

@dataclasses.dataclass
class CellOwners:
    """Who holds what of one host cell (names of the consumers)."""

    pinned: dict = dataclasses.field(default_factory=dict)   # cpu: name
    pages: dict = dataclasses.field(default_factory=dict)    # kb: {name: n}
    memory: dict = dataclasses.field(default_factory=dict)   # name: MiB
    shared: dict = dataclasses.field(default_factory=dict)   # name: vCPUs


def owners(numa, usage):
    """{host cell id: CellOwners} of the consumers' claims."""
    result = {cell.id: CellOwners() for cell in (numa.cells if numa else ())}
    cells = {cell.id: cell for cell in (numa.cells if numa else ())}
    for consumer in usage.consumers:
        for cell in consumer.claim.cells if consumer.claim else ():
            own = result.get(cell.id)
            if own is None:
                continue
            name = consumer.name
            for cpu in set((cell.cpu_pinning or {}).values()) | set(
                    cell.cpuset_reserved or ()):
                own.pinned.setdefault(cpu, name)
            size = cell.pagesize or (
                hardware._get_smallest_pagesize(cells[cell.id])
                if cells[cell.id].mempages else None)
            if size:
                per_size = own.pages.setdefault(size, {})
                per_size[name] = (per_size.get(name, 0) +
                                  cell.memory * 1024 // size)
            own.memory[name] = own.memory.get(name, 0) + cell.memory
            if cell.cpuset:
                own.shared[name] = own.shared.get(name, 0) + len(cell.cpuset)
    return result


def _names(counts, unit=''):
    """'vnf-a (4), vnf-b (2)', the largest first, at most five."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ', '.join('%s (%s%s)' % (name, n, unit) for name, n in items[:5])
    if len(items) > 5:
        text += ' and %d more' % (len(items) - 5)
    return text


def _instances(n):
    return '%d instance%s' % (n, '' if n == 1 else 's')


def by_whom(total, counts, unit=''):
    """'by 3 instances: a (2), b (2), c (2)' for ``total`` units of which
    ``counts`` {name: n} are known ('' when none is); what no listed
    instance accounts for is said so."""
    if not counts:
        return ''
    text = 'by %s: %s' % (_instances(len(counts)), _names(counts, unit))
    rest = total - sum(counts.values())
    if rest > 0:
        text += '; %d%s unaccounted for' % (rest, unit)
    return text


def pinned_by_whom(host_cell, cell_owners):
    """'6 pinned by 3 instances: a (2-3), ...' or ''."""
    pinned = set(host_cell.pinned_cpus)
    if not pinned:
        return ''
    per_name = {}
    for cpu, name in (cell_owners.pinned if cell_owners else {}).items():
        if cpu in pinned:
            per_name.setdefault(name, set()).add(cpu)
    known = {name: hardware.format_cpu_spec(cpus)
             for name, cpus in per_name.items()}
    text = '%d pinned' % len(pinned)
    if known:
        items = sorted(known.items())
        text += ' by %s: %s' % (_instances(len(items)), ', '.join(
            '%s (%s)' % kv for kv in items[:5]))
        if len(items) > 5:
            text += ' and %d more' % (len(items) - 5)
    others = len(pinned) - sum(len(c) for c in per_name.values())
    if known and others > 0:
        text += '; %d unaccounted for' % others
    return text
