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

"""Device metadata from a domain as libvirt holds it
(``data/domain-tagged-devices.xml``): two virtio NICs, an SR-IOV VF port
on VLAN 100, a direct-physical port's PF and a flavor's PCI device as
hostdevs, a virtio and a SCSI volume, the root disk and a config drive."""

import os

from nova.network import model as network_model
from nova import objects
from nova import test

from nova_kvmx import device_metadata

DATA = os.path.join(os.path.dirname(__file__), 'data')
VIRTIO_VOLUME = '3b1e4f8a-7c2d-4e59-8a61-5d0c9e2f7b14'
SCSI_VOLUME = '9e0d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b'


def domain_xml():
    with open(os.path.join(DATA, 'domain-tagged-devices.xml')) as f:
        return f.read()


def port(mac, vnic_type='normal', vlan=None, profile=None):
    return network_model.VIF(
        id='port-' + mac[-2:], address=mac, vnic_type=vnic_type,
        details={'vlan': vlan} if vlan else {}, profile=profile or {})


NETWORK_INFO = network_model.NetworkInfo([
    port('fa:16:3e:4c:2c:30'),
    port('fa:16:3e:4c:2c:31'),
    port('fa:16:3e:5a:00:01', 'direct', vlan='100',
         profile={'pci_slot': '0000:81:02.3', 'trusted': 'true'}),
    port('fa:16:3e:5a:00:02', 'direct-physical',
         profile={'pci_slot': '0000:82:00.0'}),
])


def vifs(**tags):
    """The instance's VirtualInterfaces, tagged by the last two digits of
    their MAC (``c30='mgmt'``)."""
    return [objects.VirtualInterface(address=vif['address'],
                                     tag=tags.get('c' + vif['address'][-2:]))
            for vif in NETWORK_INFO]


def bdms(**tags):
    return [
        objects.BlockDeviceMapping(device_name='/dev/vda', tag=None,
                                   volume_id=None),
        objects.BlockDeviceMapping(device_name='/dev/vdb',
                                   tag=tags.get('vdb'),
                                   volume_id=VIRTIO_VOLUME),
        objects.BlockDeviceMapping(device_name='/dev/sda',
                                   tag=tags.get('sda'),
                                   volume_id=SCSI_VOLUME),
    ]


def described(device):
    """What Nova's metadata API reads of a device."""
    result = {name: getattr(device, name) for name in device.fields
              if name != 'bus' and device.obj_attr_is_set(name)}
    if device.obj_attr_is_set('bus'):
        result['bus'] = (type(device.bus).__name__,
                         device.bus.address if device.bus.obj_attr_is_set(
                             'address') else None)
    return result


class BuildTest(test.NoDBTestCase):

    def build(self, vif_tags=None, disk_tags=None, network_info=None):
        return device_metadata.build(
            domain_xml(), NETWORK_INFO if network_info is None
            else network_info, vifs(**(vif_tags or {})),
            bdms(**(disk_tags or {})))

    def test_tagged_devices_at_the_addresses_libvirt_gave(self):
        meta = self.build(
            vif_tags={'c30': 'mgmt', 'c02': 'uplink'},
            disk_tags={'vdb': 'database', 'sda': 'logs'})
        self.assertEqual([
            # Disks: the serial is the volume; a SCSI disk's drive
            # address has no form in Nova's objects.
            {'tags': ['database'], 'serial': VIRTIO_VOLUME,
             'bus': ('PCIDeviceBus', '0000:08:00.0')},
            {'tags': ['logs'], 'serial': SCSI_VOLUME,
             'bus': ('SCSIDeviceBus', None)},
            {'mac': 'fa:16:3e:4c:2c:30', 'tags': ['mgmt'],
             'vf_trusted': False, 'bus': ('PCIDeviceBus', '0000:02:00.0')},
            # An untagged port on a VLAN is listed, with its VF's trust.
            {'mac': 'fa:16:3e:5a:00:01', 'vlan': 100, 'vf_trusted': True,
             'bus': ('PCIDeviceBus', '0000:09:00.0')},
            # The PF of the direct-physical port, at its address in the
            # guest (the flavor's PCI device at 0000:83:00.1 is no port).
            {'mac': 'fa:16:3e:5a:00:02', 'tags': ['uplink'],
             'vf_trusted': False, 'bus': ('PCIDeviceBus', '0000:0a:00.0')},
        ], [described(d) for d in meta.devices])

    def test_nothing_tagged_or_on_a_vlan_is_none(self):
        plain = network_model.NetworkInfo(
            [vif for vif in NETWORK_INFO if not vif['details']])
        self.assertIsNone(self.build(network_info=plain))

    def test_tag_of_a_port_the_domain_does_not_have(self):
        # A port whose device is gone (detached) leaves the metadata.
        gone = objects.VirtualInterface(address='fa:16:3e:4c:2c:99',
                                        tag='gone')
        meta = device_metadata.build(domain_xml(), NETWORK_INFO, [gone], [])
        self.assertIsNone(meta)

    def test_tag_of_a_volume_the_domain_does_not_have(self):
        detached = objects.BlockDeviceMapping(
            device_name='/dev/vdc', tag='gone', volume_id=VIRTIO_VOLUME)
        self.assertIsNone(device_metadata.build(domain_xml(), [], [],
                                                [detached]))

    def test_saved_and_loaded_as_nova_stores_it(self):
        meta = self.build(vif_tags={'c30': 'mgmt'},
                          disk_tags={'vdb': 'database'})
        again = objects.InstanceDeviceMetadata.obj_from_db(
            None, meta._to_json())
        self.assertEqual([described(d) for d in meta.devices],
                         [described(d) for d in again.devices])
