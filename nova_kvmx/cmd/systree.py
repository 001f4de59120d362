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

"""The kernel's view of the host (/proc, /sys, /dev) under a root.

``host-check`` reads only through this, so a test points it at a tree
built in a temporary directory. Nova has readers for some of these files
(``nova.filesystem``, ``nova.virt.libvirt.cpu.core``), but they read
fixed absolute paths; these take the root.
"""

import dataclasses
import os
import re

from nova.virt import hardware

_HUGEPAGES = re.compile(r'hugepages-(\d+)kB$')


@dataclasses.dataclass
class PciFunction:
    address: str
    vendor_id: str
    product_id: str
    parent_addr: str | None
    driver: str | None
    total_vfs: int
    num_vfs: int

    def dev_dict(self):
        """The keys Nova's ``PciDeviceSpec.match`` reads."""
        return {'vendor_id': self.vendor_id, 'product_id': self.product_id,
                'address': self.address, 'parent_addr': self.parent_addr}


class SysTree:

    def __init__(self, root='/'):
        self.root = root

    def path(self, relative):
        return os.path.join(self.root, relative.lstrip('/'))

    def read(self, relative, default=None):
        try:
            with open(self.path(relative)) as f:
                return f.read().strip()
        except OSError:
            return default

    def read_int(self, relative):
        try:
            return int(self.read(relative) or 0)
        except ValueError:
            return 0

    def exists(self, relative):
        return os.path.exists(self.path(relative))

    def listdir(self, relative):
        try:
            return sorted(os.listdir(self.path(relative)))
        except OSError:
            return []

    def link_name(self, relative):
        """The last component of a symlink's target, or None."""
        try:
            return os.path.basename(os.readlink(self.path(relative)))
        except OSError:
            return None

    # -- /proc -------------------------------------------------------------

    def cmdline(self):
        """[(parameter, value or None)] of the kernel command line, in
        order (a parameter may repeat, as hugepagesz does)."""
        params = []
        for word in (self.read('proc/cmdline') or '').split():
            if word == '--':
                break
            key, sep, value = word.partition('=')
            params.append((key, value if sep else None))
        return params

    def cpu_flags(self):
        flags = set()
        for line in (self.read('proc/cpuinfo') or '').splitlines():
            key, _, value = line.partition(':')
            if key.strip() == 'flags':
                flags.update(value.split())
        return flags

    def mount_types(self):
        types = set()
        for line in (self.read('proc/mounts') or '').splitlines():
            fields = line.split()
            if len(fields) > 2:
                types.add(fields[2])
        return types

    # -- /sys --------------------------------------------------------------

    def online_cpus(self):
        spec = self.read('sys/devices/system/cpu/online')
        return hardware.parse_cpu_spec(spec) if spec else set()

    def thread_siblings(self, cpu):
        spec = self.read('sys/devices/system/cpu/cpu%d/topology/'
                         'thread_siblings_list' % cpu)
        return hardware.parse_cpu_spec(spec) if spec else {cpu}

    def numa_nodes(self):
        nodes = []
        for name in self.listdir('sys/devices/system/node'):
            if re.fullmatch(r'node\d+', name):
                nodes.append(int(name[4:]))
        return sorted(nodes)

    def node_memory_kb(self, node):
        text = self.read('sys/devices/system/node/node%d/meminfo' % node)
        match = re.search(r'MemTotal:\s+(\d+) kB', text or '')
        return int(match.group(1)) if match else 0

    def node_hugepages(self, node):
        """{page size KiB: (allocated, free)} of a NUMA node."""
        base = 'sys/devices/system/node/node%d/hugepages' % node
        pages = {}
        for name in self.listdir(base):
            match = _HUGEPAGES.match(name)
            if match:
                pages[int(match.group(1))] = (
                    self.read_int('%s/%s/nr_hugepages' % (base, name)),
                    self.read_int('%s/%s/free_hugepages' % (base, name)))
        return pages

    def iommu_groups(self):
        return self.listdir('sys/kernel/iommu_groups')

    def pci_functions(self):
        functions = []
        for address in self.listdir('sys/bus/pci/devices'):
            base = 'sys/bus/pci/devices/%s' % address
            ids = [(self.read('%s/%s' % (base, f)) or '').lower()
                   .replace('0x', '') for f in ('vendor', 'device')]
            functions.append(PciFunction(
                address=address, vendor_id=ids[0], product_id=ids[1],
                parent_addr=self.link_name(base + '/physfn'),
                driver=self.link_name(base + '/driver'),
                total_vfs=self.read_int(base + '/sriov_totalvfs'),
                num_vfs=self.read_int(base + '/sriov_numvfs')))
        return functions
