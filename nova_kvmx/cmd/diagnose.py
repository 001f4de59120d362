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

"""Why a guest does not fit a host, cell by cell.

The verdict is Nova's (``hardware.numa_fit_instance_to_host``); this only
explains it. Each guest NUMA node is tried on each host cell alone with
Nova's own cell fitting (``hardware._numa_fit_instance_cell``), and when
Nova declines, the cell's resources are checked in the order Nova checks
them to name the one that is short: page size and free pages, memory,
dedicated and shared CPUs, then the thread policy's core packing. On a
host in use, the reason says what is used and by whom (``owners``, from
:func:`nova_kvmx.cmd.usage.owners`).
"""

from nova import exception
from nova.objects import fields
from nova.virt import hardware
from oslo_utils import units

from nova_kvmx.cmd import usage as host_usage

DEDICATED = (fields.CPUAllocationPolicy.DEDICATED,
             fields.CPUAllocationPolicy.MIXED)
SHARED = (fields.CPUAllocationPolicy.SHARED,
          fields.CPUAllocationPolicy.MIXED, None)
ISOLATE = fields.CPUThreadAllocationPolicy.ISOLATE
REQUIRE = fields.CPUThreadAllocationPolicy.REQUIRE
_PAGE_REQUESTS = {hardware.MEMPAGES_SMALL: 'small',
                  hardware.MEMPAGES_LARGE: 'large',
                  hardware.MEMPAGES_ANY: 'any'}


def page_label(size_kb):
    for unit, name in ((units.Mi, 'G'), (units.Ki, 'M')):
        if size_kb >= unit and size_kb % unit == 0:
            return '%d%s' % (size_kb // unit, name)
    return '%dK' % size_kb


def _candidate_sizes(host_cell, inst_cell):
    """The page sizes Nova would consider for the guest node, largest
    first (as ``_numa_cell_supports_pagesize_request`` does)."""
    sizes = sorted((p.size_kb for p in host_cell.mempages), reverse=True)
    request = inst_cell.pagesize
    if request == hardware.MEMPAGES_SMALL:
        return sizes[-1:]
    if request == hardware.MEMPAGES_LARGE:
        return sizes[:-1]
    if request == hardware.MEMPAGES_ANY:
        return sizes
    return [request]


def _used(total, counts, unit=''):
    """'14 used by 2 instances: a (7), b (7)', or '14 used'."""
    who = host_usage.by_whom(total, counts, unit)
    return '%d%s used%s' % (total, unit, ' ' + who if who else '')


def _in_parens(*parts):
    parts = [p for p in parts if p]
    return ' (%s)' % '; '.join(parts) if parts else ''


def _pages_reason(host_cell, inst_cell, owners):
    memory_kb = inst_cell.memory * units.Ki
    pages = {p.size_kb: p for p in host_cell.mempages}
    sizes = _candidate_sizes(host_cell, inst_cell)
    if not sizes:
        return ('hw:mem_page_size=large needs huge pages, the cell has '
                'none')
    wants = []
    for size in sizes:
        if size not in pages:
            wants.append('needs %s pages, the cell has none (it has %s)' % (
                page_label(size),
                ', '.join(page_label(s) for s in sorted(pages))))
        elif memory_kb % size:
            wants.append('%d MiB is not a whole number of %s pages' % (
                inst_cell.memory, page_label(size)))
        else:
            free = pages[size]
            wants.append('needs %d free %s pages, has %d%s' % (
                memory_kb // size, page_label(size), free.free, _in_parens(
                    '%d reserved by reserved_huge_pages' % free.reserved
                    if free.reserved else '',
                    _used(free.used, owners.pages.get(size, {}))
                    if free.used else '')))
    request = _PAGE_REQUESTS.get(inst_cell.pagesize)
    prefix = ('hw:mem_page_size=%s: ' % request) if request else ''
    return prefix + '; or '.join(wants)


