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

"""Rescue: boot the instance from a rescue image with the same claim
(pins, cells, pages, ports), so an operator can repair a guest that no
longer boots; unrescue renders the instance again from what Nova holds.

Two layouts, as Nova's libvirt driver has them:

* stable device rescue, when the rescue image has ``hw_rescue_device``
  or ``hw_rescue_bus``: every disk of the instance where it always is
  (root disk or root volume, ephemeral, swap, volumes, config drive) and
  the rescue disk after them, booted first. A volume-backed instance can
  only be rescued this way (``supports_bfv_rescue``);
* otherwise the legacy layout: the rescue disk first, the instance's own
  root disk second, the config drive; the volumes stay connected but are
  not given to the rescue guest.

Like Nova's libvirt driver, the rescue guest uses the instance's own
kernel and ramdisk when it has them, and neither rescue nor unrescue waits
for Neutron's ``network-vif-plugged`` events (Nova's libvirt driver keeps
the ports plugged through both, so Neutron sends none).
"""

from nova import exception
import nova.conf
from nova.virt import hardware
from oslo_log import log as logging
from oslo_utils import excutils

from nova_kvmx import device_metadata
from nova_kvmx.guest import disk_names
from nova_kvmx.guest import spec
from nova_kvmx import lifecycle
from nova_kvmx import storage as instance_storage
from nova_kvmx import volumes as host_volumes

CONF = nova.conf.CONF

LOG = logging.getLogger(__name__)


class Rescuer(object):
    def __init__(self, lifecycle, storage):
        self.lifecycle = lifecycle
        self.storage = storage

    def rescue(self, context, instance, network_info, image_meta,
               rescue_password, block_device_info, share_info=None):
        stable = hardware.check_hw_rescue_props(image_meta)
        volume_backed = host_volumes.root_volume(block_device_info) \
            is not None
        if volume_backed and not stable:
            raise exception.InstanceNotRescuable(
                instance_id=instance.uuid, reason='it boots from a volume: '
                'rescue it with an image that has hw_rescue_device or '
                'hw_rescue_bus (stable device rescue)')
        bdms = host_volumes.mapping(block_device_info) if stable else []
        rescue_disk = rescue_device(image_meta) if stable else None
        files = self.storage.rescue_files(
            context, instance, image_meta, volume_backed, rescue_disk,
            network_info, rescue_password,
            image_id=rescue_image_id(image_meta, instance))
        try:
            self.lifecycle.volumes.connect_all(context, instance, bdms,
                                               rollback=False)
            guest = self.lifecycle.find_guest(instance)
            xml = self.lifecycle.domain_xml(
                context, instance, image_meta, files, network_info, bdms,
                lifecycle.kept_firmware(guest) if guest else None)
            self.stop(instance)

            def described(guest):
                # As Nova's libvirt driver: the device metadata and the
                # rescue config drive carrying it are the rescue domain's
                # (its devices' addresses), once it is defined.
                device_metadata.refresh(context, instance,
                                        guest.get_xml_desc(), network_info)
                if files.config_drive:
                    instance_storage.make_config_drive(
                        context, instance, files.config_drive, None,
                        rescue_password, network_info)

            self.lifecycle.start_with_network(instance, xml, network_info,
                                              defined=described,
                                              context=context)
        except Exception:
            with excutils.save_and_reraise_exception():
                LOG.warning('Rescue failed: starting the guest again from '
                            'its own disk', instance=instance)
                self.storage.remove_rescue_files(instance)
                self.lifecycle.hard_reboot(
                    context, instance, network_info, wait_for_plug=False,
                    block_device_info=block_device_info)
        LOG.info('Guest rescued (%s)', 'stable device rescue' if stable
                 else 'rescue disk first', instance=instance)

    def unrescue(self, context, instance):
        self.stop(instance)
        self.storage.remove_rescue_files(instance)
        self.lifecycle.hard_reboot(context, instance,
                                   instance.get_network_info(),
                                   wait_for_plug=False)
        # The instance's own domain again: its devices' addresses (Nova's
        # libvirt driver leaves the rescue domain's; the compute manager
        # saves the instance).
        device_metadata.refresh(
            context, instance, self.lifecycle.host.get_guest(
                instance).get_xml_desc(dump_inactive=True))
        LOG.info('Guest unrescued', instance=instance)

    def stop(self, instance):
        """Undefine the domain, keeping its UEFI NVRAM and vTPM state
        for the next (as Nova's libvirt driver, which defines the next
        over it)."""
        guest = self.lifecycle.find_guest(instance)
        if guest is not None:
            self.lifecycle.undefine(guest, instance, keep_nvram=True,
                                    keep_vtpm=True)


def rescue_image_id(image_meta, instance):
    """The image the rescue guest boots: the one asked for, else
    ``[libvirt] rescue_image_id``, else the instance's own (Nova's libvirt
    driver's order)."""
    if image_meta.obj_attr_is_set('id') and image_meta.id:
        return image_meta.id
    return CONF.libvirt.rescue_image_id or instance.image_ref


def rescue_device(image_meta):
    """The rescue disk's bus and device type of a stable device rescue:
    the rescue image's ``hw_rescue_device`` (a disk by default) on its
    ``hw_rescue_bus`` (else the image's bus for that device), as Nova's
    blockinfo chooses them; a path is filled in by storage.

    :raises: UnsupportedRescueDevice, UnsupportedRescueBus
    """
    props = image_meta.properties
    device = props.get('hw_rescue_device', 'disk')
    if device not in ('disk', 'cdrom'):
        raise exception.UnsupportedRescueDevice(device=device)
    bus = props.get('hw_rescue_bus')
    if bus is None:
        bus = disk_names.image_bus(image_meta, device)
    elif bus not in disk_names.BUS_PREFIX:
        raise exception.UnsupportedRescueBus(bus=bus, virt='kvmx')
    return spec.RescueDisk(path='', bus=bus, device=device)
