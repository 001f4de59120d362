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

"""A port detached from a guest that releases it late (still booting):
the request is repeated to the running guest only."""

import fixtures
import testtools

from nova_kvmx.guest import devices
from nova_kvmx import vif

MAC = 'fa:16:3e:7a:91:02'
WITH_NIC = ("<domain><devices><interface type='ethernet'>"
            "<mac address='%s'/></interface></devices></domain>" % MAC)
WITHOUT_NIC = '<domain><devices/></domain>'


class SlowGuest(object):
    """A running guest whose definition drops the device at the first
    request and whose running domain only at the ``releases_at``-th;
    libvirt refuses a persistent detach of a device the definition no
    longer has."""

    def __init__(self, releases_at):
        self.releases_at = releases_at
        self.requests = []

    def get_xml_desc(self):
        return (WITHOUT_NIC if len(self.requests) >= self.releases_at
                else WITH_NIC)

    def get_power_state(self, host):
        return 1  # running

    def detach_device(self, conf, persistent, live):
        if persistent and self.requests:
            raise AssertionError('device not found in the definition')
        self.requests.append((persistent, live))


class DetachTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MockPatchObject(
            vif, 'POLL_INTERVAL', 0))
        self.network = vif.GuestNetwork(None, detach_timeout=30)
        self.spec = devices.InterfaceSpec(port_id='p1', mac=MAC,
                                          net_type='ethernet')

    def test_repeated_to_the_running_guest_only(self):
        guest = SlowGuest(releases_at=3)
        # Each request waits up to 5 s for the guest: shortened.
        self.useFixture(fixtures.MockPatch(
            'nova_kvmx.vif._wait_gone'))
        self.network._detach(guest, self.spec)
        self.assertEqual([(True, True), (False, True), (False, True)],
                         guest.requests)