def _memory_reason(host_cell, inst_cell, owners):
    if host_cell.mempages:
        size = hardware._get_smallest_pagesize(host_cell)
        use_free = inst_cell.cpu_policy in DEDICATED
        if not host_cell.can_fit_pagesize(
                size, inst_cell.memory * units.Ki, use_free=use_free):
            small = next(p for p in host_cell.mempages if p.size_kb == size)
            have = (small.free_kb if use_free else small.total_kb) // units.Ki
            used_mb = small.used * size // units.Ki
            return ('needs %d MiB of %s-page memory (no hw:mem_page_size), '
                    'has %d MiB%s' % (
                        inst_cell.memory, page_label(size), have, _in_parens(
                            _used(used_mb, owners.memory, ' MiB')
                            if use_free and used_mb else '',
                            'the rest of its memory is in huge pages')))
    elif inst_cell.memory > host_cell.avail_memory:
        return 'needs %d MiB of memory, has %d MiB%s' % (
            inst_cell.memory, host_cell.avail_memory, _in_parens(
                _used(host_cell.memory_usage, owners.memory, ' MiB')
                if host_cell.memory_usage else ''))
    return None


def _full_cores(host_cell, threads):
    return sum(1 for s in host_cell.free_siblings if len(s) == threads)


def _packing_reason(host_cell, inst_cell, reserved, owners):
    """Why Nova's ``_pack_instance_onto_cores`` found no pinning."""
    return _packing(host_cell, inst_cell, reserved) + _in_parens(
        host_usage.pinned_by_whom(host_cell, owners))


def _packing(host_cell, inst_cell, reserved):
    threads = max(map(len, host_cell.siblings), default=0) or 1
    needed = len(inst_cell.pcpuset) + reserved
    extra = ' (+%d for the emulator threads)' % reserved if reserved else ''
    if inst_cell.cpu_thread_policy == ISOLATE:
        if threads > 1 and host_cell.pcpuset != host_cell.cpuset:
            return ('thread policy isolate: the cell\'s CPUs have SMT '
                    'siblings, and Nova places isolate guests only on hosts '
                    'without SMT when cpu_dedicated_set is used (disable SMT '
                    'or use hw:cpu_thread_policy=prefer)')
        return 'thread policy isolate needs %d free full cores%s, has %d' % (
            needed, extra, _full_cores(host_cell, threads))
    if inst_cell.cpu_thread_policy == REQUIRE:
        if threads <= 1:
            return ('thread policy require needs SMT thread siblings, the '
                    'cell\'s dedicated CPUs have none')
        paired = sum(len(s) for s in host_cell.free_siblings if len(s) > 1)
        return ('thread policy require needs %d dedicated CPUs on thread '
                'siblings%s, has %d' % (needed, extra, paired))
    return 'no pinning of %d vCPUs%s onto the cell\'s free CPUs' % (
        len(inst_cell.pcpuset), extra)


