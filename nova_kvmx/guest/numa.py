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

"""Nova's NUMA claim -> guest cells, CPU pinning and memory policy.

Nova decided all of it when it claimed the instance
(``nova.virt.hardware.numa_fit_instance_to_host``): the host cell of each
guest cell, the host CPU of each dedicated vCPU, the CPUs reserved for
emulator threads, the page size. This module reads that claim, plus the
flavor and image policies Nova's own helpers validate (realtime mask, PMU,
locked memory), and nothing is fitted again: if the claim is wrong, the
cloud is wrong, and the guest must still be exactly what Nova recorded.

Pure: plain values in, :mod:`spec` values out.
"""

from nova import exception
from nova.objects import fields
from nova.virt import hardware

from nova_kvmx.guest import spec

# Every guest has one IOThread (ID 1), as Nova's libvirt driver gives it
# (LibvirtDriver._get_guest_iothread).
IOTHREADS = 1


def plan_numa(claim, flavor, image_meta, machine_type, settings):
    """The GuestSpec fields that realise ``claim``, as a dict.

    :param claim: the instance's ``numa_topology``
        (``objects.InstanceNUMATopology``) or None
    :param machine_type: the guest's machine type (Nova's locked memory
        check depends on it)
    :param settings: spec.DriverSettings of this host
    :raises: RealtimeMaskNotFoundOrInvalid, LockMemoryForbidden and the
        other errors of Nova's flavor and image helpers
    """
    realtime = frozenset(
        hardware.get_realtime_cpu_constraint(flavor, image_meta) or ())
    pmu = hardware.get_pmu_constraint(flavor, image_meta)
    if pmu is None and realtime:
        # Realtime guests keep the PMU off unless asked for: its
        # interrupts add latency (Nova's realtime documentation).
        pmu = False
    locked = bool(hardware.get_locked_memory_constraint(
        flavor, image_meta, machine_type))
    if claim is None:
        return {'cpuset': settings.host_cpus.floating, 'pmu': pmu,
                'locked_memory': locked}

    cells = plan_cells(claim, settings.small_page_kb)
    return {
        'numa_cells': cells,
        'cpu_tuning': plan_cpu_tuning(claim, realtime, settings),
        # Nova marks the memory of every large-page guest shared, as a
        # vhost-user port may be plugged later and the access mode cannot
        # change on a running guest.
        'shared_memory': any(c.page_size_kb for c in cells),
        'locked_memory': locked or bool(realtime),
        'share_pages': not realtime,
        'pmu': pmu,
        # A balloon could take memory from under realtime vCPUs.
        'memballoon': not realtime,
    }


def plan_cells(claim, small_page_kb):
    """Guest cells numbered from 0 in claim order, each on its host cell;
    ``page_size_kb`` only for pages larger than the host's small ones
    (libvirt cannot back memory with small pages explicitly)."""
    return tuple(
        spec.GuestCell(
            id=index,
            host_cell=cell.id,
            vcpus=frozenset(cell.total_cpus),
            memory_mb=cell.memory,
            page_size_kb=(cell.pagesize if cell.pagesize and
                          cell.pagesize > small_page_kb else None))
        for index, cell in enumerate(claim.cells))


def plan_cpu_tuning(claim, realtime, settings):
    pins = {}
    for cell in claim.cells:
        floating = settings.host_cpus.shared_in_cell(cell.id)
        # Read once: the object builds a new dict on every access.
        pinning = cell.cpu_pinning or {}
        for vcpu in cell.total_cpus:
            if vcpu in pinning:
                pins[vcpu] = frozenset([pinning[vcpu]])
            elif floating:
                pins[vcpu] = floating
            else:
                raise exception.Invalid(
                    'vCPU %d of the claim floats in host cell %d, which '
                    'has no shared CPUs' % (vcpu, cell.id))
    vcpu_pins = tuple(sorted(pins.items()))
    emulator = emulator_cpus(claim, vcpu_pins, realtime,
                             settings.host_cpus.emulator_shared)
    return spec.CPUTuning(
        vcpu_pins=vcpu_pins,
        emulator_pin=emulator,
        # IOThreads run where the emulator threads do, as Nova pins them:
        # never on a realtime vCPU's CPU, nor on a dedicated vCPU's CPU
        # when the emulator threads have CPUs of their own.
        iothread_pins=tuple((iothread, emulator)
                            for iothread in range(1, IOTHREADS + 1)),
        realtime_vcpus=realtime,
        realtime_priority=settings.realtime_priority if realtime else None)


def emulator_cpus(claim, vcpu_pins, realtime, shared_set):
    """Where the emulator threads run, by the claim's emulator threads
    policy, as Nova documents it:

    - ``isolate``: the CPU(s) Nova reserved for them (``cpuset_reserved``);
    - ``share`` with ``[compute] cpu_shared_set``: that set;
    - otherwise: with the non-realtime vCPUs (all vCPUs if none is
      realtime).

    :raises: RealtimeMaskNotFoundOrInvalid for a realtime guest whose
        emulator threads would share its realtime vCPUs' CPUs (as Nova)
    """
    policy = claim.emulator_threads_policy \
        if 'emulator_threads_policy' in claim else None
    if policy == fields.CPUEmulatorThreadsPolicy.ISOLATE:
        reserved = frozenset().union(*(
            cell.cpuset_reserved or () for cell in claim.cells))
        if reserved:
            return reserved
    if policy == fields.CPUEmulatorThreadsPolicy.SHARE:
        if shared_set:
            return frozenset(shared_set)
        if realtime:
            # Nova's libvirt driver refuses this too: a realtime guest with
            # 'share' needs a shared set to put its emulator threads on.
            raise exception.RealtimeMaskNotFoundOrInvalid()
    cpus = frozenset().union(
        *(host for vcpu, host in vcpu_pins if vcpu not in realtime))
    if not cpus:
        raise exception.RealtimeMaskNotFoundOrInvalid()
    return cpus
