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

The host is what Nova's scheduler sees of it (:mod:`hostview`): its NUMA
topology, PCI pools and Placement inventory as our driver reports them
under the node's nova.conf, with what its instances already use counted
by Nova's own accounting (:mod:`usage`), or Nova's compute node record
itself. The request is what Nova's API and scheduler make of the flavor
and image (:mod:`request`). The verdict is Nova's: Placement's capacity
and trait checks, then ``hardware.numa_fit_instance_to_host`` on the
host's topology with usage and its PCI pools (what NUMATopologyFilter
and, for a guest without NUMA topology, PciPassthroughFilter run), so the
host cells are the ones Nova picks, in Nova's order of cells by usage
(``[compute] packing_host_numa_cells_allocation_strategy``).
"""

import copy
import dataclasses
import os

import nova.conf
from nova import exception as nova_exception
from nova import objects
from nova.virt import hardware

from nova_kvmx.cmd import diagnose
from nova_kvmx.cmd import hostview
from nova_kvmx.cmd import placement
from nova_kvmx.cmd import request as server_request
from nova_kvmx.cmd import usage as host_usage
from nova_kvmx.cmd import usagefile
from nova_kvmx.guest import hwdevices
from nova_kvmx.guest import numa as guest_numa
from nova_kvmx.guest import planner
from nova_kvmx.guest import render
from nova_kvmx.guest import spec
from nova_kvmx.host import options
from nova_kvmx.host import topology

CONF = nova.conf.CONF


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
    usage: dict = dataclasses.field(default_factory=dict)
    request: dict = dataclasses.field(default_factory=dict)
    placement: dict = dataclasses.field(default_factory=dict)
    numa: str = 'not requested'
    guest_cells: list = dataclasses.field(default_factory=list)
    # Nova's claim: per guest node its host cell, pinning and reserved
    # CPUs (what NUMATopologyFilter's fit returns).
    claim: list = dataclasses.field(default_factory=list)
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


# -- the fit -----------------------------------------------------------------

def limits(view):
    """The NUMATopologyFilter's limits: the host's allocation ratios."""
    return objects.NUMATopologyLimits(
        cpu_allocation_ratio=view.ratios['VCPU'],
        ram_allocation_ratio=view.ratios['MEMORY_MB'])


def fit(view, req, with_pci=True):
    """Nova's fit of the request's NUMA topology (None: no fit), as the
    NUMATopologyFilter runs it on the host's HostState."""
    return hardware.numa_fit_instance_to_host(
        view.numa, req.numa_topology.obj_clone(), provider_mapping={},
        limits=limits(view),
        pci_requests=(req.pci_requests.requests or None) if with_pci
        else None,
        pci_stats=view.pci_pools if with_pci else None)


def chosen_pci_devices(req, view, cells):
    """The devices Nova's claim would take, in request order."""
    if not req.pci_requests.requests or view.pci_free is None:
        return []
    aliases = {r.request_id: r.alias_name for r in req.pci_requests.requests}
    devices = copy.deepcopy(view.pci_free).consume_requests(
        req.pci_requests.requests, cells)
    return [{'alias': aliases.get(dev.request_id), 'address': dev.address,
             'dev_type': dev.dev_type, 'vendor_id': dev.vendor_id,
             'product_id': dev.product_id, 'numa_node': dev.numa_node}
            for dev in devices or ()]


def pci_reasons(req, view):
    """Lines on what the host has free for each PCI alias requested."""
    stats = view.pci_pools
    in_use = {}
    for consumer in view.usage.consumers:
        if consumer.pci_devices:
            in_use[consumer.name] = len(consumer.pci_devices)
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
                     '%s); free under [pci] device_spec: %s%s' % (
                         pci_req.alias_name, pci_req.count, policy,
                         ', '.join('%d on NUMA node %s' % (n, node)
                                   for node, n in sorted(
                                       per_node.items(), key=str) if n)
                         or 'none',
                         ' (PCI devices in use %s)' % host_usage.by_whom(
                             sum(in_use.values()), in_use)
                         if in_use else ''))
    return lines


def _floating_rows(fitted, view):
    """vCPU rows of a claim when the host's CPU sets are unknown (a host
    seen through its compute node record only)."""
    cells = {c.id: c for c in view.numa.cells}
    rows = []
    for cell in fitted.cells:
        pinning = cell.cpu_pinning or {}
        for vcpu in sorted(cell.total_cpus):
            rows.append((vcpu, {pinning[vcpu]} if vcpu in pinning
                         else cells[cell.id].cpuset))
    emulator = set()
    for cell in fitted.cells:
        emulator |= cell.cpuset_reserved or set()
    return rows, emulator


