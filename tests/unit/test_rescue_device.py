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

"""The rescue disk of a stable device rescue: the rescue image's
``hw_rescue_device`` and ``hw_rescue_bus``, as Nova's blockinfo reads
them."""

import ddt
from nova import exception
import testtools

from nova_kvmx import rescue
from tests.unit import builders as b


@ddt.ddt
class RescueDeviceTest(testtools.TestCase):

    @ddt.data(
        ({'hw_rescue_device': 'disk'}, 'disk', 'virtio'),
        ({'hw_rescue_device': 'disk', 'hw_rescue_bus': 'scsi'}, 'disk',
         'scsi'),
        ({'hw_rescue_bus': 'sata'}, 'disk', 'sata'),
        ({'hw_rescue_device': 'cdrom'}, 'cdrom', 'sata'),
        ({'hw_rescue_device': 'disk', 'hw_disk_bus': 'scsi'}, 'disk',
         'scsi'),
    )
    @ddt.unpack
    def test_device_and_bus(self, props, device, bus):
        disk = rescue.rescue_device(b.image(**props))
        self.assertEqual((device, bus), (disk.device, disk.bus))

    def test_a_bus_without_disks_is_refused_by_name(self):
        ex = self.assertRaises(
            exception.UnsupportedRescueBus, rescue.rescue_device,
            b.image(hw_rescue_device='disk', hw_rescue_bus='xen'))
        self.assertIn('xen', str(ex))
