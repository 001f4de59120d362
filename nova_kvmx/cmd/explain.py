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

"""Would this server fit this host, and how: ``nova-kvmx explain``.

The host is what our driver reports for it (its NUMA topology, Placement
inventory and traits, PCI devices under ``[pci] device_spec``), computed
by the driver's own code under the node's nova.conf; the request is what
Nova's API and scheduler make of the flavor and image
(:mod:`nova_kvmx.cmd.request`). The verdict is Nova's: Placement's
capacity and trait checks, then ``hardware.numa_fit_instance_to_host``
with the host's ``PciDeviceStats`` (what NUMATopologyFilter and, for a
guest without NUMA topology, PciPassthroughFilter run). The host is taken
as empty: Nova counts usage from its database, which a host dump lacks.
"""

import copy
import dataclasses
import os

from nova.compute import provider_tree
import nova.conf
import nova.conf.neutron
from nova import exception as nova_exception
from nova import objects
from nova.pci import stats as pci_stats
from nova.pci import whitelist
from nova.virt import driver as virt_driver
from nova.virt import hardware

from nova_kvmx.cmd import diagnose
from nova_kvmx.cmd import request as server_request
from nova_kvmx.guest import numa as guest_numa
from nova_kvmx.guest import planner
from nova_kvmx.guest import render
from nova_kvmx.guest import spec
from nova_kvmx.host import resources
from nova_kvmx.host import topology

CONF = nova.conf.CONF
_NODE = 'explain'
_NODE_UUID = '00000000-0000-4000-8000-00000000e092'


def cpus(cpu_set):
    return hardware.format_cpu_spec(cpu_set or ()) or '-'


@dataclasses.dataclass
class Explanation:
    """Plain data (for the table and ``--format json``)."""

    fits: bool = False
    # The two halves of Nova's verdict: Placement's allocation candidates,
    # then the scheduler filters (NUMATopologyFilter, PciPassthroughFilter).
    fits_placement: bool = False
    fits_filters: bool = False
    host: dict = dataclasses.field(default_factory=dict)
    request: dict = dataclasses.field(default_factory=dict)
    placement: dict = dataclasses.field(default_factory=dict)
    numa: str = 'not requested'
    guest_cells: list = dataclasses.field(default_factory=list)
    vcpu_pins: list = dataclasses.field(default_factory=list)
    emulator_threads: dict = dataclasses.field(default_factory=dict)
    pci_devices: list = dataclasses.field(default_factory=list)
    reasons: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)
    # Nova's fitted InstanceNUMATopology (the claim), not printed: what a
    # domain XML rendering would start from.
    fitted: object = dataclasses.field(default=None, repr=False)

    def as_dict(self):
        return {f.name: getattr(self, f.name)
                for f in dataclasses.fields(self) if f.name != 'fitted'}


# -- the host as the driver reports it ----------------------------------------

def host_numa(facts):
    """The NUMATopology our driver reports for the host (raises Nova's
    InvalidConfiguration naming the option, as nova-compute would)."""
    # The [neutron_physnet_*] and [neutron_tunnel] options, which only
    # Nova's (and our) driver registers, once the configuration is loaded.
    nova.conf.neutron.register_dynamic_opts(CONF)
    return topology.numa_topology(
        facts.caps, topology.cpu_sets(facts.online_cpus),
        CONF.reserved_huge_pages,
        physnet_nodes=resources.physnet_numa_nodes(),
        tunnel_nodes=CONF.neutron_tunnel.numa_nodes)


def host_pci_stats(numa, devices):
    """The host's PCI pools, as Nova's PCI tracker builds them from the
    reported devices that ``[pci] device_spec`` makes assignable."""
    dev_filter = whitelist.Whitelist(CONF.pci.device_spec)
    stats = pci_stats.PciDeviceStats(numa, dev_filter=dev_filter)
    for device in copy.deepcopy(devices):
        dev_spec = dev_filter.device_assignable(device)
        if dev_spec is None:
            continue
        dev_spec.enhanced_pci_device_with_spec_tags(device)
        device['compute_node_id'] = 0
        stats.add_device(objects.PciDevice.create(None, device))
    return stats