def describe_fit(view, fitted, req):
    """Guest node, vCPU and emulator thread rows of a fitted topology,
    placed by the driver's own planner (nova_kvmx.guest.numa): what the
    domain would carry."""
    realtime = hardware.get_realtime_cpu_constraint(
        req.flavor, req.image_meta) or set()
    if view.cpu_sets is not None:
        settings = spec.DriverSettings(
            host_cpus=topology.guest_cpu_pools(view.reported, view.cpu_sets),
            small_page_kb=topology.small_page_kb(view.reported))
        tuning = guest_numa.plan_cpu_tuning(fitted, frozenset(realtime),
                                            settings)
        host_cpus, emulator = dict(tuning.vcpu_pins), tuning.emulator_pin
    else:
        rows, emulator = _floating_rows(fitted, view)
        host_cpus = dict(rows)
    host_cells = {c.id: c for c in view.numa.cells}
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
        for vcpu in sorted(cell.total_cpus):
            pins.append({'vcpu': vcpu, 'host_cpus': cpus(host_cpus[vcpu]),
                         'host_cell': cell.id, 'pinned': vcpu in pinning,
                         'realtime': vcpu in realtime})
    return guest_cells, pins, {
        'policy': req.numa_topology.emulator_threads_policy,
        'host_cpus': cpus(emulator)}


def claim_view(fitted):
    """Nova's claim as plain data: per guest node its host cell, the
    vCPU-to-pCPU pinning and the emulator threads' reserved CPUs."""
    return [{'host_cell': cell.id,
             'cpu_pinning': {str(v): p for v, p in sorted(
                 (cell.cpu_pinning or {}).items())},
             'cpuset_reserved': sorted(cell.cpuset_reserved or ()),
             'pagesize_kb': cell.pagesize}
            for cell in fitted.cells]


def _host_dict(view):
    cells = []
    for cell in view.numa.cells if view.numa else ():
        cells.append({
            'cell': cell.id, 'shared_cpus': cpus(cell.cpuset),
            'dedicated_cpus': cpus(cell.pcpuset),
            'pinned_cpus': cpus(cell.pinned_cpus),
            'shared_cpu_usage': cell.cpu_usage,
            'memory_mb': cell.memory, 'memory_used_mb': cell.memory_usage,
            'free_pages': {diagnose.page_label(p.size_kb): p.free
                           for p in cell.mempages},
            'used_pages': {diagnose.page_label(p.size_kb): p.used
                           for p in cell.mempages},
        })
    return {'name': view.name, 'source': view.source, 'cells': cells,
            'inventory': {rc: placement.capacity(r)
                          for rc, r in view.inventory.items()},
            'used': dict(sorted(view.used.items()))}


def _usage_dict(usage):
    return {'source': usage.source,
            'instances': usagefile.entries(usage)['instances'],
            'notes': list(usage.notes)}


def _request_view(req):
    flavor = req.flavor
    return {'vcpus': flavor.vcpus, 'memory_mb': flavor.memory_mb,
            'disk_gb': flavor.root_gb, 'extra_specs': dict(
                flavor.extra_specs),
            'image_properties': req.image_meta.properties.to_dict(),
            'guest_nodes': len(req.numa_topology.cells)
            if req.numa_topology else 0}


def explain(facts, req, local_gb=None, usage=None):
    """The :class:`Explanation` of fitting ``req`` on the host ``facts``
    with ``usage`` (default: none, the host taken as empty).

    :param local_gb: the host's disk for instances, when known
    :raises: InvalidConfiguration when nova.conf does not fit the host
    """
    view = hostview.from_facts(facts, usage or host_usage.empty(), local_gb)
    return explain_view(view, req)


