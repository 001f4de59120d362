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

"""A host's usage as Nova's database holds it, read only.

Read through Nova's own objects (``ComputeNode``, ``InstanceList``,
``PciDeviceList``) with a context whose database is the cell database of
``[database] connection``, rather than with SQL of our own: the objects
deserialize the compute node's ``numa_topology`` and ``pci_stats``
columns exactly as the scheduler's HostManager does (the NUMA topology
with usage -- pinned CPUs, shared CPU and memory usage, used pages per
cell -- that the resource tracker persisted, and the PCI pools it
filters on), follow Nova's schema from release to release, and only ever
read (every query here is one of the objects' reader methods).

The connection is tried once, without oslo.db's retries (ten, ten
seconds apart, by default): an unreachable database is reported at once
so that explain can fall back to libvirt's domains.
"""

import re

from nova.compute import utils as compute_utils
from nova import context as nova_context
from nova import exception
from nova import objects
from nova.pci import manager as pci_manager
from nova.scheduler import utils as scheduler_utils
from oslo_db import exception as db_exception
from oslo_db.sqlalchemy import enginefacade

from nova_kvmx.cmd import usage as host_usage

_INSTANCE_ATTRS = ['numa_topology', 'flavor', 'pci_devices']


class DatabaseUnreachable(exception.NovaException):
    msg_fmt = 'Cannot read Nova\'s database at %(url)s: %(reason)s'


class NodeNotFound(exception.NotFound):
    msg_fmt = ('Nova\'s database at %(url)s has no compute node %(what)s'
               '%(known)s')


def masked(url):
    """The connection URL without its password and parameters, to print."""
    return re.sub(r'(://[^:/@]*:)[^@/]*@', r'\1***@', url.split('?')[0])


def context_for(url):
    """An admin context whose database is ``url`` (tried once, with a
    short connect timeout for MySQL)."""
    manager = enginefacade.transaction_context()
    options = {'connection': url, 'max_retries': 0}
    if url.startswith('mysql') and 'connect_timeout' not in url:
        options['connection_parameters'] = 'connect_timeout=5'
    manager.configure(**options)
    ctx = nova_context.get_admin_context()
    ctx.db_connection = manager
    return ctx


def _reading(url, fn, *args):
    try:
        return fn(*args)
    except (db_exception.DBError, ImportError) as ex:
        reason = str(getattr(ex, 'inner_exception', None) or ex)
        raise DatabaseUnreachable(url=masked(url),
                                  reason=reason.splitlines()[0])


def compute_node(ctx, url, host, nodename=None):
    """The ComputeNode record of ``host`` (and ``nodename``, needed only
    when the host has several nodes)."""
    try:
        nodes = _reading(url, objects.ComputeNodeList.get_all_by_host, ctx,
                         host)
    except exception.ComputeHostNotFound:
        nodes = []
    if nodename:
        nodes = [n for n in nodes if n.hypervisor_hostname == nodename] or (
            nodes if len(nodes) == 1 else [])
    if len(nodes) != 1:
        known = _reading(url, objects.ComputeNodeList.get_all, ctx)
        raise NodeNotFound(
            url=masked(url), what='%s%s' % (
                'of host %s' % host, ' named %s' % nodename
                if nodename else ''),
            known=(' (%s)' % ', '.join(
                '%s/%s' % (n.host, n.hypervisor_hostname) for n in known)
                if known else ' (none)') if not nodes else
            (': it has several nodes (%s), say which with --node' %
             ', '.join(n.hypervisor_hostname for n in nodes)))
    return nodes[0]


def instances_by_node(ctx, url, host=None, node=None):
    """{(host, node): [(Instance, its block device mappings)]} of the
    live instances (of one node when ``host`` and ``node`` are given)."""
    if host is not None:
        found = _reading(url, objects.InstanceList.get_by_host_and_node,
                         ctx, host, node, _INSTANCE_ATTRS)
    else:
        found = _reading(url, objects.InstanceList.get_by_filters, ctx,
                         {'deleted': False}, 'created_at', 'asc', None,
                         None, _INSTANCE_ATTRS)
    bdms = _reading(url, objects.BlockDeviceMappingList.bdms_by_instance_uuid,
                    ctx, [inst.uuid for inst in found]) if found else {}
    result = {}
    for inst in found:
        if inst.host:
            result.setdefault((inst.host, inst.node), []).append(
                (inst, bdms.get(inst.uuid) or
                 objects.BlockDeviceMappingList(objects=[])))
    return result


def consumer(ctx, inst, bdms):
    """The :class:`usage.Consumer` of an instance: its claim, PCI devices
    and the Placement resources Nova allocates for its flavor."""
    is_bfv = compute_utils.is_volume_backed_instance(ctx, inst, bdms)
    return host_usage.Consumer(
        name=inst.display_name or inst.uuid, uuid=inst.uuid,
        claim=inst.numa_topology,
        resources=scheduler_utils.resources_from_flavor_and_bfv(
            inst.flavor, is_bfv),
        pci_devices=tuple(dev.address for dev in inst.pci_devices or ()))


def usage_of(ctx, url, node, instances, with_devices=True):
    """:class:`usage.Usage` of a compute node record and its instances."""
    numa = (objects.NUMATopology.obj_from_db_obj(node.numa_topology)
            if node.numa_topology else None)
    pools = node.pci_device_pools if 'pci_device_pools' in node and \
        node.pci_device_pools is not None else objects.PciDevicePoolList()
    devices = None
    if with_devices:
        devices = list(_reading(url, objects.PciDeviceList
                                .get_by_compute_node, ctx, node.id))
        pci_manager.PciDevTracker._build_device_tree(devices)
    result = host_usage.Usage(
        source='Nova\'s database at %s (compute node %s/%s, updated %s)' % (
            masked(url), node.host, node.hypervisor_hostname,
            (node.updated_at or node.created_at).strftime(
                '%Y-%m-%d %H:%M:%S')),
        consumers=[consumer(ctx, inst, bdms) for inst, bdms in instances],
        numa=numa, pci_pools=pools, pci_devices=devices,
        ratios={'VCPU': node.cpu_allocation_ratio,
                'MEMORY_MB': node.ram_allocation_ratio,
                'DISK_GB': node.disk_allocation_ratio})
    return result


def local_usage(url, host, nodename=None):
    """(ComputeNode, Usage) of one host."""
    ctx = context_for(url)
    node = compute_node(ctx, url, host, nodename)
    instances = instances_by_node(ctx, url, node.host,
                                  node.hypervisor_hostname)
    return node, usage_of(ctx, url, node, instances.get(
        (node.host, node.hypervisor_hostname), []))


def all_usage(url):
    """[(ComputeNode, Usage, Service or None)] of every compute node of
    the cell, by host and node name."""
    ctx = context_for(url)
    nodes = _reading(url, objects.ComputeNodeList.get_all, ctx)
    instances = instances_by_node(ctx, url)
    services = {svc.host: svc for svc in _reading(
        url, objects.ServiceList.get_by_binary, ctx, 'nova-compute', True)}
    return [(node, usage_of(ctx, url, node, instances.get(
        (node.host, node.hypervisor_hostname), []), with_devices=False),
        services.get(node.host))
        for node in sorted(nodes, key=lambda n: (n.host,
                                                 n.hypervisor_hostname))]