def allocation_ratios():
    return virt_driver.ComputeDriver._get_allocation_ratios({})


def host_inventory(cpu_sets, memory_mb, local_gb):
    """The Placement inventory our driver reports: {rc: record}."""
    tree = provider_tree.ProviderTree()
    tree.new_root(_NODE, _NODE_UUID)
    resources.update_inventory(tree, _NODE, {
        'vcpus': len(cpu_sets.shared), 'pcpus': len(cpu_sets.dedicated),
        'memory_mb': memory_mb, 'local_gb': local_gb or 0,
    }, allocation_ratios())
    inventory = tree.data(_NODE).inventory
    if local_gb is None:
        inventory.pop('DISK_GB', None)
    return inventory


def host_traits(caps):
    """{trait: present} of the traits our driver manages."""
    settings = spec.DriverSettings(virt_type=CONF.kvmx.virt_type,
                                   cpu_mode=CONF.kvmx.cpu_mode)
    return resources.cpu_traits(caps, planner.default_cpu_mode(settings),
                                topology.has_hyperthreading(caps))


# -- Placement ---------------------------------------------------------------

def _capacity(record):
    return int((record['total'] - record['reserved']) *
               record['allocation_ratio'])


def placement_problems(ask, inventory, traits):
    """What GET /allocation_candidates would find missing on this host,
    and the traits it cannot judge (not managed by the driver)."""
    problems, unchecked = [], []
    for rc, amount in sorted(ask.resources.items()):
        record = inventory.get(rc)
        if rc == 'DISK_GB' and record is None:
            unchecked.append('DISK_GB (the host dump has no disk size)')
        elif record is None:
            problems.append('%s: needs %d, the host has no %s inventory%s' % (
                rc, amount, rc, {
                    'PCPU': ' (no [compute] cpu_dedicated_set)',
                    'VCPU': ' (no [compute] cpu_shared_set CPUs)'}.get(
                        rc, '')))
        elif amount > _capacity(record):
            problems.append('%s: needs %d, the host offers %d' % (
                rc, amount, _capacity(record)))
        elif amount > record['max_unit']:
            problems.append('%s: needs %d, at most %d per server '
                            '(max_unit)' % (rc, amount, record['max_unit']))
    for trait in ask.required_traits:
        if trait not in traits:
            unchecked.append(trait)
        elif not traits[trait]:
            problems.append('requires trait %s, which the host lacks'
                            % trait)
    for trait in ask.forbidden_traits:
        if traits.get(trait):
            problems.append('forbids trait %s, which the host has%s' % (
                trait, ' (its CPUs have SMT threads)'
                if trait == 'HW_CPU_HYPERTHREADING' else ''))
    for any_of in ask.any_of_traits:
        unchecked.append('one of ' + ','.join(any_of))
    return problems, unchecked


# -- the fit -----------------------------------------------------------------

def _limits():
    ratios = allocation_ratios()
    return objects.NUMATopologyLimits(
        cpu_allocation_ratio=ratios['VCPU'],
        ram_allocation_ratio=ratios['MEMORY_MB'])


def fit(numa, req, stats):
    """Nova's fit of the request's NUMA topology (None: no fit)."""
    return hardware.numa_fit_instance_to_host(
        numa, req.numa_topology.obj_clone(), provider_mapping={},
        limits=_limits(),
        pci_requests=req.pci_requests.requests or None,
        pci_stats=stats)


def chosen_pci_devices(req, stats, cells):
    """The devices Nova's claim would take, in request order."""
    if not req.pci_requests.requests:
        return []
    aliases = {r.request_id: r.alias_name for r in req.pci_requests.requests}
    devices = copy.deepcopy(stats).consume_requests(
        req.pci_requests.requests, cells)
    return [{'alias': aliases.get(dev.request_id), 'address': dev.address,
             'dev_type': dev.dev_type, 'vendor_id': dev.vendor_id,
             'product_id': dev.product_id, 'numa_node': dev.numa_node}
            for dev in devices or ()]


