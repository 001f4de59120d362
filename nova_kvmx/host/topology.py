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

"""The host's CPUs and NUMA cells, as Nova's scheduler and claims see them.

Nova fits NUMA, pinned and hugepage guests against the ``NUMATopology`` a
driver reports (``nova.virt.hardware.numa_fit_instance_to_host``), so this
must report what Nova's libvirt driver reports for the same host and
options (``LibvirtDriver._get_host_numa_topology``): which CPUs float VCPU
guests (``cpuset``), which are for pinning (``pcpuset``), thread siblings,
and huge pages minus ``reserved_huge_pages``. Pure: capabilities and online
CPUs come in as arguments; options are read only through Nova's parsers.

Where we differ from Nova's driver, deliberately:

- No fallback without CPU options. With none of them set, Nova reports
  ``pcpuset = cpuset`` (for hosts upgraded from before Train); here pinned
  guests then get no CPU. The deprecated ``vcpu_pin_set`` is honoured as
  Nova documents it: its CPUs serve unpinned guests (VCPU inventory) and
  pinned ones (each cell's ``pcpuset``, found by Nova's scheduler through
  its VCPU fallback query), with no PCPU inventory.
- Configuration Nova would accept and misreport is refused: CPUs that are
  not online, reservations of pages a cell lacks or for a node the host
  lacks (Nova ignores those), more pages than a cell has. Every error is an
  ``InvalidConfiguration`` naming the option and the offending values.
"""

import dataclasses

import nova.conf
from nova import exception
from nova import objects
from nova.virt import hardware
from oslo_log import log as logging
from oslo_utils import strutils
from oslo_utils import units

from nova_kvmx.guest import spec

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

SHARED_SET = '[compute] cpu_shared_set'
DEDICATED_SET = '[compute] cpu_dedicated_set'
VCPU_PIN_SET = 'vcpu_pin_set'


@dataclasses.dataclass(frozen=True)
class CPUSets:
    """Host CPUs for unpinned guests (VCPU) and for pinned ones (PCPU).
    ``legacy``: they come from the deprecated ``vcpu_pin_set``, whose CPUs
    pinned guests share with unpinned ones."""
    shared: frozenset
    dedicated: frozenset
    legacy: bool = False

    @property
    def pinnable(self):
        """The CPUs pinned guests may use (a cell's ``pcpuset``)."""
        return self.shared if self.legacy else self.dedicated


def _spec(cpus):
    return hardware.format_cpu_spec(cpus) or 'none'


def _read(option, getter):
    """An option parsed by Nova's getter, with the option named in errors
    (Nova's range errors do not say which option they come from)."""
    try:
        return getter() or set()
    except exception.InvalidConfiguration:
        raise
    except exception.Invalid as ex:
        raise exception.InvalidConfiguration(
            "Invalid '%s': %s" % (option, ex)) from ex


def cpu_sets(online_cpus):
    """The CPU sets configured by Nova's options, checked against the host.

    Reads ``[compute] cpu_shared_set``, ``[compute] cpu_dedicated_set`` and
    the deprecated ``[DEFAULT] vcpu_pin_set`` through Nova's parsers; see
    :func:`split_cpus`.

    :raises: InvalidConfiguration, also when ``[DEFAULT] reserved_host_cpus``
        is set with either CPU set (CPUs are reserved by leaving them out of
        both, as in Nova)
    """
    shared = _read(SHARED_SET, hardware.get_cpu_shared_set)
    dedicated = _read(DEDICATED_SET, hardware.get_cpu_dedicated_set)
    if (shared or dedicated) and CONF.reserved_host_cpus:
        raise exception.InvalidConfiguration(
            "'[DEFAULT] reserved_host_cpus' cannot be set together with "
            "'%s' or '%s': leave the CPUs to reserve out of both sets and "
            "unset it." % (SHARED_SET, DEDICATED_SET))
    return split_cpus(
        online_cpus, shared=shared, dedicated=dedicated,
        vcpu_pin=_read(VCPU_PIN_SET, hardware.get_vcpu_pin_set))


