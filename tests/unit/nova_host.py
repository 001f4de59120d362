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

"""A compute host in use, persisted the way nova-compute persists it.

Nova's own ResourceTracker runs against a Nova database (SQLite file,
Nova's models): it creates the compute node record from what a driver
reports for the host -- here what our driver reports for a host's facts
under the test's nova.conf (:func:`hostview.host_numa`, the PCI devices)
-- and each instance booted is claimed by ``instance_claim``: Nova's claim
fits it (``numa_fit_instance_to_host`` with the node's PCI tracker),
pins and allocates its PCI devices, and saves the instance's
``numa_topology``, its PCI devices, the node's ``numa_topology`` with
usage and its ``pci_stats``. What the database then holds is what a real
node's database holds.
"""

import os
from unittest import mock
import uuid

import fixtures
import nova.conf
from nova.compute import resource_tracker
from nova.db.main import models
from nova import objects
from nova.scheduler import host_manager
from nova.virt import hardware
from oslo_serialization import jsonutils

from nova_kvmx.cmd import hostview
from nova_kvmx.cmd import novadb
from nova_kvmx.cmd import request

CONF = nova.conf.CONF
HOST = 'compute1'
NODE = 'node1'
NODE_UUID = '5a9c1d1e-4f6a-4c55-9b39-2b8e7d0f4a11'
IMAGE = '155d900f-4e14-4e4c-a73d-069cbf4541e6'


class _Driver:
    """Just what the ResourceTracker asks of a driver."""

    def __init__(self, facts, node_uuid):
        self.facts = facts
        self.node_uuid = node_uuid

    def get_available_resource(self, nodename):
        numa = hostview.host_numa(self.facts)
        return {
            'vcpus': 4, 'memory_mb': self.facts.memory_mb, 'local_gb': 100,
            'vcpus_used': 0, 'memory_mb_used': 0, 'local_gb_used': 0,
            'hypervisor_type': 'QEMU', 'hypervisor_version': 9000000,
            'hypervisor_hostname': nodename, 'cpu_info': '',
            'disk_available_least': 100, 'supported_instances': [],
            'pci_passthrough_devices': jsonutils.dumps(
                self.facts.pci_devices),
            'numa_topology': numa._to_json() if numa else None,
            'uuid': self.node_uuid}

    def update_provider_tree(self, tree, nodename, allocations=None):
        pass

    def node_is_available(self, nodename):
        return True

    def rebalances_nodes(self):
        return False

    def get_host_ip_addr(self):
        return '192.0.2.10'

    def capabilities_as_traits(self):
        return {}


class NovaHost(fixtures.Fixture):
    """A Nova cell database with a compute node of ``facts``; boot
    instances on it with :meth:`boot`. Given the ``url`` of another's
    database, the node is one more of that cell."""

    def __init__(self, facts, host=HOST, node=NODE, url=None,
                 node_uuid=NODE_UUID):
        super().__init__()
        self.facts = facts
        self.host, self.node, self.url = host, node, url
        self.node_uuid = node_uuid

    def _setUp(self):
        new = self.url is None
        if new:
            tmp = self.useFixture(fixtures.TempDir()).path
            self.url = 'sqlite:///' + os.path.join(tmp, 'nova.sqlite')
        self.context = novadb.context_for(self.url)
        if new:
            models.BASE.metadata.create_all(
                self.context.db_connection.writer.get_engine())
        # Service records notify; there is no notifier here.
        self.useFixture(fixtures.MockPatch(
            'nova.rpc.NOTIFIER', mock.Mock(**{'is_enabled.return_value':
                                              False})))
        self.useFixture(fixtures.MockPatch('nova.rpc.LEGACY_NOTIFIER'))
        CONF.set_override('host', self.host)
        self.addCleanup(CONF.clear_override, 'host')
        self.service = objects.Service(
            context=self.context, host=self.host, binary='nova-compute',
            topic='compute', report_count=0)
        self.service.create()
        self.tracker = resource_tracker.ResourceTracker(
            self.host, _Driver(self.facts, self.node_uuid),
            reportclient=mock.MagicMock())
        self.tracker.service_ref = self.service
        self.tracker.update_available_resource(self.context, self.node,
                                               startup=True)
        self.instances = []

    def boot(self, name, vcpus, ram, extra_specs=None,
             image_properties=None):
        """Claim an instance of this flavor as nova-compute does; return
        the instance (its ``numa_topology`` the claim)."""
        req = request.build(vcpus, ram, extra_specs=extra_specs,
                            image_properties=image_properties)
        inst = objects.Instance(
            context=self.context, uuid=str(uuid.uuid4()),
            display_name=name, flavor=req.flavor, vcpus=vcpus,
            memory_mb=ram, root_gb=0, ephemeral_gb=0, image_ref=IMAGE,
            numa_topology=req.numa_topology,
            pci_requests=req.pci_requests, project_id='p', user_id='u',
            vm_state='active', power_state=1, task_state=None,
            instance_type_id=1, system_metadata={})
        inst.create()
        CONF.set_override('host', self.host)
        self.tracker.instance_claim(
            self.context, inst, self.node, allocations={},
            limits={'numa_topology': self.limits()})
        self.instances.append(inst)
        return inst

    def limits(self):
        ratios = hostview.allocation_ratios()
        return objects.NUMATopologyLimits(
            cpu_allocation_ratio=ratios['VCPU'],
            ram_allocation_ratio=ratios['MEMORY_MB'])

    def compute_node(self):
        return objects.ComputeNode.get_by_host_and_nodename(
            self.context, self.host, self.node)

    def host_state(self):
        """The scheduler's HostState of the node, as HostManager builds it
        from the compute node record."""
        state = host_manager.HostState(self.host, self.node, None)
        state.update(compute=self.compute_node())
        state.allocation_candidates = [{'mappings': {}}]
        return state


def nova_fit(state, req):
    """Nova's NUMATopologyFilter fit on the HostState: the claim, or
    None."""
    if req.numa_topology is None:
        return None
    return hardware.numa_fit_instance_to_host(
        state.numa_topology, req.numa_topology.obj_clone(),
        provider_mapping={}, limits=objects.NUMATopologyLimits(
            cpu_allocation_ratio=state.cpu_allocation_ratio,
            ram_allocation_ratio=state.ram_allocation_ratio),
        pci_requests=req.pci_requests.requests or None,
        pci_stats=state.pci_stats)


def claim_key(claim):
    """What must be equal of two claims: per guest node the host cell, the
    pinning and the emulator threads' CPUs."""
    if claim is None:
        return None
    return [(cell.id, dict(cell.cpu_pinning or {}),
             sorted(cell.cpuset_reserved or ()), cell.pagesize)
            for cell in claim.cells]