def pci_reasons(req, stats):
    """Lines on what the host has for each PCI alias requested."""
    lines = []
    for pci_req in req.pci_requests.requests:
        matching = [pool for pool in stats.pools
                    if stats._filter_pools_for_spec([pool], pci_req)]
        per_node = {}
        for pool in matching:
            per_node[pool['numa_node']] = (per_node.get(pool['numa_node'], 0)
                                           + pool['count'])
        policy = pci_req.numa_policy or 'legacy'
        lines.append('PCI alias %s: needs %d device(s) (NUMA affinity policy '
                     '%s); assignable under [pci] device_spec: %s' % (
                         pci_req.alias_name, pci_req.count, policy,
                         ', '.join('%d on NUMA node %s' % (n, node)
                                   for node, n in sorted(
                                       per_node.items(), key=str)) or 'none'))
    return lines


def describe_fit(numa, fitted, req, cpu_sets):
    """Guest node, vCPU and emulator thread rows of a fitted topology,
    placed by the driver's own planner (nova_kvmx.guest.numa): what the
    domain would carry."""
    realtime = hardware.get_realtime_cpu_constraint(
        req.flavor, req.image_meta) or set()
    settings = spec.DriverSettings(
        host_cpus=topology.guest_cpu_pools(numa, cpu_sets),
        small_page_kb=topology.small_page_kb(numa))
    tuning = guest_numa.plan_cpu_tuning(fitted, frozenset(realtime),
                                        settings)
    host_cells = {c.id: c for c in numa.cells}
    guest_cells, pins = [], []
    for index, cell in enumerate(fitted.cells):
        host = host_cells[cell.id]
        pagesize = None
        if host.mempages:
            pagesize = cell.pagesize or hardware._get_smallest_pagesize(host)
        guest_cells.append({
            'guest_node': index, 'host_cell': cell.id,
            'vcpus': cpus(cell.total_cpus),
            'dedicated_vcpus': cpus(cell.pcpuset),
            'memory_mb': cell.memory,
            'page_size': diagnose.page_label(pagesize) if pagesize else None,
            'pages': cell.memory * 1024 // pagesize if pagesize else None,
        })
        pinning = cell.cpu_pinning or {}
        host_cpus = dict(tuning.vcpu_pins)
        for vcpu in sorted(cell.total_cpus):
            pins.append({'vcpu': vcpu, 'host_cpus': cpus(host_cpus[vcpu]),
                         'host_cell': cell.id, 'pinned': vcpu in pinning,
                         'realtime': vcpu in realtime})
    return guest_cells, pins, {
        'policy': req.numa_topology.emulator_threads_policy,
        'host_cpus': cpus(tuning.emulator_pin)}


def _host_view(facts, numa, inventory):
    cells = []
    for cell in numa.cells if numa else ():
        cells.append({
            'cell': cell.id, 'shared_cpus': cpus(cell.cpuset),
            'dedicated_cpus': cpus(cell.pcpuset), 'memory_mb': cell.memory,
            'free_pages': {diagnose.page_label(p.size_kb): p.free
                           for p in cell.mempages},
        })
    return {'source': facts.source, 'cells': cells,
            'inventory': {rc: _capacity(r) for rc, r in inventory.items()}}


def _request_view(req):
    flavor = req.flavor
    return {'vcpus': flavor.vcpus, 'memory_mb': flavor.memory_mb,
            'disk_gb': flavor.root_gb, 'extra_specs': dict(
                flavor.extra_specs),
            'image_properties': req.image_meta.properties.to_dict(),
            'guest_nodes': len(req.numa_topology.cells)
            if req.numa_topology else 0}


