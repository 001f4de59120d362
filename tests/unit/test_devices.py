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

"""Facts of a PCI function's network interface, from its net node device."""

import testtools

from nova_kvmx.host import devices

# As `virsh nodedev-dumpxml` prints the virtio NIC of a Debian 12 guest.
NET_ETH0 = """<device>
  <name>net_eth0_02_fc_00_00_00_01</name>
  <path>/sys/devices/pci0000:00/0000:00:03.0/virtio2/net/eth0</path>
  <parent>pci_0000_00_03_0</parent>
  <capability type='net'>
    <interface>eth0</interface>
    <address>02:fc:00:00:00:01</address>
    <link speed='4294967295' state='up'/>
    <feature name='rx'/>
    <feature name='tx'/>
    <feature name='sg'/>
    <feature name='tso'/>
    <capability type='80203'/>
  </capability>
</device>"""

NET_LO = """<device>
  <name>net_lo_00_00_00_00_00_00</name>
  <path>/sys/devices/virtual/net/lo</path>
  <parent>computer</parent>
  <capability type='net'>
    <interface>lo</interface>
    <address>00:00:00:00:00:00</address>
  </capability>
</device>"""


class NetFactsTest(testtools.TestCase):

    def test_pci_nic(self):
        self.assertEqual(
            ('0000:00:03.0', ['rx', 'tx', 'sg', 'tso'], 'eth0',
             '02:fc:00:00:00:01'),
            devices.net_facts(NET_ETH0))

    def test_interface_without_pci_parent(self):
        self.assertIsNone(devices.net_facts(NET_LO))
