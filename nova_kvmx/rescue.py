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

"""Rescue: boot the instance from a rescue image, its own root disk
attached second, with the same claim (pins, cells, pages, ports), so an
operator can repair a guest that no longer boots; unrescue renders the
instance again from what Nova holds.

Like Nova's libvirt driver, the rescue guest uses the instance's own
kernel and ramdisk when it has them, and neither rescue nor unrescue waits
for Neutron's ``network-vif-plugged`` events (Nova's libvirt driver keeps
the ports plugged through both, so Neutron sends none).
"""

from oslo_log import log as logging
from oslo_utils import excutils

from nova_kvmx import lifecycle as guest_lifecycle

LOG = logging.getLogger(__name__)


class Rescuer(object):
    def __init__(self, lifecycle, storage):
        self.lifecycle = lifecycle
        self.storage = storage

    def rescue(self, context, instance, network_info, image_meta,
               rescue_password, block_device_info, share_info=None):
        guest_lifecycle.reject_volumes(block_device_info)
        files = self.storage.rescue_files(context, instance, image_meta,
                                          network_info, rescue_password)
        try:
            xml = self.lifecycle.domain_xml(context, instance, image_meta,
                                            files, network_info)
            self.stop(instance)
            self.lifecycle.start_with_network(instance, xml, network_info)
        except Exception:
            with excutils.save_and_reraise_exception():
                LOG.warning('Rescue failed: starting the guest again from '
                            'its own disk', instance=instance)
                self.storage.remove_rescue_files(instance)
                self.lifecycle.hard_reboot(context, instance, network_info,
                                           wait_for_plug=False)
        LOG.info('Guest rescued', instance=instance)

    def unrescue(self, context, instance):
        self.stop(instance)
        self.storage.remove_rescue_files(instance)
        self.lifecycle.hard_reboot(context, instance,
                                   instance.get_network_info(),
                                   wait_for_plug=False)
        LOG.info('Guest unrescued', instance=instance)

    def stop(self, instance):
        guest = self.lifecycle.find_guest(instance)
        if guest is not None:
            self.lifecycle.undefine(guest, instance)