def split_cpus(online_cpus, shared=(), dedicated=(), vcpu_pin=()):
    """Shared and dedicated CPUs, decided as Nova's libvirt driver does.

    ``vcpu_pin`` alone makes those CPUs shared, and pinnable (``legacy``),
    and wins over ``shared`` (Nova warns and does the same); with
    ``dedicated`` it is an error.
    With no option at all every online CPU is shared; with ``dedicated``
    alone none is.

    :param online_cpus: ids of the host's online CPUs
    :raises: InvalidConfiguration when ``vcpu_pin`` and ``dedicated`` are
        both given, when shared and dedicated CPUs overlap, or when a
        configured CPU is not online; the message names the option and CPUs.
    """
    online = frozenset(online_cpus)
    shared, dedicated = frozenset(shared), frozenset(dedicated)
    shared_option = SHARED_SET
    if vcpu_pin:
        if dedicated:
            raise exception.InvalidConfiguration(
                "The deprecated '%s' cannot be set together with '%s'; "
                "unset '%s'." % (VCPU_PIN_SET, DEDICATED_SET, VCPU_PIN_SET))
        if shared:
            LOG.warning("'%s' is set: it decides the CPUs of unpinned "
                        "guests, not '%s'.", VCPU_PIN_SET, SHARED_SET)
        shared, shared_option = frozenset(vcpu_pin), VCPU_PIN_SET
    elif not (shared or dedicated):
        return CPUSets(shared=online, dedicated=frozenset())

    both = shared & dedicated
    if both:
        raise exception.InvalidConfiguration(
            "'%s' and '%s' must be disjoint; both contain CPUs %s." % (
                SHARED_SET, DEDICATED_SET, _spec(both)))
    for option, cpus in ((shared_option, shared), (DEDICATED_SET, dedicated)):
        if not cpus <= online:
            raise exception.InvalidConfiguration(
                "'%s' names CPUs %s that are not online on this host "
                "(online: %s)." % (option, _spec(cpus - online),
                                   _spec(online)))
    return CPUSets(shared=shared, dedicated=dedicated, legacy=bool(vcpu_pin))


def _parse_reservation(entry):
    """(node, size in KiB, count) of one ``reserved_huge_pages`` value.

    oslo.config gives strings ({'node': '0', 'size': '1GB', 'count': '1'});
    sizes are KiB or units with a suffix, as Nova's
    ``hardware.numa_get_reserved_huge_pages`` reads them.
    """
    try:
        node, count = int(entry['node']), int(entry['count'])
        size = str(entry['size'])
        if size.isdigit():
            size_kb = int(size)
        else:
            size_kb = strutils.string_to_bytes(
                size, return_int=True) // units.Ki
        if count >= 0:
            return node, size_kb, count
    except (KeyError, TypeError, ValueError):
        pass
    raise exception.InvalidConfiguration(
        "Invalid 'reserved_huge_pages' value %s: expected "
        "node:<id>,size:<KiB, or with a unit as 2MB or 1GB>,"
        "count:<pages, 0 or more>." % (entry,))


def reserved_pages(reserved_huge_pages, cells):
    """``reserved_huge_pages`` as {node: {size_kb: count}}, checked against
    the cells' pages. A later value for the same node and size wins, as in
    Nova.

    :param cells: ``LibvirtConfigCapsNUMACell`` objects
    :raises: InvalidConfiguration naming the node and page size of a
        reservation the host cannot honour, or a malformed value.
    """
    pages = {cell.id: {p.size: p.total for p in cell.mempages}
             for cell in cells}
    reserved = {}
    for entry in reserved_huge_pages or ():
        node, size_kb, count = _parse_reservation(entry)
        if node not in pages:
            raise exception.InvalidConfiguration(
                "'reserved_huge_pages' names NUMA node %d, which this host "
                "does not have (nodes: %s)." % (node, _spec(pages)))
        if size_kb not in pages[node]:
            raise exception.InvalidConfiguration(
                "'reserved_huge_pages' names %d KiB pages on NUMA node %d, "
                "which has pages of %s KiB only." % (
                    size_kb, node, ', '.join(map(str, sorted(pages[node])))))
        if count > pages[node][size_kb]:
            raise exception.InvalidConfiguration(
                "'reserved_huge_pages' reserves %d pages of %d KiB on NUMA "
                "node %d, which has %d." % (
                    count, size_kb, node, pages[node][size_kb]))
        reserved.setdefault(node, {})[size_kb] = count
    return reserved


def _siblings(cell, usable):
    """Thread sibling sets of the cell, cut down to the usable CPUs (as
    Nova does: the fitting code must never pin a sibling we do not offer).
    A CPU libvirt gives no siblings for is a core of its own."""
    sets = {frozenset(cpu.siblings or {cpu.id}) & usable for cpu in cell.cpus}
    return sorted((set(s) for s in sets if s), key=sorted)


def _socket(cell):
    """The cell's socket, or None when its CPUs span several (Nova then
    cannot honour ``socket`` PCI NUMA affinity)."""
    sockets = {cpu.socket_id for cpu in cell.cpus
               if cpu.socket_id is not None}
    if len(sockets) > 1:
        LOG.warning('NUMA node %d spans sockets %s: the socket PCI NUMA '
                    'affinity policy will not be supported.', cell.id,
                    _spec(sockets))
    return sockets.pop() if len(sockets) == 1 else None


