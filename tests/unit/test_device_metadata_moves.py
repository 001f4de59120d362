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

"""The device metadata of the domains a rescue, an unrescue and a move
make, as Nova's libvirt driver rebuilds it: the tags at the addresses of
the new domain (here the tagged devices of data/domain-tagged-devices.xml,
where an instance's old metadata had other addresses)."""

from unittest import mock

from nova import objects
from nova import test

from nova_kvmx import migration
from nova_kvmx import rescue
from tests.unit import builders as b
from tests.unit import test_device_metadata as tdm

STALE = '0000:01:00.0'


def instance():
    inst = b.instance()
    inst.system_metadata = {}
    inst.image_ref = b.IMAGE_ID
    inst.device_metadata = objects.InstanceDeviceMetadata(devices=[
        objects.NetworkInterfaceMetadata(
            mac='fa:16:3e:4c:2c:30', tags=['mgmt'], vf_trusted=False,
            bus=objects.PCIDeviceBus(address=STALE))])
    return inst


def addresses(inst):
    return [(getattr(d, 'mac', None) or d.serial, d.bus.address)
            for d in inst.device_metadata.devices
            if d.bus.obj_attr_is_set('address')]


NEW_DOMAINS = [(tdm.VIRTIO_VOLUME, '0000:08:00.0'),
               ('fa:16:3e:4c:2c:30', '0000:02:00.0'),
               # (untagged, on a VLAN)
               ('fa:16:3e:5a:00:01', '0000:09:00.0')]


class MovesTest(test.NoDBTestCase):

    def setUp(self):
        super().setUp()
        self.stub_out('nova.objects.VirtualInterfaceList.'
                      'get_by_instance_uuid',
                      lambda *a: tdm.vifs(c30='mgmt'))
        self.stub_out('nova.objects.BlockDeviceMappingList.'
                      'get_by_instance_uuid',
                      lambda *a: tdm.bdms(vdb='database'))
        self.lifecycle = mock.Mock()
        self.lifecycle.find_guest.return_value = None
        guest = self.lifecycle.host.get_guest.return_value
        guest.get_xml_desc.return_value = tdm.domain_xml()
        self.storage = mock.Mock()
        self.instance = instance()

    def test_rescue_config_drive_of_the_rescue_domain(self):
        drives = []

        def start(instance, xml, network_info, defined=None, context=None):
            defined(self.lifecycle.host.get_guest(instance))

        def make_config_drive(context, inst, path, files, password, ni):
            drives.append((path, password, addresses(inst)))

        self.lifecycle.start_with_network.side_effect = start
        self.storage.rescue_files.return_value.config_drive = (
            '/i/disk.config.rescue')
        self.stub_out('nova_kvmx.storage.make_config_drive',
                      make_config_drive)
        rescue.Rescuer(self.lifecycle, self.storage).rescue(
            b.context(), self.instance, tdm.NETWORK_INFO, b.image(),
            'rescue-pw', {'block_device_mapping': []})
        self.assertEqual(NEW_DOMAINS, addresses(self.instance))
        self.assertEqual([('/i/disk.config.rescue', 'rescue-pw',
                           NEW_DOMAINS)], drives)

    def test_unrescue(self):
        self.instance.info_cache = objects.InstanceInfoCache(
            network_info=tdm.NETWORK_INFO)
        rescue.Rescuer(self.lifecycle, self.storage).unrescue(
            b.context(), self.instance)
        self.assertEqual(NEW_DOMAINS, addresses(self.instance))

    def test_move_started_or_defined(self):
        for power_on in (True, False):
            self.instance = instance()
            migration.ColdMigration(
                self.lifecycle, self.storage).start_or_define(
                    b.context(), self.instance, tdm.NETWORK_INFO, power_on,
                    {'block_device_mapping': []})
            self.assertEqual(NEW_DOMAINS, addresses(self.instance))