def cell_reason(host_cell, inst_cell, limits=None, reserved=0,
                owners=None):
    """Why the guest node does not fit the host cell, or None if it does.

    :param reserved: dedicated CPUs for the emulator threads (1 for the
        first guest node of a ``hw:emulator_threads_policy=isolate`` guest)
    :param owners: the cell's :class:`usage.CellOwners`, to say who uses
        what
    """
    owners = owners or host_usage.CellOwners()
    try:
        fitted = hardware._numa_fit_instance_cell(
            host_cell, inst_cell.obj_clone(), limits, reserved)
    except exception.MemoryPageSizeNotSupported:
        fitted = None
    if fitted is not None:
        return None
    if 'pagesize' in inst_cell and inst_cell.pagesize:
        if not _supports_pagesize(host_cell, inst_cell):
            return _pages_reason(host_cell, inst_cell, owners)
    else:
        reason = _memory_reason(host_cell, inst_cell, owners)
        if reason:
            return reason
    extra = ' (+%d for the emulator threads)' % reserved if reserved else ''
    if inst_cell.cpu_policy in DEDICATED:
        needed = len(inst_cell.pcpuset) + reserved
        if needed > len(host_cell.pcpuset):
            return ('needs %d dedicated CPUs%s, has %d in '
                    'cpu_dedicated_set' % (len(inst_cell.pcpuset), extra,
                                           len(host_cell.pcpuset)))
    if inst_cell.cpu_policy in SHARED and len(inst_cell.cpuset) > len(
            host_cell.cpuset):
        return 'needs %d shared CPUs, has %d in cpu_shared_set' % (
            len(inst_cell.cpuset), len(host_cell.cpuset))
    if inst_cell.cpu_policy in DEDICATED:
        needed = len(inst_cell.pcpuset) + reserved
        if needed > host_cell.avail_pcpus:
            return 'needs %d free dedicated CPUs%s, has %d%s' % (
                len(inst_cell.pcpuset), extra, host_cell.avail_pcpus,
                _in_parens(host_usage.pinned_by_whom(host_cell, owners)))
        return _packing_reason(host_cell, inst_cell, reserved, owners)
    if limits is not None:
        cpu_limit = len(host_cell.cpuset) * limits.cpu_allocation_ratio
        if host_cell.cpu_usage + len(inst_cell.cpuset) > cpu_limit:
            return ('needs %d shared CPUs, the cell allows %g '
                    '(cpu_allocation_ratio %g)%s' % (
                        len(inst_cell.cpuset), cpu_limit,
                        limits.cpu_allocation_ratio, _in_parens(
                            _used(host_cell.cpu_usage, owners.shared)
                            if host_cell.cpu_usage else '')))
        ram_limit = host_cell.memory * limits.ram_allocation_ratio
        if host_cell.memory_usage + inst_cell.memory > ram_limit:
            return ('needs %d MiB of memory, the cell allows %g MiB '
                    '(ram_allocation_ratio %g)%s' % (
                        inst_cell.memory, ram_limit,
                        limits.ram_allocation_ratio, _in_parens(
                            _used(host_cell.memory_usage, owners.memory,
                                  ' MiB')
                            if host_cell.memory_usage else '')))
    return 'does not fit (run with --debug to see Nova\'s fitting log)'


def _supports_pagesize(host_cell, inst_cell):
    try:
        return bool(hardware._numa_cell_supports_pagesize_request(
            host_cell, inst_cell))
    except exception.MemoryPageSizeNotSupported:
        return False


def _ids(noun, ids):
    return '%s%s %s' % (noun, 's' if len(ids) > 1 else '',
                        hardware.format_cpu_spec(ids))


def fitting_cells(host, instance, limits=None, owners=None):
    """{guest node id: {host cell id: reason or None}} over all pairs."""
    owners = owners or {}
    result = {}
    for index, inst_cell in enumerate(instance.cells):
        reserved = 1 if (index == 0 and
                         instance.emulator_threads_isolated) else 0
        result[inst_cell.id] = {
            host_cell.id: cell_reason(host_cell, inst_cell, limits, reserved,
                                      owners.get(host_cell.id))
            for host_cell in host.cells}
    return result


def numa_reasons(host, instance, limits=None, owners=None):
    """Lines saying why no host cells fit the guest's NUMA nodes.

    :param owners: {host cell id: usage.CellOwners}
    """
    if len(host.cells) < len(instance.cells):
        return ['the guest asks for %d NUMA nodes, the host has %d cells'
                % (len(instance.cells), len(host.cells))]
    table = fitting_cells(host, instance, limits, owners)
    # Cells with the same reason share a line ("cells 1-3: ...").
    grouped = {}
    for guest, reasons in table.items():
        for cell, reason in reasons.items():
            grouped.setdefault((guest, reason or 'fits alone'), []).append(
                cell)
    # ...and guest nodes with the same cells and reason too.
    merged = {}
    for (guest, reason), cells in grouped.items():
        merged.setdefault((tuple(cells), reason), []).append(guest)
    lines = []
    for (cells, reason), guests in sorted(merged.items(),
                                          key=lambda item: item[0][0]):
        lines.append('%s: %s: %s' % (_ids('cell', cells),
                                     _ids('guest node', guests), reason))
    fits = {guest: {c for c, r in reasons.items() if r is None}
            for guest, reasons in table.items()}
    if all(fits.values()):
        lines.append(
            'each guest node fits some cell, but no set of distinct cells '
            'fits them all (%s)' % '; '.join(
                'guest node %d fits cells %s' % (
                    g, hardware.format_cpu_spec(c))
                for g, c in sorted(fits.items())))
    return lines
