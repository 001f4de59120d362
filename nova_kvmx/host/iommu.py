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

"""Is this host ready to give PCI devices to guests (VT-d / AMD-Vi)?

libvirt hands a device to a guest through VFIO: the kernel must have an
IOMMU on (its groups appear under /sys/kernel/iommu_groups) and the
vfio-pci driver (loaded, or a module libvirt can load). Neither shows in
libvirt's capabilities, and without them a passthrough guest fails only
when it starts. :func:`read_facts` reads the host; :func:`problems` is
pure, for nova-compute's start-up warning and an operator's host check.
"""

import dataclasses
import os

VFIO_LOADED = 'loaded'
VFIO_MODULE = 'module'
VFIO_MISSING = 'missing'


@dataclasses.dataclass(frozen=True)
class PassthroughFacts:
    iommu_groups: int
    # VFIO_LOADED, VFIO_MODULE (installed, not loaded) or VFIO_MISSING
    vfio_pci: str
    kernel_release: str = ''
    kernel_cmdline: str = ''


def problems(facts):
    """What stops PCI passthrough on a host with ``facts``, each a sentence
    an operator can act on; empty when the host is ready."""
    result = []
    if facts.iommu_groups == 0:
        hint = ''
        if 'iommu=' not in facts.kernel_cmdline:
            hint = (' and boot the kernel with intel_iommu=on (Intel) or '
                    'without amd_iommu=off (AMD)')
        result.append(
            'the IOMMU is off (no group in /sys/kernel/iommu_groups): '
            'enable VT-d / AMD-Vi in the firmware%s' % hint)
    if facts.vfio_pci == VFIO_MISSING:
        result.append(
            'the vfio-pci driver is neither loaded nor installed for kernel '
            '%s: install the kernel modules that provide vfio-pci' %
            (facts.kernel_release or '(unknown)'))
    return result


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ''


def read_facts(sysfs='/sys', proc='/proc', modules='/lib/modules'):
    """The facts of the running host (sysfs, /proc and the kernel's module
    lists)."""
    groups_dir = os.path.join(sysfs, 'kernel', 'iommu_groups')
    groups = len(os.listdir(groups_dir)) if os.path.isdir(groups_dir) else 0
    release = os.uname().release
    if os.path.isdir(os.path.join(sysfs, 'bus', 'pci', 'drivers',
                                  'vfio-pci')):
        vfio = VFIO_LOADED
    else:
        lists = ''.join(_read(os.path.join(modules, release, name))
                        for name in ('modules.dep', 'modules.builtin'))
        vfio = VFIO_MODULE if '/vfio-pci.ko' in lists else VFIO_MISSING
    return PassthroughFacts(
        iommu_groups=groups, vfio_pci=vfio, kernel_release=release,
        kernel_cmdline=_read(os.path.join(proc, 'cmdline')))