def explain(facts, req, local_gb=None):
    """The :class:`Explanation` of fitting ``req`` on the host ``facts``.

    :param local_gb: the host's disk for instances, when known
    :raises: InvalidConfiguration when nova.conf does not fit the host
    """
    numa = host_numa(facts)
    cpu_sets = topology.cpu_sets(facts.online_cpus)
    inventory = host_inventory(cpu_sets, facts.memory_mb, local_gb)
    ask = server_request.placement_ask(req.placement_query)
    problems, unchecked = placement_problems(
        ask, inventory, host_traits(facts.caps))
    stats = host_pci_stats(numa, facts.pci_devices)
    result = Explanation(
        host=_host_view(facts, numa, inventory),
        request=_request_view(req),
        placement={'query': req.placement_query,
                   'resources': ask.resources,
                   'required_traits': ask.required_traits,
                   'forbidden_traits': ask.forbidden_traits,
                   'problems': problems, 'not_checked': unchecked})
    result.notes.append('The host is taken as empty: instances already on '
                        'it are not counted.')
    if req.ignored_image_properties:
        result.notes.append('Nova ignores unknown image properties: %s' %
                            ', '.join(req.ignored_image_properties))
    result.reasons.extend('Placement: ' + p for p in problems)

    fits_numa = True
    if req.numa_topology is not None:
        fitted = fit(numa, req, stats) if numa else None
        fits_numa = fitted is not None
        result.numa = 'fits' if fits_numa else 'does not fit'
        if fitted is not None:
            result.fitted = fitted
            try:
                (result.guest_cells, result.vcpu_pins,
                 result.emulator_threads) = describe_fit(numa, fitted, req,
                                                         cpu_sets)
            except nova_exception.Invalid as ex:
                # Placed by Nova, refused by the driver at spawn (e.g. a
                # realtime guest sharing emulator threads with no
                # cpu_shared_set): the server would end in ERROR.
                fits_numa = False
                result.reasons.append('the driver would refuse the claim: '
                                      '%s' % ex)
            result.pci_devices = chosen_pci_devices(req, stats, fitted.cells)
        elif numa is None:
            result.reasons.append('the guest has a NUMA topology and the '
                                  'host reports none')
        else:
            result.reasons.extend(_numa_reasons(numa, req, stats))
    elif req.pci_requests.requests:
        fits_numa = stats.support_requests(req.pci_requests.requests, {})
        if fits_numa:
            result.pci_devices = chosen_pci_devices(req, stats, None)
        else:
            result.reasons.extend(pci_reasons(req, stats))
    if req.numa_topology is None:
        result.vcpu_pins = [{
            'vcpu': vcpu, 'host_cpus': cpus(cpu_sets.shared),
            'host_cell': None, 'pinned': False, 'realtime': False}
            for vcpu in range(req.flavor.vcpus)]
    result.fits_placement = not problems
    result.fits_filters = fits_numa
    result.fits = result.fits_placement and result.fits_filters
    return result


def _numa_reasons(numa, req, stats):
    """The per-cell diagnosis, or the PCI one when the cells would fit
    without the PCI devices."""
    if req.pci_requests.requests and hardware.numa_fit_instance_to_host(
            numa, req.numa_topology.obj_clone(), provider_mapping={},
            limits=_limits()) is not None:
        return (['the NUMA cells fit without PCI devices, not with them'] +
                pci_reasons(req, stats))
    return diagnose.numa_reasons(numa, req.numa_topology, _limits())


def domain_xml(facts, req, fitted):
    """The domain XML the driver would define for this server on this host,
    from Nova's claim ``fitted`` (None for a guest without NUMA topology);
    disk paths are where the instance's files would be. PCI devices and
    network interfaces are not part of it."""
    numa = host_numa(facts)
    cpu_sets = topology.cpu_sets(facts.online_cpus)
    settings = spec.DriverSettings(
        virt_type=CONF.kvmx.virt_type, cpu_mode=CONF.kvmx.cpu_mode,
        cpu_models=tuple(CONF.kvmx.cpu_models),
        machine_type=CONF.kvmx.machine_type, arch=facts.caps.host.cpu.arch,
        host_cpus=topology.guest_cpu_pools(numa, cpu_sets),
        small_page_kb=topology.small_page_kb(numa),
        realtime_priority=CONF.kvmx.realtime_scheduler_priority)
    instance = objects.Instance(
        id=1, uuid=req.spec.instance_uuid, display_name='explain',
        flavor=req.flavor, user_id='explain', project_id='explain',
        kernel_id=None, ramdisk_id=None, numa_topology=fitted)
    inst_dir = os.path.join(CONF.instances_path, instance.uuid)
    files = spec.GuestFiles(root_disk=os.path.join(inst_dir, 'disk'),
                            console_log=os.path.join(inst_dir,
                                                     'console.log'))
    return render.render_domain(planner.plan_guest(
        None, instance, req.image_meta, files, settings))