def explain_view(view, req):
    """The :class:`Explanation` of fitting ``req`` on a host view."""
    ask = server_request.placement_ask(req.placement_query)
    problems, unchecked = placement.problems(
        ask, view.inventory, view.used, view.traits, view.usage.consumers)
    result = Explanation(
        host=_host_dict(view), usage=_usage_dict(view.usage),
        request=_request_view(req),
        placement={'query': req.placement_query,
                   'resources': ask.resources,
                   'required_traits': ask.required_traits,
                   'forbidden_traits': ask.forbidden_traits,
                   'problems': problems, 'not_checked': unchecked})
    if not view.usage.counted:
        result.notes.append('The host is taken as empty: instances already '
                            'on it are not counted (usage: %s).'
                            % view.usage.source)
    result.notes.extend(view.notes + view.usage.notes)
    if req.ignored_image_properties:
        result.notes.append('Nova ignores unknown image properties: %s' %
                            ', '.join(req.ignored_image_properties))
    result.reasons.extend('Placement: ' + p for p in problems)

    fits_numa = True
    if req.numa_topology is not None:
        fitted = fit(view, req) if view.numa else None
        fits_numa = fitted is not None
        result.numa = 'fits' if fits_numa else 'does not fit'
        if fitted is not None:
            result.fitted = fitted
            result.claim = claim_view(fitted)
            try:
                (result.guest_cells, result.vcpu_pins,
                 result.emulator_threads) = describe_fit(view, fitted, req)
            except nova_exception.Invalid as ex:
                # Placed by Nova, refused by the driver at spawn (e.g. a
                # realtime guest sharing emulator threads with no
                # cpu_shared_set): the server would end in ERROR.
                fits_numa = False
                result.reasons.append('the driver would refuse the claim: '
                                      '%s' % ex)
            result.pci_devices = chosen_pci_devices(req, view, fitted.cells)
        elif view.numa is None:
            result.reasons.append('the guest has a NUMA topology and the '
                                  'host reports none')
        else:
            result.reasons.extend(_numa_reasons(view, req))
    elif req.pci_requests.requests:
        fits_numa = view.pci_pools.support_requests(
            req.pci_requests.requests, {})
        if fits_numa:
            result.pci_devices = chosen_pci_devices(req, view, None)
        else:
            result.reasons.extend(pci_reasons(req, view))
    if req.numa_topology is None and view.cpu_sets is not None:
        result.vcpu_pins = [{
            'vcpu': vcpu, 'host_cpus': cpus(view.cpu_sets.shared),
            'host_cell': None, 'pinned': False, 'realtime': False}
            for vcpu in range(req.flavor.vcpus)]
    result.fits_placement = not problems
    result.fits_filters = fits_numa
    result.fits = result.fits_placement and result.fits_filters
    return result


def _numa_reasons(view, req):
    """The per-cell diagnosis, or the PCI one when the cells would fit
    without the PCI devices."""
    if req.pci_requests.requests and fit(view, req, with_pci=False):
        return (['the NUMA cells fit without PCI devices, not with them'] +
                pci_reasons(req, view))
    return diagnose.numa_reasons(view.numa, req.numa_topology, limits(view),
                                 host_usage.owners(view.numa, view.usage))


def domain_xml(facts, req, fitted, name='explain', instance_id=1,
               instance_uuid=None):
    """The domain XML the driver would define for this server on this host,
    from Nova's claim ``fitted`` (None for a guest without NUMA topology);
    disk paths are where the instance's files would be. PCI devices and
    network interfaces are not part of it."""
    numa = hostview.host_numa(facts)
    cpu_sets = topology.cpu_sets(facts.online_cpus)
    settings = spec.DriverSettings(
        virt_type=options.virt_type(CONF), **options.configured_cpu(CONF),
        machine_type=options.default_machine_type(
            CONF, facts.caps.host.cpu.arch), arch=facts.caps.host.cpu.arch,
        pcie_ports=CONF.libvirt.num_pcie_ports,
        host_cpus=topology.guest_cpu_pools(numa, cpu_sets),
        small_page_kb=topology.small_page_kb(numa),
        realtime_priority=options.realtime_priority(CONF),
        # What its guests start with (the facts carry no libvirt
        # version: taken as new enough for the virtio vIOMMU).
        viommu_models=hwdevices.viommu_models(
            options.virt_type(CONF), facts.caps.host.cpu.arch, True),
        guest_arches=frozenset(g.arch for g in facts.caps.guests))
    instance = objects.Instance(
        id=instance_id, uuid=instance_uuid or req.spec.instance_uuid,
        display_name=name,
        flavor=req.flavor, user_id='explain', project_id='explain',
        kernel_id=None, ramdisk_id=None, numa_topology=fitted)
    inst_dir = os.path.join(CONF.instances_path, instance.uuid)
    files = spec.GuestFiles(root_disk=os.path.join(inst_dir, 'disk'),
                            console_log=os.path.join(inst_dir,
                                                     'console.log'))
    return render.render_domain(planner.plan_guest(
        None, instance, req.image_meta, files, settings))
