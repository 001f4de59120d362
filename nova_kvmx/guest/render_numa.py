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

"""The NUMA, CPU and memory parts of a domain, from a GuestSpec.

``<cpu><numa>`` gives the guest its cells; ``<numatune>`` binds each
cell's memory to its host cell (strictly: memory from another node would
silently break the latency the claim promised); ``<iothreads>`` and
``<cputune>`` pin vCPUs, emulator threads and IOThreads, set the realtime
scheduler and the CPU shares and quota; ``<memoryBacking>`` asks for the
claimed page size per cell and locks realtime memory.
"""

from nova.virt.libvirt import config as vconfig

MIB_IN_KIB = 1024


def apply_numa(conf, guest):
    """Fill ``conf`` (LibvirtConfigGuest, its ``cpu`` already built) with
    what ``guest`` says about NUMA, CPUs and memory."""
    conf.cpuset = guest.cpuset
    conf.iothreads = guest.iothreads or None
    if guest.numa_cells:
        conf.cpu.numa = build_guest_numa(guest.numa_cells,
                                         guest.shared_memory)
        conf.numatune = build_numatune(guest.numa_cells)
    if guest.cpu_tuning:
        conf.cputune = build_cputune(guest.cpu_tuning)
    if guest.cpu_quota:
        conf.cputune = conf.cputune or vconfig.LibvirtConfigGuestCPUTune()
        conf.cputune.shares = guest.cpu_quota.shares
        conf.cputune.period = guest.cpu_quota.period
        conf.cputune.quota = guest.cpu_quota.quota
    conf.membacking = build_memory_backing(guest)
    if guest.pmu is not None:
        conf.features.append(vconfig.LibvirtConfigGuestFeaturePMU(guest.pmu))


def build_guest_numa(cells, shared_memory):
    numa = vconfig.LibvirtConfigGuestCPUNUMA()
    for cell in cells:
        conf = vconfig.LibvirtConfigGuestCPUNUMACell()
        conf.id = cell.id
        conf.cpus = set(cell.vcpus)
        conf.memory = cell.memory_mb * MIB_IN_KIB
        if shared_memory:
            conf.memAccess = 'shared'
        numa.cells.append(conf)
    return numa


def build_numatune(cells):
    numatune = vconfig.LibvirtConfigGuestNUMATune()
    numatune.memory = vconfig.LibvirtConfigGuestNUMATuneMemory()
    numatune.memory.mode = 'strict'
    numatune.memory.nodeset = sorted({cell.host_cell for cell in cells})
    for cell in cells:
        memnode = vconfig.LibvirtConfigGuestNUMATuneMemNode()
        memnode.cellid = cell.id
        memnode.mode = 'strict'
        memnode.nodeset = [cell.host_cell]
        numatune.memnodes.append(memnode)
    return numatune


def build_cputune(tuning):
    cputune = vconfig.LibvirtConfigGuestCPUTune()
    for vcpu, cpus in tuning.vcpu_pins:
        pin = vconfig.LibvirtConfigGuestCPUTuneVCPUPin()
        pin.id = vcpu
        pin.cpuset = set(cpus)
        cputune.vcpupin.append(pin)
    cputune.emulatorpin = vconfig.LibvirtConfigGuestCPUTuneEmulatorPin()
    cputune.emulatorpin.cpuset = set(tuning.emulator_pin)
    for iothread, cpus in tuning.iothread_pins:
        pin = vconfig.LibvirtConfigGuestCPUTuneIOThreadPin()
        pin.iothread = iothread
        pin.cpuset = set(cpus)
        cputune.iothreadpin.append(pin)
    if tuning.realtime_vcpus:
        sched = vconfig.LibvirtConfigGuestCPUTuneVCPUSched()
        sched.vcpus = set(tuning.realtime_vcpus)
        sched.scheduler = 'fifo'
        sched.priority = tuning.realtime_priority
        cputune.vcpusched.append(sched)
    return cputune


def build_memory_backing(guest):
    """``<memoryBacking>``, or None when the guest needs nothing of it."""
    pages = []
    for cell in guest.numa_cells:
        if cell.page_size_kb:
            page = vconfig.LibvirtConfigGuestMemoryBackingPage()
            page.size_kb = cell.page_size_kb
            page.nodeset = [cell.id]
            pages.append(page)
    # Shared memory (vhost-user) must be file backed: huge pages are;
    # otherwise libvirt's file-backed RAM, shared.
    file_backed = guest.shared_memory and (
        not guest.numa_cells or
        not all(cell.page_size_kb for cell in guest.numa_cells))
    if not (pages or file_backed or guest.locked_memory or
            not guest.share_pages):
        return None
    backing = vconfig.LibvirtConfigGuestMemoryBacking()
    backing.hugepages = pages
    backing.locked = guest.locked_memory
    backing.sharedpages = guest.share_pages
    backing.filesource = backing.sharedaccess = file_backed
    return backing
