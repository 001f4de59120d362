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

"""The device traits of the compute node, which Nova's scheduler
prefilters (``[scheduler] image_metadata_prefilter``) turn image
properties into: ``hw_disk_bus=scsi`` requires COMPUTE_STORAGE_BUS_SCSI.

Each family is reported as Nova's libvirt driver reports it (from
libvirt's domain capabilities where Nova reads them), narrowed to what
nova-kvmx gives guests: a trait is present only when a guest asking for
it boots here, so a request nova-kvmx refuses gets "No valid host" from
the scheduler instead of an error on the host. Every trait of a family is
in the result, present or not, so that a stale one is removed.
"""

import itertools

import os_traits as ot
from nova.network import model as network_model
from nova.objects import fields
from nova.virt.libvirt import blockinfo
from nova.virt.libvirt import config as vconfig
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import vif as libvirt_vif

from nova_kvmx.guest import disk_names


def domain_capabilities(host, arch, machine_type, virt_type):
    """libvirt's domain capabilities of the guests this host runs."""
    caps = vconfig.LibvirtConfigDomainCaps()
    caps.parse_str(host.get_connection().getDomainCapabilities(
        None, arch, machine_type, virt_type, 0))
    return caps


def has_igb(host):
    """libvirt and QEMU give guests the igb NIC (Nova's minimums)."""
    return host.has_min_version(libvirt_driver.MIN_IGB_LIBVIRT_VERSION,
                                libvirt_driver.MIN_IGB_QEMU_VERSION)


def _family(prefix, every, supported):
    """{prefix + NAME: name in supported} for every name that makes a
    trait os-traits knows."""
    known = set(ot.get_traits(prefix=prefix))
    traits = {}
    for name in every:
        trait = prefix + name.replace('-', '_').upper()
        if trait in known:
            traits[trait] = name in supported
    return traits


def device_traits(domcaps, arch, virt_type, graphics, igb=False):
    """{trait: present} of the devices guests of this host can have.

    :param domcaps: :func:`domain_capabilities` of the guests' machine
    :param graphics: guests have a graphical console (``[vnc] enabled``),
        without which they have no video device
    :param igb: libvirt and QEMU are recent enough for the igb NIC
    """
    buses = set(domcaps.devices.disk.buses) & set(disk_names.BUS_PREFIX)
    videos = set(domcaps.devices.video.models) if graphics else set()
    vifs = set(libvirt_vif.SUPPORTED_VIF_MODELS.get(virt_type, ()))
    if not igb:
        vifs.discard(network_model.VIF_MODEL_IGB)
    traits = _family(
        'COMPUTE_STORAGE_BUS_',
        itertools.chain(*blockinfo.SUPPORTED_DEVICE_BUSES.values()), buses)
    traits.update(_family('COMPUTE_GRAPHICS_MODEL_',
                          fields.VideoModel.ALL, videos))
    traits.update(_family(
        'COMPUTE_NET_VIF_MODEL_',
        itertools.chain(*libvirt_vif.SUPPORTED_VIF_MODELS.values()), vifs))
    # hw_viommu_model, packed virtqueues and emulating another
    # architecture are refused (nova_kvmx.guest.keys): none reported.
    # vTPM ones: nova_kvmx.host.tpm replaces these with swtpm_enabled.
    traits.update(_family('COMPUTE_VIOMMU_MODEL_',
                          fields.VIOMMUModel.ALL, ()))
    traits.update({t: False for t in ot.get_traits(
        prefix='COMPUTE_SECURITY_TPM_')})
    traits[ot.COMPUTE_NET_VIRTIO_PACKED] = False
    traits.update({t: False for t in ot.get_traits(prefix='COMPUTE_ARCH_')})
    traits.update(_family('HW_ARCH_', [arch], [arch]))
    return traits
