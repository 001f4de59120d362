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

"""A host as Nova's scheduler sees it: what explain judges a request on.

Its NUMA topology with usage, PCI pools and allocation ratios are what the
scheduler's ``HostState`` holds for a compute node; its Placement
inventory, usage and traits what Placement holds for its resource
provider. Built either from the host's own facts (libvirt, or saved
files), reported by our driver's code under the node's nova.conf, with the
usage counted by Nova's accounting, or from Nova's compute node record
alone (for hosts explain cannot reach, ``--all-hosts``).
"""

import dataclasses

from nova.compute import provider_tree
import nova.conf
import nova.conf.neutron
from nova.pci import whitelist
from nova.virt import driver as virt_driver

from nova_kvmx.cmd import usage as host_usage
from nova_kvmx.guest import spec
from nova_kvmx.host import options
from nova_kvmx.host import resources
from nova_kvmx.host import topology

CONF = nova.conf.CONF
_NODE = 'explain'
_NODE_UUID = '00000000-0000-4000-8000-00000000e092'


@dataclasses.dataclass
class HostView:
    name: str
    source: str
    # NUMATopology with usage (None: the host reports no NUMA cells).
    numa: object
    # PciDeviceStats of the pools (the scheduler's), and of the free
    # devices (which Nova's claim takes), None when unknown.
    pci_pools: object
    pci_free: object
    inventory: dict
    used: dict
    # {trait: present} of the traits the driver manages; None: unknown.
    traits: object
    ratios: dict
    usage: object
    # What only the host's own facts give: its CPU sets and topology as
    # reported without usage (for placing unpinned threads).
    cpu_sets: object = None
    reported: object = None
    notes: list = dataclasses.field(default_factory=list)


def host_numa(facts):
    """The NUMATopology our driver reports for the host, without usage
    (raises Nova's InvalidConfiguration naming the option, as nova-compute
    would)."""
    # The [neutron_physnet_*] and [neutron_tunnel] options, which only
    # Nova's (and our) driver registers, once the configuration is loaded.
    nova.conf.neutron.register_dynamic_opts(CONF)
    return topology.numa_topology(
        facts.caps, topology.cpu_sets(facts.online_cpus),
        CONF.reserved_huge_pages,
        physnet_nodes=resources.physnet_numa_nodes(),
        tunnel_nodes=CONF.neutron_tunnel.numa_nodes)


def dev_filter():
    return whitelist.Whitelist(CONF.pci.device_spec)


def host_pci_stats(numa, devices):
    """The host's PCI pools when it is empty, as Nova's PCI tracker builds
    them from the reported devices that ``[pci] device_spec`` makes
    assignable."""
    _pools, free = host_usage.pci_stats_with_usage(
        numa, devices, dev_filter(), host_usage.empty())
    return free


def allocation_ratios():
    return virt_driver.ComputeDriver._get_allocation_ratios({})


def inventory(totals, ratios, has_disk=True):
    """The Placement inventory our driver reports: {rc: record}."""
    tree = provider_tree.ProviderTree()
    tree.new_root(_NODE, _NODE_UUID)
    resources.update_inventory(tree, _NODE, dict(
        totals, local_gb=totals.get('local_gb') or 0), ratios)
    result = tree.data(_NODE).inventory
    if not has_disk:
        result.pop('DISK_GB', None)
    return result


def host_traits(caps):
    """{trait: present} of the traits our driver manages."""
    settings = spec.DriverSettings(virt_type=options.virt_type(CONF),
                                   **options.configured_cpu(CONF))
    return resources.cpu_traits(caps, settings,
                                topology.has_hyperthreading(caps))


def _differences(record, reported):
    """How the compute node record's cells differ from what the driver
    reports under this nova.conf (a nova-compute not restarted since the
    options changed, or another nova.conf)."""
    if record is None or reported is None:
        return [] if record is reported else ['NUMA cells']
    found = []
    mine = {cell.id: cell for cell in reported.cells}
    for cell in record.cells:
        other = mine.get(cell.id)
        if other is None:
            found.append('cell %d' % cell.id)
            continue
        for attr in ('cpuset', 'pcpuset', 'memory'):
            if getattr(cell, attr) != getattr(other, attr):
                found.append('cell %d %s' % (cell.id, attr))
        pages = {(p.size_kb, p.total, p.reserved) for p in cell.mempages}
        if pages != {(p.size_kb, p.total, p.reserved)
                     for p in other.mempages}:
            found.append('cell %d pages' % cell.id)
    if set(mine) - {cell.id for cell in record.cells}:
        found.append('cells')
    return found


def from_facts(facts, usage, local_gb=None):
    """The view of a host whose facts we have, with ``usage``.

    :raises: InvalidConfiguration when nova.conf does not fit the host
    """
    reported = host_numa(facts)
    cpu_sets = topology.cpu_sets(facts.online_cpus)
    notes = []
    if usage.numa is not None or usage.pci_pools is not None:
        differ = _differences(usage.numa, reported)
        if differ:
            notes.append(
                'Nova\'s compute node record differs from what the driver '
                'reports under this nova.conf (%s): the record is what the '
                'scheduler uses; has nova-compute been restarted since the '
                'options changed?' % ', '.join(differ))
    numa = host_usage.numa_with_usage(reported, usage)
    pools, free = host_usage.pci_stats_with_usage(
        numa, facts.pci_devices, dev_filter(), usage)
    ratios = dict(allocation_ratios(), **(usage.ratios or {}))
    return HostView(
        name=facts.nodename or facts.source, source=facts.source,
        numa=numa, pci_pools=pools, pci_free=free,
        inventory=inventory({'vcpus': len(cpu_sets.shared),
                             'pcpus': len(cpu_sets.dedicated),
                             'memory_mb': facts.memory_mb,
                             'local_gb': local_gb}, ratios,
                            has_disk=local_gb is not None),
        used=usage.used(), traits=host_traits(facts.caps), ratios=ratios,
        usage=usage, cpu_sets=cpu_sets, reported=reported, notes=notes)


def from_record(node, usage):
    """The view of a host from Nova's compute node record alone (its
    traits unknown: they are in Placement)."""
    numa = usage.numa
    pools, _free = host_usage.pci_stats_with_usage(
        numa, None, dev_filter(), usage)
    ratios = dict(allocation_ratios(), **(usage.ratios or {}))
    pcpus = sum(len(cell.pcpuset) for cell in numa.cells) if numa else 0
    return HostView(
        name='%s/%s' % (node.host, node.hypervisor_hostname)
        if node.host != node.hypervisor_hostname else node.host,
        source=usage.source, numa=numa, pci_pools=pools, pci_free=None,
        inventory=inventory({'vcpus': node.vcpus, 'pcpus': pcpus,
                             'memory_mb': node.memory_mb,
                             'local_gb': node.local_gb}, ratios),
        used=usage.used(), traits=None, ratios=ratios, usage=usage)
