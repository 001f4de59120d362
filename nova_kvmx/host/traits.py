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
from nova_kvmx.guest import hwdevices


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


def guest_features(host, virt_type, arch):
    """What guests of this host start with beyond its domain
    capabilities: the vIOMMU and sound models, <cpu><maxphysaddr>, and
    the architectures libvirt lists guests of (Nova's version checks);
    as DriverSettings fields."""
    version = host.has_min_version
    return dict(
        viommu_models=hwdevices.viommu_models(
            virt_type, arch,
            version(libvirt_driver.MIN_LIBVIRT_VIOMMU_VIRTIO_MODEL)),
        sound_models=hwdevices.sound_models(
            version(libvirt_driver.MIN_VIRTIO_SOUND_LIBVIRT_VERSION),
            version(hv_ver=libvirt_driver.MIN_VIRTIO_SOUND_QEMU_VERSION)),
        maxphysaddr=version(libvirt_driver.MIN_LIBVIRT_MAXPHYSADDR),
        guest_arches=frozenset(
            g.arch for g in host.get_capabilities().guests))


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


def device_traits(domcaps, arch, virt_type, graphics, igb=False,
                  viommu_models=(), sound_models=(), guest_arches=()):
    """{trait: present} of the devices guests of this host can have.

    :param domcaps: :func:`domain_capabilities` of the guests' machine
    :param graphics: guests have a graphical console (``[vnc] enabled``),
        without which they have no video device
    :param igb: libvirt and QEMU are recent enough for the igb NIC
    :param viommu_models: the vIOMMU models guests start with
        (guest.hwdevices.viommu_models)
    :param sound_models: the sound models (guest.hwdevices.sound_models)
    :param guest_arches: the architectures libvirt's capabilities list
        guests of (hw_emulation_architecture)
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
    traits.update(_family('COMPUTE_VIOMMU_MODEL_',
                          fields.VIOMMUModel.ALL, viommu_models))
    traits.update(_family('COMPUTE_SOUND_MODEL_',
                          fields.SoundModelType.ALL, sound_models))
    # vTPM: nova_kvmx.host.tpm replaces these with [libvirt]
    # swtpm_enabled.
    traits.update({t: False for t in ot.get_traits(
        prefix='COMPUTE_SECURITY_TPM_')})
    # As Nova: every virtio NIC can have the packed ring.
    traits[ot.COMPUTE_NET_VIRTIO_PACKED] = True
    traits.update(_family('COMPUTE_ARCH_', fields.Architecture.ALL,
                          guest_arches))
    traits.update(_family('HW_ARCH_', [arch], [arch]))
    return traits