def network_affinity(physnet_nodes, tunnel_nodes, cell_ids):
    """{cell id: NetworkMetadata} from ``[neutron_physnet_<name>]
    numa_nodes`` (given as {physnet: nodes}) and ``[neutron_tunnel]
    numa_nodes``, so Nova can keep guests next to their networks' NICs.

    :raises: InvalidNetworkNUMAAffinity naming a node the host lacks
    """
    physnets = {cell_id: set() for cell_id in cell_ids}
    for physnet, nodes in sorted(physnet_nodes.items()):
        for node in nodes:
            if node not in physnets:
                raise exception.InvalidNetworkNUMAAffinity(
                    reason="'[neutron_physnet_%s] numa_nodes' names NUMA "
                           "node %d, which this host does not have" % (
                               physnet, node))
            physnets[node].add(physnet)
    for node in tunnel_nodes:
        if node not in physnets:
            raise exception.InvalidNetworkNUMAAffinity(
                reason="'[neutron_tunnel] numa_nodes' names NUMA node %d, "
                       "which this host does not have" % node)
    return {
        cell_id: objects.NetworkMetadata(physnets=physnets[cell_id],
                                         tunneled=cell_id in tunnel_nodes)
        for cell_id in cell_ids}


def _numa_cell(cell, cpu_sets, reserved, network_metadata):
    cpus = {cpu.id for cpu in cell.cpus}
    usable = cpus & (cpu_sets.shared | cpu_sets.dedicated)
    return objects.NUMACell(
        id=cell.id,
        socket=_socket(cell),
        cpuset=cpus & cpu_sets.shared,
        pcpuset=cpus & cpu_sets.pinnable,
        memory=cell.memory // units.Ki,
        cpu_usage=0,
        memory_usage=0,
        pinned_cpus=set(),
        siblings=_siblings(cell, usable),
        mempages=[
            objects.NUMAPagesTopology(
                size_kb=pages.size, total=pages.total, used=0,
                reserved=reserved.get(pages.size, 0))
            for pages in cell.mempages],
        network_metadata=network_metadata)


def numa_topology(caps, cpu_sets, reserved_huge_pages=(), physnet_nodes=None,
                  tunnel_nodes=()):
    """The host's ``objects.NUMATopology``, without usage (Nova's resource
    tracker adds the instances' usage itself).

    Every cell is reported, also one with no usable CPU: its memory and
    huge pages still serve guests' NUMA nodes.

    :param caps: ``LibvirtConfigCaps`` of the host
    :param cpu_sets: :class:`CPUSets`
    :param reserved_huge_pages: the value of Nova's ``reserved_huge_pages``
        option, a list of dicts with keys node, size and count
    :param physnet_nodes: {physnet: NUMA nodes} of its NICs
    :param tunnel_nodes: NUMA nodes of the tunnel (overlay) NICs
    :returns: the topology, or None when libvirt reports no NUMA cells
    :raises: InvalidConfiguration for a reservation the host cannot honour,
        InvalidNetworkNUMAAffinity for a network on a node it lacks
    """
    topology = caps.host.topology
    cells = topology.cells if topology is not None else []
    reserved = reserved_pages(reserved_huge_pages, cells)
    if not cells:
        return None
    networks = network_affinity(physnet_nodes or {}, set(tunnel_nodes),
                                [cell.id for cell in cells])
    return objects.NUMATopology(cells=[
        _numa_cell(cell, cpu_sets, reserved.get(cell.id, {}),
                   networks[cell.id])
        for cell in cells])


def has_hyperthreading(caps):
    """Whether any host CPU has a thread sibling."""
    topology = caps.host.topology
    return any(len(cpu.siblings or ()) > 1
               for cell in (topology.cells if topology is not None else ())
               for cpu in cell.cpus)


def guest_cpu_pools(numa, cpu_sets):
    """Where the unpinned threads of guests run on this host
    (:class:`spec.HostCPUs`), as Nova's libvirt driver places them.

    A guest without a NUMA claim is confined to the shared CPUs only when
    ``[compute] cpu_shared_set`` or ``vcpu_pin_set`` says which; emulator
    threads under the ``share`` policy go to ``cpu_shared_set`` only.
    """
    shared_option = CONF.compute.cpu_shared_set or CONF.vcpu_pin_set
    return spec.HostCPUs(
        cell_shared=tuple((cell.id, frozenset(cell.cpuset))
                          for cell in (numa.cells if numa else ())),
        floating=cpu_sets.shared if shared_option else None,
        emulator_shared=(cpu_sets.shared if CONF.compute.cpu_shared_set and
                         not CONF.vcpu_pin_set else frozenset()))


def small_page_kb(numa):
    """The host's base page size (the smallest it reports), 4 KiB when
    libvirt reports no NUMA cells."""
    if not numa or not numa.cells[0].mempages:
        return 4
    return min(pages.size_kb for pages in numa.cells[0].mempages)
