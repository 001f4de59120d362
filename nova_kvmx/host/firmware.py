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

"""What firmware this host gives guests, from libvirt's domain
capabilities.

libvirt reads the firmware descriptors the host's UEFI packages install
(Debian's ``ovmf``: /usr/share/qemu/firmware/*.json) and says in the
domain capabilities whether it can choose UEFI firmware for a guest
(``<os><enum name='firmware'>`` has ``efi``, its loader can be a
``pflash``) and whether one of them does Secure Boot (``<loader><enum
name='secure'>`` has ``yes``): Nova's ``Host.supports_uefi`` and
``supports_secure_boot`` read the same.
"""

import dataclasses
import glob
import json
import os

from nova.virt.libvirt import driver as libvirt_driver
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

# Where QEMU's firmware descriptors are, in libvirt's order (a file in a
# later directory replaces one of the same name in an earlier).
DESCRIPTOR_DIRS = ('/usr/share/qemu/firmware', '/etc/qemu/firmware')


@dataclasses.dataclass(frozen=True)
class FirmwareSupport:
    uefi: bool = False
    secure_boot: bool = False
    # hw_firmware_stateless: libvirt (>= 8.6.0) has a UEFI firmware
    # without NVRAM to choose.
    stateless: bool = False


def firmware_support(domcaps, stateless=False):
    """The :class:`FirmwareSupport` of a machine type's domain
    capabilities (``nova.virt.libvirt.config.LibvirtConfigDomainCaps``).

    :param stateless: :func:`has_stateless_firmware`
    """
    caps_os = domcaps.os
    uefi = bool(caps_os.uefi_supported and caps_os.uefi_autoconfig_supported)
    return FirmwareSupport(
        uefi=uefi,
        secure_boot=uefi and bool(caps_os.secure_boot_supported),
        stateless=uefi and stateless)


def has_stateless_firmware(host, arch, dirs=DESCRIPTOR_DIRS):
    """libvirt knows ``<loader stateless>`` (Nova's minimum) and a
    firmware descriptor offers UEFI without NVRAM for ``arch``. Nova's
    libvirt driver looks at libvirt's version only; Debian 12's ``ovmf``
    has no such firmware, and a guest asking for it would not start."""
    if not host.has_min_version(
            lv_ver=libvirt_driver.MIN_LIBVIRT_STATELESS_FIRMWARE):
        return False
    return any(_stateless(d) and any(
        target.get('architecture') == arch
        for target in d.get('targets', ())) for d in read_descriptors(dirs))


def read_descriptors(dirs=DESCRIPTOR_DIRS):
    """The firmware descriptors (dicts) in ``dirs``; one that cannot be
    read is skipped, as libvirt skips it."""
    files = {}
    for directory in dirs:
        for path in glob.glob(os.path.join(directory, '*.json')):
            files[os.path.basename(path)] = path
    result = []
    for name in sorted(files):
        try:
            with open(files[name], encoding='utf-8') as f:
                result.append(json.load(f))
        except (OSError, ValueError) as ex:
            LOG.warning('Skipping firmware descriptor %s: %s',
                        files[name], ex)
    return result


def _stateless(descriptor):
    mapping = descriptor.get('mapping') or {}
    if 'uefi' not in descriptor.get('interface-types', ()):
        return False
    return (mapping.get('device') == 'memory' or (
        mapping.get('device') == 'flash' and
        mapping.get('mode') == 'stateless'))
