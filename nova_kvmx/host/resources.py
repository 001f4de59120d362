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

"""What this host offers, for Nova's resource tracker and Placement.

``available_resources`` answers ``get_available_resource`` (the compute node
record); ``update_inventory`` answers ``update_provider_tree``. Reserved
amounts and allocation ratios are Nova's own options, applied the way Nova's
base driver documents.
"""

import os

import os_resource_classes as orc
import os_traits as ot
from nova.compute import utils as compute_utils
import nova.conf
from nova.objects import fields
from nova.virt.libvirt import utils as libvirt_utils
from oslo_serialization import jsonutils
from oslo_utils import units

from nova_kvmx.guest import cpu_model
from nova_kvmx.host import topology

CONF = nova.conf.CONF


def cpu_info(caps):
    """The compute node's ``cpu_info`` JSON (as Nova's libvirt driver)."""
    cpu = caps.host.cpu
    return jsonutils.dumps({
        'arch': cpu.arch,
        'model': cpu.model,
        'vendor': cpu.vendor,
        'topology': {'sockets': cpu.sockets, 'cores': cpu.cores,
                     'threads': cpu.threads},
        'features': sorted(f.name for f in cpu.features),
    })


def disk_gb(path):
    """(total, used, free) GiB of the filesystem holding ``path``."""
    st = os.statvfs(path)
    total = st.f_frsize * st.f_blocks
    free = st.f_frsize * st.f_bavail
    return total // units.Gi, (total - free) // units.Gi, free // units.Gi


def physnet_numa_nodes():
    """{physnet: NUMA nodes} from ``[neutron] physnets`` and the
    ``[neutron_physnet_<name>] numa_nodes`` options (registered by the
    driver with ``nova.conf.neutron.register_dynamic_opts``)."""
    return {name: set(getattr(CONF, 'neutron_physnet_%s' % name).numa_nodes)
            for name in CONF.neutron.physnets}


def _numa_topology(caps, cpus):
    return topology.numa_topology(
        caps, cpus, CONF.reserved_huge_pages,
        physnet_nodes=physnet_numa_nodes(),
        tunnel_nodes=CONF.neutron_tunnel.numa_nodes)


def host_topology(host):
    """The host's NUMATopology under Nova's CPU, hugepage and network
    affinity options; raises InvalidConfiguration (or
    InvalidNetworkNUMAAffinity) when the options do not fit the host."""
    return _numa_topology(host.get_capabilities(),
                          topology.cpu_sets(host.get_online_cpus()))


def _totals(cpus, memory_mb, local_gb):
    return {'vcpus': len(cpus.shared), 'pcpus': len(cpus.dedicated),
            'memory_mb': memory_mb, 'local_gb': local_gb}


def inventory_totals(host, instances_path, disk=None):
    """The totals Placement inventory needs: none of the costly parts of
    the compute node record (PCI devices, NUMA topology), as
    update_provider_tree runs right after get_available_resource.

    :param disk: (total, used, free) GiB where instance disks go, when
        not on the filesystem of ``instances_path`` (an RBD pool)
    """
    return _totals(topology.cpu_sets(host.get_online_cpus()),
                   host.get_memory_mb_total(),
                   (disk or disk_gb(instances_path))[0])


def available_resources(host, instances_path, nodename, virt_type,
                        disk=None):
    """The compute node record; each host fact is read once, the PCI
    devices come from the host's cache (:meth:`Host.pci_devices_json`).

    :param disk: as for :func:`inventory_totals`
    """
    caps = host.get_capabilities()
    cpus = topology.cpu_sets(host.get_online_cpus())
    numa = _numa_topology(caps, cpus)
    total_gb, used_gb, free_gb = disk or disk_gb(instances_path)
    arch = caps.host.cpu.arch
    return {
        **_totals(cpus, host.get_memory_mb_total(), total_gb),
        'vcpus_used': 0,
        'memory_mb_used': host.get_memory_mb_used(),
        'local_gb_used': used_gb,
        'hypervisor_type': fields.HVType.QEMU,
        'hypervisor_version': host.get_version(),
        'hypervisor_hostname': nodename,
        'cpu_info': cpu_info(caps),
        'disk_available_least': free_gb,
        'supported_instances': [(arch, virt_type, fields.VMMode.HVM)],
        'pci_passthrough_devices': host.pci_devices_json(),
        'numa_topology': numa._to_json() if numa else None,
    }


def _inventory(total, reserved, allocation_ratio):
    return {'total': total, 'min_unit': 1, 'max_unit': total,
            'step_size': 1, 'allocation_ratio': allocation_ratio,
            'reserved': reserved}


def update_inventory(provider_tree, nodename, resources, ratios):
    """Set VCPU, PCPU, MEMORY_MB and DISK_GB inventory of ``nodename``.

    :param resources: the dict from :func:`inventory_totals`
    :param ratios: allocation ratios per resource class, from
        ``ComputeDriver._get_allocation_ratios``
    """
    inventory = {
        orc.MEMORY_MB: _inventory(resources['memory_mb'],
                                  CONF.reserved_host_memory_mb,
                                  ratios[orc.MEMORY_MB]),
        orc.DISK_GB: _inventory(resources['local_gb'],
                                compute_utils.convert_mb_to_ceil_gb(
                                    CONF.reserved_host_disk_mb),
                                ratios[orc.DISK_GB]),
    }
    if resources['vcpus']:
        inventory[orc.VCPU] = _inventory(
            resources['vcpus'], CONF.reserved_host_cpus, ratios[orc.VCPU])
    if resources['pcpus']:
        # Dedicated CPUs are neither overcommitted nor reserved (Nova).
        inventory[orc.PCPU] = _inventory(resources['pcpus'], 0, 1.0)
    provider_tree.update_inventory(nodename, inventory)


def cpu_traits(caps, settings, hyperthreading):
    """CPU traits of the compute node, {trait: present}.

    Feature traits (``HW_CPU_X86_*``, mapped by Nova's own table) describe
    what guests see (:func:`nova_kvmx.guest.cpu_model.guest_features`:
    the host CPU's, the custom models', with ``[libvirt]
    cpu_model_extra_flags``); none under the hypervisor's default CPU.
    Every mapped trait is in the result, present or not, so that a trait
    set under another mode is removed.
    """
    traits = libvirt_utils.cpu_features_to_traits(cpu_model.guest_features(
        {f.name for f in caps.host.cpu.features}, settings))
    traits[ot.HW_CPU_HYPERTHREADING] = hyperthreading
    return traits


def update_traits(provider_tree, nodename, traits):
    """Add the present traits and remove the absent ones, leaving traits
    that others (Nova's capability traits, operators) manage alone."""
    provider_tree.add_traits(
        nodename, *[t for t, present in traits.items() if present])
    provider_tree.remove_traits(
        nodename, *[t for t, present in traits.items() if not present])
